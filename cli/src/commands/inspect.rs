//! `nodes`, `services`, `routes`, `health`, `healthlog`, `refresh node list`:
//! what is registered, what is alive and what it said, read through the
//! library.
//!
//! The listings read one registry snapshot (two round trips whatever the
//! number of services and entries) instead of Node's keyspace `SCAN`s, so
//! they stay quick on a Redis holding thousands of dead `nodes` entries.
//! Unlike Node's hydra-cli, which prints raw arrays, each command prints an
//! aligned table, or with `--json` one document with the list under a named
//! key (`{"nodes": [...]}`, `{"routes": {"svc": [...]}}`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hydra::{Hydra, InstanceState, RegistrySnapshot};
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone};

/// A heartbeat comes every second; a present instance whose last one is
/// older than this is late (clock skew, or a stalled process).
const LATE_AFTER_SECS: u64 = 5;
/// An entry whose instance is gone and whose heartbeat is older than this is
/// stale: `refresh node list` (default 60 s, as Node's) removes it. Until
/// then a gone instance is only late: it may be restarting.
const STALE_AFTER_SECS: u64 = 60;

/// How alive a `nodes` entry is, from its presence key and `updatedOn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// Present, heartbeat within 5 s.
    Alive,
    /// Present but its heartbeat is old, or gone for less than 60 s.
    Late,
    /// Gone, heartbeat older than 60 s (or never readable).
    Stale,
}

impl Liveness {
    fn of(present: bool, age_seconds: Option<u64>) -> Liveness {
        match (present, age_seconds) {
            (true, Some(age)) if age <= LATE_AFTER_SECS => Liveness::Alive,
            (true, _) => Liveness::Late,
            (false, Some(age)) if age <= STALE_AFTER_SECS => Liveness::Late,
            (false, _) => Liveness::Stale,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Late => "late",
            Liveness::Stale => "stale",
        }
    }

    fn cell(self) -> Cell {
        let tone = match self {
            Liveness::Alive => Tone::Good,
            Liveness::Late => Tone::Warn,
            Liveness::Stale => Tone::Bad,
        };
        Cell::new(self.word(), tone)
    }
}

/// Seconds since the entry's `updatedOn`; None when it has no readable one.
fn age_seconds(instance: &hydra::Instance) -> Option<u64> {
    (instance.updated_on_ts > 0).then_some(instance.elapsed)
}

/// `3s`, `2m 5s`, `-` when unknown.
fn age_text(seconds: Option<u64>) -> String {
    match seconds {
        Some(s) => humantime::format_duration(Duration::from_secs(s)).to_string(),
        None => "-".to_string(),
    }
}

