//! An echo service: answers every message with a reply whose body is
//! `{"echo": <original body>}`. It is the peer that tests in other languages
//! talk to. Runs until SIGINT or SIGTERM, then shuts down cleanly.
//!
//! ```text
//! cargo run --example echo -- --name echo-svc
//! HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 HYDRA_SERVICE=echo-svc cargo run --example echo
//! ```
//!
//! Prints `ready <instanceID> <serviceName>` once it can receive messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hydra::{Config, ConfigBuilder, Hydra};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let hydra = Hydra::init(config()?)?;
    hydra.on_message(|h, msg| {
        h.reply(&msg, json!({ "echo": msg.body }))?;
        Ok(())
    })?;
    let info = hydra.register_service()?;
    println!("ready {} {}", hydra.get_instance_id(), info.service_name);

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
        "stopped after {} messages ({} failed)",
        stats.handled + stats.failed,
        stats.failed
    );
    Ok(())
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
