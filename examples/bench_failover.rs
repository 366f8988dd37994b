//! Failover benchmark: how long the work stops when the Redis master is killed
//! under Sentinel, and what is lost.
//!
//! ```text
//! cargo run --release --example bench_failover
//! ```
//!
//! Each trial runs twice, in plain text and over TLS (every data node and
//! sentinel serving TLS only to the clients, `redis.tls` and
//! `redis.sentinelTLS` in their configs), and starts a fresh group each time
//! (a master, one replica, three
//! `redis-sentinel`s with `down-after-milliseconds 1000` and
//! `failover-timeout 3000`: hydra_testkit::SentinelGroup), a service and a
//! client working without pause (tests/common/failover.rs: one-way messages,
//! request–reply, HTTP calls, queued items and presence reads, each every
//! 5 ms), lets them run, waits until the replica holds every queue item
//! acknowledged so far, and kills the master with SIGKILL. Times are from the
//! kill:
//!
//! - *Sentinel promotes*: the sentinels name the replica and it says it is a
//!   master (the floor: nothing can work on the new master before this);
//! - *presence*, *request–reply*, *HTTP*: since when every try has succeeded;
//! - *queue*: when the first item queued after the kill was processed.
//!
//! Lost: one-way messages that Redis acknowledged (PUBLISH answered) but the
//! service never got (pub/sub is at-most-once: a message published on the new
//! master before the service resubscribed there is gone); queue items
//! acknowledged by the old master after the replica had caught up and never
//! processed (what asynchronous replication may lose), and — which must be
//! none — items acknowledged before that or after the kill and never
//! processed. The program exits non-zero only on such a loss or when some work
//! never came back.
//!
//! `HYDRA_BENCH_SMOKE=1`: one trial with one second of work before the kill.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use hydra_testkit::bench::{self, Table};
use hydra_testkit::tls::TestCertificates;
use hydra_testkit::{SentinelGroup, SentinelOptions};

#[path = "../tests/common/failover.rs"]
mod failover;

use failover::{Recovery, Workload, run_failover};

/// Longest a failover may take before the trial counts as failed.
const DEADLINE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    bench::exit_code("bench_failover", run())
}

fn run() -> Result<bool, String> {
    let trials = bench::scaled(3, 1);
    let warm = bench::scaled(Duration::from_secs(5), Duration::from_secs(1));
    let options = SentinelOptions::default();
    println!(
        "bench_failover: {trials} trial(s); 1 master, {} replica, {} sentinels (down-after {} ms, failover-timeout {} ms); \
         client loops every 5 ms, {} s of work before each kill",
        options.replicas,
        options.sentinels,
        options.down_after.as_millis(),
        options.failover_timeout.as_millis(),
        warm.as_secs_f64()
    );
    let certs = TestCertificates::generate();
    let mut table = Table::new(&[
        "trial",
        "transport",
        "Sentinel promotes",
        "presence back",
        "request–reply flows",
        "HTTP calls work",
        "queue moves",
        "messages lost / sent",
        "queue items lost in lag / queued",
        "queue items lost (must be 0)",
    ]);
    let mut ok = true;
    for trial in 1..=trials {
        for tls in [false, true] {
            let options = SentinelOptions {
                tls: tls.then(|| certs.server_files()),
                ..options.clone()
            };
            let mut group = SentinelGroup::start(options);
            let mut workload = Workload::start(&group);
            let started = Instant::now();
            if !workload.wait_flowing(started, DEADLINE) {
                return Err("the work never flowed before the kill".into());
            }
            std::thread::sleep(warm);
            let r = run_failover(&mut group, &mut workload, DEADLINE);
            workload.shutdown();
            ok &= report(&mut table, trial, if tls { "TLS" } else { "plain" }, &r);
        }
    }
    table.print();
    Ok(ok)
}

/// Adds the trial's row; false when something never came back or a queue
/// item that had to survive was lost.
fn report(table: &mut Table, trial: usize, transport: &str, r: &Recovery) -> bool {
    let time = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    table.row([
        trial.to_string(),
        transport.to_string(),
        time(r.sentinel_promoted),
        time(r.presence),
        time(r.requests),
        time(r.http),
        time(r.queue),
        format!("{} / {}", r.messages_lost, r.messages_acked),
        format!("{} / {}", r.queue_lost_in_lag, r.queue_acked),
        r.queue_lost_required.len().to_string(),
    ]);
    let came_back = [r.sentinel_promoted, r.presence, r.requests, r.http, r.queue]
        .iter()
        .all(Option::is_some);
    if !came_back {
        eprintln!("trial {trial} ({transport}): some work never came back: {r:?}");
    }
    if !r.queue_lost_required.is_empty() {
        eprintln!(
            "trial {trial} ({transport}): queue items lost that had reached the replica: {:?}",
            r.queue_lost_required
        );
    }
    came_back && r.queue_lost_required.is_empty()
}
