//! FFI benchmark: request–reply throughput against the Rust echo service
//! (`examples/echo.rs`, its own process) from C (through `libhydra_ffi`) and
//! from Python (through `hydra_rs`, ctypes), side by side with the Rust
//! client measured in the same run.
//!
//! ```text
//! cargo run --release --example bench_ffi
//! ```
//!
//! Targets: C ≥ 0.9× and Python ≥ 0.5× the Rust client's throughput. The
//! program is a report: it exits 0 whether or not the targets are met, and
//! non-zero only when a reply was missing or wrong.
//!
//! It builds what it needs with the cargo that built it, in its own profile
//! (`libhydra_ffi` and the echo example), compiles `client.c` with `cc`, and
//! starts a private `redis-server` on a free loopback port (db 15). Then:
//!
//! - **echo**: `examples/echo.rs` as `bench-echo` (4 message workers, its
//!   default), replying `{"echo": body}`;
//! - **Rust**: a registered `Hydra` in this process calling `request`;
//! - **C**: `client.c`, a process calling `hydra_request` (and checking the
//!   reply with `hydra_json_get`);
//! - **Python**: `client.py`, a process calling `Hydra.request` (which
//!   encodes and decodes the JSON with the `json` module).
//!
//! Every request body is `{"n": <i>, "pad": <64 bytes>}`; every reply must be
//! `{"echo": <that body>}`. Each client warms up with 300 requests, then runs
//! sequentially (1 thread) and with 8 threads in flight, in rounds whose
//! order rotates (Rust, C, Python; C, Python, Rust; ...) so the noise of a
//! shared machine falls on all alike. Req/s is completed requests divided by
//! the wall time of the rounds; latency percentiles are over every request.
//!
//! With `HYDRA_BENCH_SMOKE=1` (as `scripts/test` runs it, in a debug build)
//! every step runs once, briefly: 20 warm-up requests, one round of 200 ms per
//! client and mode. Wrong or missing replies still fail it; its figures mean
//! nothing.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hydra::{Config, Hydra};
use hydra_testkit::RedisServer;
use hydra_testkit::bench;
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const DB: u8 = 15;
const ECHO_SERVICE: &str = "bench-echo";
const WARMUP: usize = 300;
const ROUNDS: usize = 4;
const ROUND_BUDGET: Duration = Duration::from_millis(1500);
/// The same in a smoke run (see [`bench::smoke`]).
const SMOKE_WARMUP: usize = 20;
const SMOKE_ROUNDS: usize = 1;
const SMOKE_ROUND_BUDGET: Duration = Duration::from_millis(200);
/// Threads in the concurrent measurement.
const IN_FLIGHT: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const TARGET_C: f64 = 0.9;
const TARGET_PYTHON: f64 = 0.5;

/// What one round of one client gave.
#[derive(Default)]
struct Round {
    requests: u64,
    elapsed: Duration,
    errors: u64,
    latencies_us: Vec<u32>,
}

impl Round {
    fn merge(&mut self, other: Round) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
    }

    fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i]
    }
}

trait Client {
    fn run(&mut self, threads: usize, budget: Duration) -> BoxResult<Round>;
}

fn body(n: u64) -> Value {
    json!({"n": n, "pad": "x".repeat(64)})
}

/// The Rust client, in this process.
struct RustClient {
    hydra: Hydra,
}

impl RustClient {
    fn request_once(&self, n: u64) -> bool {
        let sent = body(n);
        let message = self
            .hydra
            .create_umf_message(&format!("{ECHO_SERVICE}:/"), sent.clone());
        match self.hydra.request(&message, REQUEST_TIMEOUT) {
            Ok(reply) if reply.body == json!({"echo": sent}) => true,
            Ok(reply) => {
                eprintln!("rust client: wrong reply {:?}", reply.body);
                false
            }
            Err(e) => {
                eprintln!("rust client: request: {e}");
                false
            }
        }
    }
}

