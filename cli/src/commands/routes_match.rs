//! `routes match <path>`: which service and route a hydra-router would pick.
//!
//! The answer comes from the router crate's own code, not a copy: its
//! [`RouteBook`] builds the table from the library's `get_all_service_routes`
//! exactly as a router does at start (services by name, routes in stored
//! order, services without a live instance for `routePruneAfter` left out),
//! and [`RouteTable::resolve`] applies Node's first-match order with the #86
//! rule (a route of a dead service never shadows a live one), then the
//! service-prefix fallback. Paths the router answers itself (`/v1/router/…`,
//! the dashboard) are said to be so. Not known here: a router's
//! `externalRoutes`, and routes a long-running router still remembers for a
//! service whose route set has left Redis.

use std::collections::HashMap;

use hydra::Hydra;
use hydra_router::config::RouterConfig;
use hydra_router::route_book::RouteBook;
use hydra_router::route_table::{ResolvedBy, RouteTable};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone};

/// The router's default `routePruneAfter`, when its config cannot be read.
const DEFAULT_PRUNE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// `routes match <path> [--method m]`.
pub fn routes_match(ctx: &Context, method: &str, path: &str) -> CliResult<Report> {
    // A URL pasted from a browser or a log line: match its path.
    let target = request_target(path);
    let path = target.as_str();
    if !path.starts_with('/') {
        return Err(CliError::usage(
            format!("{path:?} is not a request path"),
            "give the path as the router receives it, starting with /, e.g. /v1/users/42",
        ));
    }
    let method = method.to_ascii_lowercase();
    let pathname = path.split(['?', '#']).next().unwrap_or(path);
    if hydra_router::api::own_path(pathname).is_some() {
        let json = json!({
            "path": path, "method": method, "matched": true,
            "service": hydra_router::config::ROUTER_SERVICE, "by": "router_api",
            "route": null, "path_forwarded": null, "live": null, "live_instances": null,
            "candidates": [],
        });
        return Ok(Report::new(json).text(format!(
            "{path} is the router's own (its API or dashboard): hydra-router answers it itself"
        )));
    }
    let hydra = ctx.hydra()?;
    let table = route_table(hydra)?;
    let mut presence = Presence::new(hydra);
    // The router asks about candidates in order; ask first so a Redis error
    // is an error here rather than a "dead" answer.
    let candidates: Vec<(String, String)> = table
        .matches(path)
        .map(|m| (m.service.to_string(), m.pattern.to_string()))
        .collect();
    for (service, _) in &candidates {
        presence.count(service)?;
    }
    let resolved = table.resolve(path, None, |service| presence.known_live(service));
    let Some(resolved) = resolved.filter(|r| r.service != hydra_router::config::ROUTER_SERVICE) else {
        return Err(CliError::failed(
            format!(
                "nothing matched {path}: no route of the {} services with routes, and its first segment names none of them; a router answers 404",
                table.service_count()
            ),
            "`hydra-cli routes` lists the routes services registered",
        ));
    };
    let service = resolved.service.to_string();
    let live_instances = presence.count(&service)?;
    let (by, pattern) = match resolved.by {
        ResolvedBy::Route { pattern } => ("route", Some(pattern.to_string())),
        ResolvedBy::Referer => ("referer", None),
        ResolvedBy::ServicePrefix => ("service_prefix", None),
    };
    let registered: Vec<String> = pattern
        .as_deref()
        .map(|p| registered_as(&table, &service, p))
        .unwrap_or_default();
    let methods: Vec<String> = registered.iter().filter_map(|r| method_of(r)).collect();
    let method_registered = methods.is_empty() || methods.contains(&method);
    let mut candidate_rows = Vec::new();
    let mut candidate_table = Table::new(["service", "route", "live", "chosen"]);
    for (candidate_service, candidate_pattern) in &candidates {
        let instances = presence.count(candidate_service)?;
        let chosen = *candidate_service == service && pattern.as_deref() == Some(candidate_pattern.as_str());
        candidate_table.row([
            Cell::from(candidate_service.as_str()),
            Cell::from(candidate_pattern.as_str()),
            live_cell(instances),
            Cell::new(if chosen { "yes" } else { "" }, Tone::Good),
        ]);
        candidate_rows.push(json!({
            "service": candidate_service,
            "route": candidate_pattern,
            "live_instances": instances,
            "chosen": chosen,
        }));
    }
    let json = json!({
        "path": path,
        "method": method,
        "matched": true,
        "service": service,
        "by": by,
        "route": pattern,
        "registered_as": registered,
        "method_registered": method_registered,
        "path_forwarded": resolved.path_to_forward,
        "live": live_instances > 0,
        "live_instances": live_instances,
        "candidates": candidate_rows,
    });
    let mut summary = Table::new(["service", "route", "forwarded as", "live"]);
    let rule = match (by, &pattern) {
        (_, Some(pattern)) => pattern.clone(),
        ("referer", None) => "(Referer fallback)".to_string(),
        _ => "(service-name prefix fallback)".to_string(),
    };
    summary.row([
        Cell::new(service.as_str(), Tone::Good),
        Cell::from(rule),
        Cell::from(format!("{} {}", method.to_uppercase(), resolved.path_to_forward)),
        live_cell(live_instances),
    ]);
    let mut report = Report::new(json).table(summary);
    if live_instances == 0 {
        report = report.text(format!(
            "{service} has no live instance: a router answers 503 (`hydra-cli nodes {service}` shows when it was last seen)"
        ));
    }
    if !method_registered {
        report = report.text(format!(
            "note: the route is registered for {} only; the router matches method-blind and forwards {} anyway",
            methods.join(", ").to_uppercase(),
            method.to_uppercase()
        ));
    }
    if candidates.len() > 1 {
        report = report
            .heading("every matching route, in the router's order")
            .table(candidate_table);
    }
    Ok(report)
}

