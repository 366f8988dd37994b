//! An idle registered service, the subject of `bench_footprint`.
//!
//! ```text
//! HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 cargo run --release --example idle_service [-- OPTIONS]
//! ```
//!
//! Registers a service named `idle-service`, prints `ready <instance id>` on
//! stdout, and then does nothing until stdin is closed (or, with
//! `--for <seconds>`, until that time has passed); then it shuts down cleanly,
//! removing its presence, and prints `stopped`.
//!
//! With `--raw` it is the floor instead: a process that opens one plain
//! redis-rs connection, sends one `PING`, prints `ready raw` and idles the
//! same way.

use std::error::Error;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use hydra::{Config, Hydra};

const SERVICE_NAME: &str = "idle-service";

struct Options {
    raw: bool,
    idle_for: Option<Duration>,
}

fn main() -> ExitCode {
    env_logger::init();
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_service: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        raw: false,
        idle_for: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--raw" => options.raw = true,
            "--for" => {
                let secs: f64 = args
                    .next()
                    .ok_or("--for needs a number of seconds")?
                    .parse()
                    .map_err(|e| format!("--for: {e}"))?;
                options.idle_for = Some(Duration::try_from_secs_f64(secs)?);
            }
            other => {
                return Err(format!("unknown argument {other:?} (usage: [--raw] [--for SECONDS])").into());
            }
        }
    }
    Ok(options)
}

fn run(options: Options) -> Result<(), Box<dyn Error>> {
    let url =
        std::env::var("HYDRA_REDIS_URL").map_err(|_| "HYDRA_REDIS_URL must be set (e.g. redis://127.0.0.1:6379/15)")?;
    let mut stdout = std::io::stdout();
    if options.raw {
        let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut conn)?;
        writeln!(stdout, "ready raw")?;
        stdout.flush()?;
        idle(options.idle_for)?;
        drop(conn);
    } else {
        let hydra = Hydra::init(Config::builder().service_name(SERVICE_NAME).redis_url(&url).build()?)?;
        hydra.register_service()?;
        writeln!(stdout, "ready {}", hydra.get_instance_id())?;
        stdout.flush()?;
        idle(options.idle_for)?;
        hydra.shutdown()?;
    }
    writeln!(stdout, "stopped")?;
    stdout.flush()?;
    Ok(())
}

/// Blocks the main thread (no extra thread) until the duration has passed, or
/// otherwise until stdin reaches end of file.
fn idle(idle_for: Option<Duration>) -> std::io::Result<()> {
    match idle_for {
        Some(d) => std::thread::sleep(d),
        None => {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while stdin.read(&mut sink)? > 0 {}
        }
    }
    Ok(())
}
