//! `watch [--interval 1s]`: a live table of services and instances with
//! their heartbeat age, refreshed until Ctrl-C.
//!
//! Three forms, chosen from stdout and `--json`:
//! - a terminal: the table is redrawn in place on the alternate screen, with
//!   the cursor hidden; Ctrl-C (or SIGTERM) restores the screen and exits 0;
//! - not a terminal (a pipe, a file): one plain snapshot per refresh, no
//!   escape codes, so `hydra-cli watch > log` records the history;
//! - `--json`: one JSON document per line per refresh.
//!
//! Redis is read on a thread of its own, so Ctrl-C is honoured at once even
//! while Redis hangs; when Redis goes away the screen shows the error (and the
//! last table read) and keeps retrying.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hydra::{Hydra, RegistrySnapshot};
use serde::Serialize;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone, render_table};

/// A `nodes` entry without presence whose heartbeat is older than this is
/// stale: `hydra-cli refresh node list` would remove it (Node's 60 s).
pub const STALE_AFTER_SECS: u64 = 60;
/// A heartbeat older than this is late even while presence lasts (Hydra
/// beats every second; presence lives 3 s).
const LATE_AFTER_MS: i64 = 5_000;
/// How often the main thread looks for Ctrl-C while waiting.
const TICK: Duration = Duration::from_millis(50);
/// How long after Ctrl-C the process ends even if the main thread is stuck.
const STUCK_EXIT_AFTER: Duration = Duration::from_secs(1);

/// One refresh: what Redis said, or why it said nothing.
struct Frame {
    at: SystemTime,
    read: Result<RegistrySnapshot, String>,
}

/// `watch`.
pub fn watch(ctx: &Context, interval: Duration) -> CliResult<Report> {
    // Unreachable at the start is a plain connection error (exit 2); once
    // running, Redis trouble is shown and retried.
    let hydra = ctx.hydra()?.clone();
    let interval = interval.max(Duration::from_millis(50));
    let stop = Arc::new(AtomicBool::new(false));
    handle_signals(stop.clone())?;
    let frames = spawn_reader(hydra.clone(), interval, stop.clone())?;
    let redis = hydra.config().redis().display_url().to_string();
    let stdout = std::io::stdout();
    let form = if ctx.style.json {
        Form::Json
    } else if stdout.is_terminal() {
        Form::Screen
    } else {
        Form::Plain
    };
    let mut out = stdout.lock();
    let screen = match form {
        Form::Screen => Some(Screen::enter(&mut out).map_err(write_error)?),
        _ => None,
    };
    let mut last_good: Option<(SystemTime, RegistrySnapshot)> = None;
    let outcome = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let frame = match frames.recv_timeout(TICK) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        };
        if let Ok(snapshot) = &frame.read {
            last_good = Some((frame.at, snapshot.clone()));
        }
        let written = match form {
            // One write of the whole line (a frame can be megabytes).
            Form::Json => {
                let mut line = frame_json(&frame, &redis);
                line.push('\n');
                out.write_all(line.as_bytes())
            }
            Form::Plain => write!(
                out,
                "{}\n\n",
                frame_text(&frame, &last_good, &redis, interval, false, None)
            ),
            Form::Screen => {
                let rows = crossterm::terminal::size().map(|(_, rows)| usize::from(rows)).ok();
                let text = frame_text(&frame, &last_good, &redis, interval, ctx.style.color, rows);
                Screen::draw(&mut out, &text)
            }
        };
        if let Err(e) = written.and_then(|()| out.flush()) {
            // A closed pipe (`watch | head`) ends the watch quietly.
            break if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(write_error(e))
            };
        }
    };
    if let Some(screen) = screen {
        screen.leave(&mut out);
    }
    outcome?;
    let _ = out.flush();
    // Everything was printed as it came: end here rather than hand `main` a
    // report to print after the last frame. Status 0: Ctrl-C is how watch ends.
    exit_once()
}

