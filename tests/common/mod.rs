//! Helpers shared by the integration tests (each test binary includes this
//! module; not every binary uses every helper).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use hydra::{Config, ConfigBuilder, Hydra, Umf};
use hydra_testkit::RedisServer;

/// A builder for `name` on the private server's db 15 with short timeouts.
pub fn builder(server: &RedisServer, name: &str) -> ConfigBuilder {
    Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(&server.url(15))
        .connect_timeout(Duration::from_secs(1))
        .command_timeout(Duration::from_secs(1))
}

/// An initialized (not registered) handle.
pub fn init(server: &RedisServer, name: &str) -> Hydra {
    Hydra::init(builder(server, name).build().expect("valid config")).expect("init")
}

/// An initialized and registered handle.
pub fn register(server: &RedisServer, name: &str) -> Hydra {
    let hydra = init(server, name);
    hydra.register_service().expect("register");
    hydra
}

/// A plain redis-rs connection to the server's db 15, for checking what is
/// stored independently of the library.
pub fn raw(server: &RedisServer) -> redis::Connection {
    let client = redis::Client::open(server.url(15)).expect("client");
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Installs a test logger once (RUST_LOG controls it).
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Registers a message handler that forwards every message to the returned receiver.
pub fn collect(hydra: &Hydra) -> Receiver<Umf> {
    let (tx, rx) = unbounded();
    hydra
        .on_message(move |_, msg| {
            let _ = tx.send(msg);
            Ok(())
        })
        .unwrap();
    rx
}

/// The `n` fields of `count` messages from `inbox`, sorted. Handlers run
/// concurrently on several threads, so messages sent in order may be handled
/// (and collected) in a different order.
pub fn received_numbers(inbox: &Receiver<Umf>, count: usize, timeout: Duration) -> Vec<u64> {
    let mut numbers: Vec<u64> = (0..count)
        .map(|i| {
            let msg = inbox
                .recv_timeout(timeout)
                .unwrap_or_else(|_| panic!("only {i} of {count} messages arrived"));
            msg.body["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("no number in {}", msg.body))
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

/// A message handler that replies `{"echo": body}` to everything.
pub fn echo(hydra: &Hydra) {
    hydra
        .on_message(|h, msg| {
            h.reply(&msg, serde_json::json!({"echo": msg.body}))?;
            Ok(())
        })
        .unwrap();
}

/// Calls of each command so far (`INFO commandstats`; commands run by Lua
/// scripts count too), by lowercase command name.
pub fn command_calls(conn: &mut redis::Connection) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}
