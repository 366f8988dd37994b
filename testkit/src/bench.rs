//! Measurement helpers shared by the benchmark programs in `examples/`
//! (`bench_discovery`, `bench_footprint`, `bench_http`, `bench_messaging`,
//! `bench_queue`): latency recording and summaries, the counting of failed
//! requests, the rotation of subjects over rounds, threads that start
//! together, Markdown tables, verdicts, and readers of Redis's `INFO`.
//!
//! Every benchmark is a report printed on stdout, with progress on stderr; these
//! helpers print nothing but the tables they are asked to.

use std::fmt;
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// 64 bytes of padding in every [`padded_body`].
const PAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// How many failure reasons [`Failures`] keeps.
const FIRST_FAILURES: usize = 3;

/// Environment variable that asks a benchmark program for a short smoke run.
pub const SMOKE_ENV: &str = "HYDRA_BENCH_SMOKE";

/// True when `HYDRA_BENCH_SMOKE` is set (to anything but `0` or empty):
/// `scripts/test` runs every benchmark program this way so none of them rots.
/// A smoke run does every step of the real one with tiny counts and short
/// windows (a few seconds in all), prints its tables, and still fails on wrong
/// answers; its figures mean nothing and nothing asserts on them.
#[must_use]
pub fn smoke() -> bool {
    std::env::var(SMOKE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `small` in a smoke run (see [`smoke`]).
#[must_use]
pub fn scaled<T>(full: T, small: T) -> T {
    if smoke() { small } else { full }
}

/// The body the request benchmarks send: `{"n": <n>, "pad": <64 bytes>}`.
#[must_use]
pub fn padded_body(n: u64) -> Value {
    json!({"n": n, "pad": PAD})
}

/// Latencies of the successful calls of one measurement, and the wall time of
/// its timed parts.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
    wall: Duration,
}

impl Latencies {
    /// An empty recorder.
    #[must_use]
    pub fn new() -> Latencies {
        Latencies::default()
    }

    /// Records the latency of one call.
    pub fn record(&mut self, latency: Duration) {
        self.samples.push(latency);
    }

    /// Adds to the wall time of the timed parts.
    pub fn add_wall(&mut self, wall: Duration) {
        self.wall += wall;
    }

    /// How many latencies are recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no latency is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The wall time of the timed parts so far.
    #[must_use]
    pub fn wall(&self) -> Duration {
        self.wall
    }

    /// Takes in the latencies recorded by another recorder (e.g. one thread's
    /// of a concurrent round). Its wall time is not added: concurrent parts
    /// overlap, so their caller measures the wall time itself.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// Makes calls one after another for `budget` (see [`Tally::time_for`]),
    /// recording the latency of those `succeeded` says were successes.
    fn time_for<T, O>(
        &mut self,
        budget: Duration,
        first: u64,
        mut input: impl FnMut(u64) -> T,
        mut call: impl FnMut(&T) -> O,
        mut succeeded: impl FnMut(&T, O) -> bool,
    ) -> Instant {
        let until = Instant::now() + budget;
        let mut n = first;
        loop {
            let now = Instant::now();
            if now >= until {
                return now;
            }
            let value = input(n);
            n += 1;
            let t = Instant::now();
            let outcome = call(&value);
            let elapsed = t.elapsed();
            if succeeded(&value, outcome) {
                self.samples.push(elapsed);
            }
        }
    }

    /// Percentiles, mean and maximum of the latencies, and calls per second of
    /// wall time (sorts the latencies).
    pub fn summary(&mut self) -> Summary {
        self.samples.sort_unstable();
        let n = self.samples.len();
        let at = |q: usize| {
            self.samples
                .get((n * q / 100).min(n.saturating_sub(1)))
                .map_or(f64::NAN, |&d| micros(d))
        };
        Summary {
            count: n,
            p50: at(50),
            p99: at(99),
            max: self.samples.last().map_or(f64::NAN, |&d| micros(d)),
            mean: self.samples.iter().map(|&d| micros(d)).sum::<f64>() / n.max(1) as f64,
            per_sec: n as f64 / self.wall.as_secs_f64(),
        }
    }
}

/// Latency summary in microseconds (`NaN` when nothing was recorded), and
/// throughput.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// How many latencies were recorded.
    pub count: usize,
    /// Median latency, µs.
    pub p50: f64,
    /// 99th percentile latency, µs.
    pub p99: f64,
    /// Largest latency, µs.
    pub max: f64,
    /// Mean latency, µs.
    pub mean: f64,
    /// Calls per second of wall time.
    pub per_sec: f64,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A latency in microseconds as the reports show it: `201 µs` below 10 ms,
/// `15.8 ms` from there.
#[must_use]
pub fn format_micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Why one request of a measurement did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer (transport error, timeout, refused).
    NoAnswer(String),
    /// An answer, but not the right one.
    WrongAnswer(String),
}

