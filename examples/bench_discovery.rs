//! Discovery benchmark: `get_service_presence` latency with 10 services × 10
//! instances and 0 / 10k / 100k unrelated keys in the database, side by side
//! with Node hydra's way of doing it (`SCAN MATCH *:<svc>:*:presence COUNT 100`
//! to completion, then `MULTI` / `HGET hydra:service:nodes <id>`… / `EXEC`),
//! and two floors measured with raw redis-rs in the same run: a plain `PING`
//! round trip, and `HGETALL hydra:service:nodes` (the data hydra-rs's lookup
//! script walks inside Redis).
//!
//! ```text
//! cargo run --release --example bench_discovery
//! ```
//!
//! Targets (hydra issue #192): ours flat (p50 at 100k keys ≤ 1.5× p50 at 0
//! keys) and ≥ 50× faster than SCAN at 100k keys. The program is a report: it
//! exits 0 whether or not the targets are met, and non-zero only when the two
//! approaches disagree about which instances are present.
//!
//! It starts its own `redis-server` on a free loopback port and uses db 15.
//! Instance records are written directly in Node's format (presence key with a
//! long TTL plus the `hydra:service:nodes` entry), so that 100 heartbeat threads
//! do not disturb the measurement; one instance of the measured service is a
//! real registered `Hydra`, to show that a real registration is found too.

use std::collections::BTreeSet;
use std::error::Error;
use std::process::ExitCode;
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
const FILL_CHUNK: usize = 10_000;
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

/// Returns `Ok(false)` when hydra-rs and SCAN+HGET disagree.
fn run() -> BoxResult<bool> {
    let server = RedisServer::start();
    let url = server.url(DB);
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;
    redis::cmd("FLUSHDB").query::<()>(&mut raw)?;

    let synthetic = seed_instances(&mut raw)?;

    // One real instance of the measured service.
    let real = Hydra::init(
        Config::builder()
            .service_name(MEASURED)
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .build()?,
    )?;
    real.register_service()?;
    let mut expected: BTreeSet<String> = synthetic;
    expected.insert(real.get_instance_id().to_string());

    // The measuring handle: not registered, presence cache off, so every call
    // goes to Redis.
    let client = Hydra::init(
        Config::builder()
            .service_name("bench-client")
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .presence_cache_ttl(Duration::ZERO)
            .build()?,
    )?;

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
    for &level in &FILL_LEVELS {
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

        let ping = measure(PING_PLAN, || {
            redis::cmd("PING").query::<String>(&mut raw)?;
            Ok(())
        })?;
        // What the index walk has to read at least: the whole `nodes` hash.
        let hgetall = measure(PING_PLAN, || {
            redis::cmd("HGETALL")
                .arg(hydra::keys::NODES)
                .query::<Vec<String>>(&mut raw)?;
            Ok(())
        })?;
        let ours = measure(OURS_PLAN, || {
            let found = client.get_service_presence(MEASURED)?;
            if found.len() != expected.len() {
                return Err(format!("hydra-rs found {} instances", found.len()).into());
            }
            Ok(())
        })?;
        let scan = measure(SCAN_PLAN, || {
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
