//! HTTP benchmark: `make_api_request` to a local echo route, sequentially and
//! from 16 threads, side by side with a floor measured in the same run: raw
//! `ureq` calls to the same server. Then the embedded server alone under a
//! load generator: a built-in equivalent of `wrk` (plus `wrk` itself when it
//! is installed).
//!
//! ```text
//! cargo run --release --example bench_http
//! ```
//!
//! Target: `make_api_request` throughput ≥ 0.8× raw ureq's, both sequentially
//! and with 16 threads. The program is a report: it exits 0 whether or not the
//! target is met, and non-zero only when a request failed or an answer was
//! wrong (status, body). `HYDRA_BENCH_SMOKE=1` runs every step briefly (one
//! round of 200 ms per subject, 300 ms per load, `wrk` for 1 s).
//!
//! It starts its own `redis-server` on a free loopback port and uses db 15.
//! Everything runs in this one process (client and server share the CPUs):
//!
//! - **server**: a registered `web` service serving, with default
//!   [`HttpSettings`](hydra::HttpSettings), `POST /v1/web/echo` (answers the
//!   Hydra envelope with `result: {"body": <request JSON>}`) and
//!   `GET /v1/web/hello` (`result: {"hello": "world"}`).
//! - **hydra-rs**: an initialized, not registered `bench-client` whose
//!   `make_api_request(create_umf_message("web:[post]/v1/web/echo", body))`
//!   is timed (building the UMF message included, as a caller would), with a
//!   5 s timeout. With 16 threads, they share the one client handle.
//! - **raw ureq floor**: a `ureq::Agent` configured like hydra-rs's own
//!   (keep-alive, up to 32 idle connections per host, no redirects, HTTP
//!   errors as responses), POSTing the same JSON with
//!   `content-type: application/json` to `http://127.0.0.1:<port>/v1/web/echo`
//!   and reading the body. Its calls are bounded per phase (connect, send,
//!   receive: 5 s each). With 16 threads, they share the one agent.
//! - **raw ureq + timeout_global** (a diagnostic, no target): the same agent
//!   bounded by `timeout_global`, as hydra-rs bounds its calls. With any
//!   overall timeout, ureq 3 resolves the host on a new thread per request
//!   (even for an IP literal and a pooled connection), which this row
//!   isolates.
//!
//! Every body is `{"n": <i>, "pad": <64 bytes>}`; every subject parses the
//! answer and checks status 200 and `result.body` = the body sent. Each round
//! uses a fresh client handle or agent and drops it at the end, so that its
//! idle keep-alive connections are closed before the next subject runs (the
//! server holds a worker on each idle connection for up to its keep-alive).
//! Rounds rotate which subject goes first, so that the noise of a shared
//! machine falls on all alike; req/s is completed requests divided by the
//! wall time of the timed part. `new conns` is the server's count of accepted
//! connections during the timed part; `Redis cmds/req` comes from `INFO stats`
//! (the service's heartbeats included, our own `INFO` excluded).
//!
//! The server alone: `LOAD_MODES` run `GET /v1/web/hello` over raw
//! `std::net::TcpStream`s, one thread per connection, each sending a request
//! and reading the whole answer before the next (no pipelining), for
//! 3 s per load: keep-alive connections (reopened only when the server says
//! `connection: close`), and a new connection per request
//! (`connection: close`, connect time included in the latency). Every answer
//! must be 200 with the expected body. When `wrk` is on the `PATH`,
//! `wrk -t2 -c64 -d5s --latency` runs against the same route and its summary
//! is printed.

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hydra::{Config, HttpResponse, HttpRoutes, Hydra, RequestOptions};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Failure, RedisCounters, Summary, Table, Tally, format_micros, padded_body, verdict};
use serde_json::{Value, json};