/// The request target of `http(s)://host[:port]/path?query`; anything
/// else as given.
fn request_target(text: &str) -> String {
    let Some(rest) = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://")) else {
        return text.to_string();
    };
    match rest.find(['/', '?']) {
        Some(start) if rest[start..].starts_with('/') => rest[start..].to_string(),
        Some(start) => format!("/{}", &rest[start..]),
        None => "/".to_string(),
    }
}

/// The table a router just started would build (its own `RouteBook`).
fn route_table(hydra: &Hydra) -> CliResult<std::sync::Arc<RouteTable>> {
    let prune_after = RouterConfig::from_document(json!({}), &[])
        .map(|config| config.route_prune_after)
        .unwrap_or(DEFAULT_PRUNE_AFTER);
    let book = RouteBook::new(Vec::new(), prune_after);
    book.rebuild(hydra)
        .map_err(|e| CliError::from_hydra("reading the routes", e))?;
    Ok(book.table())
}

/// The stored route strings of `service` whose pattern is `pattern`.
fn registered_as(table: &RouteTable, service: &str, pattern: &str) -> Vec<String> {
    table
        .routes_of(service)
        .filter(|given| strip_method(given) == pattern)
        .map(str::to_string)
        .collect()
}

/// `[get]/x` → `/x`; a route without `]` is taken whole (as the router does).
fn strip_method(route: &str) -> &str {
    route.split_once(']').map_or(route, |(_, rest)| rest)
}

/// `[get]/x` → `get`.
fn method_of(route: &str) -> Option<String> {
    let inside = route.strip_prefix('[')?.split_once(']')?.0;
    Some(inside.to_ascii_lowercase())
}

fn live_cell(instances: usize) -> Cell {
    if instances > 0 {
        Cell::new(format!("yes ({instances})"), Tone::Good)
    } else {
        Cell::new("no", Tone::Bad)
    }
}

/// Live instance counts, read once per service.
struct Presence<'h> {
    hydra: &'h Hydra,
    counts: HashMap<String, usize>,
}

impl<'h> Presence<'h> {
    fn new(hydra: &'h Hydra) -> Presence<'h> {
        Presence {
            hydra,
            counts: HashMap::new(),
        }
    }

    fn count(&mut self, service: &str) -> CliResult<usize> {
        if let Some(&count) = self.counts.get(service) {
            return Ok(count);
        }
        let count = self
            .hydra
            .get_service_presence(service)
            .map_err(|e| CliError::from_hydra("reading the services' presence", e))?
            .len();
        self.counts.insert(service.to_string(), count);
        Ok(count)
    }

    /// For the table's question (after [`count`](Presence::count) was asked
    /// for every candidate): unknown services count as live, as the router's
    /// do when their presence cannot be read.
    fn known_live(&self, service: &str) -> bool {
        self.counts.get(service).is_none_or(|&count| count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_reduced_to_their_request_target() {
        assert_eq!(request_target("http://gw:5353/v1/x/1?a=b"), "/v1/x/1?a=b");
        assert_eq!(request_target("https://gw.example.com/v1/x"), "/v1/x");
        assert_eq!(request_target("http://gw:5353"), "/");
        assert_eq!(request_target("http://gw:5353?a=b"), "/?a=b");
        assert_eq!(request_target("/v1/x"), "/v1/x");
        assert_eq!(request_target("v1/x"), "v1/x");
    }

    #[test]
    fn methods_and_patterns_of_stored_routes() {
        assert_eq!(strip_method("[post]/v1/x/:id"), "/v1/x/:id");
        assert_eq!(strip_method("/v1/x"), "/v1/x");
        assert_eq!(method_of("[POST]/v1/x").as_deref(), Some("post"));
        assert_eq!(method_of("/v1/x"), None);
    }
}
