//! TLS to Redis (`rediss://`, `redis.tls`): a real `redis-server` with a TLS
//! port and certificates made by the test (a CA, a server certificate for
//! 127.0.0.1 and localhost, client certificates). A service and a client do
//! request–reply, an HTTP route call and queue work over TLS, every one of
//! their connections (commands and the pub/sub subscription) on the TLS port;
//! mutual TLS works with the client certificate and fails clearly without it;
//! a wrong CA, a stranger's client certificate and a plain-text port fail
//! within the connect timeout, saying what to check.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::wait_for;
use crossbeam_channel::unbounded;
use hydra::{ConfigBuilder, Error, HttpResponse, HttpRoutes, Hydra, QueuedMessage, RequestOptions, Umf};
use hydra_testkit::tls::{TestCertificates, TlsRedis};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

/// Node's config document: `redis: {url, tls}`.
fn document(name: &str, url: &str, tls: Value) -> Value {
    json!({"hydra": {
        "serviceName": name,
        "serviceIP": "127.0.0.1",
        "connectTimeout": CONNECT_TIMEOUT.as_millis() as u64,
        "commandTimeout": 2000,
        "redis": {"url": url, "tls": tls},
    }})
}

fn init(name: &str, url: &str, tls: Value) -> hydra::Result<Hydra> {
    Hydra::init(ConfigBuilder::from_value(document(name, url, tls))?.build()?)
}

/// Starts `init` and checks that it fails, within the connect timeout (and a
/// generous margin for a loaded machine), with a message holding every one
/// of `words`.
fn fails_fast(name: &str, url: &str, tls: Value, words: &[&str]) -> String {
    let started = Instant::now();
    let err = init(name, url, tls).expect_err("the connection is refused");
    let took = started.elapsed();
    let text = err.to_string();
    eprintln!("{name}: refused in {took:.2?}: {text}");
    assert!(matches!(err, Error::Redis(_)), "{text}");
    for word in words {
        assert!(text.contains(word), "{word:?} missing from: {text}");
    }
    assert!(took < CONNECT_TIMEOUT + Duration::from_secs(2), "took {took:?}: {text}");
    text
}

/// `CLIENT LIST` over the plain port: the local port of every client but the
/// one asking, and whether it is subscribed.
fn clients_by_port(tls: &TlsRedis) -> Vec<(u16, bool)> {
    let mut conn = common::raw(&tls.server);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut conn).unwrap();
    list.lines()
        .filter(|line| !line.starts_with(&format!("id={me} ")))
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            let port = field("laddr").rsplit(':').next().unwrap().parse().unwrap();
            (port, field("sub") != "0")
        })
        .collect()
}

fn echo_routes() -> HttpRoutes {
    HttpRoutes::new().post("/v1/secure/echo", |_, req| {
        HttpResponse::send_response(200, json!({"got": req.json().unwrap_or(Value::Null)}))
    })
}

