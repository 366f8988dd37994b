//! WebSocket benchmark: request/reply from WebSocket clients through
//! `hydra-router` to a Rust echo service (UMF over pub/sub, the reply coming
//! back by `via`), sequentially and with 32 requests in flight, against
//! `Hydra::request()` from a Rust client to the same echo in the same run;
//! then the replay of 1,000 messages queued for an offline client when it
//! reconnects.
//!
//! ```text
//! cargo build --release -p hydra-router --bins --example bench_ws_requests
//! target/release/examples/bench_ws_requests
//! ```
//!
//! Target (hydra-router issue 11): with 32 in flight, WebSocket throughput
//! ≥ 0.5× `request()`'s. The program is a report: it exits 0 whether or not
//! the target is met, and non-zero only when a request failed or an answer
//! was wrong. `HYDRA_BENCH_SMOKE=1` runs every step briefly (one 300 ms
//! round per subject, 100 queued messages).
//!
//! Processes, as in production:
//!
//! - **echo**: this program started again as `bench_ws_requests
//!   --serve-echo <redis-url>`, a Hydra service `ws-echo` registered in a
//!   private `redis-server`, whose message handler answers every message with
//!   `reply(msg, {"echo": <its body>})` (to `via` when it has one). It stops
//!   when its stdin closes, so it never outlives this program.
//! - **router**: the `hydra-router` binary next to this program's `examples/`
//!   directory (the same profile), with a config naming the same Redis and
//!   its default settings.
//! - **clients** (this process): a registered Hydra `ws-bench-caller` whose
//!   `request()` calls the echo (sequential: one thread; in flight: 32
//!   threads sharing the handle), and tungstenite WebSocket clients on
//!   blocking sockets (sequential: one connection, one request at a time;
//!   "32 in flight, 1 socket": one connection that keeps 32 requests
//!   outstanding; "32 sockets": 32 connections on 32 threads, one request at
//!   a time each).
//!
//! Every body is `{"n": <i>, "pad": <64 bytes>}` and every reply must echo
//! it. Rounds alternate the subjects (`bench::round_robin`), so the drift of
//! a shared machine falls on all alike; req/s is replies over the wall time
//! of the timed rounds, latencies are from send to reply.
//!
//! Replay: a client connects and leaves; another client forwards N messages
//! to its id (`fwd`), which the router queues in Redis; once all N are
//! queued, a new connection sends `reconnect` with the old id, and the time
//! from that send to the last replayed message is reported, with the order
//! checked (they must come in the order sent).

#[path = "support/process.rs"]
mod support;

use std::collections::HashMap;
use std::error::Error;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use hydra::{Config, Hydra, Umf};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Failure, Failures, Latencies, Table, format_micros, padded_body, verdict};
use serde_json::{Value, json};
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, client::IntoClientRequest};

/// The echo service's name.
const ECHO_SERVICE: &str = "ws-echo";
/// The in-process caller's service name.
const CALLER_SERVICE: &str = "ws-bench-caller";
/// The child mode that serves the echo.
const SERVE_ECHO_FLAG: &str = "--serve-echo";
/// Requests in flight in the concurrent subjects.
const IN_FLIGHT: usize = 32;
/// Target: WebSocket throughput with 32 in flight / `request()`'s.
const TARGET_RATIO: f64 = 0.5;
/// Deadlines: one request, anything else awaited (a child's start: `support`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(30);
/// Node's key prefix of the offline queue.
const QUEUE_PREFIX: &str = "hydra-router:message:queue";

fn rounds() -> usize {
    bench::scaled(3, 1)
}
fn round_budget() -> Duration {
    bench::scaled(Duration::from_secs(3), Duration::from_millis(300))
}
fn warmup_budget() -> Duration {
    bench::scaled(Duration::from_millis(500), Duration::from_millis(100))
}
fn replay_messages() -> usize {
    bench::scaled(1000, 100)
}

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> ExitCode {
    if let Some(code) = child_mode(SERVE_ECHO_FLAG, |url| serve_message_echo(url, ECHO_SERVICE)) {
        return code;
    }
    bench::exit_code("bench_ws_requests", run())
}

