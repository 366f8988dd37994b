//! Discovery benchmark, two tables in one run.
//!
//! 1. Dead instances: `get_service_presence` with 0 and 200,000 dead entries
//!    in `hydra:service:nodes` (Node never removes its entries, so they pile
//!    up), both long dead (prunable) and recently dead (not yet prunable):
//!    the first lookup (which walks the hash in batches), then p50/p99, and
//!    the longest Redis block (the slowest command in `SLOWLOG`, and the worst
//!    round trip of a `PING` prober running alongside), next to the previous
//!    lookup (one Lua script reading the whole hash) measured the same way.
//! 2. Unrelated keys: `get_service_presence` latency with 10 services × 10
//!    instances and 0 / 10k / 100k unrelated keys in the database, side by side
//!    with Node hydra's way of doing it (`SCAN MATCH *:<svc>:*:presence COUNT
//!    100` to completion, then `MULTI` / `HGET hydra:service:nodes <id>`… /
//!    `EXEC`), and two floors measured with raw redis-rs in the same run: a
//!    plain `PING` round trip, and `HGETALL hydra:service:nodes` (what the
//!    previous lookup script read inside Redis).
//!
//! ```text
//! cargo run --release --example bench_discovery
//! ```
//!
//! Targets: with 200k dead entries, lookups as fast as with none (p50 ≤ 1.5×)
//! and Redis never blocked for more than a few milliseconds; hydra issue
//! #192: ours flat (p50 at 100k unrelated keys ≤ 1.5× p50 at 0 keys) and ≥ 50×
//! faster than SCAN at 100k keys. The program is a report: it exits 0 whether
//! or not the targets are met, and non-zero only when an approach finds other
//! instances than the expected ones.
//!
//! `HYDRA_BENCH_SMOKE=1` runs every step with small counts (2,000 dead
//! entries, up to 5,000 unrelated keys) and short windows.
//!
//! It starts its own `redis-server`s on free loopback ports and uses db 15.
//! Instance records are written directly in Node's format (presence key with a
//! long TTL plus the `hydra:service:nodes` entry), so that 100 heartbeat threads
//! do not disturb the measurement; one instance of the measured service is a
//! real registered `Hydra`, to show that a real registration is found too.

use std::collections::BTreeSet;
use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hydra::{Config, Hydra};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Align, Latencies, Summary, Table, format_micros, verdict};
use serde_json::{Value, json};

const DB: u8 = 15;
const SERVICES: usize = 10;
const INSTANCES_PER_SERVICE: usize = 10;
/// The service looked up; it gets `INSTANCES_PER_SERVICE - 1` synthetic
/// instances plus one real registered `Hydra`.
const MEASURED: &str = "svc-3";
/// TTL of the synthetic presence keys: longer than the whole run.
const SYNTHETIC_TTL_SECS: u64 = 600;
const FILL_LEVELS: [usize; 3] = [0, 10_000, 100_000];
const SMOKE_FILL_LEVELS: [usize; 3] = [0, 1_000, 5_000];
const FILL_CHUNK: usize = 10_000;
const DEAD_ENTRIES: usize = 200_000;
const SMOKE_DEAD_ENTRIES: usize = 2_000;
/// Commands slower than this are logged by Redis (`slowlog-log-slower-than`).
const SLOWLOG_THRESHOLD_US: u64 = 200;

