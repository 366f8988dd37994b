//! A service's queue (Node's `mqrecieved` → `mqinprogress` → `mqincomplete`
//! lists): `queue stats`, `queue peek` (without taking anything) and
//! `queue redrive` (dead letters back to the queue).

use std::time::{SystemTime, UNIX_EPOCH};

use hydra::{ErrorCode, Hydra, QueueStats, keys};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone};

/// Widest body shown in `queue peek`'s table (the JSON form has all of it).
const BODY_COLUMN: usize = 60;

/// `queue stats <svc>`: waiting, in flight, dead letters, the oldest
/// waiting message's age and the live hydra-rs consumers.
pub fn stats(ctx: &Context, service: &str) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let stats = read_stats(hydra, service)?;
    require_known(hydra, service, &stats)?;
    let oldest_ms = stats.oldest_waiting_age.map(|age| age.as_millis() as u64);
    let json = json!({
        "service": service,
        "waiting": stats.waiting,
        "in_flight": stats.in_progress,
        "dead_letters": stats.incomplete,
        "oldest_waiting_ms": oldest_ms,
        "consumers": stats.consumers,
        "keys": {
            "waiting": keys::queue_received(service),
            "in_flight": keys::queue_in_progress(service),
            "dead_letters": keys::queue_incomplete(service),
        },
    });
    let mut table = Table::new(["list", "messages", "key"]);
    table
        .row([
            Cell::from("waiting"),
            Cell::new(stats.waiting.to_string(), waiting_tone(&stats)),
            Cell::new(keys::queue_received(service), Tone::Dim),
        ])
        .row([
            Cell::from("in flight"),
            Cell::from(stats.in_progress.to_string()),
            Cell::new(keys::queue_in_progress(service), Tone::Dim),
        ])
        .row([
            Cell::from("dead letters"),
            Cell::new(
                stats.incomplete.to_string(),
                if stats.incomplete > 0 { Tone::Bad } else { Tone::Plain },
            ),
            Cell::new(keys::queue_incomplete(service), Tone::Dim),
        ]);
    let mut report = Report::new(json).heading(format!("queue of {service}")).table(table);
    let oldest = match stats.oldest_waiting_age {
        Some(age) => format!("oldest waiting: {} old", age_text(age.as_secs())),
        None => "oldest waiting: -".to_string(),
    };
    report = report.text(format!(
        "{oldest}; hydra-rs consumers: {} (Node consumers are not counted)",
        stats.consumers
    ));
    if stats.incomplete > 0 {
        report = report.text(format!(
            "`hydra-cli queue peek {service}` shows what waits; `hydra-cli queue redrive {service}` retries the dead letters"
        ));
    }
    Ok(report)
}

/// `queue peek <svc> [n]`: the next `n` waiting messages, in the order
/// consumers will take them, left where they are.
pub fn peek(ctx: &Context, service: &str, count: usize) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let stats = read_stats(hydra, service)?;
    require_known(hydra, service, &stats)?;
    let waiting = hydra
        .peek_queue(service, count)
        .map_err(|e| CliError::from_hydra("reading the queue", e))?;
    let now_ms = now_ms();
    let mut table = Table::new(["#", "mid", "from", "age", "failed", "body"]);
    let mut messages = Vec::with_capacity(waiting.len());
    for (index, item) in waiting.iter().enumerate() {
        let position = index + 1;
        match &item.message {
            Some(message) => {
                let age_ms = timestamp_ms(&message.timestamp).map(|ts| now_ms.saturating_sub(ts).max(0));
                let body = message.body.to_string();
                table.row([
                    Cell::from(position.to_string()),
                    Cell::from(message.mid.as_str()),
                    Cell::from(message.from.as_str()),
                    Cell::from(age_ms.map_or("-".to_string(), |ms| age_text(ms as u64 / 1000))),
                    Cell::new(
                        item.failed_deliveries.to_string(),
                        if item.failed_deliveries > 0 {
                            Tone::Warn
                        } else {
                            Tone::Plain
                        },
                    ),
                    Cell::from(shorten(&body, BODY_COLUMN)),
                ]);
                messages.push(json!({
                    "position": position,
                    "mid": message.mid,
                    "from": message.from,
                    "to": message.to,
                    "timestamp": message.timestamp,
                    "age_ms": age_ms,
                    "failed_deliveries": item.failed_deliveries,
                    "body": message.body,
                    "umf": true,
                    "raw": item.raw,
                }));
            }
            None => {
                table.row([
                    Cell::from(position.to_string()),
                    Cell::new("(not a UMF message)", Tone::Bad),
                    Cell::from(""),
                    Cell::from("-"),
                    Cell::from(item.failed_deliveries.to_string()),
                    Cell::from(shorten(&item.raw, BODY_COLUMN)),
                ]);
                messages.push(json!({
                    "position": position,
                    "umf": false,
                    "failed_deliveries": item.failed_deliveries,
                    "raw": item.raw,
                }));
            }
        }
    }
    let json = json!({
        "service": service,
        "waiting": stats.waiting,
        "shown": messages.len(),
        "messages": messages,
    });
    Ok(Report::new(json)
        .heading(format!(
            "next {} of {} waiting for {service} (in the order they will be taken; nothing was taken)",
            waiting.len(),
            stats.waiting
        ))
        .table(table))
}