/// Service names are stored lowercased (Node and ours); people type them any way.
fn normalize(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A JSON object from its fields, moved in: `json!` would copy each value
/// (it serializes its arguments), which for 10,000 entries costs as much as
/// reading them.
fn document<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn registry_error(error: hydra::Error) -> CliError {
    CliError::from_hydra("reading the registry", error)
}

fn no_such_service(name: &str) -> CliError {
    CliError::failed(
        format!("no service named {name} is registered"),
        "`hydra-cli services` lists them",
    )
}

fn snapshot(ctx: &Context) -> CliResult<(&Hydra, RegistrySnapshot)> {
    let hydra = ctx.hydra()?;
    let snapshot = hydra.registry_snapshot().map_err(registry_error)?;
    Ok((hydra, snapshot))
}

/// True when `name` has a registration record. The snapshot knows the
/// services named by `nodes` entries; a Node service whose entries were all
/// cleared still has its `:service` record, so ask for it by name.
fn is_registered(hydra: &Hydra, snapshot: Option<&RegistrySnapshot>, name: &str) -> CliResult<bool> {
    if snapshot.is_some_and(|s| s.services.iter().any(|r| r.service_name == name)) {
        return Ok(true);
    }
    match hydra.find_service(name) {
        Ok(_) => Ok(true),
        Err(hydra::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(registry_error(e)),
    }
}

fn node_json(node: &InstanceState) -> Value {
    let i = &node.instance;
    let age = age_seconds(i);
    json!({
        "service": i.service_name,
        "instance_id": i.instance_id,
        "version": i.version,
        "ip": i.ip,
        "port": i.port,
        "host": i.host_name,
        "process_id": i.process_id,
        "updated_on": i.updated_on,
        "age_seconds": age,
        "present": node.present,
        "state": Liveness::of(node.present, age).word(),
    })
}

/// `nodes [svc]`: every `nodes` entry (live or dead), sorted by service then
/// heartbeat age, with its state. Node's hydra-cli prints the raw entries.
pub fn nodes(ctx: &Context, service: Option<&str>) -> CliResult<Report> {
    let (hydra, snapshot) = snapshot(ctx)?;
    let wanted = service.map(normalize);
    let mut rows: Vec<&InstanceState> = snapshot
        .instances
        .iter()
        .filter(|n| wanted.as_ref().is_none_or(|w| &n.instance.service_name == w))
        .collect();
    if let Some(name) = &wanted
        && rows.is_empty()
        && !is_registered(hydra, Some(&snapshot), name)?
    {
        return Err(no_such_service(name));
    }
    rows.sort_by(|a, b| {
        let (a, b) = (&a.instance, &b.instance);
        (&a.service_name, age_seconds(a).unwrap_or(u64::MAX), &a.instance_id).cmp(&(
            &b.service_name,
            age_seconds(b).unwrap_or(u64::MAX),
            &b.instance_id,
        ))
    });
    let mut counts: BTreeMap<&str, usize> = [("alive", 0), ("late", 0), ("stale", 0)].into();
    for node in &rows {
        *counts
            .entry(Liveness::of(node.present, age_seconds(&node.instance)).word())
            .or_default() += 1;
    }
    // Only the form that is printed is built: with 10,000 entries either one
    // costs more than reading them.
    if ctx.style.json {
        let nodes: Vec<Value> = rows.iter().map(|n| node_json(n)).collect();
        return Ok(Report::new(document([
            ("nodes", Value::Array(nodes)),
            ("counts", json!(counts)),
        ])));
    }
    let mut table = Table::new([
        "service",
        "instance",
        "version",
        "address",
        "host",
        "pid",
        "heartbeat",
        "state",
    ]);
    for node in &rows {
        let i = &node.instance;
        let age = age_seconds(i);
        table.row([
            Cell::from(i.service_name.as_str()),
            Cell::from(i.instance_id.as_str()),
            Cell::from(i.version.as_str()),
            Cell::from(format!("{}:{}", i.ip, i.port)),
            Cell::from(i.host_name.as_str()),
            Cell::from(i.process_id.to_string()),
            Cell::from(age_text(age)),
            Liveness::of(node.present, age).cell(),
        ]);
    }
    let mut summary = format!(
        "{} entries: {} alive, {} late, {} stale",
        rows.len(),
        counts["alive"],
        counts["late"],
        counts["stale"]
    );
    if counts["stale"] > 0 {
        summary.push_str(" (`hydra-cli refresh node list` removes the stale ones)");
    }
    Ok(Report::new(Value::Null).table(table).text(summary))
}

/// `services [svc]`: each registered service with its type, registration
/// time, live instances, `nodes` entries and route count.
pub fn services(ctx: &Context, service: Option<&str>) -> CliResult<Report> {
    let (hydra, snapshot) = snapshot(ctx)?;
    let wanted = service.map(normalize);
    let mut records: Vec<hydra::ServiceRecord> = snapshot
        .services
        .iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| &r.service_name == w))
        .cloned()
        .collect();
    if let Some(name) = &wanted
        && records.is_empty()
    {
        match hydra.find_service(name) {
            Ok(record) => records.push(record),
            Err(hydra::Error::NotFound(_)) => return Err(no_such_service(name)),
            Err(e) => return Err(registry_error(e)),
        }
    }
    let mut live: BTreeMap<&str, usize> = BTreeMap::new();
    let mut entries: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &snapshot.instances {
        let name = node.instance.service_name.as_str();
        *entries.entry(name).or_default() += 1;
        if node.present {
            *live.entry(name).or_default() += 1;
        }
    }
    let mut table = Table::new(["service", "type", "registered", "instances", "entries", "routes"]);
    let mut list = Vec::with_capacity(records.len());
    for record in &records {
        let name = record.service_name.as_str();
        let live_count = live.get(name).copied().unwrap_or(0);
        let entry_count = entries.get(name).copied().unwrap_or(0);
        let routes = snapshot.routes.get(name).map_or(0, Vec::len);
        let tone = match (live_count, routes) {
            (0, 0) => Tone::Dim,
            (0, _) => Tone::Bad,
            _ => Tone::Good,
        };
        table.row([
            Cell::from(name),
            Cell::from(record.service_type.as_str()),
            Cell::from(record.registered_on.as_str()),
            Cell::new(live_count.to_string(), tone),
            Cell::from(entry_count.to_string()),
            Cell::from(routes.to_string()),
        ]);
        list.push(json!({
            "service": name,
            "type": record.service_type,
            "registered_on": record.registered_on,
            "live_instances": live_count,
            "node_entries": entry_count,
            "routes": routes,
        }));
    }
    let summary = format!(
        "{} services, {} live instances",
        records.len(),
        records
            .iter()
            .map(|r| live.get(r.service_name.as_str()).copied().unwrap_or(0))
            .sum::<usize>()
    );
    Ok(Report::new(document([("services", Value::Array(list))]))
        .table(table)
        .text(summary))
}

