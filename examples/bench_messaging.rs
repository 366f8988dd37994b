//! Messaging benchmark: request–reply over pub/sub to an echo responder,
//! sequentially and with 32 requests in flight, side by side with a floor
//! measured in the same run: raw redis-rs doing the same work without hydra.
//!
//! ```text
//! cargo run --release --example bench_messaging
//! ```
//!
//! Targets: sequential throughput ≥ 0.8× the floor's, sequential p99 ≤ 2× the
//! floor's p99. The program is a report: it exits 0 whether or not the targets
//! are met, and non-zero only when a reply was missing or carried the wrong
//! body.
//!
//! It starts its own `redis-server` on a free loopback port and uses db 15.
//! Everything runs in this one process:
//!
//! - **hydra-rs**: an `echo` service (a registered `Hydra` whose handler
//!   replies `{"echo": body}`, on the default worker pool) and a registered
//!   `bench-caller` whose `request` calls it. In flight, 32 threads share
//!   the caller handle.
//! - **floor**: a responder thread with its own subscriber connection on an
//!   instance-style channel that, for every message, parses the JSON, builds a
//!   UMF short-form reply (`to`/`frm`/`mid`/`rmid`/`ts`/`ver`/`bdy` with the
//!   echo, fresh uuid `mid`, JavaScript timestamp) and `PUBLISH`es it on the
//!   caller's reply channel from its own command connection. A caller has its
//!   own subscriber connection on its reply channel plus a command connection;
//!   per request it builds the UMF JSON with a fresh uuid `mid`, `PUBLISH`es
//!   it, and reads until the reply whose `rmid` matches. In flight, each of the
//!   32 threads is such a caller, and `FLOOR_RESPONDERS` responder threads
//!   (each on its own channel; caller `i` uses responder `i % n`) answer them,
//!   as many as hydra-rs's default message workers.
//!
//! Every message body is `{"n": <i>, "pad": <64 bytes>}` and every reply must
//! be `{"echo": <that body>}`. Measurements alternate between hydra-rs and the
//! floor in rounds (`SEQ_ROUNDS`, `FLIGHT_ROUNDS`), so that the noise of a
//! shared machine falls on both alike; msgs/s is completed requests divided by
//! the wall time of the timed part of the rounds. `Redis cmds/req` and
//! `new conns` come from `INFO stats` around the timed part (heartbeats
//! included, our own `INFO` excluded).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::bounded;
use hydra::umf::UMF_VERSION;
use hydra::{Config, Hydra, keys};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

const DB: u8 = 15;
const ECHO_SERVICE: &str = "echo";
const CALLER_SERVICE: &str = "bench-caller";
/// Service names the floor uses in its routes and channels (same lengths as
/// hydra-rs's, so the messages are the same size).
const FLOOR_ECHO_SERVICE: &str = "fcho";
const FLOOR_CALLER_SERVICE: &str = "floor-caller";
/// Requests in flight in the concurrent measurements.
const IN_FLIGHT: usize = 32;
/// Message workers of the hydra-rs echo service (its default).
const RESPONDER_WORKERS: usize = 4;
/// Floor responder threads in the concurrent measurement, as many as the
/// hydra-rs responder's workers. The sequential floor uses the first.
const FLOOR_RESPONDERS: usize = RESPONDER_WORKERS;
/// Requests before any measurement, per subject.
const WARMUP: usize = 500;
/// Requests at the start of every round, untimed (the floor opens new
/// connections per round).
const ROUND_WARMUP: usize = 50;
const SEQ_ROUNDS: usize = 3;
const SEQ_ROUND_BUDGET: Duration = Duration::from_millis(2500);
const FLIGHT_ROUNDS: usize = 2;
const FLIGHT_ROUND_BUDGET: Duration = Duration::from_secs(3);
/// Per-request deadline; a reply later than this counts as missing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the floor responders look at their stop flag.
const RESPONDER_POLL: Duration = Duration::from_millis(100);
/// 64 bytes of padding in every body.
const PAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// Target: hydra-rs sequential msgs/s at least this fraction of the floor's.
const TARGET_THROUGHPUT: f64 = 0.8;
/// Target: hydra-rs sequential p99 at most this multiple of the floor's.
const TARGET_P99: f64 = 2.0;

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// One request: sends `body` and returns the reply's body, or why there was
/// none.
type RequestFn<'a> = dyn FnMut(&Value) -> Result<Value, String> + 'a;