impl Client for RustClient {
    fn run(&mut self, threads: usize, budget: Duration) -> BoxResult<Round> {
        let start_line = Barrier::new(threads + 1);
        let this = &*self;
        let (rounds, elapsed) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let start_line = &start_line;
                    scope.spawn(move || {
                        let mut round = Round::default();
                        let mut n = (t as u64) << 40;
                        start_line.wait();
                        let deadline = Instant::now() + budget;
                        loop {
                            let begin = Instant::now();
                            if begin >= deadline {
                                break;
                            }
                            if !this.request_once(n) {
                                round.errors += 1;
                            }
                            n += 1;
                            round.requests += 1;
                            round.latencies_us.push(begin.elapsed().as_micros() as u32);
                        }
                        round
                    })
                })
                .collect();
            start_line.wait();
            let started = Instant::now();
            let rounds: Vec<Round> = workers.into_iter().map(|w| w.join().expect("worker")).collect();
            (rounds, started.elapsed())
        });
        let mut total = Round::default();
        for r in rounds {
            total.merge(r);
        }
        total.elapsed = elapsed;
        Ok(total)
    }
}

/// A client process (C or Python) speaking `client.c`'s line protocol.
struct ProcessClient {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ProcessClient {
    fn start(name: &'static str, command: &mut Command) -> BoxResult<ProcessClient> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the {name} client {command:?}: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err(format!("the {name} client did not start (said {line:?})").into());
        }
        Ok(ProcessClient {
            name,
            child,
            stdin: Some(stdin),
            stdout,
        })
    }
}

impl Client for ProcessClient {
    fn run(&mut self, threads: usize, budget: Duration) -> BoxResult<Round> {
        let stdin = self.stdin.as_mut().expect("open until drop");
        writeln!(stdin, "run {threads} {}", budget.as_millis())?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("done") {
            return Err(format!("the {} client answered {line:?}", self.name).into());
        }
        let mut number = || -> BoxResult<u64> { Ok(words.next().ok_or("short answer")?.parse::<u64>()?) };
        let requests = number()?;
        let elapsed = Duration::from_micros(number()?);
        let errors = number()?;
        let latencies_us = words.map(|w| w.parse::<u32>()).collect::<Result<Vec<_>, _>>()?;
        Ok(Round {
            requests,
            elapsed,
            errors,
            latencies_us,
        })
    }
}

impl Drop for ProcessClient {
    fn drop(&mut self) {
        // EOF on stdin ends the client's loop; it frees its handle and exits.
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The echo example, stopped with SIGTERM on drop (its stdout is read to
/// the end: it reports its counters when it stops).
struct Echo {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Echo {
    fn start(binary: &Path, url: &str) -> BoxResult<Echo> {
        let mut child = Command::new(binary)
            .args(["--name", ECHO_SERVICE])
            .env("HYDRA_REDIS_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the echo example {}: {e}", binary.display()))?;
        let mut echo = Echo {
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
        };
        let mut ready = String::new();
        echo.stdout.read_line(&mut ready)?;
        if !ready.starts_with("ready ") {
            return Err(format!("the echo example did not start (said {ready:?})").into());
        }
        Ok(echo)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        eprint!("  echo: {rest}");
        let _ = self.child.wait();
    }
}

/// `target/<profile>`: this program runs from `target/<profile>/examples`.
fn profile_dir() -> BoxResult<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find target/<profile>")?
        .to_path_buf())
}

fn run_tool(command: &mut Command) -> BoxResult<()> {
    let status = command.status().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{command:?} failed ({status})").into());
    }
    Ok(())
}

