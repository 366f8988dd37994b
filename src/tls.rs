//! TLS to Redis (`rediss://` URLs and the `redis.tls` settings), over rustls.
//!
//! The settings are read and checked when the config is built: PEM files are
//! loaded then, so a missing or bad file is [`Error::InvalidConfig`] naming
//! the field and the path, not a connect error minutes later. One [`RedisTls`]
//! then serves both kinds of connection: redis-rs's pooled command
//! connections get the same PEM bytes ([`RedisTls::certificates`]), our own
//! pub/sub socket (src/subscription.rs) a rustls `ClientConfig` built here
//! ([`RedisTls::handshake`]).
//!
//! What is verified, always (there is no switch to turn it off): the server's
//! certificate chains up to the configured CA (`redis.tls.ca`, else the
//! system's trust store), is within its validity dates, and names the host
//! connected to (a DNS name or an IP address among its subject alternative
//! names). With `redis.tls.cert` and `redis.tls.key` the client presents its
//! own certificate (mutual TLS, Redis's `tls-auth-clients yes`).
//!
//! Failures are explained for the operator ([`explain`]): an unknown issuer
//! points at `redis.tls.ca`, a refused client certificate at `redis.tls.cert`,
//! and a server that does not speak TLS (a plain-text port: Redis waits for a
//! newline that a ClientHello seldom holds, or answers `-ERR`) is named as such.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The keys `redis.tls` may hold. Node passes the object to `tls.connect`;
/// these are the ones that matter for Redis. Others are refused rather than
/// ignored, so that a typo does not silently weaken the connection.
const KNOWN_KEYS: [&str; 5] = ["ca", "cert", "key", "servername", "rejectUnauthorized"];

/// A TLS stream over TCP, as the subscription socket holds it.
pub(crate) type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Checked TLS settings for one Redis target. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RedisTls {
    inner: Arc<Inner>,
}

struct Inner {
    /// The setting these came from (`redis.tls`, or `redis.sentinelTLS` for
    /// the sentinels), for messages that say what to change.
    field: &'static str,
    /// The CA bundle as read, for redis-rs; `None` means the system's roots.
    ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key as read, for redis-rs.
    client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Where the trust comes from, for messages: `redis.tls.ca (/etc/redis/ca.pem)`.
    trust: String,
    /// The rustls configuration of our own sockets.
    config: Arc<ClientConfig>,
}

/// A PEM document from a setting: the file it names, or the PEM text itself
/// (Node's `tls.connect` takes the contents, so Node configs may hold them).
struct Pem {
    bytes: Vec<u8>,
    origin: String,
}

impl Pem {
    fn read(field: &str, value: &Value) -> Result<Pem> {
        let Value::String(text) = value else {
            return Err(Error::invalid_config(
                field,
                format!("must be the path of a PEM file, got {value}"),
            ));
        };
        if text.trim_start().starts_with("-----BEGIN") {
            return Ok(Pem {
                bytes: text.as_bytes().to_vec(),
                origin: "inline PEM".into(),
            });
        }
        if text.trim().is_empty() {
            return Err(Error::invalid_config(field, "must not be empty"));
        }
        let path = Path::new(text);
        let bytes = std::fs::read(path)
            .map_err(|e| Error::invalid_config(field, format!("cannot read {}: {e}", path.display())))?;
        Ok(Pem {
            bytes,
            origin: path.display().to_string(),
        })
    }

    fn certificates(&self, field: &str) -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid_config(field, format!("{}: not a PEM certificate file: {e}", self.origin)))?;
        if certs.is_empty() {
            return Err(Error::invalid_config(
                field,
                format!("{}: holds no certificate (-----BEGIN CERTIFICATE-----)", self.origin),
            ));
        }
        Ok(certs)
    }
}

