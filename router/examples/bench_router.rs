//! Router benchmark: `GET` through `hydra-router` to a Rust echo service with
//! 1 and 16 keep-alive connections, against the same calls made directly to
//! the echo in the same run; then the router's memory, idle and under the
//! 16-connection load.
//!
//! ```text
//! cargo build --release -p hydra-router --bins --example bench_router
//! target/release/examples/bench_router
//! ```
//!
//! Targets (hydra-router issue): at 16 connections, router throughput
//! ≥ 0.5× direct and router p99 ≤ 3× direct; router RSS ≤ 15 MB idle and
//! ≤ 40 MB under that load. The program is a report: it exits 0 whether or
//! not the targets are met, and non-zero only when a request failed or an
//! answer was wrong (status, body). `HYDRA_BENCH_SMOKE=1` runs every step
//! briefly (one round per subject: 300 ms, or `wrk`'s shortest, 1 s).
//!
//! Three kinds of processes, as in production:
//!
//! - **echo**: this program started again as `bench_router --serve-echo
//!   <redis-url>`, a Hydra service `bench-echo` (default
//!   [`HttpSettings`](hydra::HttpSettings)) registered in a private
//!   `redis-server` and serving `GET /v1/bench-echo/hello` with the envelope
//!   of `{"hello": "world"}`. It stops when its stdin closes, so it never
//!   outlives this program.
//! - **router**: the `hydra-router` binary next to this program's
//!   `examples/` directory (the same profile), started with a config file
//!   naming the same Redis and its default settings (`HYDRA_ROUTER_*`
//!   variables in the environment still apply, e.g. `HYDRA_ROUTER_WORKERS`).
//! - **load generator**: `wrk` when it is on the `PATH`
//!   (`wrk -t<min(conns, CPUs)> -c<conns> -d<s> --latency`), else this
//!   program's own: one thread per keep-alive connection, each writing a
//!   request and reading the whole answer before the next, checking the
//!   status and every byte of the body. `HYDRA_BENCH_LOADGEN=own` picks the
//!   own generator even when `wrk` is installed. Before the timed rounds, the
//!   own generator warms both paths up with 1 and 16 connections and checks
//!   every answer, so wrong answers are caught with either generator (`wrk`
//!   itself counts non-2xx answers and socket errors, both counted as
//!   failures here).
//!
//! Rounds alternate direct and router (`bench::round_robin`), so the drift of
//! a shared machine falls on both alike. With the own generator, percentiles
//! are over every request of every round; with `wrk`, they are the median of
//! the rounds' percentiles (`wrk` prints no samples). req/s is requests over
//! the wall time of the timed rounds. CPU per request is what each process
//! spent (user + system, from `/proc/<pid>/stat`, 10 ms ticks) during the
//! timed rounds, divided by the requests: the load generator, the router and
//! the echo share the machine's CPUs, which is the honest setup for a
//! router in front of a service on one host, and it means the router's
//! figures include its competition for CPU with the other two.
//!
//! Memory: `VmRSS` and thread count from `/proc/<router>/status` once the
//! router answered its first forwarded call (idle), then sampled every 20 ms
//! during the router's 16-connection rounds (loaded: the largest sample),
//! and `VmHWM` (peak RSS) at the end of those rounds.

#[path = "support/process.rs"]
mod support;

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, bounded};
use hydra::{Config, HttpResponse, HttpRoutes, Hydra};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Failure, Failures, Latencies, Table, format_micros, verdict};
use serde_json::{Value, json};

/// The echo service's name and route.
const ECHO_SERVICE: &str = "bench-echo";
const HELLO_PATH: &str = "/v1/bench-echo/hello";
/// The child mode that serves the echo.
const SERVE_ECHO_FLAG: &str = "--serve-echo";
/// Keep-alive connections of each measurement; the targets are at the last.
const CONNECTIONS: [usize; 2] = [1, 16];
/// Targets at 16 connections: router/direct throughput and p99.
const TARGET_THROUGHPUT: f64 = 0.5;
const TARGET_P99: f64 = 3.0;
/// Targets for the router's RSS, MB.
const TARGET_IDLE_MB: f64 = 15.0;
const TARGET_LOADED_MB: f64 = 40.0;
/// Deadlines: a child's start, one request, `wrk` beyond its run time.
const START_DEADLINE: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const WRK_GRACE: Duration = Duration::from_secs(20);
/// How often the router's memory is sampled under load.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// A load connection gives up after this many failures.
const LOAD_MAX_ERRORS: usize = 50;