/// The failed requests of a measurement: how many of each kind, and the first
/// few reasons.
#[derive(Debug, Default, Clone)]
pub struct Failures {
    no_answer: usize,
    wrong_answer: usize,
    first: Vec<String>,
}

impl Failures {
    /// Counts a failed outcome; returns whether `outcome` was a success.
    pub fn check<T>(&mut self, outcome: Result<T, Failure>) -> bool {
        match outcome {
            Ok(_) => true,
            Err(failure) => {
                self.record(failure);
                false
            }
        }
    }

    /// Counts one failure.
    pub fn record(&mut self, failure: Failure) {
        let reason = match failure {
            Failure::NoAnswer(reason) => {
                self.no_answer += 1;
                reason
            }
            Failure::WrongAnswer(reason) => {
                self.wrong_answer += 1;
                reason
            }
        };
        self.note(reason);
    }

    /// Requests that got no answer.
    #[must_use]
    pub fn no_answer(&self) -> usize {
        self.no_answer
    }

    /// Requests that got a wrong answer.
    #[must_use]
    pub fn wrong_answer(&self) -> usize {
        self.wrong_answer
    }

    /// All failed requests.
    #[must_use]
    pub fn total(&self) -> usize {
        self.no_answer + self.wrong_answer
    }

    /// The reasons of the first few failures.
    #[must_use]
    pub fn first(&self) -> &[String] {
        &self.first
    }

    /// Takes in the failures counted by another (e.g. one thread's).
    pub fn merge(&mut self, other: Failures) {
        self.no_answer += other.no_answer;
        self.wrong_answer += other.wrong_answer;
        for reason in other.first {
            self.note(reason);
        }
    }

    fn note(&mut self, reason: String) {
        if self.first.len() < FIRST_FAILURES {
            self.first.push(reason);
        }
    }
}

/// What one measurement of calls (all rounds of one subject and mode)
/// collected: the latencies of its successful calls, its failures, the
/// connections it opened, and what it cost Redis.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Latencies of the successful calls and wall time of the timed parts.
    pub latencies: Latencies,
    /// Calls without an answer or with a wrong one.
    pub failures: Failures,
    /// Connections opened during the timed parts (by the subject, or accepted
    /// by its server: whatever the benchmark counts).
    pub connections: u64,
    /// Redis's counters during the timed parts. Read around a whole round, so
    /// [`Tally::merge`] leaves them alone.
    pub redis: RedisCounters,
}

impl Tally {
    /// `count` untimed calls on `input(first)`, `input(first + 1)`, …; their
    /// failures still count.
    pub fn warm_up<T>(
        &mut self,
        first: u64,
        count: usize,
        mut input: impl FnMut(u64) -> T,
        mut call: impl FnMut(&T) -> Result<(), Failure>,
    ) {
        for n in first..first + count as u64 {
            self.failures.check(call(&input(n)));
        }
    }

    /// Makes calls one after another for `budget`: the `k`-th (from 0) on
    /// `input(first + k)`, timing `call` alone; `check` then turns its outcome
    /// into a success, whose latency is recorded, or a counted failure.
    /// Returns when it stopped. The wall time is left to the caller (see
    /// [`Latencies::add_wall`]).
    pub fn time_for<T, O>(
        &mut self,
        budget: Duration,
        first: u64,
        input: impl FnMut(u64) -> T,
        call: impl FnMut(&T) -> O,
        mut check: impl FnMut(&T, O) -> Result<(), Failure>,
    ) -> Instant {
        let failures = &mut self.failures;
        self.latencies.time_for(budget, first, input, call, |value, outcome| {
            failures.check(check(value, outcome))
        })
    }

    /// Takes in what another tally collected (e.g. one thread's of a concurrent
    /// round): latencies, failures and connections, not wall time nor Redis
    /// counters.
    pub fn merge(&mut self, other: Tally) {
        self.latencies.merge(other.latencies);
        self.failures.merge(other.failures);
        self.connections += other.connections;
    }

