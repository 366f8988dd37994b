//! `doctor`: checks Redis and the registry and says what to do about each
//! finding; `redis info`: Redis's INFO, per section.
//!
//! Each check is a row `check | status | detail | what to do`. A failed check
//! (Redis too old, a command the library needs is denied) makes the exit
//! status 1 (the report is printed all the same, the failure named on stderr); warnings (stale entries, routes nobody serves, risky eviction)
//! leave it 0. An unreachable Redis is a connection error (exit 2), reported
//! before any check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hydra::{AclCheck, Hydra, RedisInfo, RegistrySnapshot};
use serde_json::{Map, Value, json};

use super::watch::{STALE_AFTER_SECS, format_age};
use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone};

/// Median PING round trip above which latency is a warning: Hydra makes a
/// few round trips per message and one per heartbeat.
const SLOW_PING: Duration = Duration::from_millis(5);
/// PINGs sent to measure latency.
const PINGS: usize = 10;
/// Node Hydra's default database.
const NODE_DEFAULT_DB: i64 = 15;
/// Memory use (of maxmemory) above which the memory check warns.
const MEMORY_WARN_PERCENT: f64 = 90.0;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    fn tone(self) -> Tone {
        match self {
            Status::Ok => Tone::Good,
            Status::Warn => Tone::Warn,
            Status::Fail => Tone::Bad,
        }
    }
}

/// Maps a library error met while doing `what`.
fn failed(what: &'static str) -> impl Fn(hydra::Error) -> CliError {
    move |e| CliError::from_hydra(what, e)
}

/// One row of the doctor's report.
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    advice: String,
    /// Everything the detail names (it shows only the first few).
    items: Vec<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>, advice: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            advice: advice.into(),
            items: Vec::new(),
        }
    }

    fn with_items<S: Into<String>>(mut self, items: Vec<S>) -> Check {
        self.items = items.into_iter().map(Into::into).collect();
        self
    }
}

/// `doctor [--acl-user <user>]`.
pub fn doctor(ctx: &Context, acl_user: Option<&str>) -> CliResult<Report> {
    let (_, source) = ctx.redis_url()?;
    let hydra = ctx.hydra()?;
    let shown = hydra.config().redis().display_url().to_string();

    let mut checks = Vec::new();
    let info = match hydra.redis_info() {
        Ok(info) => Some(info),
        Err(e) if e.code() == hydra::ErrorCode::PermissionDenied => None,
        Err(e) => return Err(failed("reading INFO")(e)),
    };
    checks.push(reachable_check(&shown, &source.to_string(), info.as_ref()));
    checks.push(version_check(info.as_ref()));
    checks.push(latency_check(hydra).map_err(failed("measuring latency"))?);
    checks.push(database_check(hydra, info.as_ref()));
    checks.push(acl_check(
        &hydra.check_acl(acl_user).map_err(failed("checking ACL permissions"))?,
    ));
    // The scanning read: services whose nodes entries are all gone still have
    // routes a Node hydra-router serves (hydra-router issue #86).
    let snapshot = hydra
        .registry_snapshot_scanned()
        .map_err(failed("reading the registry"))?;
    checks.extend(registry_checks(&snapshot));
    if let Some(info) = &info {
        checks.push(memory_check(info));
        checks.push(persistence_check(info));
    }

    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let summary = format!(
        "{} checks: {} ok, {} warnings, {} failed",
        checks.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    );
    let mut table = Table::new(["check", "status", "detail", "what to do"]);
    for check in &checks {
        table.row([
            Cell::from(check.name),
            Cell::new(check.status.word(), check.status.tone()),
            Cell::from(check.detail.clone()),
            Cell::from(check.advice.clone()),
        ]);
    }
    let json = json!({
        "redis": shown,
        "source": source.to_string(),
        "status": worst.word(),
        "checks": checks.iter().map(|c| json!({
            "name": c.name, "status": c.status.word(), "detail": c.detail, "advice": c.advice, "items": c.items,
        })).collect::<Vec<_>>(),
    });
    let report = Report::new(json).table(table).text(summary);
    if worst == Status::Fail {
        // The table (or JSON) is still the answer; the exit status says it failed.
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect();
        return Err(CliError::failed(
            format!("doctor: {} failed", failed.join(", ")),
            "see the row's \"what to do\" above",
        )
        .with_report(report));
    }
    Ok(report)
}

fn reachable_check(shown: &str, source: &str, info: Option<&RedisInfo>) -> Check {
    let mode = info
        .and_then(|i| i.get("redis_mode"))
        .map(|m| format!(", {m}"))
        .unwrap_or_default();
    Check::new(
        "redis",
        Status::Ok,
        format!("{shown} (from {source}) answers{mode}"),
        "",
    )
}