const DB: u8 = 15;
const SERVICE: &str = "web";
const CLIENT_SERVICE: &str = "bench-client";
const ECHO_PATH: &str = "/v1/web/echo";
const HELLO_PATH: &str = "/v1/web/hello";
/// Caller threads in the concurrent measurements.
const THREADS: usize = 16;
/// Requests before any measurement, per subject.
fn warmup() -> usize {
    bench::scaled(300, 20)
}
/// Requests at the start of every round (per thread), untimed.
const ROUND_WARMUP: usize = 20;
fn seq_rounds() -> usize {
    bench::scaled(3, 1)
}
fn seq_round_budget() -> Duration {
    bench::scaled(Duration::from_millis(2000), Duration::from_millis(200))
}
fn thread_rounds() -> usize {
    bench::scaled(3, 1)
}
fn thread_round_budget() -> Duration {
    bench::scaled(Duration::from_millis(2000), Duration::from_millis(200))
}
/// Per-request deadline, for every subject and the load generator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Target: hydra-rs throughput at least this fraction of raw ureq's.
const TARGET_THROUGHPUT: f64 = 0.8;
/// The server alone: (connections, keep-alive): fewer and more connections
/// than the server's 16 default workers (a connection holds a worker only
/// while its handler runs).
const LOAD_MODES: [(usize, bool); 3] = [(8, true), (64, true), (64, false)];
fn load_budget() -> Duration {
    bench::scaled(Duration::from_secs(3), Duration::from_millis(300))
}
/// A load connection gives up after this many failures.
const LOAD_MAX_ERRORS: usize = 50;
/// `wrk`'s run time, and how long we wait for it at most.
fn wrk_duration() -> &'static str {
    bench::scaled("5s", "1s")
}
const WRK_DEADLINE: Duration = Duration::from_secs(20);

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// One way of calling the echo route: hydra-rs or raw ureq. Every round
/// opens a fresh caller and drops it at the end, so that its idle keep-alive
/// connections are closed before the next subject runs.
trait Subject: Sync {
    fn open(&self) -> BoxResult<Box<dyn Caller>>;
}

/// Calls the echo route; shared by the threads of a round.
trait Caller: Sync {
    fn call(&self, body: &Value) -> Result<(), Failure>;
}

/// hydra-rs: `make_api_request` on a client handle (initialized, not
/// registered).
struct HydraSubject {
    redis_url: String,
}

impl Subject for HydraSubject {
    fn open(&self) -> BoxResult<Box<dyn Caller>> {
        let client = Hydra::init(
            Config::builder()
                .service_name(CLIENT_SERVICE)
                .service_ip("127.0.0.1")
                .redis_url(&self.redis_url)
                .build()?,
        )?;
        Ok(Box::new(HydraCaller {
            client,
            to: format!("{SERVICE}:[post]{ECHO_PATH}"),
        }))
    }
}

struct HydraCaller {
    client: Hydra,
    to: String,
}

impl Caller for HydraCaller {
    fn call(&self, body: &Value) -> Result<(), Failure> {
        let message = self.client.create_umf_message(&self.to, body.clone());
        let response = self
            .client
            .make_api_request(&message, RequestOptions::timeout(REQUEST_TIMEOUT))
            .map_err(|e| Failure::NoAnswer(e.to_string()))?;
        check_echo(response.status, &response.body, body)
    }
}

impl Drop for HydraCaller {
    fn drop(&mut self) {
        if let Err(e) = self.client.shutdown() {
            eprintln!("bench_http: client shutdown failed: {e}");
        }
    }
}

/// Raw ureq: a keep-alive `ureq::Agent` POSTing to the same server.
struct UreqSubject {
    url: String,
    /// Bound each call with `timeout_global`, as hydra-rs does, instead of
    /// per-phase timeouts.
    global_timeout: bool,
}

impl Subject for UreqSubject {
    fn open(&self) -> BoxResult<Box<dyn Caller>> {
        Ok(Box::new(UreqCaller {
            agent: floor_agent(self.global_timeout),
            url: self.url.clone(),
        }))
    }
}

struct UreqCaller {
    agent: ureq::Agent,
    url: String,
}