// --- The echo (child mode) ---------------------------------------------------

// --- Child processes -----------------------------------------------------------

use support::{RouterChild, child_mode, serve_message_echo, start_echo_child, start_router};

/// `VmRSS` (kB) and thread count of a process.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS"), field("Threads"))
}

// --- A WebSocket client ------------------------------------------------------------

/// A tungstenite client on a blocking socket with a read timeout.
struct WsClient {
    socket: WebSocket<TcpStream>,
    /// Its id, from the router's welcome.
    id: String,
}

impl WsClient {
    /// Connects to the router and reads the welcome.
    fn connect(port: u16) -> BoxResult<WsClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let request = format!("ws://127.0.0.1:{port}/").into_client_request()?;
        let (socket, _) = tungstenite::client(request, stream).map_err(|e| format!("WebSocket handshake: {e}"))?;
        let mut client = WsClient {
            socket,
            id: String::new(),
        };
        let welcome = client.read()?;
        if welcome["typ"] != "connection" {
            return Err(format!("the first frame is not the welcome: {welcome}").into());
        }
        client.id = welcome["bdy"]["id"]
            .as_str()
            .ok_or_else(|| format!("welcome without bdy.id: {welcome}"))?
            .to_string();
        Ok(client)
    }

    /// The next text frame, parsed; an error on a close, a timeout or a
    /// frame that is not JSON.
    fn read(&mut self) -> BoxResult<Value> {
        loop {
            match self.socket.read()? {
                Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
                Message::Close(_) => return Err("the router closed the socket".into()),
                _ => {}
            }
        }
    }

    fn send(&mut self, message: &Umf) -> BoxResult<()> {
        self.socket.send(Message::text(message.to_short_json()))?;
        Ok(())
    }

    /// A message from this client to `to`.
    fn message(&self, to: &str, body: Value) -> Umf {
        Umf::new(to, format!("{}@client:/", self.id), body)
    }

    fn close(mut self) {
        let _ = self.socket.close(None);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && self.socket.read().is_ok() {}
    }
}

// --- Measurements -----------------------------------------------------------------------

/// What a subject's rounds collected.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    failures: Failures,
}

impl Tally {
    /// Takes in a concurrent thread's samples (its wall time overlaps the
    /// others': the caller measures the round's).
    fn merge_thread(&mut self, other: Tally) {
        self.latencies.merge(other.latencies);
        self.failures.merge(other.failures);
    }

    /// Takes in a whole round, wall time included.
    fn add_round(&mut self, other: Tally) {
        let wall = other.latencies.wall();
        self.merge_thread(other);
        self.latencies.add_wall(wall);
    }
}

/// Checks an echo reply's body against what was sent.
fn check_echo(sent: &Value, reply_body: &Value) -> Result<(), Failure> {
    if reply_body.get("echo") == Some(sent) {
        Ok(())
    } else {
        Err(Failure::WrongAnswer(format!("sent {sent}, got {reply_body}")))
    }
}

/// The body of a frame in either form.
fn frame_body(frame: &Value) -> &Value {
    if frame.get("bdy").is_some() {
        &frame["bdy"]
    } else {
        &frame["body"]
    }
}

/// The measured ways of calling the echo.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    RequestSequential,
    RequestInFlight,
    WsSequential,
    WsInFlight,
    WsSockets,
}

const SUBJECTS: [Subject; 5] = [
    Subject::RequestSequential,
    Subject::RequestInFlight,
    Subject::WsSequential,
    Subject::WsInFlight,
    Subject::WsSockets,
];

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::RequestSequential => "Hydra::request(), sequential",
            Subject::RequestInFlight => "Hydra::request(), 32 threads",
            Subject::WsSequential => "WebSocket via router, sequential",
            Subject::WsInFlight => "WebSocket via router, 32 in flight on 1 socket",
            Subject::WsSockets => "WebSocket via router, 32 sockets × 1",
        }
    }
}

