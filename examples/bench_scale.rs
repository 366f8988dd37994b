//! How far one Redis goes: 100, 1,000 and 5,000 registered instances, each a
//! real `Hydra` handle with its own heartbeat (presence every second, health
//! every fifth), all in this one process. For each level, while the
//! heartbeats run:
//!
//! - in a window of heartbeats alone: Redis commands per second and the CPU
//!   Redis spends (`INFO stats`, `INFO cpu`), per instance, and this
//!   process's CPU;
//! - in a second window, with a client looping on `get_service_presence` (a
//!   service of 10 instances, read from Redis on every call) and 8 requesters
//!   calling an echo service flat out: p50/p99 of both, and requests/s.
//!
//! The first row has no registered instances but the echo: the floor,
//! measured in the same run. Compare rows with it, not with other machines.
//!
//! ```text
//! cargo run --release --example bench_scale
//! ```
//!
//! The program is a report: it exits 0 whatever the figures, and non-zero
//! only when something is wrong (an instance missing from presence, a wrong
//! reply). `HYDRA_BENCH_SMOKE=1` runs 0, 20 and 50 instances with a 1 s window.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hydra::{Config, Hydra};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Latencies, Table, format_micros};
use serde_json::json;

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const DB: u8 = 15;
const LEVELS: [usize; 4] = [0, 100, 1_000, 5_000];
const SMOKE_LEVELS: [usize; 3] = [0, 20, 50];
/// Instances per service: presence reads return this many.
const PER_SERVICE: usize = 10;
const REQUESTERS: usize = 8;
/// Threads registering (and shutting down) instances in parallel.
const REGISTRARS: usize = 16;

fn main() -> ExitCode {
    bench::exit_code("bench_scale", run())
}

struct Level {
    instances: usize,
    commands_per_sec: f64,
    redis_cpu: f64,
    process_cpu: f64,
    presence: bench::Summary,
    requests: bench::Summary,
}

fn run() -> BoxResult<bool> {
    // 5,000 instances hold 5,000 Redis connections: the server needs the descriptors.
    let wanted = 20_000;
    let got = rlimit::increase_nofile_limit(wanted).unwrap_or(0);
    let levels: Vec<usize> = if bench::smoke() {
        SMOKE_LEVELS.to_vec()
    } else {
        LEVELS.iter().copied().filter(|&n| n * 2 + 200 < got as usize).collect()
    };
    let window = bench::scaled(Duration::from_secs(10), Duration::from_secs(1));
    let server = RedisServer::start_with_args(&["--maxclients", "15000"]);
    let url = server.url(DB);
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;
    println!(
        "bench_scale: Redis {} on 127.0.0.1:{}, {} s windows, {} cores; open-file limit {got}",
        bench::redis_version(&mut raw)?,
        server.port(),
        window.as_secs_f64(),
        thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let echo = handle(&url, "scale-echo")?;
    echo.on_message(|h, msg| {
        h.reply(&msg, json!({"echo": msg.body}))?;
        Ok(())
    })?;
    echo.register_service()?;
    // Replies come back on the client's own channel: it registers (and beats) too.
    let client = handle(&url, "scale-client")?;
    client.register_service()?;

    let mut instances: Vec<Hydra> = Vec::new();
    let mut rows = Vec::new();
    let mut right = true;
    for &level in &levels {
        let more = register_many(&url, instances.len(), level - instances.len())?;
        instances.extend(more);
        // Let the beats spread over the second and the registrations settle.
        thread::sleep(bench::scaled(Duration::from_secs(3), Duration::from_millis(500)));
        if level > 0 {
            let found = client.get_service_presence("scale-0")?.len();
            if found != PER_SERVICE.min(level) {
                eprintln!(
                    "bench_scale: scale-0 has {found} live instances, expected {}",
                    PER_SERVICE.min(level)
                );
                right = false;
            }
        }
        let row = measure(&server, &client, level, window)?;
        if row.requests.count == 0 {
            eprintln!("bench_scale: no request was answered at {level} instances");
            right = false;
        }
        rows.push(row);
    }

    let floor_commands = rows.first().map_or(0.0, |r| r.commands_per_sec);
    let mut table = Table::new(&[
        "instances",
        "Redis cmd/s",
        "per instance/s",
        "Redis CPU",
        "our CPU",
        "presence p50",
        "presence p99",
        "request p50",
        "request p99",
        "requests/s",
    ]);
    for row in &rows {
        let per_instance = if row.instances == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.2}",
                (row.commands_per_sec - floor_commands).max(0.0) / row.instances as f64
            )
        };
        table.row([
            row.instances.to_string(),
            format!("{:.0}", row.commands_per_sec),
            per_instance,
            format!("{:.1} %", row.redis_cpu * 100.0),
            format!("{:.1} %", row.process_cpu * 100.0),
            format_micros(row.presence.p50),
            format_micros(row.presence.p99),
            format_micros(row.requests.p50),
            format_micros(row.requests.p99),
            format!("{:.0}", row.requests.per_sec),
        ]);
    }
    println!();
    println!("N registered instances in one process. Redis cmd/s and CPU: a window of heartbeats alone; latencies");
    println!(
        "and requests/s: a second window with a client reading presence and 8 requesters calling an echo flat out."
    );
    table.print();
    println!("(Redis CPU: share of one core. Our CPU: this process, i.e. all N instances' heartbeat threads, which");
    println!(" compete with Redis and the requesters for this machine's cores. Per instance/s: commands above the");
    println!(" 0-instance row, whose echo and client beat too.)");
    if let Some(top) = rows.iter().rev().find(|r| r.instances > 0 && r.redis_cpu > 0.0) {
        let per_thousand = top.redis_cpu / top.instances as f64 * 1000.0;
        println!(
            "Heartbeats cost Redis {:.1} % of a core per 1,000 instances (at {}): about {:.0} instances per half core.",
            per_thousand * 100.0,
            top.instances,
            0.5 / per_thousand * 1000.0
        );
    }

    shutdown_many(instances);
    Ok(right)
}