/// Something that can answer requests: hydra-rs or the raw floor.
trait Subject: Sync {
    /// Runs `drive` with a request function for caller number `index` (the
    /// subject may set up per-caller connections around it).
    fn with_caller(&self, index: usize, drive: &mut dyn FnMut(&mut RequestFn<'_>)) -> BoxResult<()>;
}

/// hydra-rs: `request` on a shared registered caller handle.
struct HydraSubject {
    caller: Hydra,
}

impl Subject for HydraSubject {
    fn with_caller(&self, _index: usize, drive: &mut dyn FnMut(&mut RequestFn<'_>)) -> BoxResult<()> {
        let to = format!("{ECHO_SERVICE}:/");
        let mut request = |body: &Value| {
            let message = self.caller.create_umf_message(&to, body.clone());
            self.caller
                .request(&message, REQUEST_TIMEOUT)
                .map(|reply| reply.body)
                .map_err(|e| e.to_string())
        };
        drive(&mut request);
        Ok(())
    }
}

/// The floor: raw redis-rs connections per caller, talking to the floor
/// responder threads.
struct FloorSubject {
    client: redis::Client,
    /// (route, channel) of each responder.
    responders: Vec<(String, String)>,
}

impl Subject for FloorSubject {
    fn with_caller(&self, index: usize, drive: &mut dyn FnMut(&mut RequestFn<'_>)) -> BoxResult<()> {
        let (to, responder_channel) = &self.responders[index % self.responders.len()];
        let id = uuid::Uuid::new_v4().simple().to_string();
        let from = format!("{id}@{FLOOR_CALLER_SERVICE}:/");
        let reply_channel = keys::instance_channel(FLOOR_CALLER_SERVICE, &id);
        let mut commands = self.connect()?;
        let mut subscriber = self.connect()?;
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(&reply_channel)?;
        pubsub.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut request = |body: &Value| -> Result<Value, String> {
            let mid = uuid::Uuid::new_v4().hyphenated().to_string();
            let message = json!({
                "to": to, "frm": from, "mid": mid, "ts": now_iso(), "ver": UMF_VERSION, "bdy": body,
            });
            let receivers: u64 = redis::cmd("PUBLISH")
                .arg(responder_channel)
                .arg(message.to_string())
                .query(&mut commands)
                .map_err(|e| format!("PUBLISH failed: {e}"))?;
            if receivers == 0 {
                return Err(format!("no floor responder on {responder_channel}"));
            }
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            loop {
                let msg = pubsub.get_message().map_err(|e| format!("no reply to {mid}: {e}"))?;
                let reply: Value =
                    serde_json::from_slice(msg.get_payload_bytes()).map_err(|e| format!("reply is not JSON: {e}"))?;
                if reply.get("rmid").and_then(Value::as_str) == Some(mid.as_str()) {
                    let Value::Object(mut reply) = reply else {
                        unreachable!("an object has an rmid")
                    };
                    return Ok(reply.remove("bdy").unwrap_or(Value::Null));
                }
                if Instant::now() >= deadline {
                    return Err(format!("no reply to {mid} within {REQUEST_TIMEOUT:?}"));
                }
            }
        };
        drive(&mut request);
        Ok(())
    }
}

impl FloorSubject {
    fn connect(&self) -> BoxResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(REQUEST_TIMEOUT)?;
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(conn)
    }
}

/// A running floor responder thread.
struct FloorResponder {
    route: String,
    channel: String,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<BoxResult<u64>>,
}

impl FloorResponder {
    /// Starts the thread and returns once it is subscribed.
    fn start(client: &redis::Client, n: usize) -> BoxResult<FloorResponder> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let route = format!("{id}@{FLOOR_ECHO_SERVICE}:/");
        let channel = keys::instance_channel(FLOOR_ECHO_SERVICE, &id);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = bounded::<BoxResult<()>>(1);
        let thread = {
            let client = client.clone();
            let channel = channel.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("bench-floor-responder-{n}"))
                .spawn(move || floor_respond(&client, &channel, &stop, &ready_tx))?
        };
        match ready_rx.recv_timeout(REQUEST_TIMEOUT) {
            Ok(Ok(())) => Ok(FloorResponder {
                route,
                channel,
                stop,
                thread,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("a floor responder did not subscribe in time".into()),
        }
    }

    /// Stops the thread; returns how many requests it answered.
    fn stop(self) -> BoxResult<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().map_err(|_| "a floor responder panicked")?
    }
}

/// The floor responder: for every message, parse, build the reply, PUBLISH it
/// to the sender's instance channel.
fn floor_respond(
    client: &redis::Client,
    channel: &str,
    stop: &AtomicBool,
    ready: &crossbeam_channel::Sender<BoxResult<()>>,
) -> BoxResult<u64> {
    let setup = || -> BoxResult<(redis::Connection, redis::Connection)> {
        let subscriber = client.get_connection_with_timeout(REQUEST_TIMEOUT)?;
        let commands = client.get_connection_with_timeout(REQUEST_TIMEOUT)?;
        commands.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        commands.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok((subscriber, commands))
    };
    let (mut subscriber, mut commands) = match setup() {
        Ok(conns) => conns,
        Err(e) => {
            let _ = ready.send(Err(e.to_string().into()));
            return Err(e);
        }
    };
    let mut pubsub = subscriber.as_pubsub();
    if let Err(e) = pubsub
        .subscribe(channel)
        .and_then(|()| pubsub.set_read_timeout(Some(RESPONDER_POLL)))
    {
        let _ = ready.send(Err(e.to_string().into()));
        return Err(e.into());
    }
    let _ = ready.send(Ok(()));
    let mut answered = 0;
    while !stop.load(Ordering::SeqCst) {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(msg.get_payload_bytes()) else {
            eprintln!("floor responder: dropped a message that is not a JSON object");
            continue;
        };
        let (Some(Value::String(frm)), Some(Value::String(mid))) = (request.remove("frm"), request.remove("mid"))
        else {
            eprintln!("floor responder: dropped a message without frm/mid");
            continue;
        };
        // `<instance>@<service>:/…` → that instance's channel.
        let Some((instance, service)) = frm
            .split_once('@')
            .and_then(|(i, rest)| Some((i, rest.split_once(':')?.0)))
        else {
            eprintln!("floor responder: dropped a message from {frm:?}");
            continue;
        };
        let reply_channel = keys::instance_channel(service, instance);
        let reply = json!({
            "to": frm,
            "frm": request.remove("to").unwrap_or(Value::Null),
            "mid": uuid::Uuid::new_v4().hyphenated().to_string(),
            "rmid": mid,
            "ts": now_iso(),
            "ver": UMF_VERSION,
            "bdy": {"echo": request.remove("bdy").unwrap_or(Value::Null)},
        });
        redis::cmd("PUBLISH")
            .arg(&reply_channel)
            .arg(reply.to_string())
            .query::<u64>(&mut commands)?;
        answered += 1;
    }
    Ok(answered)
}

fn now_iso() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// What one measurement (all rounds of one subject and mode) collected.
#[derive(Default)]
struct Tally {
    samples: Vec<Duration>,
    /// Wall time of the timed parts.
    wall: Duration,
    /// Redis `total_commands_processed` and `total_connections_received`
    /// during the timed parts.
    commands: u64,
    connections: u64,
    wrong: usize,
    missing: usize,
    /// The first few failures, for the report.
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, body: &Value, outcome: Result<Value, String>) -> bool {
        match outcome {
            Ok(reply) if reply.get("echo") == Some(body) && reply.as_object().is_some_and(|o| o.len() == 1) => true,
            Ok(reply) => {
                self.wrong += 1;
                self.note(format!("wrong reply to {body}: {reply}"));
                false
            }
            Err(e) => {
                self.missing += 1;
                self.note(e);
                false
            }
        }
    }

    fn note(&mut self, failure: String) {
        if self.failures.len() < 3 {
            self.failures.push(failure);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        self.wrong += other.wrong;
        self.missing += other.missing;
        for f in other.failures {
            self.note(f);
        }
    }

    fn summarize(&mut self) -> Stats {
        self.samples.sort_unstable();
        let n = self.samples.len();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: usize| {
            self.samples
                .get((n * q / 100).min(n.saturating_sub(1)))
                .map_or(f64::NAN, |&d| us(d))
        };
        Stats {
            n,
            p50: at(50),
            p99: at(99),
            mean: self.samples.iter().map(|&d| us(d)).sum::<f64>() / n.max(1) as f64,
            per_sec: n as f64 / self.wall.as_secs_f64(),
            cmds_per_req: self.commands as f64 / n.max(1) as f64,
            connections: self.connections,
            failed: self.wrong + self.missing,
        }
    }
}

/// Latency summary in microseconds, and throughput.
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    mean: f64,
    per_sec: f64,
    cmds_per_req: f64,
    connections: u64,
    failed: usize,
}

/// Reads Redis's command and connection counters.
struct Probe {
    conn: Mutex<redis::Connection>,
}

impl Probe {
    /// (commands processed, connections received) so far, not counting the
    /// `INFO` that reads them.
    fn counters(&self) -> BoxResult<(u64, u64)> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let info: String = redis::cmd("INFO").arg("stats").query(&mut *conn)?;
        let field = |name: &str| -> BoxResult<u64> {
            let text = info
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .ok_or_else(|| format!("INFO stats has no {name}"))?;
            Ok(text.trim().parse()?)
        };
        Ok((
            field("total_commands_processed")? - 1,
            field("total_connections_received")?,
        ))
    }
}