/// Everything the rounds need.
struct Bench {
    caller: Hydra,
    port: u16,
}

impl Bench {
    /// One round of `subject` for `budget`.
    fn round(&self, subject: Subject, budget: Duration, first: u64) -> BoxResult<Tally> {
        match subject {
            Subject::RequestSequential => Ok(self.request_round(budget, first)),
            Subject::RequestInFlight => {
                let together = bench::run_together(
                    IN_FLIGHT,
                    "bench-request",
                    || (),
                    |t, start| {
                        start.wait();
                        let first = first + (t as u64) * 10_000_000;
                        let tally = self.request_round(budget, first);
                        (tally, Instant::now())
                    },
                );
                Ok(merge_together(together.results, together.wall))
            }
            Subject::WsSequential => {
                let mut client = WsClient::connect(self.port)?;
                let tally = ws_window_round(&mut client, 1, budget, first);
                client.close();
                Ok(tally)
            }
            Subject::WsInFlight => {
                let mut client = WsClient::connect(self.port)?;
                let tally = ws_window_round(&mut client, IN_FLIGHT, budget, first);
                client.close();
                Ok(tally)
            }
            Subject::WsSockets => {
                let clients = (0..IN_FLIGHT)
                    .map(|_| WsClient::connect(self.port).map(Mutex::new))
                    .collect::<BoxResult<Vec<_>>>()?;
                let together = bench::run_together(
                    IN_FLIGHT,
                    "bench-ws",
                    || (),
                    |t, start| {
                        let mut client = clients[t].lock().unwrap_or_else(|p| p.into_inner());
                        start.wait();
                        let first = first + (t as u64) * 10_000_000;
                        let tally = ws_window_round(&mut client, 1, budget, first);
                        (tally, Instant::now())
                    },
                );
                for client in clients {
                    client.into_inner().unwrap_or_else(|p| p.into_inner()).close();
                }
                Ok(merge_together(together.results, together.wall))
            }
        }
    }

    /// `request()` one after another for `budget`.
    fn request_round(&self, budget: Duration, first: u64) -> Tally {
        let mut tally = Tally::default();
        let began = Instant::now();
        let mut n = first;
        while began.elapsed() < budget {
            let body = padded_body(n);
            n += 1;
            let message = self
                .caller
                .create_umf_message(&format!("{ECHO_SERVICE}:/"), body.clone());
            let sent = Instant::now();
            match self.caller.request(&message, REQUEST_TIMEOUT) {
                Ok(reply) => {
                    let elapsed = sent.elapsed();
                    if tally.failures.check(check_echo(&body, &reply.body)) {
                        tally.latencies.record(elapsed);
                    }
                }
                Err(e) => tally.failures.record(Failure::NoAnswer(e.to_string())),
            }
        }
        tally.latencies.add_wall(began.elapsed());
        tally
    }
}

fn merge_together(results: Vec<Tally>, wall: Duration) -> Tally {
    let mut tally = Tally::default();
    for result in results {
        tally.merge_thread(result);
    }
    tally.latencies.add_wall(wall);
    tally
}

/// Requests to the echo over one socket for `budget`, keeping `window` of
/// them outstanding; then waits for the outstanding ones.
fn ws_window_round(client: &mut WsClient, window: usize, budget: Duration, first: u64) -> Tally {
    let mut tally = Tally::default();
    let mut outstanding: HashMap<String, (Value, Instant)> = HashMap::new();
    let began = Instant::now();
    let mut n = first;
    loop {
        while outstanding.len() < window && began.elapsed() < budget {
            let body = padded_body(n);
            n += 1;
            let message = client.message(&format!("{ECHO_SERVICE}:/"), body.clone());
            if let Err(e) = client.send(&message) {
                tally.failures.record(Failure::NoAnswer(format!("send: {e}")));
                tally.latencies.add_wall(began.elapsed());
                return tally;
            }
            outstanding.insert(message.mid, (body, Instant::now()));
        }
        if outstanding.is_empty() {
            break;
        }
        match client.read() {
            Ok(frame) => {
                let Some((body, sent)) = frame["rmid"].as_str().and_then(|rmid| outstanding.remove(rmid)) else {
                    tally.failures.record(Failure::WrongAnswer(format!(
                        "a frame that answers nothing sent: {frame}"
                    )));
                    continue;
                };
                let elapsed = sent.elapsed();
                if tally.failures.check(check_echo(&body, frame_body(&frame))) {
                    tally.latencies.record(elapsed);
                }
            }
            Err(e) => {
                for _ in 0..outstanding.len() {
                    tally.failures.record(Failure::NoAnswer(format!("read: {e}")));
                }
                break;
            }
        }
    }
    tally.latencies.add_wall(began.elapsed());
    tally
}