fn rounds() -> usize {
    bench::scaled(3, 1)
}
/// Each round of one subject with the own generator.
fn round_budget() -> Duration {
    bench::scaled(Duration::from_secs(3), Duration::from_millis(300))
}
/// Each round of one subject with `wrk` (whole seconds; 1 s is its least).
fn wrk_seconds() -> u64 {
    bench::scaled(3, 1)
}
/// The checked warm-up of each path and connection count.
fn warmup_budget() -> Duration {
    bench::scaled(Duration::from_millis(500), Duration::from_millis(100))
}

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> ExitCode {
    if let Some(code) = child_mode(SERVE_ECHO_FLAG, serve_echo) {
        return code;
    }
    bench::exit_code("bench_router", run())
}

// --- The echo (child mode) ---------------------------------------------------

/// The echo service: registers `bench-echo` in `redis_url`, serves
/// `HELLO_PATH`, prints `ready <port>`, and stops when stdin closes.
fn serve_echo(redis_url: &str) -> BoxResult<()> {
    let hydra = Hydra::init(
        Config::builder()
            .service_name(ECHO_SERVICE)
            .service_ip("127.0.0.1")
            .redis_url(redis_url)
            .build()?,
    )?;
    hydra.register_service()?;
    let port = hydra.serve_http(HttpRoutes::new().get(HELLO_PATH, |_, _| {
        HttpResponse::send_response(200, json!({"hello": "world"}))
    }))?;
    println!("ready {port}");
    io::stdout().flush()?;
    // EOF when the benchmark closes the pipe or dies.
    io::copy(&mut io::stdin(), &mut io::sink())?;
    hydra.shutdown()?;
    Ok(())
}

// --- Child processes -----------------------------------------------------------

use support::{Process, RouterChild, child_mode, start_echo_child, start_router};

// --- /proc readings -------------------------------------------------------------

/// A process's memory and threads from `/proc/<pid>/status`.
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    rss_kb: u64,
    peak_rss_kb: u64,
    threads: u64,
}

impl Memory {
    fn read(pid: u32) -> io::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            rss_kb: field("VmRSS"),
            peak_rss_kb: field("VmHWM"),
            threads: field("Threads"),
        })
    }
}

