//! The WebSocket gateway's counters in `/v1/router/metrics` (Prometheus) and
//! `/v1/router/stats` (`wsClients`, next to Node's three sets): three real
//! clients connect, the gauge says 3; they close, it says 0 and the totals
//! say 3 in and 3 out; a client that sends a binary frame is closed by the
//! router and counted under its reason.
//!
//! Real router (in-process `Router::start`), private redis-server, tungstenite
//! clients on real sockets, the router's HTTP API over HTTP.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use hydra_router::config::RouterConfig;
use hydra_router::gateway::Router;
use hydra_router::log_ring::LogRing;
use hydra_testkit::RedisServer;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(15);

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

fn start_router(redis: &RedisServer) -> Router {
    let config = RouterConfig::from_document(
        json!({"hydra": {"serviceName": "hydra-router", "servicePort": 0, "serviceIP": "127.0.0.1",
                         "redis": {"url": redis.url(0)}}}),
        &[],
    )
    .expect("config");
    Router::start(config, LogRing::new()).expect("router starts")
}

/// A client that has read its welcome.
fn connect(port: u16) -> Client {
    let (mut socket, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/")).expect("WebSocket handshake");
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    }
    loop {
        match socket.read().expect("the welcome") {
            Message::Text(text) => {
                let welcome: Value = serde_json::from_str(text.as_str()).expect("JSON");
                assert_eq!(welcome["typ"], "connection", "{welcome}");
                return socket;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected the welcome, got {other:?}"),
        }
    }
}

/// Closes with a close handshake and reads until the router's close frame.
fn close(mut socket: Client) {
    socket.close(None).expect("send close");
    while socket.read().is_ok() {}
}

fn get(port: u16, path: &str) -> String {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("a text body")
}

/// The value of the sample written exactly `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

fn ws_clients(port: u16) -> Value {
    let stats: Value = serde_json::from_str(&get(port, "/v1/router/stats")).expect("stats JSON");
    stats["result"]["wsClients"].clone()
}

/// Polls the metrics until `series` has `value` (the router notices closes
/// on its own loop); the last text either way.
fn metrics_when(port: u16, series: &str, value: f64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = get(port, "/v1/router/metrics");
        if sample(&metrics, series) == Some(value) || Instant::now() >= deadline {
            return metrics;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connected_clients_and_totals_are_in_metrics_and_stats() {
    let redis = RedisServer::start();
    let router = start_router(&redis);
    let port = router.port();

    let metrics = get(port, "/v1/router/metrics");
    assert_eq!(sample(&metrics, "hydra_router_ws_clients"), Some(0.0), "{metrics}");
    assert!(metrics.contains("# TYPE hydra_router_ws_clients gauge\n"), "{metrics}");
    assert!(
        metrics.contains("# TYPE hydra_router_ws_connections_total counter\n"),
        "{metrics}"
    );

    let clients: Vec<Client> = (0..3).map(|_| connect(port)).collect();
    // Welcomed clients are counted (the welcome is sent after the count).
    let metrics = get(port, "/v1/router/metrics");
    assert_eq!(sample(&metrics, "hydra_router_ws_clients"), Some(3.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "hydra_router_ws_connections_total"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "hydra_router_ws_disconnections_total"),
        Some(0.0),
        "{metrics}"
    );
    let counted = ws_clients(port);
    assert_eq!(
        (counted["connected"].as_u64(), counted["accepted"].as_u64()),
        (Some(3), Some(3)),
        "{counted}"
    );

    for client in clients {
        close(client);
    }
    let metrics = metrics_when(port, "hydra_router_ws_clients", 0.0);
    assert_eq!(sample(&metrics, "hydra_router_ws_clients"), Some(0.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "hydra_router_ws_connections_total"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "hydra_router_ws_disconnections_total"),
        Some(3.0),
        "{metrics}"
    );
    let counted = ws_clients(port);
    assert_eq!(
        (counted["connected"].as_u64(), counted["closed"].as_u64()),
        (Some(0), Some(3)),
        "{counted}"
    );

    // A binary frame: closed by the router, counted under its reason.
    let binary = r#"hydra_router_ws_closed_by_router_total{reason="binary_frame"}"#;
    assert_eq!(sample(&metrics, binary), Some(0.0), "{metrics}");
    let mut rude = connect(port);
    rude.send(Message::binary(vec![1u8, 2, 3])).expect("send binary");
    while rude.read().is_ok() {}
    let metrics = metrics_when(port, binary, 1.0);
    assert_eq!(sample(&metrics, binary), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "hydra_router_ws_clients"), Some(0.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "hydra_router_ws_connections_total"),
        Some(4.0),
        "{metrics}"
    );

    router.shutdown();
}
