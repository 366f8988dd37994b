//! The README's numbers are the code's: every default and limit quoted in the
//! "Message delivery", "Queues" and "HTTP serving" paragraphs, the
//! Node Hydra → hydra-rs table and the footprint notes is read from README.md
//! and compared with the constant or default it describes.
//!
//! A claim is written as the README words it, with `{}` where the number
//! goes: `a pool of workers ({})`. When the README is reworded, the claim
//! here must follow (the failure says which sentence is gone); when the code's
//! value changes, the README must.

use std::time::Duration;

use hydra::{HttpSettings, QueueOptions};

const README: &str = include_str!("../README.md");

/// The text of the paragraph that starts with `**<title>**` (or the table row
/// that starts with `| <title>`), with line breaks and runs of spaces made one
/// space.
fn section(title: &str) -> String {
    let start = README
        .find(title)
        .unwrap_or_else(|| panic!("README.md has no section {title:?}"));
    let rest = &README[start..];
    let end = if title.starts_with('|') {
        rest.find('\n').unwrap_or(rest.len())
    } else {
        rest.find("\n\n").unwrap_or(rest.len())
    };
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the README says where `claim` has `{}`, in `text`.
fn quoted<'a>(text: &'a str, claim: &str) -> Option<&'a str> {
    let (before, after) = claim.split_once("{}").expect("a claim has one {}");
    let start = text.find(before)? + before.len();
    let len = if after.is_empty() {
        text[start..].find(' ').unwrap_or(text.len() - start)
    } else {
        text[start..].find(after)?
    };
    Some(&text[start..start + len])
}

/// Checks every `(claim, value)` of a section; all mismatches in one failure.
fn check(title: &str, claims: &[(&str, String)]) {
    let text = section(title);
    let wrong: Vec<String> = claims
        .iter()
        .filter_map(|(claim, value)| match quoted(&text, claim) {
            Some(said) if said == value => None,
            Some(said) => Some(format!(
                "README {title} says {:?}; the code has {:?}",
                claim.replace("{}", said),
                claim.replace("{}", value)
            )),
            None => Some(format!(
                "README {title} no longer has {claim:?} (code: {:?}): reword the claim in tests/readme.rs",
                claim.replace("{}", value)
            )),
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `1 MiB`, `16 KiB`, `512 B`.
fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// `10 s`, `500 ms`.
fn duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn count(n: impl ToString) -> String {
    n.to_string()
}

#[test]
fn http_serving_numbers_are_the_servers_defaults() {
    let http = HttpSettings::default();
    check(
        "**HTTP serving.**",
        &[
            ("a pool of workers ({})", count(http.workers)),
            ("through a bounded queue ({})", count(http.queue_capacity)),
            ("(body {} →", bytes(http.max_body_bytes)),
            ("URL {} →", bytes(http.max_url_bytes)),
            ("head {} →", bytes(http.max_head_bytes)),
            ("the cap of open connections ({})", count(http.max_connections)),
            ("deadlines ({} per read", duration(http.read_timeout)),
            ("per read, {} per request", duration(http.request_timeout)),
            ("per request, {} for the head", duration(http.head_timeout)),
            ("for the head, {} for an idle keep-alive", duration(http.keep_alive)),
            ("finish for up to {} (`drain_timeout`)", duration(http.drain_timeout)),
        ],
    );
}

#[test]
fn message_delivery_numbers_are_the_config_defaults() {
    check(
        "**Message delivery.**",
        &[
            (
                "Up to `messageWorkers` handlers ({} by default)",
                count(hydra::DEFAULT_MESSAGE_WORKERS),
            ),
            (
                "(`maxQueuedMessageBytes`, {} by default",
                bytes(hydra::DEFAULT_MAX_QUEUED_MESSAGE_BYTES),
            ),
            ("`maxMessageBytes` ({})", bytes(hydra::DEFAULT_MAX_MESSAGE_BYTES)),
        ],
    );
}

#[test]
fn queue_numbers_are_the_queue_defaults() {
    let options = QueueOptions::default();
    let row = "| (none) | `queue_worker(svc, n, handler)`";
    check(
        row,
        &[
            (
                "after the visibility timeout ({})",
                duration(options.visibility_timeout),
            ),
            ("on `mqincomplete` after {}.", count(options.max_deliveries)),
        ],
    );
}

#[test]
fn node_table_numbers_are_the_codes() {
    check(
        "| `hydra.init(config)`",
        &[("connect timeout (default {})", duration(hydra::DEFAULT_CONNECT_TIMEOUT))],
    );
    check(
        "| `registerService()`",
        &[(
            "health TTL {} (Node",
            duration(Duration::from_secs(hydra::HEALTH_TTL_SECS)),
        )],
    );
    check(
        "| `hydra.on('message', fn)`",
        &[("oversized (> {}, skipped", bytes(hydra::DEFAULT_MAX_MESSAGE_BYTES))],
    );
}

#[test]
fn footprint_notes_are_the_heartbeats_intervals() {
    assert_eq!(
        hydra::PRESENCE_INTERVAL,
        Duration::from_secs(1),
        "README: \"round trip per second\""
    );
    check(
        "Target ≤ 10 MB RSS",
        &[("and health every {};", duration(hydra::HEALTH_INTERVAL))],
    );
}

/// The idle footprint the README reports is the one tests/structure.rs
/// checks on a running process (`an_idle_registered_service_has_three_threads_and_two_connections`).
#[test]
fn footprint_row_is_what_the_structure_test_checks() {
    let row = section("| hydra-rs idle registered service |");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    // | process | RSS | threads | Redis commands/s | Redis connections |
    assert_eq!((cells[3], cells[5]), ("3", "2"), "README footprint row: {row}");
    check(
        "Target ≤ 10 MB RSS",
        &[(
            "Threads: main, {} (the reader)",
            "`hydra-heartbeat`, `hydra-msg-0`".to_string(),
        )],
    );
}

#[test]
fn the_checker_reports_a_wrong_number_and_a_lost_sentence() {
    let text = "a pool of workers (8) through a bounded queue (1024);";
    assert_eq!(quoted(text, "a pool of workers ({})"), Some("8"));
    assert_eq!(quoted(text, "a bounded queue ({});"), Some("1024"));
    assert_eq!(quoted(text, "a pool of threads ({})"), None);
    assert_eq!(bytes(1024 * 1024), "1 MiB");
    assert_eq!(bytes(16 * 1024), "16 KiB");
    assert_eq!(duration(Duration::from_secs(30)), "30 s");
    assert_eq!(duration(Duration::from_millis(500)), "500 ms");
}

/// The "Least privilege" ACL line is the library's own rules, word for word.
#[test]
fn the_acl_rules_in_the_readme_are_the_librarys() {
    let line = format!(
        "ACL SETUSER hydra-svc on >password {}",
        hydra::least_privilege_acl_rules()
    );
    assert!(
        README.contains(&line),
        "README's ACL SETUSER line differs from least_privilege_acl_rules(); it should read:\n{line}"
    );
}