/// The lookup hydra-rs used before the per-service index: one script that
/// reads the whole `nodes` hash (kept here as the "before" figure).
const WHOLE_HASH_LOOKUP_LUA: &str = r#"
local needle = '"serviceName":"' .. ARGV[2] .. '"'
local entries = redis.call('HGETALL', KEYS[1])
local found = {}
for i = 1, #entries, 2 do
  local json = entries[i + 1]
  if string.find(json, needle, 1, true) then
    local presence = ARGV[1] .. ':' .. ARGV[2] .. ':' .. entries[i] .. ':presence'
    if redis.call('EXISTS', presence) == 1 then
      found[#found + 1] = json
    end
  end
end
return found
"#;
/// Node's `KEYS_PER_SCAN`.
const SCAN_COUNT: usize = 100;

/// Iterations of one measurement: at most `max` after `warmup` calls, stopping
/// early (but after at least `min`) when `budget` has been spent.
#[derive(Clone, Copy)]
struct Plan {
    warmup: usize,
    min: usize,
    max: usize,
    budget: Duration,
}

const PING_PLAN: Plan = Plan {
    warmup: 200,
    min: 200,
    max: 2000,
    budget: Duration::from_secs(2),
};
const OURS_PLAN: Plan = Plan {
    warmup: 200,
    min: 200,
    max: 2000,
    budget: Duration::from_secs(5),
};
const SCAN_PLAN: Plan = Plan {
    warmup: 3,
    min: 30,
    max: 2000,
    budget: Duration::from_secs(8),
};
/// The whole-hash script at 200k entries takes about half a second a call.
const WHOLE_HASH_PLAN: Plan = Plan {
    warmup: 1,
    min: 5,
    max: 2000,
    budget: Duration::from_secs(4),
};
const SMOKE_PLAN: Plan = Plan {
    warmup: 2,
    min: 5,
    max: 50,
    budget: Duration::from_millis(100),
};

/// `plan`, or a few calls in a smoke run.
fn plan(full: Plan) -> Plan {
    bench::scaled(full, SMOKE_PLAN)
}

type BoxResult<T> = Result<T, Box<dyn Error>>;

struct Row {
    unrelated: usize,
    dbsize: u64,
    ping: Summary,
    hgetall: Summary,
    ours: Summary,
    scan: Summary,
    scan_round_trips: usize,
}

fn main() -> ExitCode {
    env_logger::init();
    bench::exit_code("bench_discovery", run())
}

/// Returns `Ok(false)` when an approach finds other instances than expected.
fn run() -> BoxResult<bool> {
    let dead_ok = run_dead_entries()?;
    let unrelated_ok = run_unrelated_keys()?;
    Ok(dead_ok && unrelated_ok)
}

/// One real, registered instance of the measured service.
fn register_measured(url: &str) -> BoxResult<Hydra> {
    let real = Hydra::init(
        Config::builder()
            .service_name(MEASURED)
            .service_ip("127.0.0.1")
            .redis_url(url)
            .build()?,
    )?;
    real.register_service()?;
    Ok(real)
}

/// The measuring handle: not registered, presence cache off, so every lookup
/// goes to Redis.
fn uncached_client(url: &str) -> BoxResult<Hydra> {
    Ok(Hydra::init(
        Config::builder()
            .service_name("bench-client")
            .service_ip("127.0.0.1")
            .redis_url(url)
            .presence_cache_ttl(Duration::ZERO)
            .build()?,
    )?)
}

/// Table 2: unrelated keys. Returns `Ok(false)` when hydra-rs and SCAN+HGET disagree.
fn run_unrelated_keys() -> BoxResult<bool> {
    let server = RedisServer::start();
    let url = server.url(DB);
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut raw)?;

    let synthetic = seed_instances(&mut raw)?;

    let real = register_measured(&url)?;
    let mut expected: BTreeSet<String> = synthetic;
    expected.insert(real.get_instance_id().to_string());

    let client = uncached_client(&url)?;

    println!(
        "bench_discovery: redis-server {} on 127.0.0.1:{} db {DB}; {SERVICES} services × \
         {INSTANCES_PER_SERVICE} instances; looking up {MEASURED:?} \
         ({} synthetic + 1 real registered instance)",
        bench::redis_version(&mut raw)?,
        server.port(),
        INSTANCES_PER_SERVICE - 1
    );

    let mut rows = Vec::new();
    let mut filled = 0;
    let mut agree = true;
    for &level in &bench::scaled(FILL_LEVELS, SMOKE_FILL_LEVELS) {
        fill_unrelated(&mut raw, filled, level)?;
        filled = level;
        let dbsize: u64 = redis::cmd("DBSIZE").query(&mut raw)?;

        // Correctness first: both ways must find exactly the expected instances.
        let ours_ids: BTreeSet<String> = client
            .get_service_presence(MEASURED)?
            .into_iter()
            .map(|i| i.instance_id)
            .collect();
        let (scan_instances, scan_round_trips) = scan_presence(&mut raw, MEASURED)?;
        let scan_ids: BTreeSet<String> = scan_instances
            .iter()
            .filter_map(|v| v.get("instanceID")?.as_str().map(str::to_string))
            .collect();
        if ours_ids != expected || scan_ids != expected {
            eprintln!(
                "ERROR at {level} unrelated keys: instances of {MEASURED} differ\n  \
                 expected  ({}): {expected:?}\n  hydra-rs  ({}): {ours_ids:?}\n  \
                 SCAN+HGET ({}): {scan_ids:?}",
                expected.len(),
                ours_ids.len(),
                scan_ids.len()
            );
            agree = false;
        }

        let ping = measure(plan(PING_PLAN), || {
            redis::cmd("PING").query::<String>(&mut raw)?;
            Ok(())
        })?;
        // What the index walk has to read at least: the whole `nodes` hash.
        let hgetall = measure(plan(PING_PLAN), || {
            redis::cmd("HGETALL")
                .arg(hydra::keys::NODES)
                .query::<Vec<String>>(&mut raw)?;
            Ok(())
        })?;
        let ours = measure(plan(OURS_PLAN), || {
            let found = client.get_service_presence(MEASURED)?;
            if found.len() != expected.len() {
                return Err(format!("hydra-rs found {} instances", found.len()).into());
            }
            Ok(())
        })?;
        let scan = measure(plan(SCAN_PLAN), || {
            let (found, _) = scan_presence(&mut raw, MEASURED)?;
            if found.len() != expected.len() {
                return Err(format!("SCAN+HGET found {} instances", found.len()).into());
            }
            Ok(())
        })?;
        eprintln!(
            "  {level:>7} unrelated keys: PING {:.1} µs, hydra-rs {:.1} µs, SCAN+HGET {:.1} µs (p50)",
            ping.p50, ours.p50, scan.p50
        );
        rows.push(Row {
            unrelated: level,
            dbsize,
            ping,
            hgetall,
            ours,
            scan,
            scan_round_trips,
        });
    }

    client.shutdown()?;
    real.shutdown()?;

    print_report(&rows);
    if !agree {
        eprintln!("bench_discovery: hydra-rs and SCAN+HGET disagree (see above)");
    }
    Ok(agree)
}