/// `queue redrive <svc>`: every dead letter back to the queue, oldest first.
pub fn redrive(ctx: &Context, service: &str) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let before = read_stats(hydra, service)?;
    require_known(hydra, service, &before)?;
    let moved = hydra
        .redrive_dead_letters(service)
        .map_err(|e| CliError::from_hydra("moving the dead letters", e))?;
    let after = read_stats(hydra, service)?;
    let json = json!({
        "service": service,
        "moved": moved,
        "waiting": after.waiting,
        "dead_letters": after.incomplete,
    });
    let text = if moved == 0 {
        format!("no dead letters for {service}; nothing moved")
    } else {
        format!(
            "moved {moved} dead letter{} back to the queue of {service}: {} waiting now",
            if moved == 1 { "" } else { "s" },
            after.waiting
        )
    };
    Ok(Report::new(json).text(text))
}

fn read_stats(hydra: &Hydra, service: &str) -> CliResult<QueueStats> {
    hydra
        .queue_stats(service)
        .map_err(|e| CliError::from_hydra("reading the queue", e))
}

/// A queue with nothing in it, of a service that never registered, is most
/// likely a typo: say so (exit 1). Queues of unregistered names that hold
/// messages are shown: anyone may queue for any name.
fn require_known(hydra: &Hydra, service: &str, stats: &QueueStats) -> CliResult<()> {
    if stats.waiting + stats.in_progress + stats.incomplete + stats.consumers > 0 {
        return Ok(());
    }
    match hydra.find_service(service) {
        Ok(_) => Ok(()),
        Err(e) if e.code() == ErrorCode::NotFound => Err(CliError::failed(
            format!("no service named {service} is registered, and its queue is empty"),
            "`hydra-cli services` lists them",
        )),
        Err(e) => Err(CliError::from_hydra("looking up the service", e)),
    }
}

/// Waiting messages nobody takes are worth a look.
fn waiting_tone(stats: &QueueStats) -> Tone {
    if stats.waiting > 0 && stats.consumers == 0 {
        Tone::Warn
    } else {
        Tone::Plain
    }
}

/// `3s`, `2m 5s`, `1h 2m 3s` (humantime style, whole seconds).
fn age_text(seconds: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}

/// At most `width` characters, with `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An ISO-8601 UTC timestamp (as Hydra writes them) in ms since the epoch.
fn timestamp_ms(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_cut_with_an_ellipsis() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdefgh", 5), "abcd…");
    }

    #[test]
    fn hydra_timestamps_are_read() {
        assert_eq!(timestamp_ms("2018-03-11T16:52:42.060Z"), Some(1_520_787_162_060));
        assert_eq!(timestamp_ms("yesterday"), None);
    }
}
