//! The router's logger: lines go to stderr and the last ones are kept in
//! memory for `GET /v1/router/log` and the dashboard (Node's `{ts,type,entry}`).
//!
//! Node trims its ring to 100 entries 30 s after it grows past 100; this one
//! simply keeps the newest [`CAPACITY`].

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// Entries kept.
pub const CAPACITY: usize = 100;

/// The newest log entries, shared by the logger and the API.
#[derive(Clone, Default)]
pub struct LogRing {
    entries: Arc<Mutex<VecDeque<Value>>>,
}

impl LogRing {
    /// An empty ring.
    pub fn new() -> LogRing {
        LogRing::default()
    }

    /// Keeps an entry (`type` is `info`, `warn`, `error`, `debug`).
    pub fn push(&self, kind: &str, entry: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(json!({ "ts": hydra_timestamp(), "type": kind, "entry": entry }));
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> Vec<Value> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn hydra_timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A `log` logger that writes to stderr and keeps entries in a [`LogRing`].
pub struct RingLogger {
    ring: LogRing,
    level: log::LevelFilter,
}

impl RingLogger {
    /// Installs the logger for the process (the binary does this once).
    pub fn install(ring: LogRing, level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
        log::set_boxed_logger(Box::new(RingLogger { ring, level }))?;
        log::set_max_level(level);
        Ok(())
    }
}

impl log::Log for RingLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let kind = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug | log::Level::Trace => "debug",
        };
        let entry = record.args().to_string();
        // A closed stderr must not take the router down.
        let _ = writeln!(std::io::stderr().lock(), "{} {kind:5} {entry}", hydra_timestamp());
        self.ring.push(kind, &entry);
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_in_order() {
        let ring = LogRing::new();
        for n in 0..CAPACITY + 5 {
            ring.push("info", &format!("line {n}"));
        }
        let entries = ring.entries();
        assert_eq!(entries.len(), CAPACITY);
        assert_eq!(entries[0]["entry"], "line 5");
        assert_eq!(entries[CAPACITY - 1]["entry"], format!("line {}", CAPACITY + 4));
        assert_eq!(entries[0]["type"], "info");
        assert!(entries[0]["ts"].as_str().unwrap().ends_with('Z'));
    }
}
