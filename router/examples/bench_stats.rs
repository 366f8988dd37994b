//! Stats benchmark: what counting a request costs the router's workers, what
//! answering `/v1/router/stats` and `/v1/router/metrics` costs, and the
//! memory the counters hold.
//!
//! ```text
//! cargo run --release -p hydra-router --example bench_stats
//! ```
//!
//! 1. `Stats::record_http` from 1 and 16 threads, all on one service (the
//!    worst case: one lock) and spread over 16 services, next to the floor
//!    measured in the same run: the same threads doing a relaxed `fetch_add`
//!    on one shared atomic (the cheapest shared count there is).
//! 2. The `/v1/router/stats` answer (`node_envelope_text`), the same as a
//!    `serde_json::Value` (`node_json`, serialised), and `prometheus`, with
//!    10, 100 and 1,024 services that have HTTP traffic.
//! 3. Resident memory added by 1,024 services with all three windows.
//!
//! The program is a report: it exits non-zero only when a count is wrong.
//! `HYDRA_BENCH_SMOKE=1` runs every step briefly.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hydra_router::stats::{MAX_TRACKED_SERVICES, Stats, WINDOW_SECONDS};
use hydra_testkit::bench::{self, Table};

fn main() -> ExitCode {
    bench::exit_code("bench_stats", run())
}

fn run() -> Result<bool, String> {
    let mut right = true;
    let per_thread: u64 = bench::scaled(400_000, 20_000);

    let mut table = Table::new(&[
        "record_http",
        "threads",
        "calls/s (all threads)",
        "floor: atomic add/s",
        "floor ÷ record",
    ]);
    for (label, threads, services) in [("one service", 1, 1), ("one service", 16, 1), ("16 services", 16, 16)] {
        let stats = Arc::new(Stats::new());
        let names: Arc<Vec<String>> = Arc::new((0..services).map(|i| format!("service-{i:02}")).collect());
        let recorded = {
            let stats = Arc::clone(&stats);
            time_threads(threads, per_thread, move |thread, i| {
                let name = &names[(thread + i as usize) % names.len()];
                let status = if i % 50 == 0 { 503 } else { 200 };
                stats.record_http(name, status, Duration::from_micros(i % 5_000));
            })
        };
        let counter = Arc::new(AtomicU64::new(0));
        let floor = {
            let counter = Arc::clone(&counter);
            time_threads(threads, per_thread, move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
        };
        let expected = threads as u64 * per_thread;
        let counted = total(&stats.node_json(), "httpStats");
        if counted != expected || counter.load(Ordering::Relaxed) != expected {
            eprintln!("bench_stats: {label} × {threads}: counted {counted} of {expected} calls");
            right = false;
        }
        let rate = |wall: Duration| expected as f64 / wall.as_secs_f64().max(1e-9);
        table.row([
            label.to_owned(),
            threads.to_string(),
            format!("{:.1} M", rate(recorded) / 1e6),
            format!("{:.1} M", rate(floor) / 1e6),
            format!("{:.1}×", rate(floor) / rate(recorded)),
        ]);
    }
    table.print();
    println!();

    let mut table = Table::new(&[
        "services",
        "/stats answer (text)",
        "node_json() Value + serialise",
        "JSON size",
        "prometheus",
        "text size",
    ]);
    for services in [10, 100, MAX_TRACKED_SERVICES] {
        let stats = Stats::new();
        for i in 0..services {
            stats.record_http(&format!("service-{i:04}"), 200, Duration::from_millis(3));
        }
        let rounds = bench::scaled(if services > 100 { 5 } else { 50 }, 1);
        let started = Instant::now();
        let mut json_size = 0;
        for _ in 0..rounds {
            json_size = black_box(stats.node_envelope_text()).len();
        }
        let answer_time = started.elapsed() / rounds;
        let started = Instant::now();
        for _ in 0..rounds {
            let json = stats.node_json();
            black_box(serde_json::to_string(&json).map_err(|e| e.to_string())?);
        }
        let json_time = started.elapsed() / rounds;
        let started = Instant::now();
        let mut text_size = 0;
        for _ in 0..rounds {
            text_size = black_box(stats.prometheus(&[])).len();
        }
        let text_time = started.elapsed() / rounds;
        if total(&stats.node_json(), "httpStats") != services as u64 {
            eprintln!("bench_stats: {services} services: wrong JSON totals");
            right = false;
        }
        table.row([
            services.to_string(),
            format!("{:.2} ms", answer_time.as_secs_f64() * 1e3),
            format!("{:.2} ms", json_time.as_secs_f64() * 1e3),
            format!("{:.1} KB", json_size as f64 / 1e3),
            format!("{:.2} ms", text_time.as_secs_f64() * 1e3),
            format!("{:.1} KB", text_size as f64 / 1e3),
        ]);
    }
    table.print();
    println!();

    let before = resident_kb();
    let stats = Stats::new();
    for i in 0..MAX_TRACKED_SERVICES {
        let name = format!("service-{i:04}");
        stats.record_http(&name, 500, Duration::from_millis(1));
        stats.record_ws(&name);
    }
    let after = resident_kb();
    black_box(&stats);
    let mut table = Table::new(&[
        "memory",
        "measured (RSS growth; zero pages untouched)",
        "bound (windows only)",
    ]);
    table.row([
        format!("{MAX_TRACKED_SERVICES} services × 3 windows"),
        match (before, after) {
            (Some(before), Some(after)) => format!("{:.1} MB", after.saturating_sub(before) as f64 / 1024.0),
            _ => "?".to_owned(),
        },
        format!(
            "{:.1} MB",
            (MAX_TRACKED_SERVICES * 3 * WINDOW_SECONDS * 4) as f64 / 1024.0 / 1024.0
        ),
    ]);
    table.print();
    Ok(right)
}

/// Runs `work(thread, i)` `per_thread` times on each of `threads` threads,
/// started together; returns the wall time they took.
fn time_threads(threads: usize, per_thread: u64, work: impl Fn(usize, u64) + Send + Sync + 'static) -> Duration {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    work(thread, i);
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for handle in handles {
        let _ = handle.join();
    }
    started.elapsed()
}

/// Sum of every count of one set of a `node_json` answer.
fn total(json: &serde_json::Value, set: &str) -> u64 {
    json[set]
        .as_object()
        .map(|services| {
            services
                .values()
                .filter_map(|w| w.as_array())
                .flatten()
                .filter_map(serde_json::Value::as_u64)
                .sum()
        })
        .unwrap_or(0)
}

fn resident_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
