//! Footprint benchmark: RSS, threads and Redis commands per second of one idle
//! registered service, with a raw redis-rs connection as the floor, and Node
//! hydra 1.9.3 alongside when it is installed (`interop/node_modules`).
//!
//! ```text
//! cargo run --release --example bench_footprint
//! ```
//!
//! Target: ≤ 10 MB RSS (Node hydra's own health record shows ~97 MB).
//!
//! Each subject is a separate process talking to a private `redis-server`
//! (db 15) that nobody else uses: the `idle_service` example (built next to
//! this program with `cargo build --example idle_service` if needed), then
//! `idle_service --raw`, then `node interop/peer.js`. Each one runs alone: it
//! gets `SETTLE` to start up, then Redis's `INFO commandstats` is read at the
//! start and end of a `WINDOW` of idling (our own `INFO` call is subtracted),
//! then `/proc/<pid>/status` is sampled. Finally each is shut down and its
//! presence key must be gone.
//!
//! MB here are MiB, as `/proc` counts them (kB / 1024).
//!
//! With `HYDRA_BENCH_SMOKE=1` (as `scripts/test` runs it) every step runs with
//! a short settle time and window; its figures mean nothing.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hydra_testkit::bench::{self, Align, Table, verdict};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

const DB: u8 = 15;
/// Time after "ready" before the measurement window opens.
const SETTLE: Duration = Duration::from_secs(2);
/// Measurement window: two health ticks (every 5 s) fall inside it.
const WINDOW: Duration = Duration::from_secs(10);
/// The same in a smoke run (see [`bench::smoke`]).
const SMOKE_SETTLE: Duration = Duration::from_millis(200);
const SMOKE_WINDOW: Duration = Duration::from_secs(1);
/// How long a subject gets to say "ready" and, later, to exit.
const START_DEADLINE: Duration = Duration::from_secs(20);
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
const RUST_SERVICE: &str = "idle-service";
const NODE_SERVICE: &str = "node-idle";
const TARGET_RSS_MB: f64 = 10.0;

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// `/proc/<pid>/status` at one moment, and the names of its threads.
struct ProcSample {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    thread_names: Vec<String>,
}

/// What `observe` saw of one subject.
struct Observed {
    proc: ProcSample,
    max_rss_kb: u64,
    calls: BTreeMap<String, u64>,
    /// Actual time between the two `INFO commandstats` reads.
    window: Duration,
    connections: usize,
}

impl Measurement {
    fn new(label: &str, observed: Observed, health_rss: Option<u64>, shutdown: String) -> Measurement {
        Measurement {
            label: label.to_string(),
            proc: observed.proc,
            max_rss_kb: observed.max_rss_kb,
            calls: observed.calls,
            window: observed.window,
            connections: observed.connections,
            health_rss,
            shutdown,
        }
    }
}

/// One row of the report.
struct Measurement {
    label: String,
    proc: ProcSample,
    /// Largest VmRSS seen during the window.
    max_rss_kb: u64,
    /// Per-command calls during the window.
    calls: BTreeMap<String, u64>,
    window: Duration,
    /// Client connections it holds to Redis.
    connections: usize,
    /// `memory.rss` of its own health record, when it writes one.
    health_rss: Option<u64>,
    /// What happened at shutdown.
    shutdown: String,
}

impl Measurement {
    fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    fn calls_per_sec(&self) -> f64 {
        self.total_calls() as f64 / self.window.as_secs_f64()
    }
}

fn main() -> ExitCode {
    env_logger::init();
    bench::exit_code("bench_footprint", run().map(|()| true))
}

fn run() -> BoxResult<()> {
    let server = RedisServer::start();
    let url = server.url(DB);
    let mut redis = redis::Client::open(url.as_str())?.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut redis)?;
    let idle_service = idle_service_binary()?;
    eprintln!(
        "bench_footprint: redis-server on 127.0.0.1:{}, subject {}",
        server.port(),
        idle_service.display()
    );

    let mut rows = vec![
        measure_rust(&idle_service, &url, &mut redis, false)?,
        measure_rust(&idle_service, &url, &mut redis, true)?,
    ];
    match node_available() {
        Ok(()) => match measure_node(&url, &mut redis) {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("  Node hydra skipped: {e}"),
        },
        Err(why) => eprintln!("  Node hydra skipped: {why}"),
    }
    print_report(&rows);
    Ok(())
}

/// The `idle_service` example next to this executable, (re)built with the same
/// profile when cargo is at hand (a no-op when it is up to date).
fn idle_service_binary() -> BoxResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("current executable has no directory")?;
    let binary = dir.join(format!("idle_service{}", std::env::consts::EXE_SUFFIX));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", "idle_service"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    eprintln!("bench_footprint: building the idle_service example (no-op when up to date)");
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) if binary.is_file() => {
            eprintln!("  cargo build failed ({status}); using the existing binary")
        }
        Err(e) if binary.is_file() => {
            eprintln!("  cannot run cargo ({e}); using the existing binary")
        }
        Ok(status) => return Err(format!("cargo build --example idle_service: {status}").into()),
        Err(e) => return Err(format!("cannot run cargo to build idle_service: {e}").into()),
    }
    if !binary.is_file() {
        return Err(format!(
            "{} not found; build it with `cargo build --release --example idle_service`",
            binary.display()
        )
        .into());
    }
    Ok(binary)
}