impl Caller for UreqCaller {
    fn call(&self, body: &Value) -> Result<(), Failure> {
        let bytes = serde_json::to_vec(body).map_err(|e| Failure::NoAnswer(e.to_string()))?;
        let mut response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(&bytes[..])
            .map_err(|e| Failure::NoAnswer(e.to_string()))?;
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| Failure::NoAnswer(format!("reading the response failed: {e}")))?;
        check_echo(status, &answer, body)
    }
}

/// A ureq agent configured like hydra-rs's own (keep-alive, up to 32 idle
/// connections per host, no redirects, HTTP errors as responses). Calls are
/// bounded either per phase (connect, send, receive: no extra work) or, with
/// `global_timeout`, by `timeout_global` as hydra-rs bounds them.
fn floor_agent(global_timeout: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections_per_host(32);
    let config = if global_timeout {
        config.timeout_global(Some(REQUEST_TIMEOUT))
    } else {
        config
            .timeout_connect(Some(REQUEST_TIMEOUT))
            .timeout_send_request(Some(REQUEST_TIMEOUT))
            .timeout_send_body(Some(REQUEST_TIMEOUT))
            .timeout_recv_response(Some(REQUEST_TIMEOUT))
            .timeout_recv_body(Some(REQUEST_TIMEOUT))
    };
    config.build().new_agent()
}

/// Status 200 and a Hydra envelope whose `result.body` is `sent`.
fn check_echo(status: u16, answer: &[u8], sent: &Value) -> Result<(), Failure> {
    let text = || String::from_utf8_lossy(answer).chars().take(200).collect::<String>();
    if status != 200 {
        return Err(Failure::WrongAnswer(format!("status {status}: {}", text())));
    }
    let envelope: Value = serde_json::from_slice(answer)
        .map_err(|e| Failure::WrongAnswer(format!("answer is not JSON ({e}): {}", text())))?;
    if envelope["statusCode"] != 200 || envelope["result"]["body"] != *sent {
        return Err(Failure::WrongAnswer(format!("wrong answer to {sent}: {}", text())));
    }
    Ok(())
}

/// Reads the server's connection counter and Redis's counters.
struct Probe {
    redis: Mutex<redis::Connection>,
    server: Hydra,
}

/// (server connections accepted, Redis counters) at one moment.
type Counters = (u64, RedisCounters);

impl Probe {
    fn counters(&self) -> redis::RedisResult<Counters> {
        let redis = RedisCounters::read(&mut self.redis.lock().unwrap_or_else(|p| p.into_inner()))?;
        Ok((self.server.http_stats().connections, redis))
    }

    fn add_since(&self, before: Counters, tally: &mut Tally) -> redis::RedisResult<()> {
        let after = self.counters()?;
        tally.connections += after.0 - before.0;
        tally.redis += after.1.since(before.1);
        Ok(())
    }
}

/// Requests one after another for `budget`, numbered from `first`; returns
/// when it stopped.
fn time_requests(caller: &dyn Caller, first: u64, budget: Duration, tally: &mut Tally) -> Instant {
    tally.time_for(
        budget,
        first,
        padded_body,
        |body| caller.call(body),
        |_, outcome| outcome,
    )
}

/// One round of one subject: [`sequential_round`] or [`threaded_round`].
type RoundFn = fn(&dyn Subject, &Probe, Duration, &mut Tally) -> BoxResult<()>;

/// One sequential round on a fresh caller: `ROUND_WARMUP` untimed requests,
/// then requests one at a time for `budget`.
fn sequential_round(subject: &dyn Subject, probe: &Probe, budget: Duration, tally: &mut Tally) -> BoxResult<()> {
    let caller = subject.open()?;
    tally.warm_up(0, ROUND_WARMUP, padded_body, |body| caller.call(body));
    let before = probe.counters()?;
    let started = Instant::now();
    let finished = time_requests(&*caller, 1_000_000, budget, tally);
    tally.latencies.add_wall(finished - started);
    Ok(probe.add_since(before, tally)?)
}