/// One row of table 1.
struct DeadRow {
    scenario: String,
    dead: usize,
    first_lookup: Duration,
    ours: Summary,
    ours_block: Block,
    left_after: usize,
    whole_hash: Option<(Summary, Block)>,
}

/// The longest Redis block seen during a measurement.
#[derive(Clone, Copy, Default)]
struct Block {
    /// Slowest command in SLOWLOG, µs (0 when none was slower than the threshold).
    slowest_command_us: u64,
    /// Median of the commands in SLOWLOG, µs (0 when none), and how many.
    median_slow_us: u64,
    slow_commands: usize,
    /// Worst PING round trip of the prober, µs.
    worst_ping_us: f64,
}

/// Measures how long Redis is blocked while `f` runs: SLOWLOG (server side,
/// exact per command) and a PING prober on its own connection (what any
/// other client, e.g. a heartbeat, waits).
fn with_block_watch<T>(url: &str, f: impl FnOnce() -> BoxResult<T>) -> BoxResult<(T, Block)> {
    let mut admin = redis::Client::open(url)?.get_connection()?;
    redis::cmd("SLOWLOG").arg("RESET").query::<()>(&mut admin)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut prober = redis::Client::open(url)?.get_connection()?;
    let prober_stop = stop.clone();
    let probe = std::thread::spawn(move || -> f64 {
        let mut worst = Duration::ZERO;
        while !prober_stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            if redis::cmd("PING").query::<String>(&mut prober).is_err() {
                break;
            }
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_micros(200));
        }
        worst.as_secs_f64() * 1e6
    });
    let result = f();
    stop.store(true, Ordering::Relaxed);
    let worst_ping_us = probe.join().map_err(|_| "the PING prober panicked")?;
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query(&mut admin)?;
    let mut durations: Vec<u64> = entries
        .iter()
        .filter_map(|entry| match entry {
            redis::Value::Array(fields) => match fields.get(2) {
                Some(redis::Value::Int(us)) => u64::try_from(*us).ok(),
                _ => None,
            },
            _ => None,
        })
        .collect();
    durations.sort_unstable();
    Ok((
        result?,
        Block {
            slowest_command_us: durations.last().copied().unwrap_or(0),
            median_slow_us: durations.get(durations.len() / 2).copied().unwrap_or(0),
            slow_commands: durations.len(),
            worst_ping_us,
        },
    ))
}

