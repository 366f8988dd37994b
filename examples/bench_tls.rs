//! TLS cost: request–reply and queue throughput over TLS against plain TCP,
//! on the same `redis-server` (one process with a plain port and a TLS port)
//! in the same run, plus the cost of opening a connection.
//!
//! ```text
//! cargo run --release --example bench_tls
//! ```
//!
//! The program is a report: it exits 0 whatever the figures, and non-zero
//! only when a reply or a queued message was wrong or missing.
//! `HYDRA_BENCH_SMOKE=1` runs every step with a few hundred messages and one
//! round.
//!
//! It makes its own certificates (a CA and a server certificate for
//! 127.0.0.1, rcgen, ECDSA P-256), starts `redis-server --port <p>
//! --tls-port <t>` with them (`tls-auth-clients no`), and for each transport
//! runs, in rounds that alternate which transport goes first:
//!
//! - **request–reply**: `CALLERS` threads of one registered caller handle
//!   each send `request` after `request` to an echo service (another handle)
//!   until `REQUESTS` replies came back; each request is a publish, a
//!   subscription read on the echo's side, a publish back and a subscription
//!   read on the caller's side, plus the presence lookups Hydra makes.
//! - **queue**: `WORKERS` threads enqueue `MESSAGES` messages with
//!   `queue_message`, then a `queue_worker` with `WORKERS` threads takes and
//!   completes them all (two Lua scripts each); end-to-end msgs/s is messages
//!   over both phases.
//! - **connect**: `CONNECTS` times `Hydra::init` one after another (a new
//!   connection: TCP, the TLS handshake, `CLIENT SETINFO`, `SELECT`, then
//!   `INFO server`); the median.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use hydra::{ConfigBuilder, Hydra, QueuedMessage, Umf};
use hydra_testkit::bench::{self, Table, padded_body};
use hydra_testkit::tls::{TestCertificates, TlsRedis};
use serde_json::{Value, json};

const DB: u8 = 15;
static REQUESTS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| bench::scaled(20_000, 300));
static MESSAGES: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| bench::scaled(10_000, 300));
static CONNECTS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| bench::scaled(200, 10));
static ROUNDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| bench::scaled(3, 1));
const CALLERS: u64 = 8;
const WORKERS: usize = 4;
const WAIT: Duration = Duration::from_secs(10);
/// Longest a queue drain may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

const TRANSPORTS: [Transport; 2] = [Transport::Plain, Transport::Tls];

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Plain => "plain TCP",
            Transport::Tls => "TLS (rustls)",
        }
    }
}

/// Sums over the rounds of one transport.
#[derive(Default)]
struct Tally {
    requests: u64,
    request_time: Duration,
    messages: u64,
    queue_time: Duration,
    connects: Vec<Duration>,
}

impl Tally {
    fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.request_time.as_secs_f64()
    }
    fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.queue_time.as_secs_f64()
    }
    fn connect_median(&mut self) -> Duration {
        self.connects.sort();
        self.connects.get(self.connects.len() / 2).copied().unwrap_or_default()
    }
}

fn main() -> ExitCode {
    env_logger::init();
    bench::exit_code("bench_tls", run())
}