/// Runs `idle_service` (or `idle_service --raw`), measures it and shuts it down.
fn measure_rust(binary: &Path, url: &str, redis: &mut redis::Connection, raw: bool) -> BoxResult<Measurement> {
    let label = if raw {
        "raw redis-rs connection (floor)"
    } else {
        "hydra-rs idle registered service"
    };
    eprintln!("  measuring: {label}");
    let mut command = Command::new(binary);
    if raw {
        command.arg("--raw");
    }
    let mut child = command
        .env("HYDRA_REDIS_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take();
    let lines = read_lines(&mut child)?;
    let ready = match lines.recv_timeout(START_DEADLINE) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{label}: no \"ready\" line within {START_DEADLINE:?}").into());
        }
    };
    let instance_id = ready
        .strip_prefix("ready ")
        .ok_or_else(|| format!("{label}: unexpected first line {ready:?}"))?
        .to_string();
    let pid = child.id();

    let observed = match observe(pid, redis) {
        Ok(observed) => observed,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let health_rss = if raw {
        None
    } else {
        health_rss(redis, RUST_SERVICE, &instance_id)?
    };

    // Closing stdin is the shutdown request.
    let stopping = Instant::now();
    drop(stdin);
    let status = wait_with_deadline(&mut child, EXIT_DEADLINE)?;
    let took = stopping.elapsed();
    let said_stopped = lines.recv_timeout(Duration::from_secs(1)).is_ok_and(|l| l == "stopped");
    let mut shutdown = format!(
        "exit {} in {} ms{}",
        status.map_or("killed at the deadline".to_string(), |s| s
            .code()
            .map_or(s.to_string(), |c| c.to_string())),
        took.as_millis(),
        if said_stopped { "" } else { ", no \"stopped\" line" }
    );
    if !raw {
        shutdown.push_str(&registration_left(redis, RUST_SERVICE, &instance_id)?);
    }
    Ok(Measurement::new(label, observed, health_rss, shutdown))
}

/// Node hydra 1.9.3 through `interop/peer.js`.
fn measure_node(url: &str, redis: &mut redis::Connection) -> BoxResult<Measurement> {
    let label = "Node hydra 1.9.3 (node interop/peer.js)";
    eprintln!("  measuring: {label}");
    let peer = NodePeer::spawn()?;
    let config = json!({"hydra": {
        "serviceName": NODE_SERVICE,
        "serviceIP": "127.0.0.1",
        "servicePort": 0,
        "redis": {"url": url},
    }});
    peer.call("init", json!([config]))?;
    peer.call("registerService", json!([]))?;
    let instance_id = match peer.call("getInstanceID", json!([]))? {
        Value::String(id) => id,
        other => return Err(format!("getInstanceID returned {other}").into()),
    };
    let observed = observe(peer.pid(), redis)?;
    let health_rss = health_rss(redis, NODE_SERVICE, &instance_id)?;
    let stopping = Instant::now();
    peer.call("shutdown", json!([]))?;
    drop(peer); // closes stdin; peer.js exits
    let mut shutdown = format!("hydra.shutdown() in {} ms", stopping.elapsed().as_millis());
    shutdown.push_str(&registration_left(redis, NODE_SERVICE, &instance_id)?);
    Ok(Measurement::new(label, observed, health_rss, shutdown))
}

fn node_available() -> Result<(), String> {
    let dir = NodePeer::interop_dir();
    if !dir.join("node_modules/hydra/package.json").is_file() {
        return Err(format!("{} has no node_modules/hydra", dir.display()));
    }
    match Command::new("node").arg("--version").stdout(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err("`node` is not installed".into()),
    }
}

/// Lets the subject settle, then counts its Redis commands over `WINDOW` and
/// samples its memory and threads at the end.
fn observe(pid: u32, redis: &mut redis::Connection) -> BoxResult<Observed> {
    std::thread::sleep(bench::scaled(SETTLE, SMOKE_SETTLE));
    let window = bench::scaled(WINDOW, SMOKE_WINDOW);
    let before = commandstats(redis)?;
    let start = Instant::now();
    let mut max_rss_kb = 0;
    while start.elapsed() < window {
        std::thread::sleep((window - start.elapsed()).min(Duration::from_secs(1)));
        max_rss_kb = max_rss_kb.max(proc_sample(pid)?.rss_kb);
    }
    let after = commandstats(redis)?;
    let window = start.elapsed();
    let proc = proc_sample(pid)?;
    let mut calls = BTreeMap::new();
    for (name, n) in after {
        let mut delta = n - before.get(&name).copied().unwrap_or(0);
        if name == "info" {
            delta = delta.saturating_sub(1); // our first snapshot
        }
        if delta > 0 {
            calls.insert(name, delta);
        }
    }
    let connections = client_count(redis)?;
    Ok(Observed {
        max_rss_kb: max_rss_kb.max(proc.rss_kb),
        proc,
        calls,
        window,
        connections,
    })
}