/// Ends the process with status 0, once. The main thread and the signal
/// thread's stuck-write deadline can both get here (on a loaded machine the
/// main thread may take longer than the deadline to notice Ctrl-C), and
/// libc's `exit` must not run on two threads at once: the second one parks.
fn exit_once() -> ! {
    static EXITING: AtomicBool = AtomicBool::new(false);
    if EXITING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    std::process::exit(0)
}

/// Ctrl-C and SIGTERM ask the main thread to stop (it restores the terminal
/// and exits 0 within a tick). Should it be stuck writing (a pipe whose
/// reader stopped reading, e.g. `watch | less` after Ctrl-C), the process
/// ends anyway after [`STUCK_EXIT_AFTER`], also with status 0.
fn handle_signals(stop: Arc<AtomicBool>) -> CliResult<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| CliError::failed(format!("cannot handle Ctrl-C: {e}"), ""))?;
    std::thread::Builder::new()
        .name("hydra-cli-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::SeqCst);
                std::thread::sleep(STUCK_EXIT_AFTER);
                exit_once();
            }
        })
        .map_err(|e| CliError::failed(format!("cannot handle Ctrl-C: {e}"), ""))?;
    Ok(())
}

fn write_error(e: std::io::Error) -> CliError {
    CliError::failed(format!("cannot write to the terminal: {e}"), "")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Screen,
    Plain,
    Json,
}

/// Reads a snapshot every `interval` on a thread of its own (`hydra-cli-watch`).
fn spawn_reader(hydra: Hydra, interval: Duration, stop: Arc<AtomicBool>) -> CliResult<Receiver<Frame>> {
    let (tx, rx) = sync_channel::<Frame>(1);
    std::thread::Builder::new()
        .name("hydra-cli-watch".into())
        .spawn(move || read_forever(&hydra, interval, &stop, &tx))
        .map_err(|e| CliError::failed(format!("cannot start the reader thread: {e}"), ""))?;
    Ok(rx)
}

fn read_forever(hydra: &Hydra, interval: Duration, stop: &AtomicBool, tx: &SyncSender<Frame>) {
    while !stop.load(Ordering::SeqCst) {
        let started = std::time::Instant::now();
        let frame = Frame {
            at: SystemTime::now(),
            read: hydra.registry_snapshot().map_err(|e| e.to_string()),
        };
        if tx.send(frame).is_err() {
            return;
        }
        // Sleep the rest of the interval in short steps, so a stop is seen.
        while started.elapsed() < interval && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(TICK.min(interval.saturating_sub(started.elapsed())));
        }
    }
}

/// The terminal while watching: alternate screen, cursor hidden. Restored
/// by `leave`, and by `Drop` should anything unwind.
struct Screen {
    active: bool,
}

impl Screen {
    fn enter(out: &mut impl Write) -> std::io::Result<Screen> {
        crossterm::execute!(out, crossterm::terminal::EnterAlternateScreen, crossterm::cursor::Hide)?;
        Ok(Screen { active: true })
    }

    /// Cursor home, each line cleared to its end, then the rest of the
    /// screen cleared: no flicker, no leftovers from a longer frame.
    fn draw(out: &mut impl Write, text: &str) -> std::io::Result<()> {
        use crossterm::terminal::{Clear, ClearType};
        crossterm::queue!(out, crossterm::cursor::MoveTo(0, 0))?;
        for line in text.lines() {
            write!(out, "{line}")?;
            crossterm::queue!(out, Clear(ClearType::UntilNewLine))?;
            write!(out, "\r\n")?;
        }
        crossterm::queue!(out, Clear(ClearType::FromCursorDown))
    }

    fn leave(mut self, out: &mut impl Write) {
        self.active = false;
        let _ = crossterm::execute!(out, crossterm::cursor::Show, crossterm::terminal::LeaveAlternateScreen);
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.active {
            let mut out = std::io::stdout();
            let _ = crossterm::execute!(out, crossterm::cursor::Show, crossterm::terminal::LeaveAlternateScreen);
        }
    }
}