fn body(n: u64) -> Value {
    json!({"n": n, "pad": PAD})
}

/// Untimed requests; failures still count.
fn warm_up(subject: &dyn Subject, requests: usize, tally: &mut Tally) -> BoxResult<()> {
    subject.with_caller(0, &mut |request| {
        for i in 0..requests as u64 {
            let body = body(i);
            let outcome = request(&body);
            tally.record(&body, outcome);
        }
    })
}

/// One sequential round: `ROUND_WARMUP` untimed requests, then requests one at
/// a time for `budget`.
fn sequential_round(subject: &dyn Subject, probe: &Probe, budget: Duration, tally: &mut Tally) -> BoxResult<()> {
    let mut counters_failed = None;
    subject.with_caller(0, &mut |request| {
        for i in 0..ROUND_WARMUP as u64 {
            let body = body(i);
            let outcome = request(&body);
            tally.record(&body, outcome);
        }
        let before = match probe.counters() {
            Ok(c) => c,
            Err(e) => {
                counters_failed = Some(e);
                return;
            }
        };
        let started = Instant::now();
        let mut i = 1_000_000u64;
        while started.elapsed() < budget {
            let body = body(i);
            i += 1;
            let t = Instant::now();
            let outcome = request(&body);
            let elapsed = t.elapsed();
            if tally.record(&body, outcome) {
                tally.samples.push(elapsed);
            }
        }
        tally.wall += started.elapsed();
        match probe.counters() {
            Ok(after) => {
                tally.commands += after.0 - before.0;
                tally.connections += after.1 - before.1;
            }
            Err(e) => counters_failed = Some(e),
        }
    })?;
    counters_failed.map_or(Ok(()), Err)
}