/// One concurrent round on a fresh caller shared by `THREADS` threads, each
/// warming up, then all doing sequential requests for `budget` from a common
/// start.
fn threaded_round(subject: &dyn Subject, probe: &Probe, budget: Duration, tally: &mut Tally) -> BoxResult<()> {
    let caller = subject.open()?;
    let caller = &*caller;
    let together = bench::run_together(
        THREADS,
        "bench-caller",
        || probe.counters(),
        |t, start| caller_thread(caller, t, start, budget),
    );
    probe.add_since(together.at_start?, tally)?;
    for mine in together.results {
        tally.merge(mine);
    }
    tally.latencies.add_wall(together.wall);
    Ok(())
}

/// One of the `THREADS` callers: warms up, waits at `start` with the others,
/// then requests one after another for `budget`. Returns what it collected
/// and when it finished.
fn caller_thread(caller: &dyn Caller, t: usize, start: &Barrier, budget: Duration) -> (Tally, Instant) {
    let mut mine = Tally::default();
    let base = (t as u64 + 1) * 1_000_000_000;
    mine.warm_up(base, ROUND_WARMUP, padded_body, |body| caller.call(body));
    start.wait();
    let finished = time_requests(caller, base + 1_000_000, budget, &mut mine);
    (mine, finished)
}

/// The server alone: `connections` threads, each with its own connection,
/// GETting `HELLO_PATH` for `budget` and checking every answer against
/// `expected`. Returns the tally (connections = connections opened) and the
/// server's count of accepted connections.
fn load_round(
    address: SocketAddr,
    connections: usize,
    keep_alive: bool,
    budget: Duration,
    expected: &[u8],
    probe: &Probe,
) -> BoxResult<(Tally, u64)> {
    let request = format!(
        "GET {HELLO_PATH} HTTP/1.1\r\nHost: {address}\r\n{}\r\n",
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    let before = probe.counters()?;
    let together = bench::run_together(
        connections,
        "bench-load",
        || (),
        |_, start| {
            start.wait();
            load_connection(address, &request, keep_alive, budget, expected)
        },
    );
    let server_connections = probe.counters()?.0 - before.0;
    let mut tally = Tally::default();
    for mine in together.results {
        tally.merge(mine);
    }
    tally.latencies.add_wall(together.wall);
    Ok((tally, server_connections))
}

/// One load connection's loop (reconnecting when the server closes).
fn load_connection(
    address: SocketAddr,
    request: &[u8],
    keep_alive: bool,
    budget: Duration,
    expected: &[u8],
) -> (Tally, Instant) {
    let mut mine = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buffer = Vec::with_capacity(4096);
    let until = Instant::now() + budget;
    while Instant::now() < until && mine.failures.no_answer() < LOAD_MAX_ERRORS {
        let t = Instant::now();
        let outcome = (|| -> Result<bool, Failure> {
            let conn = match &mut stream {
                Some(conn) => conn,
                None => {
                    let conn = connect(address).map_err(|e| Failure::NoAnswer(format!("connect: {e}")))?;
                    mine.connections += 1;
                    buffer.clear();
                    stream.insert(conn)
                }
            };
            conn.write_all(request)
                .map_err(|e| Failure::NoAnswer(format!("write: {e}")))?;
            read_response(conn, &mut buffer, expected)
        })();
        let elapsed = t.elapsed();
        match outcome {
            Ok(server_keeps) => {
                mine.latencies.record(elapsed);
                if !(keep_alive && server_keeps) {
                    stream = None;
                }
            }
            Err(failure) => {
                mine.failures.record(failure);
                stream = None;
            }
        }
    }
    (mine, Instant::now())
}

fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    Ok(stream)
}