fn megabytes(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Samples a process's memory every `SAMPLE_EVERY` until stopped; keeps the
/// largest RSS and thread count seen.
struct MemorySampler {
    stop: crossbeam_channel::Sender<()>,
    thread: thread::JoinHandle<Memory>,
}

impl MemorySampler {
    fn start(pid: u32) -> MemorySampler {
        let (stop, stopped) = bounded::<()>(1);
        let thread = thread::spawn(move || {
            let mut largest = Memory::default();
            loop {
                if let Ok(now) = Memory::read(pid) {
                    largest.rss_kb = largest.rss_kb.max(now.rss_kb);
                    largest.peak_rss_kb = largest.peak_rss_kb.max(now.peak_rss_kb);
                    largest.threads = largest.threads.max(now.threads);
                }
                match stopped.recv_timeout(SAMPLE_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return largest,
                }
            }
        });
        MemorySampler { stop, thread }
    }

    fn finish(self) -> Memory {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// CPU ticks (user + system) of the router, the echo and the load generator.
#[derive(Debug, Default, Clone, Copy)]
struct CpuTicks {
    router: u64,
    echo: u64,
    generator: u64,
}

impl CpuTicks {
    fn since(self, before: CpuTicks) -> CpuTicks {
        CpuTicks {
            router: self.router.saturating_sub(before.router),
            echo: self.echo.saturating_sub(before.echo),
            generator: self.generator.saturating_sub(before.generator),
        }
    }

    fn add(&mut self, other: CpuTicks) {
        self.router += other.router;
        self.echo += other.echo;
        self.generator += other.generator;
    }
}

/// `(utime + stime, cutime + cstime)` of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses: state is [0],
    // utime [11], stime [12], cutime [13], cstime [14].
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    match fields[..] {
        [utime, stime, cutime, cstime] => Ok((utime + stime, cutime + cstime)),
        _ => Err(io::Error::other(format!("unexpected /proc/{pid}/stat"))),
    }
}

/// Reads the three processes' CPU time. The load generator is this process
/// (own generator) or `wrk`, a waited-for child of it, counted in this
/// process's children's time once it exits.
struct CpuProbe {
    router: u32,
    echo: u32,
}

impl CpuProbe {
    fn read(&self) -> CpuTicks {
        let own = cpu_ticks("self").unwrap_or_default();
        CpuTicks {
            router: cpu_ticks(&self.router.to_string()).unwrap_or_default().0,
            echo: cpu_ticks(&self.echo.to_string()).unwrap_or_default().0,
            generator: own.0 + own.1,
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot tell).
fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

// --- The own load generator -------------------------------------------------------

/// One path to the echo: its address and the exact answer body it gives.
struct Target {
    label: &'static str,
    address: SocketAddr,
    expected: Vec<u8>,
}

impl Target {
    fn url(&self) -> String {
        format!("http://{}{HELLO_PATH}", self.address)
    }

    fn request(&self) -> Vec<u8> {
        format!("GET {HELLO_PATH} HTTP/1.1\r\nHost: {}\r\n\r\n", self.address).into_bytes()
    }
}

/// What one load (all its connections) collected.
#[derive(Default)]
struct LoadResult {
    latencies: Latencies,
    failures: Failures,
}

/// `connections` threads, each with its own keep-alive connection, GETting
/// the target for `budget` and checking every answer.
fn own_load(target: &Target, connections: usize, budget: Duration) -> LoadResult {
    let request = target.request();
    let together = bench::run_together(
        connections,
        "bench-load",
        || (),
        |_, start| {
            start.wait();
            load_connection(target, &request, budget)
        },
    );
    let mut result = LoadResult::default();
    for (latencies, failures) in together.results {
        result.latencies.merge(latencies);
        result.failures.merge(failures);
    }
    result.latencies.add_wall(together.wall);
    result
}

/// One load connection's loop (reconnecting after a failure).
fn load_connection(target: &Target, request: &[u8], budget: Duration) -> ((Latencies, Failures), Instant) {
    let mut latencies = Latencies::new();
    let mut failures = Failures::default();
    let mut stream: Option<TcpStream> = None;
    let mut buffer = Vec::with_capacity(4096);
    let until = Instant::now() + budget;
    while Instant::now() < until && failures.no_answer() < LOAD_MAX_ERRORS {
        let t = Instant::now();
        let outcome = (|| -> Result<bool, Failure> {
            let conn = match &mut stream {
                Some(conn) => conn,
                None => {
                    let conn = connect(target.address).map_err(|e| Failure::NoAnswer(format!("connect: {e}")))?;
                    buffer.clear();
                    stream.insert(conn)
                }
            };
            conn.write_all(request)
                .map_err(|e| Failure::NoAnswer(format!("write: {e}")))?;
            read_response(conn, &mut buffer, &target.expected)
        })();
        let elapsed = t.elapsed();
        match outcome {
            Ok(keeps) => {
                latencies.record(elapsed);
                if !keeps {
                    stream = None;
                }
            }
            Err(failure) => {
                failures.record(failure);
                stream = None;
            }
        }
    }
    ((latencies, failures), Instant::now())
}

fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    Ok(stream)
}

/// Reads one response; checks status 200 and that the body is `expected`
/// byte for byte. Returns whether the server keeps the connection open.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>, expected: &[u8]) -> Result<bool, Failure> {
    let (status, head_len, length, keeps) = read_head(stream, buffer)?;
    while buffer.len() < head_len + length {
        read_more(stream, buffer)?;
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

/// Reads until `buffer` holds a whole response head: (status, head length,
/// content-length, keep-alive).
fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(u16, usize, usize, bool), Failure> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
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
                return Ok((response.code.unwrap_or(0), head_len, length, keeps));
            }
            Ok(httparse::Status::Partial) => read_more(stream, buffer)?,
            Err(e) => return Err(Failure::WrongAnswer(format!("malformed response: {e}"))),
        }
    }
}

fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), Failure> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) => Err(Failure::NoAnswer("connection closed before a whole response".into())),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(Failure::NoAnswer(format!("read: {e}"))),
    }
}