/// One concurrent round: `IN_FLIGHT` threads, each warming up its caller,
/// then all doing sequential requests for `budget` from a common start.
fn in_flight_round(subject: &dyn Subject, probe: &Probe, budget: Duration, tally: &mut Tally) -> BoxResult<()> {
    let start = Barrier::new(IN_FLIGHT + 1);
    let (results, started) = thread::scope(|scope| {
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|t| {
                let start = &start;
                thread::Builder::new()
                    .name(format!("bench-caller-{t}"))
                    .spawn_scoped(scope, move || in_flight_caller(subject, t, start, budget))
            })
            .collect::<Result<_, _>>()
            .expect("cannot spawn caller threads");
        start.wait();
        let started = Instant::now();
        let before = probe.counters();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a caller thread panicked".into())))
            .collect();
        if let (Ok(before), Ok(after)) = (before, probe.counters()) {
            tally.commands += after.0 - before.0;
            tally.connections += after.1 - before.1;
        }
        (results, started)
    });
    let mut last = started;
    for result in results {
        let (mine, finished) = result?;
        last = last.max(finished);
        tally.merge(mine);
    }
    tally.wall += last - started;
    Ok(())
}

/// One of the `IN_FLIGHT` callers: warms up, waits at `start` with the
/// others, then requests one after another for `budget`. Returns what it
/// collected and when it finished.
fn in_flight_caller(subject: &dyn Subject, t: usize, start: &Barrier, budget: Duration) -> BoxResult<(Tally, Instant)> {
    let mut mine = Tally::default();
    let mut finished = None;
    let mut waited = false;
    let base = (t as u64 + 1) * 1_000_000_000;
    let outcome = subject.with_caller(t, &mut |request| {
        for i in 0..(ROUND_WARMUP / 5) as u64 {
            let body = body(base + i);
            let outcome = request(&body);
            mine.record(&body, outcome);
        }
        start.wait();
        waited = true;
        let until = Instant::now() + budget;
        let mut i = base + 1_000_000;
        while Instant::now() < until {
            let body = body(i);
            i += 1;
            let t = Instant::now();
            let outcome = request(&body);
            let elapsed = t.elapsed();
            if mine.record(&body, outcome) {
                mine.samples.push(elapsed);
            }
        }
        finished = Some(Instant::now());
    });
    if !waited {
        // Do not leave the others waiting at the barrier.
        start.wait();
    }
    outcome?;
    Ok((mine, finished.ok_or("caller finished without running")?))
}