/// Reads one response; checks status 200 and the body. Returns whether the
/// server keeps the connection open.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>, expected: &[u8]) -> Result<bool, Failure> {
    let mut chunk = [0u8; 8192];
    let mut read_more = |buffer: &mut Vec<u8>| -> Result<(), Failure> {
        match stream.read(&mut chunk) {
            Ok(0) => Err(Failure::NoAnswer("connection closed before a whole response".into())),
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(Failure::NoAnswer(format!("read: {e}"))),
        }
    };
    let (status, head_len, length, keeps) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buffer) {
            Ok(httparse::Status::Complete(head_len)) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let length = header("content-length")
                    .and_then(|l| l.trim().parse::<usize>().ok())
                    .ok_or_else(|| Failure::WrongAnswer("response without a content-length".into()))?;
                let keeps = !header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
                break (response.code.unwrap_or(0), head_len, length, keeps);
            }
            Ok(httparse::Status::Partial) => read_more(buffer)?,
            Err(e) => return Err(Failure::WrongAnswer(format!("malformed response: {e}"))),
        }
    };
    while buffer.len() < head_len + length {
        read_more(buffer)?;
    }
    let answer = &buffer[head_len..head_len + length];
    let outcome = if status != 200 || answer != expected {
        Err(Failure::WrongAnswer(format!(
            "status {status}: {}",
            String::from_utf8_lossy(answer).chars().take(200).collect::<String>()
        )))
    } else {
        Ok(keeps)
    };
    buffer.drain(..head_len + length);
    outcome
}