impl RedisTls {
    /// Reads `redis.tls` (or, as `field`, another setting of the same form:
    /// `redis.sentinelTLS`): `true` (the system's trust store), `false`/absent
    /// (`None`), or `{ca, cert, key, servername}`. `host` is the Redis host:
    /// a `servername` must name it (see the README: redis-rs checks the
    /// certificate against the host it connects to). With `host` `None` (the
    /// hosts are the ones the sentinels name) `servername` is refused.
    pub(crate) fn from_setting(field: &'static str, value: &Value, host: Option<&str>) -> Result<Option<RedisTls>> {
        match value {
            Value::Null | Value::Bool(false) => Ok(None),
            Value::Bool(true) => RedisTls::build(field, None, None).map(Some),
            Value::Object(map) => RedisTls::from_map(field, map, host).map(Some),
            other => Err(Error::invalid_config(
                field,
                format!("must be true, false or an object {{ca, cert, key, servername}}, got {other}"),
            )),
        }
    }

    /// TLS trusting the system's certificate store (`rediss://` alone, or
    /// `tls: true`).
    pub(crate) fn system_roots() -> Result<RedisTls> {
        RedisTls::build("redis.tls", None, None)
    }

    fn from_map(field: &'static str, map: &Map<String, Value>, host: Option<&str>) -> Result<RedisTls> {
        if let Some(unknown) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(Error::invalid_config(
                format!("{field}.{unknown}"),
                format!("not a setting hydra-rs knows (it reads {})", KNOWN_KEYS.join(", ")),
            ));
        }
        match map.get("rejectUnauthorized") {
            None | Some(Value::Null | Value::Bool(true)) => {}
            Some(_) => {
                return Err(Error::invalid_config(
                    format!("{field}.rejectUnauthorized"),
                    format!("hydra-rs always verifies the server's certificate; give its CA in {field}.ca instead"),
                ));
            }
        }
        if let Some(name) = map.get("servername").filter(|v| !v.is_null()) {
            let Value::String(name) = name else {
                return Err(Error::invalid_config(
                    format!("{field}.servername"),
                    format!("must be a string, got {name}"),
                ));
            };
            let Some(host) = host else {
                return Err(Error::invalid_config(
                    format!("{field}.servername"),
                    "not used with sentinels: each certificate is checked against the address the sentinels \
                     name (an IP, or a host name with Sentinel's announce-hostnames)",
                ));
            };
            if !name.eq_ignore_ascii_case(host.trim_matches(['[', ']'])) {
                return Err(Error::invalid_config(
                    format!("{field}.servername"),
                    format!(
                        "{name:?} differs from the host {host:?}: the certificate is checked against the host \
                         connected to, so connect by the name the certificate holds (set redis.host to {name:?})"
                    ),
                ));
            }
        }
        let setting = |key: &str| map.get(key).filter(|v| !v.is_null());
        let ca = setting("ca")
            .map(|v| Pem::read(&format!("{field}.ca"), v))
            .transpose()?;
        let client = match (setting("cert"), setting("key")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                Pem::read(&format!("{field}.cert"), cert)?,
                Pem::read(&format!("{field}.key"), key)?,
            )),
            (Some(_), None) => {
                return Err(Error::invalid_config(
                    format!("{field}.key"),
                    format!("missing: a client certificate ({field}.cert) needs its private key"),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid_config(
                    format!("{field}.cert"),
                    format!("missing: a private key ({field}.key) needs its client certificate"),
                ));
            }
        };
        RedisTls::build(field, ca, client)
    }

    fn build(field: &'static str, ca: Option<Pem>, client: Option<(Pem, Pem)>) -> Result<RedisTls> {
        let mut roots = RootCertStore::empty();
        let trust = match &ca {
            Some(ca) => {
                for cert in ca.certificates(&format!("{field}.ca"))? {
                    roots.add(cert).map_err(|e| {
                        Error::invalid_config(
                            format!("{field}.ca"),
                            format!("{}: not a usable CA certificate: {e}", ca.origin),
                        )
                    })?;
                }
                format!("{field}.ca ({})", ca.origin)
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                    return Err(Error::invalid_config(
                        field,
                        format!("the system's trust store has no CA certificates{why}: give the CA in {field}.ca"),
                    ));
                }
                "the system's trust store".to_string()
            }
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid_config(field, e.to_string()))?
            .with_root_certificates(roots);
        let config = match &client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = cert.certificates(&format!("{field}.cert"))?;
                let private = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|e| {
                    Error::invalid_config(
                        format!("{field}.key"),
                        format!("{}: not a PEM private key: {e}", key.origin),
                    )
                })?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    Error::invalid_config(
                        format!("{field}.key"),
                        format!("{} does not go with {}: {e}", key.origin, cert.origin),
                    )
                })?
            }
        };
        Ok(RedisTls {
            inner: Arc::new(Inner {
                field,
                ca_pem: ca.map(|ca| ca.bytes),
                client_pem: client.map(|(cert, key)| (cert.bytes, key.bytes)),
                trust,
                config: Arc::new(config),
            }),
        })
    }

    /// The same settings in the form redis-rs takes them
    /// (`Client::build_with_tls`).
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .inner
                .client_pem
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.inner.ca_pem.clone(),
        }
    }

    /// Whether a client certificate is configured (mutual TLS).
    pub(crate) fn has_client_certificate(&self) -> bool {
        self.inner.client_pem.is_some()
    }

    /// Runs the TLS handshake over a connected `tcp` to `host` (the name the
    /// certificate must hold), finishing by `deadline`. Errors say what went
    /// wrong and what to check ([`explain`]).
    pub(crate) fn handshake(&self, host: &str, tcp: TcpStream, deadline: Instant) -> io::Result<TlsStream> {
        let peer = tcp.peer_addr().map_or_else(|_| host.to_string(), |a| a.to_string());
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a certificate: {e}"),
            )
        })?;
        let mut conn = ClientConnection::new(self.inner.config.clone(), name).map_err(io::Error::other)?;
        let mut tcp = tcp;
        let started = Instant::now();
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(no_tls_answer(&peer, started.elapsed()));
            }
            tcp.set_read_timeout(Some(left))?;
            tcp.set_write_timeout(Some(left))?;
            match conn.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(no_tls_answer(&peer, started.elapsed()));
                }
                Err(e) => {
                    let text = explain(&e, self).unwrap_or_else(|| e.to_string());
                    return Err(io::Error::new(
                        e.kind(),
                        format!("TLS handshake with {peer} failed: {text}"),
                    ));
                }
            }
        }
        Ok(StreamOwned::new(conn, tcp))
    }
}

