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
use hydra_testkit::bench::{self, Failure, RedisCounters, Table, Tally, format_micros, padded_body, verdict};
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
/// Each round's length in a smoke run.
const SMOKE_ROUND_BUDGET: Duration = Duration::from_millis(300);
/// Per-request deadline; a reply later than this counts as missing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the floor responders look at their stop flag.
const RESPONDER_POLL: Duration = Duration::from_millis(100);
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

/// A reply must be `{"echo": <the body sent>}`.
fn check_echo(body: &Value, outcome: Result<Value, String>) -> Result<(), Failure> {
    match outcome {
        Ok(reply) if reply.get("echo") == Some(body) && reply.as_object().is_some_and(|o| o.len() == 1) => Ok(()),
        Ok(reply) => Err(Failure::WrongAnswer(format!("wrong reply to {body}: {reply}"))),
        Err(e) => Err(Failure::NoAnswer(e)),
    }
}

/// Reads Redis's command and connection counters.
struct Probe {
    conn: Mutex<redis::Connection>,
}

impl Probe {
    fn counters(&self) -> redis::RedisResult<RedisCounters> {
        RedisCounters::read(&mut self.conn.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `requests` untimed requests numbered from `first`; failures still count.
fn warm_up(request: &mut RequestFn<'_>, first: u64, requests: usize, tally: &mut Tally) {
    tally.warm_up(first, requests, padded_body, |body| check_echo(body, request(body)));
}

/// Requests one after another for `budget`, numbered from `first`; returns
/// when it stopped.
fn time_requests(request: &mut RequestFn<'_>, first: u64, budget: Duration, tally: &mut Tally) -> Instant {
    tally.time_for(budget, first, padded_body, |body| request(body), check_echo)
}

/// One round of one subject: [`sequential_round`] or [`in_flight_round`].
type RoundFn = fn(&dyn Subject, &Probe, Duration, &mut Tally) -> BoxResult<()>;

/// One sequential round: `ROUND_WARMUP` untimed requests, then requests one at
/// a time for `budget`.
fn sequential_round(subject: &dyn Subject, probe: &Probe, budget: Duration, tally: &mut Tally) -> BoxResult<()> {
    let mut counted = Ok(());
    subject.with_caller(0, &mut |request| {
        warm_up(request, 0, ROUND_WARMUP, tally);
        let before = match probe.counters() {
            Ok(c) => c,
            Err(e) => {
                counted = Err(e);
                return;
            }
        };
        let started = Instant::now();
        let finished = time_requests(request, 1_000_000, budget, tally);
        tally.latencies.add_wall(finished - started);
        match probe.counters() {
            Ok(after) => tally.redis += after.since(before),
            Err(e) => counted = Err(e),
        }
    })?;
    Ok(counted?)
}

/// One concurrent round: `IN_FLIGHT` threads, each warming up its caller,
/// then all doing sequential requests for `budget` from a common start.
fn in_flight_round(subject: &dyn Subject, probe: &Probe, budget: Duration, tally: &mut Tally) -> BoxResult<()> {
    let together = bench::run_together(
        IN_FLIGHT,
        "bench-caller",
        || probe.counters(),
        |t, start| in_flight_caller(subject, t, start, budget),
    );
    if let (Ok(before), Ok(after)) = (together.at_start, probe.counters()) {
        tally.redis += after.since(before);
    }
    for result in together.results {
        tally.merge(result?);
    }
    tally.latencies.add_wall(together.wall);
    Ok(())
}

/// One of the `IN_FLIGHT` callers: warms up, waits at `start` with the
/// others, then requests one after another for `budget`. Returns what it
/// collected and when it finished.
fn in_flight_caller(subject: &dyn Subject, t: usize, start: &Barrier, budget: Duration) -> (BoxResult<Tally>, Instant) {
    let mut mine = Tally::default();
    let mut finished = None;
    let mut waited = false;
    let base = (t as u64 + 1) * 1_000_000_000;
    let outcome = subject.with_caller(t, &mut |request| {
        warm_up(request, base, ROUND_WARMUP / 5, &mut mine);
        start.wait();
        waited = true;
        finished = Some(time_requests(request, base + 1_000_000, budget, &mut mine));
    });
    if !waited {
        // Do not leave the others waiting at the barrier.
        start.wait();
    }
    (outcome.map(|()| mine), finished.unwrap_or_else(Instant::now))
}

fn main() -> ExitCode {
    env_logger::init();
    bench::exit_code("bench_messaging", run())
}

/// Returns `Ok(false)` when a reply was missing or wrong.
fn run() -> BoxResult<bool> {
    let server = RedisServer::start();
    let url = server.url(DB);
    let client = redis::Client::open(url.as_str())?;
    let mut raw = client.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut raw)?;
    let version = bench::redis_version(&mut raw)?;
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
        padded_body(1_000_000).to_string().len()
    );

    let subjects: [(&str, &dyn Subject); 2] = [("hydra-rs", &hydra), ("raw redis-rs floor", &floor)];
    let mut seq = [Tally::default(), Tally::default()];
    let mut flight = [Tally::default(), Tally::default()];
    for (k, (name, subject)) in subjects.iter().enumerate() {
        eprintln!("  warming up {name} ({WARMUP} requests)");
        let warmup = bench::scaled(WARMUP, ROUND_WARMUP);
        subject.with_caller(0, &mut |request| warm_up(request, 0, warmup, &mut seq[k]))?;
    }
    // Alternate which subject goes first, so drift falls on both.
    let in_flight_mode = format!("{IN_FLIGHT} in flight");
    // A smoke run (HYDRA_BENCH_SMOKE) does one short round of each.
    let modes: [(&str, usize, Duration, RoundFn, &mut [Tally; 2]); 2] = [
        (
            "sequential",
            bench::scaled(SEQ_ROUNDS, 1),
            bench::scaled(SEQ_ROUND_BUDGET, SMOKE_ROUND_BUDGET),
            sequential_round,
            &mut seq,
        ),
        (
            &in_flight_mode,
            bench::scaled(FLIGHT_ROUNDS, 1),
            bench::scaled(FLIGHT_ROUND_BUDGET, SMOKE_ROUND_BUDGET),
            in_flight_round,
            &mut flight,
        ),
    ];
    for (mode, rounds, budget, run_round, tallies) in modes {
        for (round, k) in bench::round_robin(rounds, subjects.len()) {
            let mark = tallies[k].checkpoint();
            run_round(subjects[k].1, &probe, budget, &mut tallies[k])?;
            eprintln!(
                "  {mode} round {}/{rounds}: {:<18} {:>6.0} msgs/s",
                round + 1,
                subjects[k].0,
                tallies[k].per_sec_since(mark)
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

    let [hydra_seq, floor_seq] = seq;
    let [hydra_flight, floor_flight] = flight;
    let mut rows = [
        (
            "hydra-rs request, sequential".to_string(),
            "hydra-rs sequential",
            hydra_seq,
        ),
        (
            "raw redis-rs floor, sequential".to_string(),
            "floor sequential",
            floor_seq,
        ),
        (
            format!("hydra-rs request, {IN_FLIGHT} in flight"),
            "hydra-rs in flight",
            hydra_flight,
        ),
        (
            format!("raw redis-rs floor, {IN_FLIGHT} in flight"),
            "floor in flight",
            floor_flight,
        ),
    ];
    print_report(&mut rows);
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
    for (_, name, tally) in &rows {
        let failures = &tally.failures;
        if failures.total() > 0 {
            ok = false;
            eprintln!(
                "ERROR {name}: {} wrong and {} missing replies; first: {:?}",
                failures.wrong_answer(),
                failures.no_answer(),
                failures.first()
            );
        }
    }
    if !ok {
        eprintln!("bench_messaging: some replies were missing or wrong (see above)");
    }
    Ok(ok)
}

/// The table of all four measurements (table label, short name, tally), then
/// the targets.
fn print_report(rows: &mut [(String, &str, Tally); 4]) {
    let summaries = rows.each_mut().map(|(_, _, tally)| tally.latencies.summary());
    let mut table = Table::new(&[
        "",
        "p50",
        "p99",
        "mean",
        "msgs/s",
        "requests",
        "Redis cmds/req",
        "new conns",
        "failed",
    ]);
    for ((label, _, tally), s) in rows.iter().zip(&summaries) {
        table.row([
            label.clone(),
            format_micros(s.p50),
            format_micros(s.p99),
            format_micros(s.mean),
            format!("{:.0}", s.per_sec),
            s.count.to_string(),
            format!("{:.2}", tally.redis.commands_per(s.count)),
            tally.redis.connections.to_string(),
            tally.failures.total().to_string(),
        ]);
    }
    table.print();
    let (ours, floor) = (&summaries[0], &summaries[1]);
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
    let (ours, floor) = (&summaries[2], &summaries[3]);
    println!(
        "{IN_FLIGHT} in flight: throughput {:.2}× the floor, p99 {:.2}× the floor's (no target)",
        ours.per_sec / floor.per_sec,
        ours.p99 / floor.p99
    );
}