/// Runs `wrk` against `url` when it is installed; `None` when it is not.
fn run_wrk(url: &str) -> Option<Result<String, String>> {
    let spawned = Command::new("wrk")
        .args(["-t2", "-c64", "-d", wrk_duration(), "--timeout", "5s", "--latency", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot run wrk: {e}"))),
    };
    let deadline = Instant::now() + WRK_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Some(Err(format!("wrk did not finish within {WRK_DEADLINE:?}; killed")));
            }
            Err(e) => return Some(Err(format!("waiting for wrk failed: {e}"))),
        }
    }
    Some(match child.wait_with_output() {
        Ok(output) if output.status.success() => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        Ok(output) => Err(format!(
            "wrk failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("reading wrk's output failed: {e}")),
    })
}

fn main() -> ExitCode {
    env_logger::init();
    bench::exit_code("bench_http", run())
}

/// Returns `Ok(false)` when a request failed or an answer was wrong.
fn run() -> BoxResult<bool> {
    let began = Instant::now();
    let redis_server = RedisServer::start();
    let url = redis_server.url(DB);
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut raw)?;
    let version = bench::redis_version(&mut raw)?;

    let web = Hydra::init(
        Config::builder()
            .service_name(SERVICE)
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .build()?,
    )?;
    web.register_service()?;
    let routes = HttpRoutes::new()
        .post(ECHO_PATH, |_, req| match req.json() {
            Ok(body) => HttpResponse::send_response(200, json!({ "body": body })),
            Err(e) => HttpResponse::error(400, &e.to_string()),
        })
        .get(HELLO_PATH, |_, _| {
            HttpResponse::send_response(200, json!({"hello": "world"}))
        });
    let port = web.serve_http(routes)?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = Probe {
        redis: Mutex::new(raw),
        server: web.clone(),
    };

    // The expected GET answer, checked once as an envelope (the agent is
    // dropped at once, so that its idle connection does not hold a worker).
    let hello_url = format!("http://{address}{HELLO_PATH}");
    let expected_hello = {
        let mut response = floor_agent(false).get(&hello_url).call()?;
        let bytes = response.body_mut().read_to_vec()?;
        let envelope: Value = serde_json::from_slice(&bytes)?;
        if response.status() != 200 || envelope["statusCode"] != 200 || envelope["result"] != json!({"hello": "world"})
        {
            return Err(format!("GET {HELLO_PATH} answered {}: {envelope}", response.status()).into());
        }
        bytes
    };

    println!(
        "bench_http: redis-server {version} on 127.0.0.1:{} db {DB}; `{SERVICE}` serving on 127.0.0.1:{port} \
         in this process (default HttpSettings); body {} bytes; {} CPUs",
        redis_server.port(),
        padded_body(1_000_000).to_string().len(),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let (mut seq, mut threaded) = client_phase(&url, address, &probe)?;

    let mut loads = Vec::new();
    for (connections, keep_alive) in LOAD_MODES {
        let (tally, server_connections) =
            load_round(address, connections, keep_alive, load_budget(), &expected_hello, &probe)?;
        eprintln!(
            "  server alone, {connections} {} connections: {:.0} req/s",
            if keep_alive { "keep-alive" } else { "close" },
            tally.latencies.len() as f64 / tally.latencies.wall().as_secs_f64()
        );
        loads.push((connections, keep_alive, tally, server_connections));
    }
    eprintln!("  wrk, if installed ({})", wrk_duration());
    let before_wrk = web.http_stats();
    let wrk = run_wrk(&hello_url);
    let server_stats = web.http_stats();
    web.shutdown()?;

    print_client_report(&mut seq, &mut threaded);

    let mut table = stats_table("load", ["conns opened", "server accepted", "failed"]);
    for (connections, keep_alive, tally, server_connections) in &mut loads {
        let s = tally.latencies.summary();
        let load = if *keep_alive {
            "keep-alive"
        } else {
            "new conn per request"
        };
        table.row(stats_row(
            format!("{connections} conns, {load}"),
            &s,
            [
                tally.connections.to_string(),
                server_connections.to_string(),
                tally.failures.total().to_string(),
            ],
        ));
    }
    println!();
    println!("The server alone, `GET {HELLO_PATH}` ({:?} per load):", load_budget());
    table.print();
    println!();
    match wrk {
        None => println!("wrk: not installed (`which wrk` finds nothing); the table above is the equivalent."),
        Some(Err(e)) => println!("wrk: {e}"),
        Some(Ok(output)) => {
            println!("wrk -t2 -c64 -d{} --latency {hello_url}:", wrk_duration());
            println!();
            println!("```text");
            for line in output.lines().filter(|l| !l.trim().is_empty()) {
                println!("{line}");
            }
            println!("```");
            println!();
            println!(
                "during wrk the server accepted {} connections and answered {} requests",
                server_stats.connections - before_wrk.connections,
                server_stats.requests - before_wrk.requests
            );
        }
    }
    println!();
    println!(
        "server counters: connections {}, requests {}, rejected {}, panicked {}, overloaded {}, timed out {}; \
         whole run {:.1} s",
        server_stats.connections,
        server_stats.requests,
        server_stats.rejected,
        server_stats.panicked,
        server_stats.overloaded,
        server_stats.timed_out,
        began.elapsed().as_secs_f64(),
    );

    let mut ok = true;
    let client_tallies = seq
        .iter()
        .zip(SUBJECTS)
        .map(|(tally, name)| (format!("{name} sequential"), tally))
        .chain(
            threaded
                .iter()
                .zip(SUBJECTS)
                .map(|(tally, name)| (format!("{name} {THREADS} threads"), tally)),
        );
    let load_tallies = loads
        .iter()
        .map(|(c, k, tally, _)| (format!("server alone, {c} conns keep-alive={k}"), tally));
    for (name, tally) in client_tallies.chain(load_tallies) {
        let failures = &tally.failures;
        if failures.total() > 0 {
            ok = false;
            eprintln!(
                "ERROR {name}: {} failed and {} wrong answers; first: {:?}",
                failures.no_answer(),
                failures.wrong_answer(),
                failures.first()
            );
        }
    }
    if !ok {
        eprintln!("bench_http: some requests failed or got wrong answers (see above)");
    }
    Ok(ok)
}

/// The subjects, in table order: hydra-rs, the raw ureq floor, and raw ureq
/// bounded by `timeout_global` (a diagnostic).
const SUBJECTS: [&str; 3] = ["hydra-rs", "raw ureq", "ureq+global"];

/// hydra-rs against raw ureq: warm-up, sequential rounds, then
/// `THREADS`-thread rounds. Returns the tallies (in `SUBJECTS` order) of each
/// mode.
fn client_phase(redis_url: &str, address: SocketAddr, probe: &Probe) -> BoxResult<([Tally; 3], [Tally; 3])> {
    let hydra = HydraSubject {
        redis_url: redis_url.to_string(),
    };
    let floor = |global_timeout| UreqSubject {
        url: format!("http://{address}{ECHO_PATH}"),
        global_timeout,
    };
    let (floor, floor_global) = (floor(false), floor(true));
    let subjects: [&dyn Subject; 3] = [&hydra, &floor, &floor_global];
    let mut seq: [Tally; 3] = Default::default();
    let mut threaded: [Tally; 3] = Default::default();
    for (k, subject) in subjects.iter().enumerate() {
        eprintln!("  warming up {} ({} requests)", SUBJECTS[k], warmup());
        let caller = subject.open()?;
        seq[k].warm_up(0, warmup(), padded_body, |body| caller.call(body));
    }
    // Rotate which subject goes first, so drift falls on all alike.
    let threads_mode = format!("{THREADS} threads");
    let modes: [(&str, usize, Duration, RoundFn, &mut [Tally; 3]); 2] = [
        (
            "sequential",
            seq_rounds(),
            seq_round_budget(),
            sequential_round,
            &mut seq,
        ),
        (
            &threads_mode,
            thread_rounds(),
            thread_round_budget(),
            threaded_round,
            &mut threaded,
        ),
    ];
    for (mode, rounds, budget, run_round, tallies) in modes {
        for (round, k) in bench::round_robin(rounds, subjects.len()) {
            let mark = tallies[k].checkpoint();
            run_round(subjects[k], probe, budget, &mut tallies[k])?;
            eprintln!(
                "  {mode} round {}/{rounds}: {:<11} {:>6.0} req/s, {} new conns",
                round + 1,
                SUBJECTS[k],
                tallies[k].per_sec_since(mark),
                tallies[k].connections_since(mark)
            );
        }
    }
    Ok((seq, threaded))
}

/// The client or server-alone table: `label`; p50, p99, max, mean, req/s and
/// requests; then `more`.
fn stats_table(label: &str, more: [&str; 3]) -> Table {
    let stats = [label, "p50", "p99", "max", "mean", "req/s", "requests"];
    Table::new(&[&stats[..], &more[..]].concat())
}

/// A row of a [`stats_table`]: `label`; p50, p99, max, mean, req/s and requests;
/// then `more`.
fn stats_row(label: String, s: &Summary, more: [String; 3]) -> impl IntoIterator<Item = String> {
    let stats = [
        label,
        format_micros(s.p50),
        format_micros(s.p99),
        format_micros(s.max),
        format_micros(s.mean),
        format!("{:.0}", s.per_sec),
        s.count.to_string(),
    ];
    stats.into_iter().chain(more)
}

/// The client table (every subject, sequential and with `THREADS` threads),
/// then how hydra-rs compares with the floors in each mode.
fn print_client_report(seq: &mut [Tally; 3], threaded: &mut [Tally; 3]) {
    let labels = [
        "hydra-rs make_api_request",
        "raw ureq floor",
        "raw ureq + timeout_global (diagnostic)",
    ];
    let mut table = stats_table("", ["new conns", "Redis cmds/req", "failed"]);
    let mut comparisons = Vec::new();
    for (mode, tallies) in [
        ("sequential".to_string(), seq),
        (format!("{THREADS} threads"), threaded),
    ] {
        let summaries: [Summary; 3] = tallies.each_mut().map(|t| t.latencies.summary());
        for ((label, tally), s) in labels.iter().zip(tallies.iter()).zip(&summaries) {
            table.row(stats_row(
                format!("{label}, {mode}"),
                s,
                [
                    tally.connections.to_string(),
                    format!("{:.3}", tally.redis.commands_per(s.count)),
                    tally.failures.total().to_string(),
                ],
            ));
        }
        let [ours, floor, global] = summaries;
        let throughput = ours.per_sec / floor.per_sec;
        comparisons.push(format!(
            "{mode}: throughput {throughput:.2}× raw ureq (target ≥ {TARGET_THROUGHPUT}×) {}; p50 {:.2}×, p99 {:.2}× \
             raw ureq's; {:.2}× raw ureq + timeout_global",
            verdict(throughput >= TARGET_THROUGHPUT),
            ours.p50 / floor.p50,
            ours.p99 / floor.p99,
            ours.per_sec / global.per_sec,
        ));
    }
    table.print();
    println!();
    for line in comparisons {
        println!("{line}");
    }
}
