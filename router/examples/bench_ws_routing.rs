//! Round trips through the WebSocket gateway, one client after another
//! (latency, not throughput): what each kind of frame costs end to end,
//! next to the same work without the router (the floor).
//!
//! An in-process router (`Router::start`: connection and routing layers) on
//! a private redis-server, a Rust service answering messages
//! (`hydra.reply`) and an HTTP route, and blocking tungstenite clients.
//! Every answer is checked (`rmid`, body); a wrong one fails the run.
//!
//! `cargo run --release -p hydra-router --example bench_ws_routing`
//! (`HYDRA_BENCH_SMOKE=1`: a short run of every step).

use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hydra::{Config, HttpResponse, HttpRoutes, Hydra, RequestOptions, Umf};
use hydra_router::config::RouterConfig;
use hydra_router::gateway::Router;
use hydra_router::log_ring::LogRing;
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Latencies, Table, format_micros};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn main() -> ExitCode {
    bench::exit_code("bench_ws_routing", run())
}

fn connect(port: u16) -> Result<(Socket, String), String> {
    let (mut socket, _) =
        tungstenite::connect(format!("ws://127.0.0.1:{port}/")).map_err(|e| format!("handshake: {e}"))?;
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
    }
    let welcome = recv(&mut socket)?;
    let id = welcome["bdy"]["id"].as_str().ok_or("no id in the welcome")?.to_string();
    Ok((socket, id))
}

fn recv(socket: &mut Socket) -> Result<Value, String> {
    loop {
        match socket.read().map_err(|e| format!("read: {e}"))? {
            Message::Text(text) => return serde_json::from_str(text.as_str()).map_err(|e| e.to_string()),
            Message::Close(_) => return Err("closed by the router".into()),
            _ => {}
        }
    }
}

fn send(socket: &mut Socket, message: &Value) -> Result<(), String> {
    socket
        .send(Message::text(message.to_string()))
        .map_err(|e| format!("send: {e}"))
}

/// Runs `once(n)` for the step's time budget; each `Ok` is a latency.
fn measure(budget: Duration, mut once: impl FnMut(u64) -> Result<(), String>) -> Result<Latencies, String> {
    let mut latencies = Latencies::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < budget {
        let t = Instant::now();
        once(n)?;
        latencies.record(t.elapsed());
        n += 1;
    }
    latencies.add_wall(started.elapsed());
    Ok(latencies)
}

fn expect(answer: &Value, rmid: &str, check: impl Fn(&Value) -> bool) -> Result<(), String> {
    if answer["rmid"] != rmid || !check(&answer["bdy"]) {
        return Err(format!("wrong answer to {rmid}: {answer}"));
    }
    Ok(())
}