fn main() -> ExitCode {
    env_logger::init();
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_messaging: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns `Ok(false)` when a reply was missing or wrong.
fn run() -> BoxResult<bool> {
    let server = RedisServer::start();
    let url = server.url(DB);
    let client = redis::Client::open(url.as_str())?;
    let mut raw = client.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut raw)?;
    let version = redis_version(&mut raw)?;
    let probe = Probe { conn: Mutex::new(raw) };

    let responder = Hydra::init(
        Config::builder()
            .service_name(ECHO_SERVICE)
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .message_workers(RESPONDER_WORKERS)
            .build()?,
    )?;
    responder.register_service()?;
    responder.on_message(|h, msg| {
        h.reply(&msg, json!({"echo": msg.body}))?;
        Ok(())
    })?;
    let caller = Hydra::init(
        Config::builder()
            .service_name(CALLER_SERVICE)
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .build()?,
    )?;
    caller.register_service()?;
    let hydra = HydraSubject { caller: caller.clone() };

    let floor_responders = (0..FLOOR_RESPONDERS)
        .map(|n| FloorResponder::start(&client, n))
        .collect::<BoxResult<Vec<_>>>()?;
    let floor = FloorSubject {
        client: client.clone(),
        responders: floor_responders
            .iter()
            .map(|r| (r.route.clone(), r.channel.clone()))
            .collect(),
    };

    println!(
        "bench_messaging: redis-server {version} on 127.0.0.1:{} db {DB}; responders in this process \
         (hydra-rs echo: {RESPONDER_WORKERS} message workers; floor: {FLOOR_RESPONDERS} responder threads, \
         1 for sequential); body {} bytes",
        server.port(),
        body(1_000_000).to_string().len()
    );

    let subjects: [(&str, &dyn Subject); 2] = [("hydra-rs", &hydra), ("raw redis-rs floor", &floor)];
    let mut seq = [Tally::default(), Tally::default()];
    let mut flight = [Tally::default(), Tally::default()];
    for (k, (name, subject)) in subjects.iter().enumerate() {
        eprintln!("  warming up {name} ({WARMUP} requests)");
        warm_up(*subject, WARMUP, &mut seq[k])?;
    }
    // Alternate which subject goes first, so drift falls on both.
    for round in 0..SEQ_ROUNDS {
        for k in order(round) {
            let (n, wall) = (seq[k].samples.len(), seq[k].wall);
            sequential_round(subjects[k].1, &probe, SEQ_ROUND_BUDGET, &mut seq[k])?;
            eprintln!(
                "  sequential round {}/{SEQ_ROUNDS}: {:<18} {:>6.0} msgs/s",
                round + 1,
                subjects[k].0,
                (seq[k].samples.len() - n) as f64 / (seq[k].wall - wall).as_secs_f64()
            );
        }
    }
    for round in 0..FLIGHT_ROUNDS {
        for k in order(round) {
            let (n, wall) = (flight[k].samples.len(), flight[k].wall);
            in_flight_round(subjects[k].1, &probe, FLIGHT_ROUND_BUDGET, &mut flight[k])?;
            eprintln!(
                "  {IN_FLIGHT} in flight round {}/{FLIGHT_ROUNDS}: {:<18} {:>6.0} msgs/s",
                round + 1,
                subjects[k].0,
                (flight[k].samples.len() - n) as f64 / (flight[k].wall - wall).as_secs_f64()
            );
        }
    }

    let stats_caller = caller.message_stats();
    let stats_responder = responder.message_stats();
    caller.shutdown()?;
    responder.shutdown()?;
    let mut answered = 0;
    for r in floor_responders {
        answered += r.stop()?;
    }

    let [mut hydra_seq, mut floor_seq] = seq;
    let [mut hydra_flight, mut floor_flight] = flight;
    let rows = [
        ("hydra-rs request, sequential", hydra_seq.summarize()),
        ("raw redis-rs floor, sequential", floor_seq.summarize()),
        (
            &*format!("hydra-rs request, {IN_FLIGHT} in flight"),
            hydra_flight.summarize(),
        ),
        (
            &*format!("raw redis-rs floor, {IN_FLIGHT} in flight"),
            floor_flight.summarize(),
        ),
    ];
    print_report(&rows);
    println!();
    println!(
        "hydra-rs counters: caller sent {}, replies matched {}, late {}; responder received {}, \
         handled {}, failed {}, overflow {}; floor responders answered {answered}",
        stats_caller.sent,
        stats_caller.replies_matched,
        stats_caller.replies_late,
        stats_responder.received,
        stats_responder.handled,
        stats_responder.failed,
        stats_responder.overflow,
    );

    let mut ok = true;
    for (name, tally) in [
        ("hydra-rs sequential", &hydra_seq),
        ("floor sequential", &floor_seq),
        ("hydra-rs in flight", &hydra_flight),
        ("floor in flight", &floor_flight),
    ] {
        if tally.wrong + tally.missing > 0 {
            ok = false;
            eprintln!(
                "ERROR {name}: {} wrong and {} missing replies; first: {:?}",
                tally.wrong, tally.missing, tally.failures
            );
        }
    }
    if !ok {
        eprintln!("bench_messaging: some replies were missing or wrong (see above)");
    }
    Ok(ok)
}

