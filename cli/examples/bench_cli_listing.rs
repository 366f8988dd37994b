//! `hydra-cli services` and `hydra-cli nodes` on a big registry: 1,000
//! services and 10,000 `hydra:service:nodes` entries, half of them stale
//! (dead instances Node never removes), in one private Redis.
//!
//! Each row is the wall time of one whole run, measured the same way
//! several times (median, min, max):
//!
//! - the real `hydra-cli` binary, process start to exit (`services`,
//!   `services --json`, `nodes`, `nodes --json`; output to /dev/null);
//! - the floor: one raw `HGETALL hydra:service:nodes` on a fresh redis-rs
//!   connection in this process (what `nodes` must read at least), and, when
//!   `redis-cli` is installed, the same HGETALL as a process;
//! - Node hydra-cli's way of listing services (`SCAN MATCH *:service COUNT
//!   100` to completion, then `MULTI`/`GET` each/`EXEC`, the records parsed),
//!   measured the same way in this process on a fresh connection;
//! - real Node hydra 1.9.3's `getServices()` (what Node's hydra-cli 1.8
//!   `services` calls) timed around the call in a running Node process.
//!   Node's hydra-cli itself cannot be installed here: the npm registry
//!   answers 404 for `hydra-cli`.
//!
//! Target (issue 12): `hydra-cli services` and `nodes` ≤ 3× the raw HGETALL.
//! The program is a report: it exits 0 whether or not the target is met,
//! and non-zero only when a listing gives a wrong answer (counts of
//! services, entries, live and stale instances are checked).
//!
//! ```text
//! cargo build --release -p hydra-redis-cli
//! cargo run --release -p hydra-redis-cli --example bench_cli_listing
//! ```
//!
//! `HYDRA_BENCH_SMOKE=1`: 50 services, 500 entries, 3 runs each.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use hydra_testkit::bench::{self, Table, format_micros, verdict};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const DB: u8 = 15;
/// Instances per service; half live, half stale.
const INSTANCES_PER_SERVICE: usize = 10;
/// Routes per service.
const ROUTES_PER_SERVICE: usize = 4;
/// TTL of the synthetic presence and health keys: longer than the run.
const LIVE_TTL_SECS: u64 = 900;
const TARGET_RATIO: f64 = 3.0;

fn main() -> ExitCode {
    bench::exit_code("bench_cli_listing", run())
}

/// The `hydra-cli` binary of this program's profile:
/// `target/<profile>/examples/bench_cli_listing` → `target/<profile>/hydra-cli`.
fn cli_binary() -> BoxResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("hydra-cli"))
        .ok_or("cannot tell the target directory from this program's path")?;
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: build it first with `cargo build --release -p hydra-redis-cli` \
             (`cargo build -p hydra-redis-cli` for a debug run)",
            binary.display()
        )
        .into());
    }
    Ok(binary)
}

fn iso(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// Writes the registry in Node's formats, as Node services leave it.
fn fill(conn: &mut redis::Connection, services: usize) -> BoxResult<()> {
    let now = iso(SystemTime::now());
    let long_ago = iso(SystemTime::now() - Duration::from_secs(86_400));
    for s in 0..services {
        let name = format!("svc-{s:04}");
        let mut pipe = redis::pipe();
        pipe.set(
            format!("hydra:service:{name}:service"),
            json!({"serviceName": name, "type": "api", "registeredOn": long_ago}).to_string(),
        )
        .ignore();
        let routes: Vec<String> = (0..ROUTES_PER_SERVICE)
            .map(|r| format!("[get]/v1/{name}/r{r}"))
            .collect();
        pipe.sadd(format!("hydra:service:{name}:service:routes"), routes)
            .ignore();
        for i in 0..INSTANCES_PER_SERVICE {
            let id = format!("{s:016x}{i:016x}");
            let live = i % 2 == 0;
            let entry = json!({
                "serviceName": name, "serviceDescription": "bench", "version": "1.0.0", "instanceID": id,
                "updatedOn": if live { &now } else { &long_ago }, "processID": 1000 + i,
                "ip": "10.0.0.1", "port": 3000 + i, "hostName": "bench-host"
            });
            pipe.hset("hydra:service:nodes", &id, entry.to_string()).ignore();
            if live {
                pipe.set_ex(format!("hydra:service:{name}:{id}:presence"), &id, LIVE_TTL_SECS)
                    .ignore();
                pipe.set_ex(
                    format!("hydra:service:{name}:{id}:health"),
                    json!({"serviceName": name, "instanceID": id, "uptimeSeconds": 1}).to_string(),
                    LIVE_TTL_SECS,
                )
                .ignore();
            }
        }
        pipe.query::<()>(conn)?;
    }
    Ok(())
}

fn connect(url: &str) -> BoxResult<redis::Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(conn)
}