/// `[get]/v1/x` → (`get`, `/v1/x`); a route without a method keeps it all as the path.
fn split_route(route: &str) -> (&str, &str) {
    if let Some(rest) = route.strip_prefix('[')
        && let Some((method, path)) = rest.split_once(']')
    {
        return (method, path);
    }
    ("", route)
}

/// `routes [svc]`: the HTTP routes each service registered, as
/// `{"routes": {"svc": [...]}}` (Node printed `{"serviceName": [...]}` for one
/// service, a literal key).
pub fn routes(ctx: &Context, service: Option<&str>) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let all = hydra.get_all_service_routes().map_err(registry_error)?;
    let wanted = service.map(normalize);
    let routes: BTreeMap<String, Vec<String>> = match &wanted {
        None => all,
        Some(name) => match all.get(name) {
            Some(list) => [(name.clone(), list.clone())].into(),
            None if is_registered(hydra, None, name)? => [(name.clone(), Vec::new())].into(),
            None => return Err(no_such_service(name)),
        },
    };
    let mut table = Table::new(["service", "method", "path"]);
    for (name, list) in &routes {
        for route in list {
            let (method, path) = split_route(route);
            table.row([name.as_str(), method, path]);
        }
    }
    let count: usize = routes.values().map(Vec::len).sum();
    let summary = format!("{count} routes of {} services", routes.len());
    Ok(Report::new(json!({ "routes": routes })).table(table).text(summary))
}

/// Bytes as people read them: `97.1 MB`.
fn bytes_text(bytes: Option<u64>) -> String {
    let Some(bytes) = bytes else {
        return "-".to_string();
    };
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// `health [svc]`: for each live (present) instance, its latest health
/// record: uptime, memory, when it was sampled. A Node instance's record
/// lives 3 s of every 5 s (Node's TTL is shorter than its period), so one
/// may be missing at any moment: the row says so instead of hiding it.
pub fn health(ctx: &Context, service: Option<&str>) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let all = hydra.get_service_health_all().map_err(registry_error)?;
    let wanted = service.map(normalize);
    let services: Vec<&hydra::ServiceHealth> = all
        .iter()
        .filter(|s| wanted.as_ref().is_none_or(|w| &s.service.service_name == w))
        .collect();
    if let Some(name) = &wanted
        && services.is_empty()
        && !is_registered(hydra, None, name)?
    {
        return Err(no_such_service(name));
    }
    let mut table = Table::new(["service", "instance", "version", "state", "uptime", "memory", "sampled"]);
    let mut list = Vec::new();
    let mut missing = 0;
    for service in &services {
        let mut instances: Vec<&hydra::Instance> = service.presence.iter().collect();
        instances.sort_by(|a, b| (a.elapsed, &a.instance_id).cmp(&(b.elapsed, &b.instance_id)));
        for instance in instances {
            let record = service
                .health
                .iter()
                .find(|h| h.get("instanceID").and_then(Value::as_str) == Some(instance.instance_id.as_str()));
            let age = age_seconds(instance);
            let state = Liveness::of(true, age);
            let uptime = record
                .and_then(|h| h.get("uptimeSeconds"))
                .and_then(Value::as_f64)
                .map(|s| s.max(0.0) as u64);
            let rss = record.and_then(|h| h.pointer("/memory/rss")).and_then(Value::as_u64);
            let sampled = record
                .and_then(|h| h.get("sampledOn").or_else(|| h.get("updatedOn")))
                .and_then(Value::as_str)
                .unwrap_or("");
            if record.is_none() {
                missing += 1;
            }
            table.row([
                Cell::from(instance.service_name.as_str()),
                Cell::from(instance.instance_id.as_str()),
                Cell::from(instance.version.as_str()),
                state.cell(),
                Cell::from(age_text(uptime)),
                Cell::from(bytes_text(rss)),
                match record {
                    Some(_) => Cell::from(sampled),
                    None => Cell::new("no record now", Tone::Dim),
                },
            ]);
            list.push(json!({
                "service": instance.service_name,
                "instance_id": instance.instance_id,
                "version": instance.version,
                "ip": instance.ip,
                "port": instance.port,
                "state": state.word(),
                "age_seconds": age,
                "uptime_seconds": record.and_then(|h| h.get("uptimeSeconds")).cloned(),
                "memory_rss_bytes": rss,
                "health": record,
            }));
        }
    }
    let none_live = list.is_empty();
    let mut report = Report::new(document([("health", Value::Array(list))])).table(table);
    if let Some(name) = &wanted
        && none_live
    {
        report = report.text(format!(
            "no live instance of {name}; `hydra-cli nodes {name}` shows its last heartbeats"
        ));
    }
    if missing > 0 {
        report = report.text(format!(
            "{missing} instance(s) had no health record at this moment (Node's record lives 3 s of every 5 s); run it again"
        ));
    }
    Ok(report)
}

