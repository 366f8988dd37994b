//! Queue benchmark: enqueue → take → complete throughput with 1 and 8
//! workers, side by side with a floor measured in the same run (raw
//! redis-rs issuing Hydra's queue commands), and the recovery latency after
//! a consumer process is killed.
//!
//! ```text
//! cargo run --release --example bench_queue
//! ```
//!
//! Target: hydra-rs `queue_worker` end-to-end throughput ≥ 0.7× the floor's,
//! with 1 and with 8 workers; recovery ≈ the visibility timeout. The program
//! is a report: it exits 0 whether or not the targets are met, and non-zero
//! only when a message was lost or left behind.
//!
//! `HYDRA_BENCH_SMOKE=1` runs every step with 400 messages, one round and
//! one recovery trial.
//!
//! It starts its own `redis-server` on a free loopback port and uses db 15.
//! For each worker count W (1, 8) and round, three subjects each move
//! `MESSAGES` messages through a fresh queue, in two timed phases:
//!
//! - **enqueue**: W threads enqueue `MESSAGES / W` messages each. The floor
//!   builds short-form UMF JSON (fresh uuid `mid`, JavaScript timestamp) and
//!   `LPUSH`es it; both hydra-rs subjects call `queue_message` (validation,
//!   route parsing, JavaScript-exact JSON).
//! - **take + complete**: W threads drain the queue. The floor does Node
//!   Hydra's `RPOPLPUSH mqrecieved mqinprogress`, parses the JSON, and
//!   `LREM mqinprogress 1 <item>` — the same commands, issued raw.
//!   *hydra-rs get/mark* does the same through `get_queued_message` and
//!   `mark_queue_message` (no lease). *hydra-rs queue_worker* runs a worker
//!   with W threads whose handler reads the body: each message costs one Lua
//!   script to take it (into `mqinprogress` and the thread's claimed list,
//!   with its lease) and one to complete it, so that a consumer's death loses
//!   nothing. The phase ends when the worker has marked every message.
//!
//! End-to-end msgs/s is messages over the sum of both phases. Subjects run in
//! a different order each round so that drift falls on all alike.
//!
//! Recovery: a child process (this program with `--hang-consumer`) runs a
//! queue worker whose handler takes one message and never returns; it is
//! killed with SIGKILL, and the time until this process's own worker on the
//! same queue receives the message is measured. Both use a visibility
//! timeout of `RECOVERY_VT`. A lease runs out one visibility timeout after
//! its last renewal (renewals every eighth of it) and reapers look every
//! eighth of it, so the expected latency is the timeout ± an eighth.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hydra::umf::UMF_VERSION;
use hydra::{Config, Hydra, QueueOptions, QueuedMessage, Umf, keys};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Align, Table, padded_body, verdict};
use serde_json::{Value, json};

const DB: u8 = 15;
/// Messages per run (a few hundred in a smoke run, see `bench::smoke`).
static MESSAGES: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| bench::scaled(12_000, 400));
static ROUNDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| bench::scaled(3, 1));
const WORKER_COUNTS: [usize; 2] = [1, 8];
const TARGET: f64 = 0.7;
const RECOVERY_VT: Duration = Duration::from_secs(2);
static RECOVERY_TRIALS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| bench::scaled(5, 1));
/// Longest a drain may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Subject {
    Floor,
    GetMark,
    Worker,
}

const SUBJECTS: [Subject; 3] = [Subject::Floor, Subject::GetMark, Subject::Worker];

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Floor => "raw redis-rs floor (LPUSH / RPOPLPUSH / LREM)",
            Subject::GetMark => "hydra-rs get_queued_message + mark_queue_message",
            Subject::Worker => "hydra-rs queue_worker (leased, crash-safe)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Subject::Floor => "floor",
            Subject::GetMark => "getmark",
            Subject::Worker => "worker",
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    messages: u64,
    enqueue: Duration,
    drain: Duration,
}