fn version_check(info: Option<&RedisInfo>) -> Check {
    let Some(info) = info else {
        return Check::new(
            "version",
            Status::Warn,
            "unknown: the Redis user may not run INFO",
            "grant +info to see the version, memory and persistence checks",
        );
    };
    let text = info.get("redis_version").unwrap_or("unknown");
    match info.version() {
        Some(version) if version < (6, 2, 0) => Check::new(
            "version",
            Status::Fail,
            format!("Redis {text}: hydra-rs needs 6.2 or newer (SET … GET, LMOVE, BLMOVE)"),
            "upgrade Redis to 6.2 or newer (7.0 or newer for the ACL check)",
        ),
        Some(version) if version < (7, 0, 0) => Check::new(
            "version",
            Status::Ok,
            format!("Redis {text} (6.2 or newer needed)"),
            "Redis 7.0 or newer lets doctor check ACL permissions",
        ),
        Some(_) => Check::new("version", Status::Ok, format!("Redis {text} (6.2 or newer needed)"), ""),
        None => Check::new(
            "version",
            Status::Warn,
            format!("not a Redis version number: {text}"),
            "hydra-rs is tested with Redis 6.2 to 7.x; make sure this server supports SET … GET and BLMOVE",
        ),
    }
}

fn latency_check(hydra: &Hydra) -> hydra::Result<Check> {
    let latency = hydra.redis_latency(PINGS)?;
    let detail = format!(
        "PING round trip p50 {}, max {} over {} PINGs",
        millis(latency.p50),
        millis(latency.max),
        latency.samples.len()
    );
    Ok(if latency.p50 > SLOW_PING {
        Check::new(
            "latency",
            Status::Warn,
            detail,
            format!(
                "above {}: every heartbeat and message waits for it; run Redis closer to the services or find what slows it (redis-cli --latency, SLOWLOG)",
                millis(SLOW_PING)
            ),
        )
    } else {
        Check::new("latency", Status::Ok, detail, "")
    })
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn database_check(hydra: &Hydra, info: Option<&RedisInfo>) -> Check {
    let db = hydra.config().redis().db();
    let keys = info
        .and_then(|i| i.get(&format!("db{db}")))
        .and_then(|entry| entry.split(',').find_map(|kv| kv.strip_prefix("keys=")))
        .unwrap_or("0");
    let other_dbs: Vec<String> = info
        .map(|i| {
            i.sections
                .iter()
                .filter(|s| s.name == "keyspace")
                .flat_map(|s| s.fields.iter())
                .map(|(name, _)| name.clone())
                .filter(|name| *name != format!("db{db}"))
                .collect()
        })
        .unwrap_or_default();
    let mut detail = format!("db {db}, {keys} keys");
    if !other_dbs.is_empty() {
        detail.push_str(&format!("; other databases in use: {}", other_dbs.join(", ")));
    }
    let advice = if db == NODE_DEFAULT_DB {
        String::from("(Node hydra's default db; every service must use the same db to see the others)")
    } else {
        format!(
            "Node hydra uses db {NODE_DEFAULT_DB} unless its config names another: make sure every service uses db {db}"
        )
    };
    Check::new("database", Status::Ok, detail, advice)
}

fn acl_check(check: &AclCheck) -> Check {
    if let Some(reason) = &check.unavailable {
        return Check::new(
            "acl",
            Status::Warn,
            format!("cannot check the permissions of user {}: {reason}", check.user),
            "run `hydra-cli doctor --acl-user <user>` as a Redis administrator to check a service's user",
        );
    }
    let denied: Vec<_> = check.denied().collect();
    // An optional command this Redis does not have at all is not a finding.
    let optional: Vec<_> = check
        .denied_optional()
        .filter(|f| !f.reason.as_deref().unwrap_or("").contains("does not know"))
        .collect();
    if !denied.is_empty() {
        // One line per distinct command and target, in the list's order.
        let mut seen = BTreeSet::new();
        let what: Vec<String> = denied
            .iter()
            .map(|f| f.usage.describe())
            .filter(|d| seen.insert(d.clone()))
            .collect();
        let features: BTreeSet<&str> = denied.iter().map(|f| f.usage.feature).collect();
        let commands: BTreeSet<String> = denied
            .iter()
            .map(|f| f.usage.command.to_ascii_lowercase().replace(' ', "|"))
            .collect();
        return Check::new(
            "acl",
            Status::Fail,
            format!(
                "user {} may not run {} (needed for {}): {}",
                check.user,
                what.len(),
                features.into_iter().collect::<Vec<_>>().join(", "),
                shortlist(&what, "; ")
            ),
            format!(
                "grant them (ACL SETUSER {} +{}), or give the user all of Hydra's rules: README, \"Least privilege\"",
                check.user,
                commands.into_iter().collect::<Vec<_>>().join(" +")
            ),
        )
        .with_items(what);
    }
    if !optional.is_empty() {
        let what: Vec<String> = optional
            .iter()
            .map(|f| format!("{} ({})", f.usage.command, f.usage.note))
            .collect();
        return Check::new(
            "acl",
            Status::Warn,
            format!("user {} may not run optional commands: {}", check.user, what.join("; ")),
            "grant them for the behaviour described, or accept it",
        );
    }
    Check::new(
        "acl",
        Status::Ok,
        format!(
            "user {} may run every command the library sends ({} checked with ACL DRYRUN)",
            check.user,
            check.findings.len()
        ),
        "",
    )
}

fn registry_checks(snapshot: &RegistrySnapshot) -> Vec<Check> {
    let mut checks = Vec::new();
    let stale: Vec<_> = snapshot
        .instances
        .iter()
        .filter(|s| !s.present && s.instance.elapsed > STALE_AFTER_SECS)
        .collect();
    let late: Vec<_> = snapshot
        .instances
        .iter()
        .filter(|s| !s.present && s.instance.elapsed <= STALE_AFTER_SECS)
        .collect();
    if stale.is_empty() {
        checks.push(Check::new(
            "stale nodes",
            Status::Ok,
            format!("{} nodes entries, none stale", snapshot.instances.len()),
            "",
        ));
    } else {
        let mut per_service: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &stale {
            *per_service.entry(s.instance.service_name.as_str()).or_default() += 1;
        }
        let names: Vec<String> = per_service
            .iter()
            .map(|(name, n)| {
                if *n == 1 {
                    name.to_string()
                } else {
                    format!("{name} ×{n}")
                }
            })
            .collect();
        checks.push(
            Check::new(
                "stale nodes",
                Status::Warn,
                format!(
                    "{} of {} nodes entries have no presence and a heartbeat older than {STALE_AFTER_SECS} s: {}",
                    stale.len(),
                    snapshot.instances.len(),
                    shortlist(&names, ", ")
                ),
                "`hydra-cli refresh node list` removes them (they cost every Node reader a scan)",
            )
            .with_items(names),
        );
    }
    if !late.is_empty() {
        let names: Vec<String> = late
            .iter()
            .map(|s| {
                format!(
                    "{} {} (last heartbeat {} ago)",
                    s.instance.service_name,
                    s.instance.instance_id,
                    format_age(s.instance.elapsed)
                )
            })
            .collect();
        checks.push(Check::new(
            "late instances",
            Status::Warn,
            format!("{} instances: {}", names.len(), shortlist(&names, "; ")),
            "their presence expired: the process is stopped, hung or cut off from Redis; check it (`hydra-cli watch` shows it live)",
        )
        .with_items(names));
    }

    let live: BTreeSet<&str> = snapshot
        .instances
        .iter()
        .filter(|s| s.present)
        .map(|s| s.instance.service_name.as_str())
        .collect();
    let unserved: Vec<String> = snapshot
        .routes
        .iter()
        .filter(|(name, _)| !live.contains(name.as_str()))
        .map(|(name, routes)| {
            format!(
                "{name} ({} route{})",
                routes.len(),
                if routes.len() == 1 { "" } else { "s" }
            )
        })
        .collect();
    checks.push(if unserved.is_empty() {
        Check::new(
            "routes",
            Status::Ok,
            format!(
                "{} services with routes, each with a live instance",
                snapshot.routes.len()
            ),
            "",
        )
    } else {
        Check::new(
            "routes",
            Status::Warn,
            format!(
                "{} services have routes but no live instance: {}",
                unserved.len(),
                shortlist(&unserved, ", ")
            ),
            "a hydra-router answers 503 for these paths (and they may shadow another service's); start an instance, \
             or if the service is retired remove its routes: redis-cli DEL hydra:service:<svc>:service:routes",
        )
        .with_items(unserved)
    });

    let known: BTreeSet<&str> = snapshot
        .instances
        .iter()
        .map(|s| s.instance.service_name.as_str())
        .collect();
    let never: Vec<&str> = snapshot
        .services
        .iter()
        .map(|s| s.service_name.as_str())
        .filter(|name| !known.contains(name))
        .collect();
    if !never.is_empty() {
        checks.push(
            Check::new(
                "services",
                Status::Warn,
                format!(
                    "{} registered services have no instance record: {}",
                    never.len(),
                    shortlist(&never, ", ")
                ),
                "no instance has written a heartbeat: it never started or its entries were removed; ignore if retired",
            )
            .with_items(never),
        );
    } else {
        checks.push(Check::new(
            "services",
            Status::Ok,
            format!(
                "{} services registered, {} with a live instance",
                snapshot.services.len(),
                live.len()
            ),
            "",
        ));
    }
    checks
}

/// Names in a detail: the first few, then how many more (`hydra-cli nodes`
/// and `--json` give the rest), so a row stays readable with 10,000 entries.
fn shortlist<S: AsRef<str>>(items: &[S], separator: &str) -> String {
    const SHOWN: usize = 10;
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(separator);
    if items.len() > SHOWN {
        text.push_str(&format!("{separator}… and {} more", items.len() - SHOWN));
    }
    text
}

fn memory_check(info: &RedisInfo) -> Check {
    let used = info.get("used_memory_human").unwrap_or("?");
    let policy = info.get("maxmemory_policy").unwrap_or("unknown");
    let max: u64 = info.get("maxmemory").and_then(|m| m.parse().ok()).unwrap_or(0);
    if max == 0 {
        return Check::new(
            "memory",
            Status::Ok,
            format!("{used} used, no maxmemory limit (policy {policy} never applies)"),
            "",
        );
    }
    let used_bytes: f64 = info.get("used_memory").and_then(|m| m.parse().ok()).unwrap_or(0.0);
    let percent = used_bytes * 100.0 / max as f64;
    let limit = info.get("maxmemory_human").unwrap_or("?");
    let detail = format!("{used} of {limit} used ({percent:.0}%), maxmemory-policy {policy}");
    if policy.starts_with("allkeys-") {
        return Check::new(
            "memory",
            Status::Warn,
            detail,
            "at the limit Redis may evict any key, Hydra's nodes, routes and service records too: \
             use noeviction (CONFIG SET maxmemory-policy noeviction) or give Hydra its own Redis",
        );
    }
    if policy.starts_with("volatile-") {
        return Check::new(
            "memory",
            Status::Warn,
            detail,
            "at the limit Redis evicts keys with a TTL, and presence keys have one: instances would vanish; \
             prefer noeviction for Hydra's Redis",
        );
    }
    if percent > MEMORY_WARN_PERCENT {
        return Check::new(
            "memory",
            Status::Warn,
            detail,
            "near the limit: with noeviction, writes (heartbeats) fail when it is reached; raise maxmemory",
        );
    }
    Check::new("memory", Status::Ok, detail, "")
}

fn persistence_check(info: &RedisInfo) -> Check {
    let aof = info.get("aof_enabled") == Some("1");
    let saves: u64 = info.get("rdb_saves").and_then(|s| s.parse().ok()).unwrap_or(0);
    let last_save: u64 = info.get("rdb_last_save_time").and_then(|s| s.parse().ok()).unwrap_or(0);
    let changes = info.get("rdb_changes_since_last_save").unwrap_or("?");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rdb = if saves == 0 {
        String::from("no RDB save since start")
    } else {
        format!(
            "last RDB save {} ago, {changes} changes since",
            format_age(now.saturating_sub(last_save))
        )
    };
    let detail = format!("AOF {}; {rdb}", if aof { "on" } else { "off" });
    if info.get("rdb_last_bgsave_status").is_some_and(|s| s != "ok")
        || info.get("aof_last_write_status").is_some_and(|s| s != "ok")
    {
        return Check::new(
            "persistence",
            Status::Warn,
            format!("{detail}; the last save failed"),
            "see the Redis log: a full disk or a failed fork stops saves",
        );
    }
    Check::new(
        "persistence",
        Status::Ok,
        detail,
        "(information) without persistence a Redis restart loses stored configs and queues, and Node services' \
         routes until they restart; hydra-rs services re-create their own registration",
    )
}

/// `redis info`: every INFO section as a table, or with --json
/// `{"sections": {"server": {"redis_version": "7.0.15", …}, …}}`.
pub fn redis_info(ctx: &Context) -> CliResult<Report> {
    let info = ctx
        .hydra()?
        .redis_info()
        .map_err(|e| CliError::from_hydra("reading INFO", e))?;
    let mut sections = Map::new();
    for section in &info.sections {
        let fields: Map<String, Value> = section
            .fields
            .iter()
            .map(|(field, value)| (field.clone(), Value::String(value.clone())))
            .collect();
        sections.insert(section.name.clone(), Value::Object(fields));
    }
    let mut report = Report::new(json!({ "sections": sections }));
    for section in &info.sections {
        let mut table = Table::new(["field", "value"]);
        for (field, value) in &section.fields {
            table.row([field.as_str(), value.as_str()]);
        }
        report = report.heading(format!("# {}", title(&section.name))).table(table);
    }
    Ok(report)
}

/// `memory` → `Memory`, as Redis prints section names.
fn title(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