/// Subject indices in the order round `round` runs them.
fn order(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

fn redis_version(conn: &mut redis::Connection) -> BoxResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query(conn)?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string())
}

fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn print_report(rows: &[(&str, Stats)]) {
    println!();
    println!("| | p50 | p99 | mean | msgs/s | requests | Redis cmds/req | new conns | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, s) in rows {
        println!(
            "| {name} | {} | {} | {} | {:.0} | {} | {:.2} | {} | {} |",
            fmt_us(s.p50),
            fmt_us(s.p99),
            fmt_us(s.mean),
            s.per_sec,
            s.n,
            s.cmds_per_req,
            s.connections,
            s.failed,
        );
    }
    let (ours, floor) = (&rows[0].1, &rows[1].1);
    let throughput = ours.per_sec / floor.per_sec;
    let p99 = ours.p99 / floor.p99;
    println!();
    println!(
        "sequential throughput: {throughput:.2}× the floor (target ≥ {TARGET_THROUGHPUT}×) {}",
        verdict(throughput >= TARGET_THROUGHPUT)
    );
    println!(
        "sequential p99: {p99:.2}× the floor's p99 (target ≤ {TARGET_P99}×) {}",
        verdict(p99 <= TARGET_P99)
    );
    let (ours, floor) = (&rows[2].1, &rows[3].1);
    println!(
        "{IN_FLIGHT} in flight: throughput {:.2}× the floor, p99 {:.2}× the floor's (no target)",
        ours.per_sec / floor.per_sec,
        ours.p99 / floor.p99
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "— met" } else { "— NOT met" }
}
