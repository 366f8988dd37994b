//! An echo service: answers every message with a reply whose body is
//! `{"echo": <original body>}`, and serves `GET /v1/<name>/echo` and
//! `POST /v1/<name>/echo` (the JSON body it received as `result`, plus the
//! headers it saw under `result.headers`). It also works its own service
//! queue: every queued message is completed with `{"echo": <body>}` logged.
//! It is the peer that tests in other languages talk to. Runs until SIGINT
//! or SIGTERM, then shuts down cleanly.
//!
//! ```text
//! cargo run --example echo -- --name echo-svc
//! HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 HYDRA_SERVICE=echo-svc cargo run --example echo
//! ```
//!
//! Prints `ready <instanceID> <serviceName> <port>` once it can receive
//! messages and requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hydra::{Config, ConfigBuilder, HttpRequest, HttpResponse, HttpRoutes, Hydra};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let hydra = Hydra::init(config()?)?;
    hydra.on_message(|h, msg| {
        h.reply(&msg, json!({ "echo": msg.body }))?;
        Ok(())
    })?;
    let info = hydra.register_service()?;
    let path = format!("/v1/{}/echo", info.service_name);
    let port = hydra.serve_http(HttpRoutes::new().get(&path, echo_http).post(&path, echo_http))?;
    let queue = hydra.queue_worker(&info.service_name, 1, |queued| {
        log::info!("{}", json!({ "echo": queued.message.body }));
        Ok(())
    })?;
    println!("ready {} {} {port}", hydra.get_instance_id(), info.service_name);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = hydra.message_stats();
    hydra.shutdown()?;
    println!(
        "stopped after {} messages ({} failed) and {} queued messages",
        stats.handled + stats.failed,
        stats.failed,
        queue.stats().completed
    );
    Ok(())
}

/// The JSON body received (an object, or `{}`), with the request headers
/// added under `headers`.
fn echo_http(_: &Hydra, request: &HttpRequest) -> HttpResponse {
    let body = match request.json() {
        Ok(serde_json::Value::Null) => json!({}),
        Ok(body) => body,
        Err(e) => return HttpResponse::error(400, &e.to_string()),
    };
    let mut result = match body {
        serde_json::Value::Object(map) => map,
        other => serde_json::Map::from_iter([("body".to_string(), other)]),
    };
    let headers: serde_json::Map<String, serde_json::Value> =
        request.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    result.insert("headers".into(), serde_json::Value::Object(headers));
    HttpResponse::send_response(200, serde_json::Value::Object(result))
}

/// `--name NAME`, else `HYDRA_SERVICE` when it is a bare name, else Node's
/// `HYDRA_SERVICE` forms (JSON, `key=value|…`, `svc:version`); default `echo`.
fn config() -> hydra::Result<Config> {
    let args: Vec<String> = std::env::args().collect();
    let flag = args
        .iter()
        .position(|a| a == "--name")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let env = std::env::var("HYDRA_SERVICE").ok().filter(|s| !s.trim().is_empty());
    let name = flag.or(env.filter(|s| !s.contains(['{', '=', ':'])));
    let builder = Config::builder().service_description("echoes every message back");
    let builder: ConfigBuilder = match name {
        // A name given directly: only the Redis URL comes from the environment.
        Some(name) => builder
            .service_name(name.trim())
            .apply_env_from(|k| (k == "HYDRA_REDIS_URL").then(|| std::env::var(k).ok()).flatten())?,
        None => builder.service_name("echo").apply_env()?,
    };
    builder.build()
}