/// Wall times of `runs` calls (the first one, a warm-up, is not kept).
fn timed(runs: usize, mut once: impl FnMut() -> BoxResult<()>) -> BoxResult<Vec<Duration>> {
    once()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        once()?;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    Ok(times)
}

fn median(times: &[Duration]) -> Duration {
    times[times.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One run of the binary, output discarded; fails on a non-zero exit.
fn cli_run(binary: &Path, home: &Path, url: &str, args: &[&str]) -> BoxResult<()> {
    let status = Command::new(binary)
        .args(["--redis", url])
        .args(args)
        .env("HOME", home)
        .env_remove("HYDRA_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()?;
    if !status.success() {
        return Err(format!("hydra-cli {args:?} exited with {status}").into());
    }
    Ok(())
}

fn cli_json(binary: &Path, home: &Path, url: &str, args: &[&str]) -> BoxResult<Value> {
    let output = Command::new(binary)
        .args(["--redis", url])
        .args(args)
        .arg("--json")
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "hydra-cli {args:?} --json failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Node hydra-cli's `services`: `SCAN MATCH *:service COUNT 100` to the end,
/// then one `MULTI` of `GET`s, each record parsed.
fn node_way_services(url: &str) -> BoxResult<usize> {
    let mut conn = connect(url)?;
    let mut keys = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("*:service")
            .arg("COUNT")
            .arg(100)
            .query(&mut conn)?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in &keys {
        pipe.get(key);
    }
    let records: Vec<Option<String>> = pipe.query(&mut conn)?;
    let parsed = records
        .iter()
        .flatten()
        .filter(|text| serde_json::from_str::<Value>(text).is_ok_and(|v| v.get("serviceName").is_some()))
        .count();
    Ok(parsed)
}

fn raw_hgetall(url: &str) -> BoxResult<usize> {
    let mut conn = connect(url)?;
    let entries: Vec<(String, String)> = redis::cmd("HGETALL").arg("hydra:service:nodes").query(&mut conn)?;
    Ok(entries.len())
}

fn redis_cli_available() -> bool {
    Command::new("redis-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks the listings' answers against what was written.
fn check_answers(binary: &Path, home: &Path, url: &str, services: usize) -> BoxResult<Vec<String>> {
    let mut wrong = Vec::new();
    let entries = services * INSTANCES_PER_SERVICE;
    let live = entries / 2;
    let listed = cli_json(binary, home, url, &["services"])?;
    let list = listed["services"].as_array().cloned().unwrap_or_default();
    let live_sum: u64 = list.iter().filter_map(|s| s["live_instances"].as_u64()).sum();
    let routes_ok = list
        .iter()
        .all(|s| s["routes"].as_u64() == Some(ROUTES_PER_SERVICE as u64));
    if list.len() != services || live_sum != live as u64 || !routes_ok {
        wrong.push(format!(
            "services: {} services, {live_sum} live (expected {services}, {live}), routes right: {routes_ok}",
            list.len()
        ));
    }
    let nodes = cli_json(binary, home, url, &["nodes"])?;
    let counts = &nodes["counts"];
    let listed_nodes = nodes["nodes"].as_array().map_or(0, Vec::len);
    if listed_nodes != entries || counts["stale"].as_u64() != Some((entries - live) as u64) {
        wrong.push(format!(
            "nodes: {listed_nodes} entries, counts {counts} (expected {entries}, {} stale)",
            entries - live
        ));
    }
    Ok(wrong)
}

/// Node hydra 1.9.3's `getServices()` in a running Node process, timed
/// around the call; None when Node is not installed.
fn node_get_services(url: &str, runs: usize, services: usize) -> BoxResult<Option<Vec<Duration>>> {
    let node = match NodePeer::spawn() {
        Ok(node) => node,
        Err(e) => {
            eprintln!("bench_cli_listing: Node hydra not run ({e})");
            return Ok(None);
        }
    };
    let config = json!({"hydra": {"serviceName": "hydra-cli", "serviceIP": "", "servicePort": 0,
        "serviceType": "non", "redis": {"url": url}}});
    node.call("init", json!([config]))?;
    let times = timed(runs, || {
        let found = node.call_with_timeout("getServices", json!([]), Duration::from_secs(60))?;
        let n = found.as_array().map_or(0, Vec::len);
        if n != services {
            return Err(format!("Node getServices found {n} services, expected {services}").into());
        }
        Ok(())
    })?;
    Ok(Some(times))
}

fn run() -> BoxResult<bool> {
    let services = bench::scaled(1_000, 50);
    let runs = bench::scaled(15, 3);
    let binary = cli_binary()?;
    let server = RedisServer::start();
    let url = server.url(DB);
    let home = std::env::temp_dir().join(format!("bench_cli_listing-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    eprintln!(
        "bench_cli_listing: writing {services} services and {} nodes entries (half stale)…",
        services * INSTANCES_PER_SERVICE
    );
    let mut conn = connect(&url)?;
    fill(&mut conn, services)?;
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn)?;
    let redis_version = bench::redis_version(&mut conn)?;

    let wrong = check_answers(&binary, &home, &url, services)?;

    eprintln!("bench_cli_listing: timing ({runs} runs each)…");
    let floor = timed(runs, || raw_hgetall(&url).map(drop))?;
    let mut rows: Vec<(String, Vec<Duration>)> = vec![(
        "raw `HGETALL hydra:service:nodes` (redis-rs, fresh connection)".into(),
        floor.clone(),
    )];
    if redis_cli_available() {
        let port = server.port().to_string();
        let process = timed(runs, || {
            let status = Command::new("redis-cli")
                .args(["-p", &port, "-n", "15", "HGETALL", "hydra:service:nodes"])
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                return Err("redis-cli failed".into());
            }
            Ok(())
        })?;
        rows.push(("`redis-cli HGETALL hydra:service:nodes` (a process)".into(), process));
    }
    let mut cli_medians = Vec::new();
    for args in [
        &["services"][..],
        &["services", "--json"],
        &["nodes"],
        &["nodes", "--json"],
    ] {
        let times = timed(runs, || cli_run(&binary, &home, &url, args))?;
        cli_medians.push((args.join(" "), median(&times)));
        rows.push((format!("`hydra-cli {}` (process start to exit)", args.join(" ")), times));
    }
    let node_way = timed(runs, || {
        let n = node_way_services(&url)?;
        if n != services {
            return Err(format!("the SCAN way found {n} services, expected {services}").into());
        }
        Ok(())
    })?;
    rows.push((
        "Node's `services` way: SCAN `*:service` + MULTI GET (redis-rs, fresh connection)".into(),
        node_way,
    ));
    if let Some(times) = node_get_services(&url, runs, services)? {
        rows.push((
            "real Node hydra 1.9.3 `getServices()` (in a running Node, no start-up)".into(),
            times,
        ));
    }

    println!(
        "## hydra-cli listings: {services} services, {} nodes entries (half stale), {keys} keys in db {DB}, Redis {redis_version}, {runs} runs each",
        services * INSTANCES_PER_SERVICE
    );
    let floor_median = median(&floor);
    // A process floor too: starting any process costs the same to both.
    let process_floor = rows
        .iter()
        .find(|(what, _)| what.starts_with("`redis-cli"))
        .map(|(_, times)| median(times));
    let mut table = Table::new(&[
        "what (wall time of one whole run)",
        "median",
        "min",
        "max",
        "× raw HGETALL",
        "× redis-cli HGETALL",
    ]);
    for (what, times) in &rows {
        table.row([
            what.clone(),
            format_micros(micros(median(times))),
            format_micros(micros(times[0])),
            format_micros(micros(times[times.len() - 1])),
            format!("{:.1}×", micros(median(times)) / micros(floor_median)),
            process_floor.map_or("-".to_string(), |p| {
                format!("{:.1}×", micros(median(times)) / micros(p))
            }),
        ]);
    }
    table.print();
    println!();
    for (command, time) in &cli_medians {
        let ratio = micros(*time) / micros(floor_median);
        println!(
            "- `hydra-cli {command}`: {ratio:.1}× the raw HGETALL (target ≤ {TARGET_RATIO}×) {}",
            verdict(ratio <= TARGET_RATIO)
        );
    }
    println!("- Node's hydra-cli 1.8 itself: not run (the npm registry answers 404 for `hydra-cli`).");
    for line in &wrong {
        println!("- WRONG ANSWER: {line}");
    }
    let _ = std::fs::remove_dir_all(&home);
    Ok(wrong.is_empty())
}