    /// Where the tally stands now, to report one round with
    /// [`Tally::per_sec_since`] and [`Tally::connections_since`].
    #[must_use]
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            calls: self.latencies.len(),
            wall: self.latencies.wall(),
            connections: self.connections,
        }
    }

    /// Successful calls per second of wall time since `checkpoint`.
    #[must_use]
    pub fn per_sec_since(&self, checkpoint: Checkpoint) -> f64 {
        (self.latencies.len() - checkpoint.calls) as f64 / (self.latencies.wall() - checkpoint.wall).as_secs_f64()
    }

    /// Connections opened since `checkpoint`.
    #[must_use]
    pub fn connections_since(&self, checkpoint: Checkpoint) -> u64 {
        self.connections - checkpoint.connections
    }
}

/// Where a [`Tally`] stood at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    calls: usize,
    wall: Duration,
    connections: u64,
}

/// The rounds of a comparison, subject by subject: `(round, subject)` for every
/// round in `0..rounds` and every subject in `0..subjects`, each round starting
/// one subject later than the one before (round 1 of 3 subjects runs 1, 2, 0),
/// so that the drift of a shared machine falls on all subjects alike.
pub fn round_robin(rounds: usize, subjects: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rounds).flat_map(move |round| (0..subjects).map(move |k| (round, (round + k) % subjects)))
}

/// What [`run_together`] returns.
#[derive(Debug)]
pub struct Together<S, R> {
    /// What `at_start` returned.
    pub at_start: S,
    /// Each thread's result, in thread order.
    pub results: Vec<R>,
    /// From the common start to the last thread's finish.
    pub wall: Duration,
}

/// Runs `work(t, start)` for `t` in `0..threads` on scoped threads named
/// `<name>-<t>` that start together. Each thread prepares (e.g. warms up),
/// waits at `start` exactly once (also when it fails, or the others wait
/// forever), does the timed work and returns its result and the instant it
/// finished. Once all of them are at the start, this thread runs `at_start`
/// (e.g. reads counters).
///
/// # Panics
///
/// When a thread cannot be spawned or panics.
pub fn run_together<S, R: Send>(
    threads: usize,
    name: &str,
    at_start: impl FnOnce() -> S,
    work: impl Fn(usize, &Barrier) -> (R, Instant) + Sync,
) -> Together<S, R> {
    let start = Barrier::new(threads + 1);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (start, work) = (&start, &work);
                thread::Builder::new()
                    .name(format!("{name}-{t}"))
                    .spawn_scoped(scope, move || work(t, start))
            })
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("cannot spawn {name} threads: {e}"));
        start.wait();
        let started = Instant::now();
        let at_start = at_start();
        let mut last = started;
        let results = workers
            .into_iter()
            .map(|w| {
                let (result, finished) = w.join().unwrap_or_else(|_| panic!("a {name} thread panicked"));
                last = last.max(finished);
                result
            })
            .collect();
        Together {
            at_start,
            results,
            wall: last - started,
        }
    })
}

/// How a [`Table`] column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// `|---|`
    Left,
    /// `|---:|`
    Right,
}

/// A Markdown table, printed as the reports show it.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers: the first column (the row labels)
    /// left-aligned, the others (numbers) right-aligned.
    #[must_use]
    pub fn new(header: &[&str]) -> Table {
        let align = (0..header.len())
            .map(|c| if c == 0 { Align::Left } else { Align::Right })
            .collect();
        Table {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            align,
            rows: Vec::new(),
        }
    }

    /// Sets the alignment of every column, in order.
    #[must_use]
    pub fn aligned(mut self, align: &[Align]) -> Table {
        self.align = align.to_vec();
        self
    }

    /// Adds a row.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// Prints a blank line, then the table.
    pub fn print(&self) {
        println!();
        print!("{self}");
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| {
            f.write_str("|")?;
            for cell in cells {
                if cell.is_empty() {
                    f.write_str(" |")?;
                } else {
                    write!(f, " {cell} |")?;
                }
            }
            f.write_str("\n")
        };
        line(f, &self.header)?;
        f.write_str("|")?;
        for align in &self.align {
            f.write_str(match align {
                Align::Left => "---|",
                Align::Right => "---:|",
            })?;
        }
        f.write_str("\n")?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

/// How a report marks a target: `— met` or `— NOT met`.
#[must_use]
pub fn verdict(met: bool) -> &'static str {
    if met { "— met" } else { "— NOT met" }
}