/// One GET on a fresh connection: (status, body).
fn get_once(address: SocketAddr) -> Result<(u16, Vec<u8>), Failure> {
    let mut stream = connect(address).map_err(|e| Failure::NoAnswer(format!("connect: {e}")))?;
    let request = format!("GET {HELLO_PATH} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| Failure::NoAnswer(format!("write: {e}")))?;
    let mut buffer = Vec::new();
    let (status, head_len, length, _) = read_head(&mut stream, &mut buffer)?;
    while buffer.len() < head_len + length {
        read_more(&mut stream, &mut buffer)?;
    }
    Ok((status, buffer[head_len..head_len + length].to_vec()))
}

/// GETs the hello route at `address` until it answers 200 (the router may not
/// have read the echo's routes yet) or `START_DEADLINE` passes; checks the
/// answer is the envelope of `{"hello": "world"}` and returns its bytes.
fn expected_answer(label: &str, address: SocketAddr) -> BoxResult<Vec<u8>> {
    let deadline = Instant::now() + START_DEADLINE;
    let (status, body) = loop {
        match get_once(address) {
            Ok((200, body)) => break (200, body),
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok((status, body)) => break (status, body),
            Err(e) => return Err(format!("{label}: GET {HELLO_PATH} failed: {e:?}").into()),
        }
    };
    let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != 200 || envelope["statusCode"] != 200 || envelope["result"] != json!({"hello": "world"}) {
        return Err(format!(
            "{label}: GET {HELLO_PATH} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    Ok(body)
}

// --- wrk ---------------------------------------------------------------------------

/// What one `wrk` run printed.
#[derive(Debug, Clone, Copy, Default)]
struct WrkRun {
    requests: u64,
    seconds: f64,
    p50: f64,
    p99: f64,
    max: f64,
    non_2xx: u64,
    socket_errors: u64,
}

/// Runs `wrk` for `seconds` with `connections` against `url`.
fn run_wrk(url: &str, connections: usize, seconds: u64) -> BoxResult<WrkRun> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let threads = connections.min(cpus).max(1);
    let mut child = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "5s", "--latency", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(seconds) + WRK_GRACE;
    loop {
        match child.try_wait()? {
            Some(_) => break,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("wrk did not finish within {seconds} s + {WRK_GRACE:?}; killed").into());
            }
        }
    }
    let output = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}): {} {}",
            output.status,
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}").into())
}