fn handle(url: &str, name: &str) -> BoxResult<Hydra> {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(url)
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_secs(5))
        .build()?;
    Ok(Hydra::init(config)?)
}

/// Registers `count` instances numbered from `first`, `PER_SERVICE` per service.
fn register_many(url: &str, first: usize, count: usize) -> BoxResult<Vec<Hydra>> {
    let chunks: Vec<Vec<usize>> = (first..first + count)
        .collect::<Vec<_>>()
        .chunks(count.div_ceil(REGISTRARS).max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let mut threads = Vec::new();
    for chunk in chunks {
        let url = url.to_string();
        threads.push(thread::spawn(move || -> BoxResult<Vec<Hydra>> {
            let mut made = Vec::with_capacity(chunk.len());
            for n in chunk {
                let hydra = handle(&url, &format!("scale-{}", n / PER_SERVICE))?;
                hydra.register_service()?;
                made.push(hydra);
            }
            Ok(made)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for thread in threads {
        all.extend(thread.join().map_err(|_| "a registrar panicked")??);
    }
    Ok(all)
}

fn shutdown_many(instances: Vec<Hydra>) {
    let mut chunks: Vec<Vec<Hydra>> = (0..REGISTRARS).map(|_| Vec::new()).collect();
    for (n, hydra) in instances.into_iter().enumerate() {
        chunks[n % REGISTRARS].push(hydra);
    }
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            thread::spawn(move || {
                for hydra in chunk {
                    let _ = hydra.shutdown();
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// Two windows: heartbeats alone (what they cost Redis and this process),
/// then the same with the prober and the requesters running flat out (what
/// the heartbeats do to everyone else's latency).
fn measure(server: &RedisServer, client: &Hydra, instances: usize, window: Duration) -> BoxResult<Level> {
    let mut raw = redis::Client::open(server.url(DB).as_str())?.get_connection()?;
    let (commands_before, cpu_before, ours_before) = (
        bench::RedisCounters::read(&mut raw)?,
        redis_cpu_seconds(&mut raw)?,
        process_cpu_seconds(),
    );
    let started = Instant::now();
    thread::sleep(window);
    let elapsed = started.elapsed().as_secs_f64();
    let commands = bench::RedisCounters::read(&mut raw)?.since(commands_before);
    let redis_cpu = (redis_cpu_seconds(&mut raw)? - cpu_before) / elapsed;
    let process_cpu = (process_cpu_seconds() - ours_before) / elapsed;

    let stop = Arc::new(AtomicBool::new(false));
    let probe_service = if instances > 0 { "scale-0" } else { "scale-echo" };
    let prober = {
        let (client, stop) = (client.clone(), stop.clone());
        thread::spawn(move || {
            let mut latencies = Latencies::new();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if client.get_service_presence(probe_service).is_ok() {
                    latencies.record(t.elapsed());
                }
            }
            latencies.add_wall(started.elapsed());
            latencies
        })
    };
    let requesters: Vec<_> = (0..REQUESTERS)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            thread::spawn(move || {
                let mut latencies = Latencies::new();
                let mut wrong = 0usize;
                let started = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t = Instant::now();
                    let asked = client.create_umf_message("scale-echo:/", json!({"n": n}));
                    match client.request(&asked, Duration::from_secs(5)) {
                        Ok(reply) if reply.body == json!({"echo": {"n": n}}) => latencies.record(t.elapsed()),
                        Ok(_) => wrong += 1,
                        Err(_) => {}
                    }
                }
                latencies.add_wall(started.elapsed());
                (latencies, wrong)
            })
        })
        .collect();
    thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let mut presence = prober.join().map_err(|_| "the prober panicked")?;
    let mut requests = Latencies::new();
    let mut wall = Duration::ZERO;
    for requester in requesters {
        let (latencies, wrong) = requester.join().map_err(|_| "a requester panicked")?;
        if wrong > 0 {
            return Err(format!("{wrong} wrong replies at {instances} instances").into());
        }
        // The requesters ran side by side: their common wall time, not the sum.
        wall = wall.max(latencies.wall());
        requests.merge(latencies);
    }
    requests.add_wall(wall);
    Ok(Level {
        instances,
        commands_per_sec: commands.commands as f64 / elapsed,
        redis_cpu,
        process_cpu,
        presence: presence.summary(),
        requests: requests.summary(),
    })
}

/// `used_cpu_sys + used_cpu_user` of the server, in seconds.
fn redis_cpu_seconds(conn: &mut redis::Connection) -> BoxResult<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn)?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_sys") + field("used_cpu_user"))
}

/// This process's user + system CPU time, in seconds (`/proc/self/stat`).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}