#[test]
fn a_service_and_a_client_do_everything_over_tls() {
    let certs = TestCertificates::generate();
    let tls = TlsRedis::start(&certs, false);
    let settings = json!({"ca": path(&certs.ca())});

    let service = init("secure", &tls.tls_url(15), settings.clone()).expect("init over TLS");
    service
        .on_message(|h, msg| {
            h.reply(&msg, json!({"echo": msg.body}))?;
            Ok(())
        })
        .unwrap();
    service.register_service().expect("register over TLS");
    service.serve_http(echo_routes()).unwrap();
    let (done_tx, done) = unbounded();
    let worker = service
        .queue_worker("secure", 2, move |m: &QueuedMessage| {
            done_tx.send(m.message.body.clone()).unwrap();
            Ok(())
        })
        .unwrap();

    // The Node object form, TLS from the `tls` object alone.
    let tls_port = tls.tls_port;
    let object_form = json!({"hydra": {
        "serviceName": "caller", "serviceIP": "127.0.0.1",
        "redis": {"host": "127.0.0.1", "port": tls_port, "db": 15, "tls": settings},
    }});
    let config = ConfigBuilder::from_value(object_form).unwrap().build().unwrap();
    assert!(config.redis().is_tls());
    assert_eq!(
        config.redis().display_url(),
        format!("rediss://127.0.0.1:{tls_port}/15")
    );
    let caller = Hydra::init(config).expect("init over TLS");
    caller.register_service().unwrap();

    // Request–reply: both pub/sub subscriptions and the commands over TLS.
    for n in 0..20 {
        let reply = caller
            .request(&caller.create_umf_message("secure:/", json!({"n": n})), WAIT)
            .expect("a reply over TLS");
        assert_eq!(reply.body, json!({"echo": {"n": n}}));
    }
    // An HTTP route found through presence read over TLS.
    let response = caller
        .make_api_request(
            &caller.create_umf_message("secure:[post]/v1/secure/echo", json!({"pay": 42})),
            RequestOptions::timeout(WAIT),
        )
        .expect("HTTP call");
    assert_eq!(response.status, 200);
    assert_eq!(response.result().unwrap(), json!({"got": {"pay": 42}}));
    // Queue work.
    for n in 0..10 {
        caller
            .queue_message(&Umf::new("secure:/", "caller:/", json!({"job": n})))
            .unwrap();
    }
    let mut jobs: Vec<i64> = (0..10)
        .map(|_| {
            done.recv_timeout(WAIT).expect("queued work done")["job"]
                .as_i64()
                .unwrap()
        })
        .collect();
    jobs.sort_unstable();
    assert_eq!(jobs, (0..10).collect::<Vec<_>>());
    wait_for(WAIT, || (worker.stats().completed == 10).then_some(())).expect("all marked done");

    // Every connection of both handles came in on the TLS port, the two
    // subscriptions included.
    let clients = clients_by_port(&tls);
    assert!(
        clients.iter().all(|(port, _)| *port == tls_port),
        "a plain-text connection: {clients:?} (TLS port {tls_port})"
    );
    assert!(
        clients.iter().filter(|(_, subscribed)| *subscribed).count() >= 2,
        "{clients:?}"
    );
    drop(worker);
    caller.shutdown().unwrap();
    service.shutdown().unwrap();
}

#[test]
fn mutual_tls_works_with_the_client_certificate_and_fails_clearly_without() {
    let certs = TestCertificates::generate();
    let tls = TlsRedis::start(&certs, true);
    let url = tls.tls_url(15);
    let with_cert = json!({
        "ca": path(&certs.ca()),
        "cert": path(&certs.client_cert()),
        "key": path(&certs.client_key()),
        "servername": "127.0.0.1",
    });
    let service = init("mtls", &url, with_cert).expect("mutual TLS");
    common::echo(&service);
    service.register_service().unwrap();
    // The caller gives the PEM contents instead of paths, as Node's tls.connect takes them.
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    let inline = json!({
        "ca": read(certs.ca()),
        "cert": read(certs.client_cert()),
        "key": read(certs.client_key()),
    });
    let caller = init("mtls-caller", &url, inline).expect("mutual TLS with inline PEM");
    caller.register_service().unwrap();
    let reply = caller
        .request(&caller.create_umf_message("mtls:/", json!({"hello": 1})), WAIT)
        .expect("a reply over mutual TLS");
    assert_eq!(reply.body, json!({"echo": {"hello": 1}}));

    // No client certificate: the server's refusal, and what to set.
    fails_fast(
        "no-cert",
        &url,
        json!({"ca": path(&certs.ca())}),
        &["TLS handshake", "redis.tls.cert", "redis.tls.key"],
    );
    // A certificate from another CA: refused, and said so.
    fails_fast(
        "stranger",
        &url,
        json!({
            "ca": path(&certs.ca()),
            "cert": path(&certs.other_client_cert()),
            "key": path(&certs.other_client_key()),
        }),
        &["TLS handshake", "refused our client certificate"],
    );
    caller.shutdown().unwrap();
    service.shutdown().unwrap();
}