/// Table 1: 0 and 200k dead `nodes` entries, each scenario on a fresh server.
fn run_dead_entries() -> BoxResult<bool> {
    let dead = bench::scaled(DEAD_ENTRIES, SMOKE_DEAD_ENTRIES);
    let long_ago = "2020-01-01T00:00:00.000Z".to_string();
    let scenarios: [(&str, usize, Option<String>); 3] = [
        ("none", 0, None),
        ("long dead (prunable)", dead, Some(long_ago)),
        ("recently dead (< 60 s)", dead, Some(String::new())),
    ];
    let mut rows = Vec::new();
    let mut agree = true;
    for (scenario, count, updated_on) in scenarios {
        let (row, ok) = dead_scenario(scenario, count, updated_on)?;
        agree &= ok;
        rows.push(row);
    }
    print_dead_report(&rows);
    Ok(agree)
}

fn dead_scenario(scenario: &str, count: usize, updated_on: Option<String>) -> BoxResult<(DeadRow, bool)> {
    let server = RedisServer::start_with_args(&[
        "--slowlog-log-slower-than",
        &SLOWLOG_THRESHOLD_US.to_string(),
        "--slowlog-max-len",
        "4096",
    ]);
    let url = server.url(DB);
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;
    let mut expected = seed_instances(&mut raw)?;
    let real = register_measured(&url)?;
    expected.insert(real.get_instance_id().to_string());
    // Keep the background pruner out of the measurement: the lookups alone
    // must cope with the dead entries.
    redis::cmd("SET")
        .arg(hydra::keys::NODES_PRUNER)
        .arg("bench")
        .arg("PX")
        .arg(600_000)
        .query::<()>(&mut raw)?;
    if let Some(updated_on) = updated_on {
        let stamp = if updated_on.is_empty() {
            humantime::format_rfc3339_millis(SystemTime::now()).to_string()
        } else {
            updated_on
        };
        fill_dead(&mut raw, count, &stamp)?;
    }
    let client = uncached_client(&url)?;
    let check = |found: BTreeSet<String>, who: &str| -> bool {
        if found != expected {
            eprintln!(
                "ERROR with {count} dead entries ({scenario}): {who} found {} instances, expected {}",
                found.len(),
                expected.len()
            );
        }
        found == expected
    };
    let mut ok = true;

    // Before: the whole-hash script, while the dead entries are all there.
    let whole_hash_script = redis::Script::new(WHOLE_HASH_LOOKUP_LUA);
    let whole_hash = if count > 0 && scenario.starts_with("recently") {
        let mut whole_conn = redis::Client::open(url.as_str())?.get_connection()?;
        let found: Vec<String> = whole_hash_script
            .key(hydra::keys::NODES)
            .arg(hydra::keys::PREFIX)
            .arg(MEASURED)
            .invoke(&mut whole_conn)?;
        ok &= check(ids_of(&found), "the whole-hash script");
        let measured = with_block_watch(&url, || {
            measure(plan(WHOLE_HASH_PLAN), || {
                let found: Vec<String> = whole_hash_script
                    .key(hydra::keys::NODES)
                    .arg(hydra::keys::PREFIX)
                    .arg(MEASURED)
                    .invoke(&mut whole_conn)?;
                if found.len() != expected.len() {
                    return Err(format!("the whole-hash script found {}", found.len()).into());
                }
                Ok(())
            })
        })?;
        Some(measured)
    } else {
        None
    };

    // Ours: the first lookup walks the hash (the index is not trusted after
    // foreign writes), later ones read the service's index.
    let ((first_lookup, ours), ours_block) = with_block_watch(&url, || {
        let t = Instant::now();
        let found = client.get_service_presence(MEASURED)?;
        let first = t.elapsed();
        ok &= check(
            found.into_iter().map(|i| i.instance_id).collect(),
            "hydra-rs (first lookup)",
        );
        let summary = measure(plan(OURS_PLAN), || {
            let found = client.get_service_presence(MEASURED)?;
            if found.len() != expected.len() {
                return Err(format!("hydra-rs found {} instances", found.len()).into());
            }
            Ok(())
        })?;
        Ok((first, summary))
    })?;
    let left_after: usize = redis::cmd("HLEN").arg(hydra::keys::NODES).query(&mut raw)?;
    eprintln!(
        "  {count:>7} dead ({scenario}): first lookup {:.1} ms, then p50 {:.1} µs; {left_after} nodes entries left",
        first_lookup.as_secs_f64() * 1e3,
        ours.p50
    );
    client.shutdown()?;
    real.shutdown()?;
    Ok((
        DeadRow {
            scenario: scenario.to_string(),
            dead: count,
            first_lookup,
            ours,
            ours_block,
            left_after,
            whole_hash,
        },
        ok,
    ))
}