// --- Replay ------------------------------------------------------------------------------

/// The replay's outcome.
struct Replay {
    messages: usize,
    queued_in: Duration,
    to_last: Duration,
    in_order: bool,
}

/// Queues `count` messages for a client that left, then times their replay
/// on `reconnect` (see the module docs).
fn replay(port: u16, redis_url: &str, count: usize) -> BoxResult<Replay> {
    let mut keys = redis::Client::open(redis_url)?.get_connection()?;
    let away = WsClient::connect(port)?;
    let id = away.id.clone();
    away.close();
    let queued_key = format!("{QUEUE_PREFIX}:{id}:queued");
    // The router learns of the close at once, but a forward sent before it
    // has would be delivered to the closing socket: wait until it is gone.
    let wsdir_url = format!("http://127.0.0.1:{port}/v1/router/list/wsdir");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = ureq::get(&wsdir_url).call()?.body_mut().read_to_string()?;
        let directory: Value = serde_json::from_str(&text)?;
        let present = directory["result"]
            .as_object()
            .is_some_and(|routers| routers.values().any(|clients| clients.get(&id).is_some()));
        if !present {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("client {id} is still in the directory after {WAIT:?}").into());
        }
        thread::sleep(Duration::from_millis(20));
    }

    let mut sender = WsClient::connect(port)?;
    let began = Instant::now();
    for seq in 0..count {
        let mut message = sender.message("hydra-router:/", json!({ "seq": seq }));
        message.forward = Some(format!("{id}@client:/"));
        sender.send(&message)?;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let queued: usize = redis::cmd("LLEN").arg(&queued_key).query(&mut keys)?;
        if queued == count {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{queued} of {count} messages queued under {queued_key} after {WAIT:?}").into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    let queued_in = began.elapsed();
    sender.close();

    let mut back = WsClient::connect(port)?;
    let mut reconnect = back.message("hydra-router:/", json!({ "id": id }));
    reconnect.message_type = Some("reconnect".into());
    let sent = Instant::now();
    back.send(&reconnect)?;
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        let frame = back
            .read()
            .map_err(|e| format!("after {} replayed messages: {e}", seqs.len()))?;
        if let Some(seq) = frame_body(&frame)["seq"].as_u64() {
            seqs.push(seq as usize);
        } else if frame["typ"] != "connection" {
            return Err(format!("unexpected frame during the replay: {frame}").into());
        }
    }
    let to_last = sent.elapsed();
    back.close();
    Ok(Replay {
        messages: count,
        queued_in,
        to_last,
        in_order: seqs.iter().copied().eq(0..count),
    })
}

// --- The run -------------------------------------------------------------------------------