/// `INFO commandstats` as command → calls.
fn commandstats(redis: &mut redis::Connection) -> BoxResult<BTreeMap<String, u64>> {
    let text: String = redis::cmd("INFO").arg("commandstats").query(redis)?;
    let mut stats = BTreeMap::new();
    for line in text.lines() {
        let Some((name, fields)) = line.strip_prefix("cmdstat_").and_then(|rest| rest.split_once(':')) else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("unexpected commandstats line {line:?}"))?;
        stats.insert(name.to_string(), calls);
    }
    Ok(stats)
}

/// Client connections other than ours.
fn client_count(redis: &mut redis::Connection) -> BoxResult<usize> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(redis)?;
    Ok(list.lines().count().saturating_sub(1))
}

fn proc_sample(pid: u32) -> BoxResult<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> BoxResult<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status").into())
    };
    let mut thread_names = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
                thread_names.push(comm.trim().to_string());
            }
        }
    }
    thread_names.sort();
    Ok(ProcSample {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
        threads: field("Threads:")?,
        thread_names,
    })
}

/// `memory.rss` from the instance's health record (written every 5 s; Node's
/// expires after 3 s, so wait for the next one if it is not there).
fn health_rss(redis: &mut redis::Connection, service: &str, instance_id: &str) -> BoxResult<Option<u64>> {
    let key = hydra::keys::health(service, instance_id);
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let text: Option<String> = redis::cmd("GET").arg(&key).query(redis)?;
        if let Some(text) = text {
            let health: Value = serde_json::from_str(&text)?;
            return Ok(health.pointer("/memory/rss").and_then(Value::as_u64));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the presence key and the `nodes` entry are gone after shutdown.
fn registration_left(redis: &mut redis::Connection, service: &str, instance_id: &str) -> BoxResult<String> {
    let presence: bool = redis::cmd("EXISTS")
        .arg(hydra::keys::presence(service, instance_id))
        .query(redis)?;
    let node: bool = redis::cmd("HEXISTS")
        .arg(hydra::keys::NODES)
        .arg(instance_id)
        .query(redis)?;
    Ok(format!(
        "; presence key {}; nodes entry {}",
        if presence { "STILL THERE" } else { "removed" },
        if node { "left behind" } else { "removed" }
    ))
}

/// The child's stdout, line by line, on a channel.
fn read_lines(child: &mut Child) -> BoxResult<Receiver<String>> {
    let stdout = child.stdout.take().ok_or("child stdout not captured")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new().name("bench-stdout".into()).spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}

/// Waits for the child to exit; kills it after `deadline` (returns `None`).
fn wait_with_deadline(child: &mut Child, deadline: Duration) -> BoxResult<Option<std::process::ExitStatus>> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn print_report(rows: &[Measurement]) {
    let mut table = Table::new(&[
        "process",
        "RSS (MB)",
        "peak RSS",
        "threads",
        "Redis cmds/s",
        "Redis conns",
    ]);
    for r in rows {
        table.row([
            r.label.clone(),
            mb(r.max_rss_kb),
            mb(r.proc.hwm_kb),
            r.proc.threads.to_string(),
            format!("{:.1}", r.calls_per_sec()),
            r.connections.to_string(),
        ]);
    }
    table.print();
    println!();
    println!(
        "RSS = largest VmRSS sampled each second of the {}-s window; peak = VmHWM.",
        bench::scaled(WINDOW, SMOKE_WINDOW).as_secs()
    );
    println!("target ≤ {TARGET_RSS_MB:.0} MB RSS; Node hydra ~97 MB (from its health record)");
    if let Some(ours) = rows.first() {
        let rss_mb = ours.max_rss_kb as f64 / 1024.0;
        println!("hydra-rs idle RSS: {rss_mb:.1} MB {}", verdict(rss_mb <= TARGET_RSS_MB));
    }
    let window = format!(
        "Redis commands in the {}-s window",
        bench::scaled(WINDOW, SMOKE_WINDOW).as_secs()
    );
    let mut table = Table::new(&[
        "process",
        &window,
        "threads (names)",
        "health record memory.rss",
        "shutdown",
    ])
    .aligned(&[Align::Left, Align::Left, Align::Left, Align::Right, Align::Left]);
    for r in rows {
        let calls = if r.calls.is_empty() {
            "none".to_string()
        } else {
            r.calls
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let health = r
            .health_rss
            .map_or("—".to_string(), |b| format!("{:.1} MB", b as f64 / 1_048_576.0));
        table.row([
            r.label.clone(),
            calls,
            thread_summary(&r.proc.thread_names),
            health,
            r.shutdown.clone(),
        ]);
    }
    table.print();
}

/// `name ×count` for each distinct thread name.
fn thread_summary(names: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for name in names {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(name, n)| {
            if *n == 1 {
                name.to_string()
            } else {
                format!("{name} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