/// An instance's state as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    /// Presence key there, heartbeat recent.
    Alive,
    /// Presence gone (or heartbeat older than 5 s): stopped, hung, cut off.
    Late,
    /// Presence gone and heartbeat older than 60 s: a leftover entry.
    Stale,
}

impl State {
    fn of(present: bool, age_ms: i64) -> State {
        match (present, age_ms) {
            (true, age) if age <= LATE_AFTER_MS => State::Alive,
            (false, age) if age > (STALE_AFTER_SECS as i64) * 1000 => State::Stale,
            _ => State::Late,
        }
    }

    fn word(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Late => "late",
            State::Stale => "stale",
        }
    }

    fn tone(self) -> Tone {
        match self {
            State::Alive => Tone::Good,
            State::Late => Tone::Warn,
            State::Stale => Tone::Bad,
        }
    }
}

fn ms_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Ages as people read them: `3s`, `2m 5s`, `1h 4m`, `2d 3h`.
pub fn format_age(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// One row per instance, then one per registered service without any
/// instance record; each with its state.
fn rows(snapshot: &RegistrySnapshot, now_ms: i64) -> Vec<Row> {
    let mut rows: Vec<Row> = snapshot
        .instances
        .iter()
        .map(|s| {
            let i = &s.instance;
            let age_ms = if i.updated_on_ts > 0 {
                (now_ms - i.updated_on_ts).max(0)
            } else {
                i64::MAX
            };
            Row {
                service: i.service_name.clone(),
                instance: Some(i.instance_id.clone()),
                version: i.version.clone(),
                address: format!("{}:{}", i.ip, i.port),
                age_ms: (age_ms != i64::MAX).then_some(age_ms),
                present: s.present,
                state: Some(State::of(s.present, age_ms)),
            }
        })
        .collect();
    let with_instances: std::collections::HashSet<String> = rows.iter().map(|r| r.service.clone()).collect();
    for service in &snapshot.services {
        if !with_instances.contains(&service.service_name) {
            rows.push(Row {
                service: service.service_name.clone(),
                instance: None,
                version: String::new(),
                address: String::new(),
                age_ms: None,
                present: false,
                state: None,
            });
        }
    }
    rows.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
    rows
}

struct Row {
    service: String,
    instance: Option<String>,
    version: String,
    address: String,
    age_ms: Option<i64>,
    present: bool,
    /// None: a registered service without instance records.
    state: Option<State>,
}

fn clock(at: SystemTime) -> String {
    // HH:MM:SS UTC, from the ISO-8601 form.
    let iso = humantime::format_rfc3339_seconds(at).to_string();
    iso.get(11..19).map(|t| format!("{t} UTC")).unwrap_or(iso)
}

/// The human form of a frame: header, summary, table (or the error and the
/// last table read), cut to `rows` lines on a terminal.
fn frame_text(
    frame: &Frame,
    last_good: &Option<(SystemTime, RegistrySnapshot)>,
    redis: &str,
    interval: Duration,
    color: bool,
    screen_rows: Option<usize>,
) -> String {
    let mut lines = vec![format!(
        "hydra-cli watch · {redis} · {} · every {} · Ctrl-C to quit",
        clock(frame.at),
        humantime::format_duration(interval)
    )];
    let shown = match (&frame.read, last_good) {
        (Ok(snapshot), _) => Some((frame.at, snapshot)),
        (Err(error), last) => {
            let since = last
                .as_ref()
                .map(|(at, _)| format!("; the table below was read at {}", clock(*at)))
                .unwrap_or_default();
            let text = format!(
                "Redis error: {error} (retrying every {}){since}",
                humantime::format_duration(interval)
            );
            lines.push(if color { format!("\x1b[31m{text}\x1b[0m") } else { text });
            last.as_ref().map(|(at, snapshot)| (*at, snapshot))
        }
    };
    if let Some((at, snapshot)) = shown {
        let rows = rows(snapshot, ms_since_epoch(at));
        let count = |state| rows.iter().filter(|r| r.state == Some(state)).count();
        let services: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        lines.push(format!(
            "{} services · {} instances: {} alive, {} late, {} stale",
            services.len(),
            rows.iter().filter(|r| r.instance.is_some()).count(),
            count(State::Alive),
            count(State::Late),
            count(State::Stale),
        ));
        lines.push(String::new());
        // On a terminal only the rows that fit are rendered (leaving room for
        // the table's header, a "more" line and a free last line): cheap with
        // thousands of entries.
        let room = screen_rows.map(|max| max.saturating_sub(lines.len() + 3));
        let shown = room.map_or(rows.len(), |room| room.min(rows.len()));
        let mut table = Table::new(["service", "instance", "version", "address", "heartbeat", "state"]);
        for row in rows.iter().take(shown) {
            let (state, tone) = match row.state {
                Some(state) => (state.word(), state.tone()),
                None => ("no instance", Tone::Bad),
            };
            table.row([
                Cell::from(row.service.clone()),
                Cell::from(row.instance.clone().unwrap_or_else(|| "-".into())),
                Cell::from(row.version.clone()),
                Cell::from(row.address.clone()),
                Cell::new(
                    row.age_ms
                        .map(|ms| format!("{} ago", format_age(u64::try_from(ms / 1000).unwrap_or(0))))
                        .unwrap_or_default(),
                    Tone::Dim,
                ),
                Cell::new(state, tone),
            ]);
        }
        lines.extend(render_table(&table, color).lines().map(str::to_string));
        if shown < rows.len() {
            lines.push(format!(
                "… {} more rows (enlarge the window, or `hydra-cli nodes` for the full list)",
                rows.len() - shown
            ));
        }
    }
    // One entry per screen line (an error message may hold several).
    let mut lines: Vec<String> = lines.join("\n").lines().map(str::to_string).collect();
    // Leave the last line free, and say what did not fit.
    if let Some(max) = screen_rows.filter(|&max| max >= 4 && lines.len() > max - 1) {
        let hidden = lines.len() - (max - 2);
        lines.truncate(max - 2);
        lines.push(format!(
            "… {hidden} more lines (enlarge the window, or `hydra-cli nodes` for the full list)"
        ));
    }
    lines.join("\n")
}

/// The `--json` form of a frame, one line:
/// `{"at", "redis", "ok", "error", "instances": [...], "services": [...]}`.
/// Serialized straight from borrowed rows (a frame can hold 10,000 instances).
fn frame_json(frame: &Frame, redis: &str) -> String {
    let at = humantime::format_rfc3339_millis(frame.at).to_string();
    let snapshot = match &frame.read {
        Err(error) => {
            let doc = FrameDoc {
                at,
                redis,
                ok: false,
                error: Some(error),
                instances: Vec::new(),
                services: Vec::new(),
            };
            return serde_json::to_string(&doc).unwrap_or_default();
        }
        Ok(snapshot) => snapshot,
    };
    let rows = rows(snapshot, ms_since_epoch(frame.at));
    // Counts per service and state, in one pass over the rows.
    let mut counts: HashMap<(&str, State), usize> = HashMap::new();
    for row in &rows {
        if let Some(state) = row.state {
            *counts.entry((row.service.as_str(), state)).or_default() += 1;
        }
    }
    let doc = FrameDoc {
        at,
        redis,
        ok: true,
        error: None,
        instances: rows
            .iter()
            .filter_map(|r| {
                Some(InstanceDoc {
                    service: &r.service,
                    instance_id: r.instance.as_deref()?,
                    version: &r.version,
                    address: &r.address,
                    heartbeat_age_ms: r.age_ms,
                    present: r.present,
                    state: r.state.map(State::word),
                })
            })
            .collect(),
        services: snapshot
            .services
            .iter()
            .map(|s| {
                let of = |state| counts.get(&(s.service_name.as_str(), state)).copied().unwrap_or(0);
                ServiceDoc {
                    service: &s.service_name,
                    service_type: &s.service_type,
                    registered_on: &s.registered_on,
                    alive: of(State::Alive),
                    late: of(State::Late),
                    stale: of(State::Stale),
                }
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

#[derive(Serialize)]
struct FrameDoc<'a> {
    at: String,
    redis: &'a str,
    ok: bool,
    error: Option<&'a str>,
    instances: Vec<InstanceDoc<'a>>,
    services: Vec<ServiceDoc<'a>>,
}

#[derive(Serialize)]
struct InstanceDoc<'a> {
    service: &'a str,
    instance_id: &'a str,
    version: &'a str,
    address: &'a str,
    heartbeat_age_ms: Option<i64>,
    present: bool,
    state: Option<&'static str>,
}

#[derive(Serialize)]
struct ServiceDoc<'a> {
    service: &'a str,
    #[serde(rename = "type")]
    service_type: &'a str,
    registered_on: &'a str,
    alive: usize,
    late: usize,
    stale: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_people_write_them() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(125), "2m 5s");
        assert_eq!(format_age(3_725), "1h 2m");
        assert_eq!(format_age(2 * 86_400 + 3 * 3_600), "2d 3h");
    }

    #[test]
    fn a_redis_error_is_shown_above_the_last_table_read() {
        let empty = RegistrySnapshot {
            instances: Vec::new(),
            services: Vec::new(),
            routes: Default::default(),
        };
        let at = SystemTime::now();
        let frame = Frame {
            at,
            read: Err("redis: connection refused".into()),
        };
        let text = frame_text(
            &frame,
            &Some((at, empty)),
            "redis://h:1/15",
            Duration::from_secs(1),
            false,
            None,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("hydra-cli watch · redis://h:1/15 · "), "{text}");
        assert!(
            lines[1]
                .starts_with("Redis error: redis: connection refused (retrying every 1s); the table below was read at"),
            "{text}"
        );
        assert!(text.contains("0 services · 0 instances"), "{text}");
        let first = frame_text(&frame, &None, "redis://h:1/15", Duration::from_secs(1), false, None);
        assert_eq!(first.lines().count(), 2, "no table before anything was read: {first}");
    }

    #[test]
    fn a_long_table_is_cut_to_the_screen_saying_so() {
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let frame = Frame {
            at: SystemTime::now(),
            read: Err(text),
        };
        let cut = frame_text(&frame, &None, "r", Duration::from_secs(1), false, Some(20));
        assert_eq!(cut.lines().count(), 19, "{cut}");
        assert!(cut.lines().last().unwrap().contains("more lines"), "{cut}");
    }

    #[test]
    fn only_the_rows_that_fit_are_drawn() {
        let instances = (0..100)
            .map(|i| hydra::InstanceState {
                instance: hydra::Instance {
                    service_name: format!("s{i:03}"),
                    service_description: String::new(),
                    version: "1".into(),
                    instance_id: format!("{i:032x}"),
                    updated_on: "2020-01-01T00:00:00.000Z".into(),
                    process_id: 1,
                    ip: "h".into(),
                    port: 1,
                    host_name: "h".into(),
                    updated_on_ts: 1,
                    elapsed: 1,
                },
                present: false,
            })
            .collect();
        let snapshot = RegistrySnapshot {
            instances,
            services: Vec::new(),
            routes: Default::default(),
        };
        let frame = Frame {
            at: SystemTime::now(),
            read: Ok(snapshot),
        };
        let text = frame_text(&frame, &None, "r", Duration::from_secs(1), false, Some(20));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 19, "{text}");
        assert_eq!(
            lines[18],
            "… 86 more rows (enlarge the window, or `hydra-cli nodes` for the full list)"
        );
        assert!(lines[17].contains("s013"), "{text}");
    }

    #[test]
    fn states_follow_presence_and_heartbeat_age() {
        assert_eq!(State::of(true, 900), State::Alive);
        assert_eq!(State::of(true, 6_000), State::Late);
        assert_eq!(State::of(false, 3_100), State::Late);
        assert_eq!(State::of(false, 61_000), State::Stale);
    }
}