/// Reads `wrk --latency`'s summary.
fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    let mut seen = (false, false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["Latency", _avg, _stdev, max, ..] => run.max = wrk_micros(max)?,
            ["50%", value] => {
                run.p50 = wrk_micros(value)?;
                seen.0 = true;
            }
            ["99%", value] => {
                run.p99 = wrk_micros(value)?;
                seen.1 = true;
            }
            [requests, "requests", "in", duration, ..] => {
                run.requests = requests.parse().ok()?;
                run.seconds = wrk_micros(duration.trim_end_matches(','))? / 1e6;
                seen.2 = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => run.non_2xx = count.parse().ok()?,
            ["Socket", "errors:", ..] => {
                run.socket_errors = words
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    (seen == (true, true, true)).then_some(run)
}

/// A `wrk` duration (`61.00us`, `1.20ms`, `2.00s`, `1.00m`) in µs.
fn wrk_micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(number * scale)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

// --- Measurements ------------------------------------------------------------------

/// Which load generator the run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Generator {
    Wrk,
    Own,
}

impl Generator {
    fn choose() -> Generator {
        let forced_own = std::env::var("HYDRA_BENCH_LOADGEN").is_ok_and(|v| v == "own");
        let wrk_runs = Command::new("wrk")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if wrk_runs && !forced_own {
            Generator::Wrk
        } else {
            Generator::Own
        }
    }
}

/// Everything measured for one path at one connection count.
#[derive(Default)]
struct Measured {
    /// Own generator: every request's latency, and the rounds' wall time.
    latencies: Latencies,
    /// `wrk`: each round's summary.
    wrk_runs: Vec<WrkRun>,
    failures: Failures,
    cpu: CpuTicks,
}

/// Throughput and latency of a [`Measured`], µs.
#[derive(Clone, Copy)]
struct Figures {
    requests: u64,
    per_sec: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Measured {
    fn figures(&mut self) -> Figures {
        if self.wrk_runs.is_empty() {
            let s = self.latencies.summary();
            return Figures {
                requests: s.count as u64,
                per_sec: s.per_sec,
                p50: s.p50,
                p99: s.p99,
                max: s.max,
            };
        }
        let requests: u64 = self.wrk_runs.iter().map(|r| r.requests).sum();
        let seconds: f64 = self.wrk_runs.iter().map(|r| r.seconds).sum();
        let mut p50: Vec<f64> = self.wrk_runs.iter().map(|r| r.p50).collect();
        let mut p99: Vec<f64> = self.wrk_runs.iter().map(|r| r.p99).collect();
        Figures {
            requests,
            per_sec: requests as f64 / seconds,
            p50: median(&mut p50),
            p99: median(&mut p99),
            max: self.wrk_runs.iter().map(|r| r.max).fold(0.0, f64::max),
        }
    }

    /// One timed round; returns its req/s.
    fn round(&mut self, generator: Generator, target: &Target, connections: usize, cpu: &CpuProbe) -> BoxResult<f64> {
        let before = cpu.read();
        let per_sec = match generator {
            Generator::Own => {
                let mut load = own_load(target, connections, round_budget());
                let per_sec = load.latencies.len() as f64 / load.latencies.wall().as_secs_f64();
                self.latencies.add_wall(load.latencies.wall());
                self.latencies.merge(std::mem::take(&mut load.latencies));
                self.failures.merge(load.failures);
                per_sec
            }
            Generator::Wrk => {
                let run = run_wrk(&target.url(), connections, wrk_seconds())?;
                for _ in 0..run.non_2xx {
                    self.failures
                        .record(Failure::WrongAnswer("wrk: a non-2xx or 3xx answer".into()));
                }
                for _ in 0..run.socket_errors {
                    self.failures.record(Failure::NoAnswer(
                        "wrk: a socket error (connect, read, write, timeout)".into(),
                    ));
                }
                self.wrk_runs.push(run);
                run.requests as f64 / run.seconds
            }
        };
        self.cpu.add(cpu.read().since(before));
        Ok(per_sec)
    }
}

/// Router memory readings.
struct MemoryReport {
    idle: Memory,
    loaded: Memory,
}

fn run() -> BoxResult<bool> {
    let began = Instant::now();
    let generator = Generator::choose();
    let redis_server = RedisServer::start();
    let redis_url = redis_server.url(0);
    let mut raw = redis::Client::open(redis_url.as_str())?.get_connection()?;
    let redis_version = bench::redis_version(&mut raw)?;
    drop(raw);

    let (mut echo, echo_port) = start_echo_child(SERVE_ECHO_FLAG, &redis_url)?;
    let echo_port: u16 = echo_port.parse()?;
    let RouterChild {
        process: mut router,
        port: router_port,
        binary: router_binary,
        ..
    } = start_router(&redis_url)?;

    let direct_address = SocketAddr::from(([127, 0, 0, 1], echo_port));
    let router_address = SocketAddr::from(([127, 0, 0, 1], router_port));
    let targets = [
        Target {
            label: "direct",
            address: direct_address,
            expected: expected_answer("direct", direct_address)?,
        },
        Target {
            label: "router",
            address: router_address,
            expected: expected_answer("router", router_address)
                .map_err(|e| format!("{e}\nrouter stderr:\n{}", router.stderr_tail()))?,
        },
    ];
    let idle = Memory::read(router.pid())?;

    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench_router: redis-server {redis_version} on 127.0.0.1:{}; echo `{ECHO_SERVICE}` (pid {}) on port \
         {echo_port}; {} (pid {}) on port {router_port}; load generator: {}; {cpus} CPUs, load average {}",
        redis_server.port(),
        echo.pid(),
        router_binary.display(),
        router.pid(),
        match generator {
            Generator::Wrk => "wrk (installed)",
            Generator::Own => "own (keep-alive TcpStream threads)",
        },
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    );

    let outcome = measure(generator, &targets, &router, &echo, idle);
    router.stop(true);
    echo.stop(false);
    let Outcome {
        mut measured,
        memory,
        warmup_failures,
    } = outcome.map_err(|e| {
        format!(
            "{e}\nrouter stderr (last lines):\n{}\necho stderr (last lines):\n{}",
            router.stderr_tail(),
            echo.stderr_tail()
        )
    })?;
    report(generator, &mut measured, &memory, clock_ticks_per_sec());
    println!();
    println!("whole run {:.1} s", began.elapsed().as_secs_f64());

    let mut ok = true;
    for (name, failures) in warmup_failures.iter().map(|(n, f)| (n.clone(), f)).chain(
        measured
            .iter()
            .flat_map(|per_target| per_target.iter())
            .map(|(name, m)| (name.clone(), &m.failures)),
    ) {
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
        eprintln!("bench_router: some requests failed or got wrong answers (see above)");
    }
    Ok(ok)
}

/// Per connection count, per target (direct, router): label and measurement.
type AllMeasured = Vec<Vec<(String, Measured)>>;

/// What [`measure`] collected.
struct Outcome {
    measured: AllMeasured,
    memory: MemoryReport,
    /// The warm-up loads' failures, by label.
    warmup_failures: Vec<(String, Failures)>,
}

/// The checked warm-up, then the timed rounds.
fn measure(
    generator: Generator,
    targets: &[Target; 2],
    router: &Process,
    echo: &Process,
    idle: Memory,
) -> BoxResult<Outcome> {
    let mut warmup_failures = Vec::new();
    for connections in CONNECTIONS {
        for target in targets {
            let load = own_load(target, connections, warmup_budget());
            eprintln!(
                "  warm-up {} {connections} conns: {} requests checked",
                target.label,
                load.latencies.len()
            );
            warmup_failures.push((format!("warm-up {} {connections} conns", target.label), load.failures));
        }
    }
    let cpu = CpuProbe {
        router: router.pid(),
        echo: echo.pid(),
    };
    let mut all = Vec::new();
    let mut loaded = Memory::default();
    for connections in CONNECTIONS {
        let mut measured: Vec<(String, Measured)> = targets
            .iter()
            .map(|t| (format!("{} {connections} conns", t.label), Measured::default()))
            .collect();
        for (round, k) in bench::round_robin(rounds(), targets.len()) {
            let sample = (targets[k].label == "router" && connections == *CONNECTIONS.last().unwrap_or(&0))
                .then(|| MemorySampler::start(router.pid()));
            let per_sec = measured[k].1.round(generator, &targets[k], connections, &cpu)?;
            if let Some(sampler) = sample {
                let seen = sampler.finish();
                loaded.rss_kb = loaded.rss_kb.max(seen.rss_kb);
                loaded.peak_rss_kb = loaded.peak_rss_kb.max(seen.peak_rss_kb);
                loaded.threads = loaded.threads.max(seen.threads);
            }
            eprintln!(
                "  round {}/{}: {:<6} {connections:>2} conns {per_sec:>7.0} req/s",
                round + 1,
                rounds(),
                targets[k].label
            );
        }
        all.push(measured);
    }
    Ok(Outcome {
        measured: all,
        memory: MemoryReport { idle, loaded },
        warmup_failures,
    })
}

/// Prints the tables: the measurements, the comparisons with their targets,
/// and the router's memory.
fn report(generator: Generator, measured: &mut AllMeasured, memory: &MemoryReport, ticks_per_sec: f64) {
    let per_request =
        |ticks: u64, requests: u64| format_micros(ticks as f64 / ticks_per_sec * 1e6 / requests.max(1) as f64);
    let mut table = Table::new(&[
        "GET /v1/bench-echo/hello",
        "conns",
        "req/s",
        "p50",
        "p99",
        "max",
        "requests",
        "failed",
        "CPU/req router",
        "CPU/req echo",
        "CPU/req load gen",
    ]);
    let mut comparisons = Table::new(&[
        "conns",
        "router/direct req/s",
        "target",
        "router/direct p99",
        "target",
        "router − direct p50",
        "CPU/req, all 3 processes",
        "direct/router CPU",
    ]);
    for (connections, per_target) in CONNECTIONS.iter().zip(measured.iter_mut()) {
        let mut figures = Vec::new();
        for (label, m) in per_target.iter_mut() {
            let f = m.figures();
            table.row([
                label.split(' ').next().unwrap_or_default().to_string(),
                connections.to_string(),
                format!("{:.0}", f.per_sec),
                format_micros(f.p50),
                format_micros(f.p99),
                format_micros(f.max),
                f.requests.to_string(),
                m.failures.total().to_string(),
                if label.starts_with("router") {
                    per_request(m.cpu.router, f.requests)
                } else {
                    "—".to_string()
                },
                per_request(m.cpu.echo, f.requests),
                per_request(m.cpu.generator, f.requests),
            ]);
            let all = m.cpu.router + m.cpu.echo + m.cpu.generator;
            figures.push((f, all as f64 / ticks_per_sec * 1e6 / f.requests.max(1) as f64));
        }
        let [(direct, direct_cpu), (routed, routed_cpu)] = &figures[..] else {
            continue;
        };
        let throughput = routed.per_sec / direct.per_sec;
        let p99 = routed.p99 / direct.p99;
        let targeted = *connections == *CONNECTIONS.last().unwrap_or(&0);
        comparisons.row([
            connections.to_string(),
            format!("{throughput:.2}×"),
            if targeted {
                format!("≥ {TARGET_THROUGHPUT}× {}", verdict(throughput >= TARGET_THROUGHPUT))
            } else {
                "—".to_string()
            },
            format!("{p99:.2}×"),
            if targeted {
                format!("≤ {TARGET_P99}× {}", verdict(p99 <= TARGET_P99))
            } else {
                "—".to_string()
            },
            format_micros(routed.p50 - direct.p50),
            format!("{} → {}", format_micros(*direct_cpu), format_micros(*routed_cpu)),
            format!("{:.2}×", direct_cpu / routed_cpu),
        ]);
    }
    println!();
    println!(
        "Through the router and directly to the echo ({}; {} round(s) of {} per row, direct and router \
         alternating):",
        match generator {
            Generator::Wrk => "load generator: wrk; p50/p99 = median of the rounds'",
            Generator::Own => "load generator: own, every answer checked; p50/p99 over every request",
        },
        rounds(),
        match generator {
            Generator::Wrk => format!("{} s", wrk_seconds()),
            Generator::Own => format!("{:?}", round_budget()),
        },
    );
    table.print();
    comparisons.print();
    let mut memory_table = Table::new(&["router", "VmRSS", "target", "threads"]);
    let idle_mb = megabytes(memory.idle.rss_kb);
    let loaded_mb = megabytes(memory.loaded.rss_kb);
    let peak_mb = megabytes(memory.loaded.peak_rss_kb);
    memory_table.row([
        "idle (started, one call forwarded)".to_string(),
        format!("{idle_mb:.1} MB"),
        format!("≤ {TARGET_IDLE_MB} MB {}", verdict(idle_mb <= TARGET_IDLE_MB)),
        memory.idle.threads.to_string(),
    ]);
    memory_table.row([
        format!(
            "under {} conns (largest of samples every {SAMPLE_EVERY:?})",
            CONNECTIONS.last().unwrap_or(&0)
        ),
        format!("{loaded_mb:.1} MB"),
        format!("≤ {TARGET_LOADED_MB} MB {}", verdict(loaded_mb <= TARGET_LOADED_MB)),
        memory.loaded.threads.to_string(),
    ]);
    memory_table.row([
        "peak (VmHWM) after the load".to_string(),
        format!("{peak_mb:.1} MB"),
        format!("≤ {TARGET_LOADED_MB} MB {}", verdict(peak_mb <= TARGET_LOADED_MB)),
        String::new(),
    ]);
    memory_table.print();
    println!();
    println!(
        "The load generator, the router and the echo are separate processes sharing this machine's {} CPUs \
         (as a router in front of a service on one host does); CPU/req is each process's user + system time \
         during the rounds per request. When the load saturates the CPUs, throughput is set by the CPU all three \
         spend per request, so `direct/router CPU` is the throughput ratio this machine allows: the router path \
         adds a whole HTTP server and client hop (two more sockets) to the echo's work.",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summaries_are_read() {
        let text = "Running 2s test @ http://127.0.0.1:1/x\n  1 threads and 1 connections\n  Thread Stats   Avg      \
                    Stdev     Max   +/- Stdev\n    Latency    61.00us   20.00us   1.20ms   90.00%\n    Req/Sec    \
                    15.00k     1.00k   17.00k    70.00%\n  Latency Distribution\n     50%   55.00us\n     75%   \
                    60.00us\n     90%   70.00us\n     99%  120.00us\n  30000 requests in 2.00s, 5.00MB read\n  \
                    Non-2xx or 3xx responses: 5\n  Socket errors: connect 0, read 1, write 0, timeout 2\n\
                    Requests/sec:  15000.00\nTransfer/sec:      2.50MB\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!((run.requests, run.non_2xx, run.socket_errors), (30000, 5, 3));
        assert!((run.seconds - 2.0).abs() < 1e-9 && (run.p50 - 55.0).abs() < 1e-9);
        assert!((run.p99 - 120.0).abs() < 1e-9 && (run.max - 1200.0).abs() < 1e-9);
        assert!(parse_wrk("nothing").is_none());
    }
}