/// `healthlog <svc>`: the flight recorder of every instance of the service,
/// newest first, as a table (Node printed `type | ts PID:pid: message` lines
/// on stderr, and only one instance's).
pub fn healthlog(ctx: &Context, service: &str) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let name = normalize(service);
    let entries = hydra.get_service_health_log(&name).map_err(registry_error)?;
    if entries.is_empty() && !is_registered(hydra, None, &name)? {
        return Err(no_such_service(&name));
    }
    let mut table = Table::new(["type", "time", "pid", "message"]);
    for entry in &entries {
        let tone = match entry.entry_type.as_str() {
            "error" | "fatal" => Tone::Bad,
            "warn" | "warning" => Tone::Warn,
            "debug" => Tone::Dim,
            _ => Tone::Plain,
        };
        table.row([
            Cell::new(entry.entry_type.as_str(), tone),
            Cell::from(entry.ts.as_str()),
            Cell::from(entry.process_id.to_string()),
            Cell::from(entry.msg.as_str()),
        ]);
    }
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "type": e.entry_type,
                "ts": e.ts,
                "process_id": e.process_id,
                "message": e.msg,
                "service": e.service_name,
            })
        })
        .collect();
    Ok(Report::new(document([
        ("service", Value::from(name)),
        ("entries", Value::Array(list)),
    ]))
    .table(table))
}

/// `refresh node list [--older-than 60s]`: removes the `nodes` entries of
/// instances that are gone and whose heartbeat is older than the limit
/// (Node removed every entry older than 60 s, even of a present instance
/// whose clock lags); prints Node's `N entries removed`, and which.
pub fn refresh_node_list(ctx: &Context, older_than: Duration) -> CliResult<Report> {
    let (hydra, before) = snapshot(ctx)?;
    let limit = older_than.as_secs();
    let candidates: Vec<&InstanceState> = before
        .instances
        .iter()
        .filter(|n| !n.present && age_seconds(&n.instance).is_none_or(|age| age >= limit))
        .collect();
    let removed = hydra
        .clear_stale_nodes(older_than)
        .map_err(|e| CliError::from_hydra("removing stale nodes entries", e))?;
    let after: HashSet<String> = hydra
        .get_service_nodes()
        .map_err(registry_error)?
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    let gone: Vec<&InstanceState> = candidates
        .into_iter()
        .filter(|n| !after.contains(&n.instance.instance_id))
        .collect();
    let mut table = Table::new(["service", "instance", "last heartbeat", "age"]);
    for node in &gone {
        let i = &node.instance;
        table.row([
            i.service_name.clone(),
            i.instance_id.clone(),
            i.updated_on.clone(),
            age_text(age_seconds(i)),
        ]);
    }
    let json = json!({
        "removed": removed,
        "older_than_seconds": older_than.as_secs_f64(),
        "entries": gone.iter().map(|n| {
            let i = &n.instance;
            json!({
                "service": i.service_name,
                "instance_id": i.instance_id,
                "updated_on": i.updated_on,
                "age_seconds": age_seconds(i),
            })
        }).collect::<Vec<_>>(),
    });
    let mut report = Report::new(json);
    if !gone.is_empty() {
        report = report.table(table);
    }
    Ok(report.text(format!("{removed} entries removed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_presence_and_heartbeat_age() {
        assert_eq!(Liveness::of(true, Some(1)), Liveness::Alive);
        assert_eq!(Liveness::of(true, Some(9)), Liveness::Late);
        assert_eq!(Liveness::of(false, Some(9)), Liveness::Late);
        assert_eq!(Liveness::of(false, Some(61)), Liveness::Stale);
        assert_eq!(Liveness::of(false, None), Liveness::Stale);
    }

    #[test]
    fn routes_split_into_method_and_path() {
        assert_eq!(split_route("[get]/v1/x/:id"), ("get", "/v1/x/:id"));
        assert_eq!(split_route("/plain"), ("", "/plain"));
    }

    #[test]
    fn sizes_and_ages_read_as_people_write_them() {
        assert_eq!(bytes_text(Some(97_071_104)), "97.1 MB");
        assert_eq!(bytes_text(Some(512)), "512 B");
        assert_eq!(bytes_text(None), "-");
        assert_eq!(age_text(Some(125)), "2m 5s");
        assert_eq!(age_text(None), "-");
    }
}