fn run() -> BoxResult<bool> {
    let redis_server = RedisServer::start();
    let redis_url = redis_server.url(0);
    let (mut echo, _) = start_echo_child(SERVE_ECHO_FLAG, &redis_url)?;
    let RouterChild {
        process: mut router,
        port,
        binary: router_binary,
        ..
    } = start_router(&redis_url)?;

    let caller = Hydra::init(
        Config::builder()
            .service_name(CALLER_SERVICE)
            .service_ip("127.0.0.1")
            .redis_url(&redis_url)
            .build()?,
    )?;
    caller.register_service()?;
    let bench = Bench { caller, port };

    println!(
        "bench_ws_requests: redis-server on 127.0.0.1:{}; echo `{ECHO_SERVICE}` (pid {}); {} (pid {}) on port {port}; \
         {} CPUs",
        redis_server.port(),
        echo.pid(),
        router_binary.display(),
        router.pid(),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );

    // Warm-up, checked: every subject answers right before anything is timed.
    let mut all_right = true;
    for subject in SUBJECTS {
        let warm = bench.round(subject, warmup_budget(), 0)?;
        if warm.failures.total() > 0 {
            eprintln!(
                "bench_ws_requests: warm-up of `{}` failed: {:?}\nrouter stderr:\n{}",
                subject.label(),
                warm.failures.first(),
                router.stderr_tail()
            );
            all_right = false;
        }
    }
    if !all_right {
        return Ok(false);
    }

    let mut tallies: Vec<Tally> = SUBJECTS.iter().map(|_| Tally::default()).collect();
    let mut first = 100_000_000u64;
    for (round, index) in bench::round_robin(rounds(), SUBJECTS.len()) {
        let subject = SUBJECTS[index];
        eprintln!(
            "bench_ws_requests: round {} of {}: {}",
            round + 1,
            rounds(),
            subject.label()
        );
        tallies[index].add_round(bench.round(subject, round_budget(), first)?);
        first += 1_000_000_000;
    }
    let (rss_kb, threads) = memory(router.pid());

    let mut table = Table::new(&["Subject", "replies", "req/s", "p50", "p99", "max", "failed"]);
    let mut per_sec = Vec::new();
    for (subject, tally) in SUBJECTS.iter().zip(tallies.iter_mut()) {
        let summary = tally.latencies.summary();
        per_sec.push(summary.per_sec);
        table.row([
            subject.label().to_string(),
            summary.count.to_string(),
            format!("{:.0}", summary.per_sec),
            format_micros(summary.p50),
            format_micros(summary.p99),
            format_micros(summary.max),
            tally.failures.total().to_string(),
        ]);
        if tally.failures.total() > 0 {
            all_right = false;
            eprintln!(
                "bench_ws_requests: `{}` failures: {:?}",
                subject.label(),
                tally.failures.first()
            );
        }
    }
    table.print();
    let sequential_ratio = per_sec[2] / per_sec[0];
    let in_flight_ratio = per_sec[3] / per_sec[1];
    let sockets_ratio = per_sec[4] / per_sec[1];
    println!();
    println!("WebSocket / request(), sequential: {sequential_ratio:.2}×");
    println!(
        "WebSocket / request(), 32 in flight on 1 socket: {in_flight_ratio:.2}× (target ≥ {TARGET_RATIO}×) {}",
        verdict(in_flight_ratio >= TARGET_RATIO)
    );
    println!("WebSocket / request(), 32 sockets × 1: {sockets_ratio:.2}×");
    println!(
        "router after the rounds: RSS {:.1} MB, {threads} threads",
        rss_kb as f64 / 1024.0
    );

    let replay = replay(port, &redis_url, replay_messages())?;
    let mut table = Table::new(&[
        "Replay on reconnect",
        "messages",
        "queued in",
        "time to the last",
        "msgs/s",
        "in order",
    ]);
    table.row([
        "forwarded to an offline client, replayed through the same router".to_string(),
        replay.messages.to_string(),
        format_micros(replay.queued_in.as_secs_f64() * 1e6),
        format_micros(replay.to_last.as_secs_f64() * 1e6),
        format!("{:.0}", replay.messages as f64 / replay.to_last.as_secs_f64()),
        if replay.in_order { "yes" } else { "NO" }.to_string(),
    ]);
    table.print();
    if !replay.in_order {
        eprintln!("bench_ws_requests: the replay was not in the order sent");
        all_right = false;
    }

    let _ = bench.caller.shutdown();
    router.stop(true);
    echo.stop(false);
    Ok(all_right)
}