/// The exit code of a benchmark program whose run returns whether everything
/// it checked was right (a missed target is not a failure): success for
/// `Ok(true)`, failure for `Ok(false)` or an error, which is printed on stderr
/// as `<program>: <error>`.
pub fn exit_code(program: &str, outcome: Result<bool, impl fmt::Display>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `redis_version` of the server behind `conn` (`?` when `INFO server`
/// does not say).
///
/// # Errors
///
/// When `INFO` fails.
pub fn redis_version(conn: &mut redis::Connection) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query(conn)?;
    Ok(info_field(&info, "redis_version").unwrap_or("?").to_string())
}

/// Redis's activity counters from `INFO stats`: what a measurement costs the
/// server. Subtract two readings with [`RedisCounters::since`]; add up such
/// differences with `+=`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedisCounters {
    /// `total_commands_processed`, not counting the `INFO` that read it.
    pub commands: u64,
    /// `total_connections_received`.
    pub connections: u64,
}

impl RedisCounters {
    /// Reads the counters with one `INFO stats`.
    ///
    /// # Errors
    ///
    /// When `INFO` fails or lacks a counter.
    pub fn read(conn: &mut redis::Connection) -> redis::RedisResult<RedisCounters> {
        let info: String = redis::cmd("INFO").arg("stats").query(conn)?;
        let counter = |name: &'static str| -> redis::RedisResult<u64> {
            info_field(&info, name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| (redis::ErrorKind::Parse, "INFO stats lacks a counter", name.to_string()).into())
        };
        Ok(RedisCounters {
            commands: counter("total_commands_processed")?.saturating_sub(1),
            connections: counter("total_connections_received")?,
        })
    }

    /// Redis commands per call, for `calls` calls (at least 1).
    #[must_use]
    pub fn commands_per(self, calls: usize) -> f64 {
        self.commands as f64 / calls.max(1) as f64
    }

    /// What the counters grew by since `before`.
    #[must_use]
    pub fn since(self, before: RedisCounters) -> RedisCounters {
        RedisCounters {
            commands: self.commands - before.commands,
            connections: self.connections - before.connections,
        }
    }
}

impl std::ops::AddAssign for RedisCounters {
    fn add_assign(&mut self, other: RedisCounters) {
        self.commands += other.commands;
        self.connections += other.connections;
    }
}

/// The value of `field` in the text of an `INFO` answer (`field:value` lines).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_the_reports_show_them() {
        let mut table = Table::new(&["", "p50", "req/s"]);
        table.row(["hydra-rs".to_string(), format_micros(201.4), format_micros(15_800.0)]);
        assert_eq!(
            table.to_string(),
            "| | p50 | req/s |\n|---|---:|---:|\n| hydra-rs | 201 µs | 15.8 ms |\n"
        );
        let all_right = Table::new(&["a", "b"]).aligned(&[Align::Right, Align::Right]);
        assert_eq!(all_right.to_string(), "| a | b |\n|---:|---:|\n");
    }

    #[test]
    fn round_robin_starts_each_round_one_subject_later() {
        let order: Vec<_> = round_robin(3, 3).collect();
        assert_eq!(
            order,
            [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 0), (2, 2), (2, 0), (2, 1)]
        );
    }

    #[test]
    fn summaries_pick_percentiles_by_rank() {
        let mut latencies = Latencies::new();
        for us in (1..=100).rev() {
            latencies.record(Duration::from_micros(us));
        }
        latencies.add_wall(Duration::from_secs(2));
        let s = latencies.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50 - 51.0).abs() < 1e-6 && (s.p99 - 100.0).abs() < 1e-6 && (s.max - 100.0).abs() < 1e-6);
        assert!((s.mean - 50.5).abs() < 1e-6 && (s.per_sec - 50.0).abs() < 1e-9);
        assert!(Latencies::new().summary().p50.is_nan());
    }

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Stats\r\ntotal_commands_processed:42\r\ntotal_connections_received:7\r\n";
        assert_eq!(info_field(info, "total_commands_processed"), Some("42"));
        assert_eq!(info_field(info, "total_commands"), None);
    }
}