#[test]
fn a_wrong_ca_is_refused_with_a_clear_error() {
    let certs = TestCertificates::generate();
    let tls = TlsRedis::start(&certs, false);
    let text = fails_fast(
        "wrong-ca",
        &tls.tls_url(15),
        json!({"ca": path(&certs.other_ca())}),
        &[
            "TLS handshake",
            "UnknownIssuer",
            "redis.tls.ca",
            &path(&certs.other_ca()),
        ],
    );
    assert!(text.contains(&format!("127.0.0.1:{}", tls.tls_port)), "{text}");
    // rediss:// alone trusts the system's store, which does not hold the test CA.
    fails_fast("system-roots", &tls.tls_url(15), Value::Null, &["UnknownIssuer"]);
    // The certificate names 127.0.0.1 and localhost, not this name.
    let err = init(
        "other-name",
        &tls.tls_url(15),
        json!({"ca": path(&certs.ca()), "servername": "redis.example"}),
    )
    .expect_err("a server name other than the host is refused");
    assert!(
        matches!(&err, Error::InvalidConfig { field, .. } if field == "redis.tls.servername"),
        "{err}"
    );
}

#[test]
fn rediss_to_a_plain_text_port_fails_fast_and_says_so() {
    let certs = TestCertificates::generate();
    let tls = TlsRedis::start(&certs, false);
    // Redis's plain port either waits for a newline the ClientHello may not
    // hold (until the connect timeout) or answers `-ERR`: both are named.
    for attempt in 0..3 {
        fails_fast(
            &format!("plain-{attempt}"),
            &tls.server.url(15).replace("redis://", "rediss://"),
            json!({"ca": path(&certs.ca())}),
            &["TLS handshake", "plain-text port"],
        );
    }
}

#[test]
fn bad_tls_settings_name_the_field_and_the_file() {
    let certs = TestCertificates::generate();
    let missing = certs.dir().join("nope.pem");
    let not_pem = certs.dir().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let ca = path(&certs.ca());
    for (tls, field, words) in [
        (json!({"ca": path(&missing)}), "redis.tls.ca", vec![path(&missing)]),
        (json!({"ca": path(&not_pem)}), "redis.tls.ca", vec![path(&not_pem)]),
        (
            json!({"ca": ca, "cert": path(&certs.client_cert())}),
            "redis.tls.key",
            vec!["missing".to_string()],
        ),
        (
            json!({"ca": ca, "cert": path(&certs.client_cert()), "key": path(&missing)}),
            "redis.tls.key",
            vec![path(&missing)],
        ),
        (
            json!({"ca": ca, "cert": path(&not_pem), "key": path(&certs.client_key())}),
            "redis.tls.cert",
            vec![path(&not_pem)],
        ),
        (
            json!({"ca": ca, "cert": path(&certs.client_cert()), "key": path(&certs.other_client_key())}),
            "redis.tls.key",
            vec![path(&certs.other_client_key())],
        ),
        (
            json!({"ca": ca, "rejectUnauthorized": false}),
            "redis.tls.rejectUnauthorized",
            vec![],
        ),
        (json!({"ca": ca, "severname": "x"}), "redis.tls.severname", vec![]),
        (json!("yes"), "redis.tls", vec![]),
    ] {
        let doc = document("bad", "rediss://127.0.0.1:1/0", tls.clone());
        let err = ConfigBuilder::from_value(doc).unwrap().build().unwrap_err();
        let text = err.to_string();
        let Error::InvalidConfig { field: got, .. } = &err else {
            panic!("{tls}: {err:?}")
        };
        assert_eq!(got, field, "{tls}: {text}");
        for word in words {
            assert!(text.contains(&word), "{tls}: {word:?} missing from {text}");
        }
    }
    // `#insecure` would turn verification off: refused.
    let doc = json!({"hydra": {"serviceName": "a", "redis": {"url": "rediss://127.0.0.1:1/0#insecure"}}});
    let err = ConfigBuilder::from_value(doc).unwrap().build().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { field, .. } if field == "redis.url"),
        "{err}"
    );
    // HYDRA_REDIS_URL replaces the URL but keeps the file's certificates.
    let doc = document("env", "redis://127.0.0.1:1/0", json!({"ca": path(&certs.ca())}));
    let config = ConfigBuilder::from_value(doc)
        .unwrap()
        .apply_env_from(|name| (name == "HYDRA_REDIS_URL").then(|| "rediss://127.0.0.1:2/3".to_string()))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(config.redis().display_url(), "rediss://127.0.0.1:2/3");
    assert_eq!(config.document()["hydra"]["redis"]["tls"]["ca"], path(&certs.ca()));
}