/// Builds the library and the echo example in this program's profile, and
/// compiles the C client against them.
fn build(root: &Path, profile_dir: &Path) -> BoxResult<PathBuf> {
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    for args in [
        &["build", "--quiet", "-p", "hydra-ffi"][..],
        &["build", "--quiet", "-p", "hydra-redis", "--example", "echo"][..],
    ] {
        let mut command = Command::new(&cargo);
        command.args(args).current_dir(root);
        if release {
            command.arg("--release");
        }
        run_tool(&mut command)?;
    }
    let exe = std::env::temp_dir().join(format!("hydra-bench-ffi-client-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run_tool(
        Command::new(cc)
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg("-I")
            .arg(root.join("include"))
            .arg(root.join("examples/bench_ffi/client.c"))
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(profile_dir)
            .arg("-lhydra_ffi")
            .arg(format!("-Wl,-rpath,{}", profile_dir.display()))
            .arg("-lpthread"),
    )?;
    Ok(exe)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_ffi: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<bool> {
    let warmup = bench::scaled(WARMUP, SMOKE_WARMUP);
    let rounds = bench::scaled(ROUNDS, SMOKE_ROUNDS);
    let round_budget = bench::scaled(ROUND_BUDGET, SMOKE_ROUND_BUDGET);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile_dir = profile_dir()?;
    let c_client = build(&root, &profile_dir)?;
    let library = profile_dir.join("libhydra_ffi.so");

    let server = RedisServer::start();
    let url = server.url(DB);
    let echo = Echo::start(&profile_dir.join("examples/echo"), &url)?;

    let rust = Hydra::init(
        Config::builder()
            .service_name("bench-rs")
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .build()?,
    )?;
    rust.register_service()?;
    let rust = RustClient { hydra: rust };
    for n in 0..warmup as u64 {
        if !rust.request_once(n) {
            return Err("the Rust client's warm-up failed".into());
        }
    }
    let c = ProcessClient::start(
        "C",
        Command::new(&c_client)
            .env("HYDRA_REDIS_URL", &url)
            .env("BENCH_SERVICE", ECHO_SERVICE)
            .env("BENCH_WARMUP", warmup.to_string()),
    )?;
    let python = ProcessClient::start(
        "Python",
        Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(root.join("examples/bench_ffi/client.py"))
            .env("HYDRA_REDIS_URL", &url)
            .env("BENCH_SERVICE", ECHO_SERVICE)
            .env("HYDRA_RS_LIBRARY", &library)
            .env("BENCH_WARMUP", warmup.to_string())
            .env("PYTHONPATH", root.join("ffi/python")),
    )?;
    let _ = std::fs::remove_file(&c_client);

    let profile = profile_dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    println!(
        "bench_ffi: redis-server on 127.0.0.1:{} db {DB}; echo example ({profile}) with 4 message workers; \
         clients: Rust (in process), C and Python (processes) on libhydra_ffi ({profile}); \
         {rounds} rounds of {} ms per client and mode, order rotating",
        server.port(),
        round_budget.as_millis()
    );

    let mut clients: [(&str, Box<dyn Client>); 3] = [
        ("Rust", Box::new(rust)),
        ("C", Box::new(c)),
        ("Python", Box::new(python)),
    ];
    let modes = [("sequential", 1), ("8 in flight", IN_FLIGHT)];
    let mut results: Vec<Vec<Round>> = modes
        .iter()
        .map(|_| clients.iter().map(|_| Round::default()).collect())
        .collect();
    for (m, (mode, threads)) in modes.iter().enumerate() {
        for round in 0..rounds {
            for i in 0..clients.len() {
                let k = (i + round) % clients.len();
                let result = clients[k].1.run(*threads, round_budget)?;
                eprintln!(
                    "  {mode} round {}/{rounds}: {:<6} {:>6.0} req/s",
                    round + 1,
                    clients[k].0,
                    result.per_sec()
                );
                results[m][k].merge(result);
            }
        }
    }
    drop(clients);
    drop(echo);

    println!();
    println!("| mode | client | req/s | × Rust | p50 | p99 | requests | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut ok = true;
    let mut verdicts = Vec::new();
    for (m, (mode, _)) in modes.iter().enumerate() {
        let rust_rate = results[m][0].per_sec();
        for (k, name) in ["Rust", "C", "Python"].iter().enumerate() {
            let r = &mut results[m][k];
            let ratio = r.per_sec() / rust_rate;
            println!(
                "| {mode} | {name} | {:.0} | {ratio:.2}× | {} µs | {} µs | {} | {} |",
                r.per_sec(),
                r.percentile(0.5),
                r.percentile(0.99),
                r.requests,
                r.errors
            );
            if r.errors > 0 {
                ok = false;
            }
            let target = match k {
                1 => TARGET_C,
                2 => TARGET_PYTHON,
                _ => continue,
            };
            verdicts.push(format!(
                "{name} {mode}: {ratio:.2}× Rust (target ≥ {target}×) — {}",
                if ratio >= target { "met" } else { "NOT met" }
            ));
        }
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    if !ok {
        eprintln!("bench_ffi: some replies were missing or wrong (see above)");
    }
    Ok(ok)
}
