//! `hydra-router [--config config.json]`: see the crate docs and the README.
//!
//! Exit status: 0 after a clean stop (SIGTERM or SIGINT), 1 when the router
//! cannot start (Redis unreachable, port taken), 2 for bad arguments or
//! configuration (the message names the field).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hydra_router::config::RouterConfig;
use hydra_router::gateway::Router;
use hydra_router::log_ring::{LogRing, RingLogger};

/// The HTTP gateway in front of Hydra services (Node hydra-router compatible).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Node hydra-router config file (config.json). Without one the router
    /// listens on port 5353 and finds Redis through HYDRA_REDIS_URL (or
    /// redis://127.0.0.1:6379/15); HYDRA_ROUTER_* variables override either.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => RouterConfig::from_file(path),
        None => RouterConfig::from_env(),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hydra-router: {e}");
            return ExitCode::from(2);
        }
    };
    let log = LogRing::new();
    let level = if config.debug_logging {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    if let Err(e) = RingLogger::install(log.clone(), level) {
        eprintln!("hydra-router: cannot install the logger: {e}");
    }
    let signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
    {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("hydra-router: cannot watch for SIGTERM/SIGINT: {e}");
            return ExitCode::from(1);
        }
    };
    let router = match Router::start(config, log) {
        Ok(router) => router,
        Err(e) => {
            eprintln!("hydra-router: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("hydra-router listening on port {}", router.port());
    let mut signals = signals;
    if let Some(signal) = signals.forever().next() {
        log::info!("hydra-router stopping (signal {signal})");
    }
    router.shutdown();
    ExitCode::SUCCESS
}