impl Tally {
    fn rate(&self, d: Duration) -> f64 {
        self.messages as f64 / d.as_secs_f64()
    }
    fn end_to_end(&self) -> f64 {
        self.rate(self.enqueue + self.drain)
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--hang-consumer") {
        return match hang_consumer(&args[2]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench_queue child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    bench::exit_code("bench_queue", run())
}

fn run() -> BoxResult<bool> {
    let server = RedisServer::start();
    let url = server.url(DB);
    let client = redis::Client::open(url.as_str())?;
    let mut probe = client.get_connection()?;
    let version = bench::redis_version(&mut probe)?;
    let hydra = Hydra::init(
        Config::builder()
            .service_name("bench-queue")
            .service_ip("127.0.0.1")
            .redis_url(&url)
            .build()?,
    )?;
    println!(
        "bench_queue: redis-server {version} on 127.0.0.1:{} db {DB}; {} messages per run, \
         body {} bytes, {} rounds; {} CPUs",
        server.port(),
        *MESSAGES,
        padded_body(1_000_000).to_string().len(),
        *ROUNDS,
        thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut ok = true;
    let mut results: Vec<(usize, Subject, Tally)> = Vec::new();
    for workers in WORKER_COUNTS {
        let mut tallies = [Tally::default(); 3];
        for (round, k) in bench::round_robin(*ROUNDS, SUBJECTS.len()) {
            let subject = SUBJECTS[k];
            let queue = format!("bq-{}-{workers}-{round}", subject.tag());
            let enqueue = enqueue(subject, &hydra, &client, &queue, workers)?;
            let drain = drain(subject, &hydra, &client, &queue, workers)?;
            let stats = hydra.queue_stats(&queue)?;
            if stats.waiting + stats.in_progress + stats.incomplete != 0 {
                ok = false;
                eprintln!("ERROR {queue}: left behind {stats:?}");
            }
            let t = &mut tallies[k];
            t.messages += *MESSAGES;
            t.enqueue += enqueue;
            t.drain += drain;
            eprintln!(
                "  {workers} worker(s), round {}/{}: {:<8} enqueue {:>7.0}/s, take+complete {:>7.0}/s",
                round + 1,
                *ROUNDS,
                subject.tag(),
                *MESSAGES as f64 / enqueue.as_secs_f64(),
                *MESSAGES as f64 / drain.as_secs_f64()
            );
        }
        for (k, subject) in SUBJECTS.into_iter().enumerate() {
            results.push((workers, subject, tallies[k]));
        }
    }

    // End-to-end msgs/s of `subject` with `workers` workers.
    let end_to_end = |workers: usize, subject: Subject| {
        results
            .iter()
            .find(|(w, s, _)| *w == workers && *s == subject)
            .map_or(f64::NAN, |(_, _, t)| t.end_to_end())
    };
    let mut table = Table::new(&[
        "subject",
        "workers",
        "enqueue msgs/s",
        "take + complete msgs/s",
        "end-to-end msgs/s",
        "vs floor",
    ]);
    for &(workers, subject, tally) in &results {
        table.row([
            subject.label().to_string(),
            workers.to_string(),
            format!("{:.0}", tally.rate(tally.enqueue)),
            format!("{:.0}", tally.rate(tally.drain)),
            format!("{:.0}", tally.end_to_end()),
            format!("{:.2}×", tally.end_to_end() / end_to_end(workers, Subject::Floor)),
        ]);
    }
    table.print();
    println!();
    for workers in WORKER_COUNTS {
        let ratio = end_to_end(workers, Subject::Worker) / end_to_end(workers, Subject::Floor);
        println!(
            "target, {workers} worker(s): queue_worker end-to-end ≥ {TARGET}× floor: {ratio:.2}× {}",
            verdict(ratio >= TARGET)
        );
    }

    let mut latencies = recovery(&hydra, &url)?;
    latencies.sort();
    let seconds = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let mut table = Table::new(&["visibility timeout", "trials", "min", "median", "max"]).aligned(&[Align::Right; 5]);
    table.row([
        format!("{RECOVERY_VT:?}"),
        latencies.len().to_string(),
        seconds(latencies[0]),
        seconds(latencies[latencies.len() / 2]),
        seconds(latencies[latencies.len() - 1]),
    ]);
    table.print();
    println!("recovery: time from SIGKILL of the consumer holding a message to its redelivery to another consumer");
    hydra.shutdown()?;
    Ok(ok)
}

/// W threads enqueue `MESSAGES / W` each; returns the wall time.
fn enqueue(
    subject: Subject,
    hydra: &Hydra,
    client: &redis::Client,
    queue: &str,
    workers: usize,
) -> BoxResult<Duration> {
    let per = *MESSAGES / workers as u64;
    assert_eq!(per * workers as u64, *MESSAGES);
    let start = Arc::new(Barrier::new(workers + 1));
    let to = format!("{queue}:/");
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let start = start.clone();
            let (hydra, client, to, queue) = (hydra.clone(), client.clone(), to.clone(), queue.to_string());
            thread::spawn(move || -> BoxResult<()> {
                let mut conn = match subject {
                    Subject::Floor => Some(client.get_connection()?),
                    _ => None,
                };
                let key = keys::queue_received(&queue);
                start.wait();
                for i in 0..per {
                    let n = w as u64 * per + i;
                    match conn.as_mut() {
                        Some(conn) => {
                            let item = json!({
                                "to": to, "frm": "bench-queue:/", "mid": uuid::Uuid::new_v4().hyphenated().to_string(),
                                "ts": now_iso(), "ver": UMF_VERSION, "bdy": padded_body(n),
                            });
                            redis::cmd("LPUSH").arg(&key).arg(item.to_string()).query::<()>(conn)?;
                        }
                        None => hydra.queue_message(&Umf::new(to.as_str(), "bench-queue:/", padded_body(n)))?,
                    }
                }
                Ok(())
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for t in threads {
        t.join().map_err(|_| "an enqueue thread panicked")??;
    }
    Ok(began.elapsed())
}

/// W consumers take and complete every message; returns the wall time.
fn drain(subject: Subject, hydra: &Hydra, client: &redis::Client, queue: &str, workers: usize) -> BoxResult<Duration> {
    if subject == Subject::Worker {
        let seen = Arc::new(AtomicU64::new(0));
        let began = Instant::now();
        let worker = {
            let seen = seen.clone();
            hydra.queue_worker_with(queue, workers, QueueOptions::new(), move |m: &QueuedMessage| {
                m.message.body["n"].as_u64().ok_or("no n")?;
                seen.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })?
        };
        while worker.stats().completed < *MESSAGES {
            if began.elapsed() > PHASE_TIMEOUT {
                return Err(format!("worker drained only {:?} in {PHASE_TIMEOUT:?}", worker.stats()).into());
            }
            thread::sleep(Duration::from_micros(200));
        }
        let elapsed = began.elapsed();
        worker.stop();
        let stats = worker.stats();
        if stats.taken != *MESSAGES || seen.load(Ordering::Relaxed) != *MESSAGES {
            return Err(format!("worker saw {:?}", stats).into());
        }
        return Ok(elapsed);
    }
    let start = Arc::new(Barrier::new(workers + 1));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (start, done) = (start.clone(), done.clone());
            let (hydra, client, queue) = (hydra.clone(), client.clone(), queue.to_string());
            thread::spawn(move || -> BoxResult<()> {
                let mut conn = match subject {
                    Subject::Floor => Some(client.get_connection()?),
                    _ => None,
                };
                let (received, in_progress) = (keys::queue_received(&queue), keys::queue_in_progress(&queue));
                start.wait();
                loop {
                    match conn.as_mut() {
                        Some(conn) => {
                            let item: Option<Vec<u8>> =
                                redis::cmd("RPOPLPUSH").arg(&received).arg(&in_progress).query(conn)?;
                            let Some(item) = item else { break };
                            let value: Value = serde_json::from_slice(&item)?;
                            value["bdy"]["n"].as_u64().ok_or("no n")?;
                            redis::cmd("LREM")
                                .arg(&in_progress)
                                .arg(1)
                                .arg(&item)
                                .query::<()>(conn)?;
                        }
                        None => {
                            let Some(m) = hydra.get_queued_message(&queue)? else {
                                break;
                            };
                            m.message.body["n"].as_u64().ok_or("no n")?;
                            hydra.mark_queue_message(&m, true, None)?;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for t in threads {
        t.join().map_err(|_| "a drain thread panicked")??;
    }
    let elapsed = began.elapsed();
    if done.load(Ordering::Relaxed) != *MESSAGES {
        return Err(format!("drained {} of {}", done.load(Ordering::Relaxed), *MESSAGES).into());
    }
    Ok(elapsed)
}

/// Kills a consumer holding a message, `RECOVERY_TRIALS` times; returns the
/// time from each kill to the redelivery.
fn recovery(hydra: &Hydra, url: &str) -> BoxResult<Vec<Duration>> {
    let queue = "bq-recovery";
    let mut latencies = Vec::new();
    for trial in 0..*RECOVERY_TRIALS {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--hang-consumer", url])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
        let mut expect = |word: &str| -> BoxResult<String> {
            for line in lines.by_ref() {
                if let Some(rest) = line?.strip_prefix(word) {
                    return Ok(rest.trim().to_string());
                }
            }
            Err(format!("child exited before {word:?}").into())
        };
        expect("ready")?;
        let message = hydra.create_umf_message(&format!("{queue}:/"), json!({"trial": trial}));
        hydra.queue_message(&message)?;
        let took = expect("took")?;
        if took != message.mid {
            return Err(format!("child took {took}, expected {}", message.mid).into());
        }
        // Another consumer of the same queue, in this process.
        let (tx, rx) = crossbeam_channel::unbounded();
        let options = QueueOptions::new().with_visibility_timeout(RECOVERY_VT);
        let worker = hydra.queue_worker_with(queue, 1, options, move |m: &QueuedMessage| {
            tx.send((Instant::now(), m.message.mid.clone(), m.delivery_count()))?;
            Ok(())
        })?;
        let killed = Instant::now();
        child.kill()?;
        child.wait()?;
        let (at, mid, deliveries) = rx.recv_timeout(RECOVERY_VT * 3)?;
        worker.stop();
        if mid != took || deliveries != 2 {
            return Err(format!("redelivered {mid} (delivery {deliveries}), expected {took} (delivery 2)").into());
        }
        let latency = at - killed;
        eprintln!("  recovery trial {}: {latency:?}", trial + 1);
        latencies.push(latency);
    }
    Ok(latencies)
}

/// Child process: a worker whose handler announces the message it took and
/// never returns.
fn hang_consumer(url: &str) -> BoxResult<()> {
    let hydra = Hydra::init(
        Config::builder()
            .service_name("bench-queue-child")
            .service_ip("127.0.0.1")
            .redis_url(url)
            .build()?,
    )?;
    let options = QueueOptions::new().with_visibility_timeout(RECOVERY_VT);
    let _worker = hydra.queue_worker_with("bq-recovery", 1, options, |m: &QueuedMessage| {
        println!("took {}", m.message.mid);
        thread::sleep(Duration::from_secs(3600));
        Ok(())
    })?;
    println!("ready");
    thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn now_iso() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