fn run() -> BoxResult<bool> {
    let certs = TestCertificates::generate();
    let tls = TlsRedis::start(&certs, false);
    let ca = certs.ca().to_str().ok_or("temp path is not UTF-8")?.to_string();
    let mut probe = redis::Client::open(tls.server.url(DB))?.get_connection()?;
    let version = bench::redis_version(&mut probe)?;
    println!(
        "bench_tls: redis-server {version}, plain port {} and TLS port {} (one process, db {DB}); \
         {} requests by {CALLERS} threads, {} queued messages by {WORKERS} workers, {} connects, {} round(s); \
         body {} bytes; {} CPUs",
        tls.server.port(),
        tls.tls_port,
        *REQUESTS,
        *MESSAGES,
        *CONNECTS,
        *ROUNDS,
        padded_body(1_000_000).to_string().len(),
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let config = |transport: Transport, name: &str| -> BoxResult<hydra::Config> {
        let redis = match transport {
            Transport::Plain => json!({"url": tls.server.url(DB)}),
            Transport::Tls => json!({"url": tls.tls_url(DB), "tls": {"ca": ca}}),
        };
        let doc = json!({"hydra": {"serviceName": name, "serviceIP": "127.0.0.1", "redis": redis}});
        Ok(ConfigBuilder::from_value(doc)?.build()?)
    };

    let mut ok = true;
    let mut tallies = [Tally::default(), Tally::default()];
    for (round, k) in bench::round_robin(*ROUNDS, TRANSPORTS.len()) {
        let transport = TRANSPORTS[k];
        let tag = match transport {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
        };
        let (answered, took) = request_reply(
            config(transport, &format!("echo-{tag}"))?,
            config(transport, &format!("caller-{tag}"))?,
            &format!("echo-{tag}"),
        )?;
        ok &= answered == *REQUESTS;
        let (handled, queue_took) = queue(config(transport, &format!("jobs-{tag}-{round}"))?)?;
        ok &= handled == *MESSAGES;
        let connects = connects(&config(transport, "connect")?)?;
        eprintln!(
            "  round {}/{}: {:<12} request–reply {:>7.0}/s, queue {:>7.0}/s, connect {:.2} ms",
            round + 1,
            *ROUNDS,
            transport.label(),
            answered as f64 / took.as_secs_f64(),
            handled as f64 / queue_took.as_secs_f64(),
            connects[connects.len() / 2].as_secs_f64() * 1e3,
        );
        let t = &mut tallies[k];
        t.requests += answered;
        t.request_time += took;
        t.messages += handled;
        t.queue_time += queue_took;
        t.connects.extend(connects);
    }

    let [mut plain, mut secure] = tallies;
    let mut table = Table::new(&["measure", "plain TCP", "TLS (rustls)", "TLS / plain"]);
    let (p, s) = (plain.requests_per_sec(), secure.requests_per_sec());
    table.row([
        format!("request–reply, {CALLERS} callers (req/s)"),
        format!("{p:.0}"),
        format!("{s:.0}"),
        format!("{:.2}×", s / p),
    ]);
    let (p, s) = (plain.messages_per_sec(), secure.messages_per_sec());
    table.row([
        format!("queue end-to-end, {WORKERS} workers (msgs/s)"),
        format!("{p:.0}"),
        format!("{s:.0}"),
        format!("{:.2}×", s / p),
    ]);
    let (p, s) = (plain.connect_median(), secure.connect_median());
    table.row([
        "Hydra::init (new connection + INFO), median (ms)".to_string(),
        format!("{:.2}", p.as_secs_f64() * 1e3),
        format!("{:.2}", s.as_secs_f64() * 1e3),
        format!("{:.2}×", s.as_secs_f64() / p.as_secs_f64()),
    ]);
    table.print();
    println!(
        "TLS / plain: throughput ratio (1.00× = no cost) and connect-time ratio; the pool keeps connections open, \
         so the handshake is paid once per pooled connection and per (re)subscription"
    );
    if !ok {
        eprintln!("ERROR: a reply or a queued message was missing or wrong (see above)");
    }
    Ok(ok)
}

/// An echo service and a caller on the same transport; `CALLERS` threads
/// request until `REQUESTS` replies are in. Replies counted only when right.
fn request_reply(echo_config: hydra::Config, caller_config: hydra::Config, echo: &str) -> BoxResult<(u64, Duration)> {
    let responder = Hydra::init(echo_config)?;
    responder.on_message(|h, msg| {
        h.reply(&msg, json!({"echo": msg.body}))?;
        Ok(())
    })?;
    responder.register_service()?;
    let caller = Hydra::init(caller_config)?;
    caller.register_service()?;
    // Warm up: presence cached, pooled connections open.
    for n in 0..CALLERS {
        caller.request(&caller.create_umf_message(&format!("{echo}:/"), padded_body(n)), WAIT)?;
    }
    let next = Arc::new(AtomicU64::new(0));
    let right = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..CALLERS {
            let (caller, next, right) = (&caller, next.clone(), right.clone());
            scope.spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= *REQUESTS {
                        break;
                    }
                    let body = padded_body(n);
                    match caller.request(&caller.create_umf_message(&format!("{echo}:/"), body.clone()), WAIT) {
                        Ok(reply) if reply.body == json!({"echo": body}) => {
                            right.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => eprintln!("ERROR wrong reply to {n}: {}", reply.body),
                        Err(e) => eprintln!("ERROR request {n}: {e}"),
                    }
                }
            });
        }
    });
    let took = started.elapsed();
    caller.shutdown()?;
    responder.shutdown()?;
    Ok((right.load(Ordering::Relaxed), took))
}

/// `WORKERS` threads enqueue `MESSAGES`, then a worker with `WORKERS` threads
/// drains them; the messages handled with the right body, and the time of both phases.
fn queue(config: hydra::Config) -> BoxResult<(u64, Duration)> {
    let hydra = Hydra::init(config)?;
    let service = hydra.config().service_name().to_string();
    let started = Instant::now();
    thread::scope(|scope| -> BoxResult<()> {
        let handles: Vec<_> = (0..WORKERS as u64)
            .map(|w| {
                let (hydra, service) = (&hydra, &service);
                scope.spawn(move || -> hydra::Result<()> {
                    let mut n = w;
                    while n < *MESSAGES {
                        hydra.queue_message(&Umf::new(format!("{service}:/"), "bench:/", padded_body(n)))?;
                        n += WORKERS as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| "an enqueuing thread panicked")??;
        }
        Ok(())
    })?;
    let (done_tx, done) = unbounded::<Value>();
    let worker = hydra.queue_worker(&service, WORKERS, move |m: &QueuedMessage| {
        let _ = done_tx.send(m.message.body.clone());
        Ok(())
    })?;
    let mut seen = vec![false; *MESSAGES as usize];
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut right = 0;
    while right < *MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(body) = done.recv_timeout(left) else {
            eprintln!(
                "ERROR queue {service}: {right} of {} handled in {PHASE_TIMEOUT:?}",
                *MESSAGES
            );
            break;
        };
        let n = body["n"].as_u64().unwrap_or(u64::MAX);
        match seen.get_mut(n as usize) {
            Some(slot) if !*slot && body == padded_body(n) => {
                *slot = true;
                right += 1;
            }
            _ => eprintln!("ERROR queue {service}: unexpected or repeated {body}"),
        }
    }
    // Every message marked done, not only handed to the handler.
    while worker.stats().completed < right && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    drop(worker);
    hydra.shutdown()?;
    Ok((right, took))
}

/// `CONNECTS` times `Hydra::init` one after another: a new store, its first
/// connection (TCP, the TLS handshake, `CLIENT SETINFO`, `SELECT`) and `INFO`.
fn connects(config: &hydra::Config) -> BoxResult<Vec<Duration>> {
    let mut times = Vec::with_capacity(*CONNECTS);
    for _ in 0..*CONNECTS {
        let started = Instant::now();
        let hydra = Hydra::init(config.clone())?;
        times.push(started.elapsed());
        hydra.shutdown()?;
    }
    Ok(times)
}