fn ids_of(texts: &[String]) -> BTreeSet<String> {
    texts
        .iter()
        .filter_map(|t| {
            serde_json::from_str::<Value>(t)
                .ok()?
                .get("instanceID")?
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Adds `count` entries of dead instances (no presence key) to `nodes`, in
/// Node's format, spread over 1,000 services.
fn fill_dead(conn: &mut redis::Connection, count: usize, updated_on: &str) -> BoxResult<()> {
    let mut n = 0;
    while n < count {
        let end = (n + FILL_CHUNK).min(count);
        let mut pipe = redis::pipe();
        for k in n..end {
            let id = format!("{k:032x}");
            let node = json!({
                "serviceName": format!("gone-{}", k % 1000),
                "serviceDescription": "a dead benchmark instance",
                "version": "0.0.1",
                "instanceID": id,
                "updatedOn": updated_on,
                "processID": k,
                "ip": "127.0.0.1",
                "port": 30_000,
                "hostName": "bench-host",
            });
            pipe.hset(hydra::keys::NODES, &id, node.to_string()).ignore();
        }
        pipe.query::<()>(conn)?;
        n = end;
    }
    Ok(())
}

fn print_dead_report(rows: &[DeadRow]) {
    let base = rows[0].ours.p50;
    let ms = |us: f64| {
        if us >= 1000.0 {
            format!("{:.1} ms", us / 1000.0)
        } else {
            format_micros(us)
        }
    };
    let slowest = |b: &Block| {
        if b.slowest_command_us == 0 {
            format!("< {SLOWLOG_THRESHOLD_US} µs")
        } else {
            ms(b.slowest_command_us as f64)
        }
    };
    let mut table = Table::new(&[
        "dead nodes entries",
        "first lookup",
        "hydra-rs p50",
        "p99",
        "vs none",
        "commands > 200 µs: n, median",
        "longest command",
        "worst PING",
        "entries left",
        "whole-hash script p50",
        "its longest command",
        "its worst PING",
    ])
    .aligned(&[
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
    ]);
    for r in rows {
        let (whole_p50, whole_slowest, whole_ping) = match &r.whole_hash {
            Some((summary, block)) => (ms(summary.p50), slowest(block), ms(block.worst_ping_us)),
            None => ("–".into(), "–".into(), "–".into()),
        };
        table.row([
            format!("{} {}", r.dead, r.scenario),
            ms(r.first_lookup.as_secs_f64() * 1e6),
            format_micros(r.ours.p50),
            format_micros(r.ours.p99),
            format!("{:.2}×", r.ours.p50 / base),
            format!(
                "{}, {}",
                r.ours_block.slow_commands,
                ms(r.ours_block.median_slow_us as f64)
            ),
            slowest(&r.ours_block),
            ms(r.ours_block.worst_ping_us),
            r.left_after.to_string(),
            whole_p50,
            whole_slowest,
            whole_ping,
        ]);
    }
    println!();
    println!(
        "Dead instances: {SERVICES} services × {INSTANCES_PER_SERVICE} live instances plus dead `nodes` \
         entries; SLOWLOG columns count the commands that ran longer than {SLOWLOG_THRESHOLD_US} µs \
         (each blocks every client; on a shared machine they include preemption), \
         \"worst PING\" is the worst round trip of a prober running alongside"
    );
    table.print();
    let worst = rows.iter().map(|r| r.ours.p50 / base).fold(0.0, f64::max);
    let longest = rows.iter().map(|r| r.ours_block.slowest_command_us).max().unwrap_or(0);
    println!(
        "lookup p50 with dead entries vs none: {worst:.2}× (target ≤ 1.5×) {}",
        verdict(worst <= 1.5)
    );
    println!(
        "longest Redis command during our lookups: {} (target ≤ 5 ms) {}",
        slowest(&Block {
            slowest_command_us: longest,
            ..Block::default()
        }),
        verdict(longest <= 5_000)
    );
    println!();
}

/// Writes the services' records in Node's format: for every instance a
/// presence key and a `nodes` entry, and one `:service` record per service.
/// Returns the synthetic instance IDs of the measured service.
fn seed_instances(conn: &mut redis::Connection) -> BoxResult<BTreeSet<String>> {
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut measured_ids = BTreeSet::new();
    let mut pipe = redis::pipe();
    for s in 0..SERVICES {
        let svc = format!("svc-{s}");
        let record = json!({"serviceName": svc, "type": "bench", "registeredOn": now});
        pipe.set(hydra::keys::service(&svc), record.to_string()).ignore();
        let synthetic = if svc == MEASURED {
            INSTANCES_PER_SERVICE - 1
        } else {
            INSTANCES_PER_SERVICE
        };
        for i in 0..synthetic {
            let id = uuid::Uuid::new_v4().simple().to_string();
            // The nine fields in Node's order (spec §2.3).
            let node = json!({
                "serviceName": svc,
                "serviceDescription": "synthetic benchmark instance",
                "version": "0.0.1",
                "instanceID": id,
                "updatedOn": now,
                "processID": 10_000 + s * 100 + i,
                "ip": "127.0.0.1",
                "port": 20_000 + s * 100 + i,
                "hostName": "bench-host",
            });
            pipe.cmd("SETEX")
                .arg(hydra::keys::presence(&svc, &id))
                .arg(SYNTHETIC_TTL_SECS)
                .arg(&id)
                .ignore();
            pipe.hset(hydra::keys::NODES, &id, node.to_string()).ignore();
            if svc == MEASURED {
                measured_ids.insert(id);
            }
        }
    }
    pipe.query::<()>(conn)?;
    Ok(measured_ids)
}

/// Adds `app:cache:<n>` keys for n in `from..to`, pipelined in chunks.
fn fill_unrelated(conn: &mut redis::Connection, from: usize, to: usize) -> BoxResult<()> {
    let mut n = from;
    while n < to {
        let end = (n + FILL_CHUNK).min(to);
        let mut pipe = redis::pipe();
        for k in n..end {
            pipe.set(format!("app:cache:{k}"), "cached-value-0123456789").ignore();
        }
        pipe.query::<()>(conn)?;
        n = end;
    }
    Ok(())
}

/// What Node hydra 1.9.3 does in `_checkServicePresence`: SCAN to completion
/// with `COUNT 100`, then one MULTI/EXEC with an HGET per presence key, then
/// JSON.parse of each entry. Returns the parsed entries and the number of SCAN
/// round trips.
fn scan_presence(conn: &mut redis::Connection, name: &str) -> BoxResult<(Vec<Value>, usize)> {
    let pattern = format!("*:{name}:*:presence");
    let mut cursor = 0u64;
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let mut round_trips = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query(conn)?;
        round_trips += 1;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    if keys.is_empty() {
        return Ok((Vec::new(), round_trips));
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in &keys {
        let id = key.split(':').nth(3).unwrap_or_default();
        pipe.hget(hydra::keys::NODES, id);
    }
    let texts: Vec<Option<String>> = pipe.query(conn)?;
    let instances = texts
        .into_iter()
        .flatten()
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .collect();
    Ok((instances, round_trips + 1))
}

fn measure(plan: Plan, mut f: impl FnMut() -> BoxResult<()>) -> BoxResult<Summary> {
    for _ in 0..plan.warmup {
        f()?;
    }
    let mut latencies = Latencies::new();
    let started = Instant::now();
    while latencies.len() < plan.max && (latencies.len() < plan.min || started.elapsed() < plan.budget) {
        let t = Instant::now();
        f()?;
        latencies.record(t.elapsed());
    }
    Ok(latencies.summary())
}

fn print_report(rows: &[Row]) {
    let base = rows[0].ours.p50;
    let mut latency = Table::new(&[
        "unrelated keys",
        "hydra-rs p50",
        "p99",
        "SCAN+HGET p50",
        "p99",
        "SCAN/ours",
        "ours vs 0 keys",
        "PING p50 (floor)",
        "ours/PING",
    ])
    .aligned(&[Align::Right; 9]);
    let mut detail = Table::new(&[
        "unrelated keys",
        "DBSIZE",
        "hydra-rs mean (n)",
        "SCAN+HGET mean (n)",
        "SCAN+HGET round trips/lookup",
        "PING mean (n)",
        "raw HGETALL nodes p50",
    ])
    .aligned(&[Align::Right; 7]);
    for r in rows {
        latency.row([
            r.unrelated.to_string(),
            format_micros(r.ours.p50),
            format_micros(r.ours.p99),
            format_micros(r.scan.p50),
            format_micros(r.scan.p99),
            format!("{:.1}×", r.scan.p50 / r.ours.p50),
            format!("{:.2}×", r.ours.p50 / base),
            format_micros(r.ping.p50),
            format!("{:.1}×", r.ours.p50 / r.ping.p50),
        ]);
        detail.row([
            r.unrelated.to_string(),
            r.dbsize.to_string(),
            format!("{} ({})", format_micros(r.ours.mean), r.ours.count),
            format!("{} ({})", format_micros(r.scan.mean), r.scan.count),
            r.scan_round_trips.to_string(),
            format!("{} ({})", format_micros(r.ping.mean), r.ping.count),
            format_micros(r.hgetall.p50),
        ]);
    }
    latency.print();
    detail.print();
    let last = rows.last().expect("at least one fill level");
    let flatness = last.ours.p50 / base;
    let speedup = last.scan.p50 / last.ours.p50;
    println!();
    println!(
        "flatness ({}k/0 p50): {flatness:.2}× (target ≤ 1.5×) {}",
        last.unrelated / 1000,
        verdict(flatness <= 1.5)
    );
    println!(
        "speedup at {}k: {speedup:.0}× (target ≥ 50×) {}",
        last.unrelated / 1000,
        verdict(speedup >= 50.0)
    );
}