/// A connect that got TCP but no TLS answer: almost always a plain-text port.
fn no_tls_answer(peer: &str, waited: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "TLS handshake with {peer} failed: no TLS answer within {waited:.1?}: is it a plain-text port? \
             (Redis serves TLS on its tls-port)"
        ),
    )
}

/// Says what a TLS failure in `e` (or in its sources) means and what to
/// check; `None` when `e` is no TLS failure.
pub(crate) fn explain(e: &(dyn std::error::Error + 'static), tls: &RedisTls) -> Option<String> {
    let mut source = Some(e);
    while let Some(current) = source {
        if let Some(tls_error) = current.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(tls_error, tls));
        }
        if let Some(tls_error) = as_io_error(current)
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(explain_rustls(tls_error, tls));
        }
        source = current.source();
    }
    None
}

/// The `io::Error` that `e` is, or that redis-rs wraps in it (its source is
/// the `Arc` it keeps the I/O error in).
pub(crate) fn as_io_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e io::Error> {
    if let Some(io_error) = e.downcast_ref::<io::Error>() {
        return Some(io_error);
    }
    let redis_error = e.downcast_ref::<redis::RedisError>()?;
    let source = std::error::Error::source(redis_error)?;
    if let Some(io_error) = source.downcast_ref::<io::Error>() {
        return Some(io_error);
    }
    source
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
        .and_then(|inner| inner.downcast_ref::<io::Error>())
}

