//! Certificates for TLS tests and benchmarks, made on the spot (rcgen): a CA,
//! a server certificate for `127.0.0.1` and `localhost`, a client certificate
//! for mutual TLS, and a second, unrelated CA with its own client certificate
//! (the wrong ones). Plus a `redis-server` serving TLS with them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::RedisServer;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// PEM files in a private temporary directory, removed on drop.
pub struct TestCertificates {
    dir: PathBuf,
}

struct Authority {
    cert: Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Authority { cert, key }
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key.
    fn issue(&self, common_name: &str, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("generate a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the certificate");
        (cert.pem(), key.serialize_pem())
    }
}

impl TestCertificates {
    /// Generates every file (a few milliseconds).
    pub fn generate() -> TestCertificates {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hydra-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let certs = TestCertificates { dir };
        let ca = Authority::new("hydra test CA");
        let (server_cert, server_key) = ca.issue(
            "redis test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = ca.issue("hydra test client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let other = Authority::new("another CA");
        let (other_client_cert, other_client_key) = other.issue("stranger", &[], ExtendedKeyUsagePurpose::ClientAuth);
        for (name, text) in [
            ("ca.pem", ca.cert.pem()),
            ("server.pem", server_cert),
            ("server.key", server_key),
            ("client.pem", client_cert),
            ("client.key", client_key),
            ("other-ca.pem", other.cert.pem()),
            ("other-client.pem", other_client_cert),
            ("other-client.key", other_client_key),
        ] {
            std::fs::write(certs.dir.join(name), text).expect("write a PEM file");
        }
        certs
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// The server's certificate (SANs 127.0.0.1 and localhost).
    pub fn server_cert(&self) -> PathBuf {
        self.file("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.file("server.key")
    }

    /// A client certificate signed by [`ca`](TestCertificates::ca).
    pub fn client_cert(&self) -> PathBuf {
        self.file("client.pem")
    }

    /// Its private key.
    pub fn client_key(&self) -> PathBuf {
        self.file("client.key")
    }

    /// The CA, server certificate and key, for a TLS [`SentinelGroup`](crate::SentinelGroup).
    pub fn server_files(&self) -> crate::TlsFiles {
        crate::TlsFiles {
            ca: self.ca(),
            cert: self.server_cert(),
            key: self.server_key(),
        }
    }

    /// A CA that signed nothing the server holds.
    pub fn other_ca(&self) -> PathBuf {
        self.file("other-ca.pem")
    }

    /// A client certificate signed by [`other_ca`](TestCertificates::other_ca).
    pub fn other_client_cert(&self) -> PathBuf {
        self.file("other-client.pem")
    }

    /// Its private key.
    pub fn other_client_key(&self) -> PathBuf {
        self.file("other-client.key")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` with its plain port ([`RedisServer::port`]) and a TLS
/// port serving `certs`' server certificate.
pub struct TlsRedis {
    /// The server (plain port for checks that go around TLS).
    pub server: RedisServer,
    /// The TLS port.
    pub tls_port: u16,
}

impl TlsRedis {
    /// Starts it; with `require_client_certificate`, `--tls-auth-clients yes`
    /// (clients must present a certificate signed by `certs.ca()`).
    pub fn start(certs: &TestCertificates, require_client_certificate: bool) -> TlsRedis {
        let tls_port = crate::redis_server::free_port();
        let path = |p: PathBuf| p.to_str().expect("UTF-8 temp path").to_string();
        let args = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(certs.server_cert()),
            "--tls-key-file".into(),
            path(certs.server_key()),
            "--tls-ca-cert-file".into(),
            path(certs.ca()),
            "--tls-auth-clients".into(),
            if require_client_certificate { "yes" } else { "no" }.into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = RedisServer::start_with_args(&args);
        TlsRedis { server, tls_port }
    }

    /// `rediss://127.0.0.1:<tls port>/<db>`.
    pub fn tls_url(&self, db: u8) -> String {
        format!("rediss://127.0.0.1:{}/{db}", self.tls_port)
    }
}
