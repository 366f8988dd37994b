//! Real services for the messaging, queue and routing tests: Rust services
//! registered in the test process (`hydra::Hydra`) and Node ones
//! (`hydra_testkit::NodePeer`, Node hydra 1.9.3).
#![allow(dead_code)] // each test file uses a part

use std::time::{Duration, Instant};

use hydra::{Config, HttpResponse, HttpRoutes, Hydra};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The URL the CLI is given: the private server's db 15 (Hydra's default db).
pub fn url(redis: &RedisServer) -> String {
    redis.url(15)
}

/// An initialised (not registered) Rust handle named `name`.
pub fn rust_handle(redis: &RedisServer, name: &str) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(&url(redis))
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(Duration::from_secs(2))
        .build()
        .expect("a valid config");
    Hydra::init(config).expect("init a Rust service")
}

/// A registered Rust service.
pub fn rust_service(redis: &RedisServer, name: &str) -> Hydra {
    let hydra = rust_handle(redis, name);
    hydra.register_service().expect("register a Rust service");
    hydra
}

/// A registered Rust service that answers every message with
/// `{"echo": <its body>, "by": <name>}`.
pub fn rust_echo(redis: &RedisServer, name: &str) -> Hydra {
    let hydra = rust_service(redis, name);
    let by = name.to_string();
    hydra
        .on_message(move |hydra, message| {
            hydra.reply(&message, json!({"echo": message.body, "by": by}))?;
            Ok(())
        })
        .expect("install the echo handler");
    hydra
}

/// A registered Rust service serving `routes`; every path it does not know
/// is answered too (`{"service", "path"}`), to show what reached it.
pub fn rust_http(redis: &RedisServer, name: &str, routes: HttpRoutes) -> Hydra {
    let hydra = rust_service(redis, name);
    let by = name.to_string();
    let routes = routes.fallback(move |_, request| {
        HttpResponse::send_response(200, json!({"service": by, "path": request.path, "fallback": true}))
    });
    hydra.serve_http(routes).expect("serve HTTP");
    hydra
}

/// A raw redis-rs connection to db 15, to check what is stored.
pub fn raw(redis: &RedisServer) -> redis::Connection {
    let client = redis::Client::open(url(redis)).expect("client");
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect to the test Redis");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn
}

/// A registered Node hydra service whose subscriptions are live, and its
/// instance ID.
pub fn node_service(redis: &RedisServer, name: &str) -> (NodePeer, String) {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {
        "serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": url(redis)}
    }});
    node.call("init", json!([config])).expect("Node init");
    node.call("registerService", json!([])).expect("Node registerService");
    let id = node
        .call("getInstanceID", json!([]))
        .expect("Node instance ID")
        .as_str()
        .expect("a string")
        .to_string();
    // Node's registerService resolves before its SUBSCRIBEs complete.
    let mut conn = raw(redis);
    let channel = format!("hydra:service:mc:{name}:{id}");
    let subscribed = until(WAIT, || {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query(&mut conn).ok()?;
        (counts.first()?.1 >= 1).then_some(())
    });
    assert!(subscribed.is_some(), "the Node peer never subscribed to {channel}");
    (node, id)
}

/// Polls `check` until it gives a value, up to `timeout`.
pub fn until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Node event's body field (short or long form).
pub fn body_of(message: &Value) -> &Value {
    message
        .get("bdy")
        .or_else(|| message.get("body"))
        .unwrap_or(&Value::Null)
}