fn explain_rustls(e: &rustls::Error, tls: &RedisTls) -> String {
    let hint = match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                let field = tls.inner.field;
                let what_to_do = if tls.inner.ca_pem.is_some() {
                    format!("check {field}.ca")
                } else {
                    format!("give the server's CA in {field}.ca")
                };
                format!(
                    "the server's certificate is not signed by a CA in {}: {what_to_do}",
                    tls.inner.trust
                )
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host connected to: connect by a name (or IP) among its \
                 subject alternative names (redis.host)"
                    .to_string()
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is outside its validity dates (or this machine's clock is wrong)".to_string()
            }
            _ => "the server's certificate was refused".to_string(),
        },
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => format!(
            "the server requires a client certificate (tls-auth-clients yes): set {0}.cert and {0}.key",
            tls.inner.field
        ),
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied,
        ) if tls.has_client_certificate() => format!(
            "the server refused our client certificate: check that {}.cert is signed by the CA in the \
             server's tls-ca-cert-file",
            tls.inner.field
        ),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) if !tls.has_client_certificate() => format!(
            "the server refused the handshake: it may require a client certificate ({0}.cert, {0}.key)",
            tls.inner.field
        ),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => {
            "no TLS version in common (hydra-rs speaks TLS 1.2 and 1.3)".to_string()
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server did not answer TLS: is it a plain-text port? (Redis serves TLS on its tls-port)".to_string()
        }
        _ => return e.to_string(),
    };
    format!("{e} — {hint}")
}

/// redis-rs's command connections build their rustls configuration with the
/// process-wide crypto provider; install ours (ring) unless the application
/// installed one. Without any, rustls would panic.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A redis-rs client for `info` (a plain TCP or Unix address), speaking TLS
/// with `tls` when it is set.
pub(crate) fn client(info: &redis::ConnectionInfo, tls: Option<&RedisTls>) -> redis::RedisResult<redis::Client> {
    let Some(tls) = tls else {
        return redis::Client::open(info.clone());
    };
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err((
            redis::ErrorKind::InvalidClientConfig,
            "TLS needs a TCP address (host and port)",
        )
            .into());
    };
    ensure_crypto_provider();
    let addr = redis::ConnectionAddr::TcpTls {
        host: host.clone(),
        port: *port,
        insecure: false,
        tls_params: None,
    };
    // TCP_NODELAY: the handshake's last flight and the first command are two
    // small writes in a row, which Nagle's algorithm would hold back for an ACK.
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.clone().set_addr(addr).set_tcp_settings(tcp);
    redis::Client::build_with_tls(info, tls.certificates())
}

/// A hint for a plain-text connect that the server reset straight away:
/// what Redis does on its `tls-port` to a client that does not speak TLS.
/// `setting` is where TLS would be turned on.
pub(crate) fn plain_text_reset_hint(e: &redis::RedisError, setting: &str) -> Option<String> {
    let reset = as_io_error(e).is_some_and(|io| io.kind() == io::ErrorKind::ConnectionReset);
    reset.then(|| format!(" (if that port serves TLS, set {setting})"))
}

/// What a failed redis-rs connect (`e`) means when it was over TLS: a TLS
/// error explained, or a read that timed out after TCP connected (no TLS
/// answer: a plain-text port, most likely). `None` when neither; with the
/// I/O error kind to keep (so `is_timeout` still holds).
pub(crate) fn explain_connect_error(e: &redis::RedisError, tls: &RedisTls, timeout: Duration) -> Option<String> {
    let io_error = as_io_error(e);
    if let Some(text) = explain(e, tls) {
        return Some(format!("TLS handshake failed: {text}"));
    }
    // A TCP connect that times out is `TimedOut`; a read that does, after
    // connecting, is `WouldBlock` (SO_RCVTIMEO).
    match io_error.map(io::Error::kind) {
        Some(io::ErrorKind::WouldBlock) => Some(format!(
            "TLS handshake failed: no answer within {timeout:?}: is it a plain-text port? \
             (Redis serves TLS on its tls-port)"
        )),
        _ => None,
    }
}