fn run() -> Result<bool, String> {
    let budget = bench::scaled(Duration::from_secs(3), Duration::from_millis(300));
    let redis = RedisServer::start();
    let config = RouterConfig::from_document(
        json!({"hydra": {"servicePort": 0, "serviceIP": "127.0.0.1", "redis": {"url": redis.url(0)}}}),
        &[],
    )
    .map_err(|e| e.to_string())?;
    let router = Router::start(config, LogRing::new()).map_err(|e| e.to_string())?;
    let service_config = |name: &str| {
        Config::builder()
            .service_name(name)
            .service_ip("127.0.0.1")
            .redis_url(&redis.url(0))
            .build()
            .map_err(|e| e.to_string())
    };
    let service = Hydra::init(service_config("bench-echo")?).map_err(|e| e.to_string())?;
    service.register_service().map_err(|e| e.to_string())?;
    service
        .on_message(|hydra, message| {
            hydra.reply(&message, json!({ "n": message.body["n"] }))?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    let routes = HttpRoutes::new().get("/v1/bench/:n", |_, request| {
        HttpResponse::send_response(200, json!({ "n": request.param("n").unwrap_or("") }))
    });
    service.serve_http(routes).map_err(|e| e.to_string())?;
    let caller = Hydra::init(service_config("bench-caller")?).map_err(|e| e.to_string())?;
    caller.register_service().map_err(|e| e.to_string())?;

    let (mut a, a_id) = connect(router.port())?;
    let (mut b, b_id) = connect(router.port())?;
    let mut table = Table::new(&["round trip", "calls", "p50", "p99", "per second"]);
    let mut row = |name: &str, mut latencies: Latencies| {
        let s = latencies.summary();
        table.row([
            name.to_string(),
            s.count.to_string(),
            format_micros(s.p50),
            format_micros(s.p99),
            format!("{:.0}", s.per_sec),
        ]);
    };

    row(
        "WS ping → pong (router only)",
        measure(budget, |n| {
            let mid = format!("p{n}");
            send(
                &mut a,
                &json!({"to": "hydra-router:/", "frm": "c:/", "mid": mid, "typ": "ping", "bdy": {}}),
            )?;
            expect(&recv(&mut a)?, &mid, |b| b["typ"] == "pong")
        })?,
    );
    row(
        "WS message → service → reply (via)",
        measure(budget, |n| {
            let mid = format!("m{n}");
            send(
                &mut a,
                &json!({"to": "bench-echo:/", "frm": "c:/", "mid": mid, "bdy": {"n": n}}),
            )?;
            expect(&recv(&mut a)?, &mid, |b| b["n"] == n)
        })?,
    );
    row(
        "floor: hydra.request to the service",
        measure(budget, |n| {
            let answer = caller
                .request(
                    &Umf::new("bench-echo:/", "x:/", json!({"n": n})),
                    Duration::from_secs(10),
                )
                .map_err(|e| e.to_string())?;
            (answer.body["n"] == n)
                .then_some(())
                .ok_or_else(|| format!("wrong reply {}", answer.body))
        })?,
    );
    row(
        "WS HTTP-style call (svc:[get]/…)",
        measure(budget, |n| {
            let mid = format!("h{n}");
            send(
                &mut a,
                &json!({"to": format!("bench-echo:[get]/v1/bench/{n}"), "frm": "c:/", "mid": mid, "bdy": {}}),
            )?;
            expect(&recv(&mut a)?, &mid, |b| {
                b["n"].as_str().and_then(|s| s.parse::<u64>().ok()) == Some(n)
            })
        })?,
    );
    row(
        "floor: make_api_request to the service",
        measure(budget, |n| {
            let call = Umf::new(format!("bench-echo:[get]/v1/bench/{n}"), "x:/", json!({}));
            let answer = caller
                .make_api_request(&call, RequestOptions::timeout(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            (answer
                .result()
                .is_some_and(|r| r["n"].as_str().and_then(|s| s.parse::<u64>().ok()) == Some(n)))
            .then_some(())
            .ok_or_else(|| "wrong answer".to_string())
        })?,
    );
    row(
        "WS router API (list/routes)",
        measure(budget, |n| {
            let mid = format!("r{n}");
            send(
                &mut a,
                &json!({"to": "hydra-router:[get]/v1/router/list/routes", "frm": "c:/", "mid": mid, "bdy": {}}),
            )?;
            expect(&recv(&mut a)?, &mid, Value::is_array)
        })?,
    );
    row(
        "WS forward client → client",
        measure(budget, |n| {
            send(
                &mut a,
                &json!({"to": "hydra-router:/", "frm": format!("{a_id}@client:/"), "fwd": format!("{b_id}@client:/"), "bdy": {"n": n}}),
            )?;
            let got = recv(&mut b)?;
            (got["bdy"]["n"] == n)
                .then_some(())
                .ok_or_else(|| format!("wrong forward {got}"))
        })?,
    );
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("WebSocket gateway round trips, one at a time ({build} build, loopback, private redis-server):\n");
    table.print();
    let _ = caller.shutdown();
    let _ = service.shutdown();
    router.shutdown();
    Ok(true)
}
