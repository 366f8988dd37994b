//! The route table: which service a request goes to.
//!
//! Built from every service's route set as stored in Redis
//! (`[get]/v1/users/:id`), it answers Node hydra-router's routing rules
//! (spec §1.2–1.3) with one fix:
//!
//! 1. **Route match.** The method (everything up to and including the first
//!    `]`) is dropped, so matching is method-blind; patterns have the
//!    semantics of npm `route-parser` ([`RoutePattern`]). Routes are tried in
//!    table order (services in the order given, then each service's routes in
//!    order) and the first match wins, with no precedence by specificity,
//!    except that **a route whose service has no live instance never shadows a
//!    live one** (Node issue #86): the first matching route of a live service
//!    wins, and only when no matching service is live does the first match
//!    (whose caller then answers 503).
//! 2. **Referer fallback.** With no match, a `Referer` that contains
//!    `/<service>` for a known service sends the request, path unchanged, to
//!    that service (a live one first, same rule): it lets a website hosted by
//!    a service load its relative assets. It is Node's plain substring test.
//! 3. **Service-prefix fallback.** With no match yet, a first path segment
//!    that names a known service sends the rest of the path (query included)
//!    to it: `/<svc>/a/b` forwards `/a/b`, `/<svc>` and `/<svc>/` forward `/`
//!    (Node forwards an empty path, which is no valid request target).
//!
//! Matching is on the raw pathname, as Node's (no percent-decoding: `%2F` is
//! not a separator, `/%76%31/x` is not `/v1/x`); a query string is never part
//! of it.
//!
//! **Speed.** Node tests every pattern in turn, which costs milliseconds per
//! request with thousands of routes. This table gets the same answers from an
//! index: every pattern sits at the node of a trie reached by the complete
//! segments of its literal prefix (the text before its first `:param`,
//! `*splat` or group: `/v1/users/` for `/v1/users/:id`), and patterns without
//! any parameter are kept in a hash map by their exact text. A lookup walks
//! the request's segments down the trie and tests only the patterns it meets,
//! merged back into table order, so the first-match order is Node's exactly.
//! Real tables (`/v1/<svc>/...`, and the automatic `/<svc>`, `/<svc>/` and
//! `/<svc>/:rest` of every service) leave a handful of candidates per request.
//! The Referer test is one Aho-Corasick pass over the header.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;

use aho_corasick::AhoCorasick;
use hydra::http::RoutePattern;
use serde_json::{Value, json};

/// Every service's routes, indexed for Node's first-match order. Immutable:
/// a refresh builds a new one (see [`RouteTable::new`]).
#[derive(Debug, Clone)]
pub struct RouteTable {
    services: Vec<Service>,
    /// Every route, in table order: a route's index is its rank.
    routes: Vec<Route>,
    service_by_name: HashMap<String, usize>,
    /// Routes whose pattern is all literal, by that text; ranks ascending.
    literal_routes: HashMap<String, Vec<usize>>,
    /// The trie of literal prefix segments; `segments[0]` is the root.
    segments: Vec<SegmentNode>,
    /// Finds `/<service>` in a Referer; pattern `i` is service `i`'s.
    referer_finder: Option<AhoCorasick>,
}

#[derive(Debug, Clone)]
struct Service {
    name: String,
    /// Its routes' ranks (contiguous, as services come one after another).
    routes: Range<usize>,
}

#[derive(Debug, Clone)]
struct Route {
    service: usize,
    /// As given, method included.
    given: String,
    pattern: RoutePattern,
}

/// The routes whose literal prefix has exactly the segments leading to this
/// node, ranks ascending, and the nodes one segment further.
#[derive(Debug, Clone, Default)]
struct SegmentNode {
    routes: Vec<usize>,
    children: HashMap<Box<str>, usize>,
}

/// One route that matches a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'t> {
    /// The service the route belongs to.
    pub service: &'t str,
    /// The route's pattern, without its `[method]`.
    pub pattern: &'t str,
}

/// Where [`RouteTable::resolve`] sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'t> {
    /// The service to forward to.
    pub service: &'t str,
    /// The request target to send it: the one given, except after the
    /// service-prefix fallback, which removes the first segment.
    pub path_to_forward: String,
    /// Which rule chose the service.
    pub by: ResolvedBy<'t>,
    /// What `is_live` said about `service`, when it was asked.
    pub live: Option<bool>,
}

/// Which of Node's rules chose the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedBy<'t> {
    /// A route of the service matched the path.
    Route {
        /// That route's pattern, without its `[method]`.
        pattern: &'t str,
    },
    /// No route matched; the `Referer` contains `/<service>`.
    Referer,
    /// No route matched; the path's first segment is the service's name.
    ServicePrefix,
}

impl RouteTable {
    /// Builds the table from `(service name, routes)` pairs, in the order
    /// they should be tried (the router passes services sorted by name, then
    /// `externalRoutes`), each route as stored in Redis (`[get]/v1/x/:id`; a
    /// route without `]` is taken whole). A name given twice keeps its first
    /// place and its last routes, as Node's `Object.assign` merge does.
    pub fn new(services: impl IntoIterator<Item = (String, Vec<String>)>) -> RouteTable {
        let mut merged: Vec<(String, Vec<String>)> = Vec::new();
        let mut service_by_name: HashMap<String, usize> = HashMap::new();
        for (name, routes) in services {
            match service_by_name.entry(name) {
                Entry::Occupied(seen) => merged[*seen.get()].1 = routes,
                Entry::Vacant(new) => {
                    merged.push((new.key().clone(), routes));
                    new.insert(merged.len() - 1);
                }
            }
        }
        let mut table = RouteTable {
            services: Vec::with_capacity(merged.len()),
            routes: Vec::new(),
            service_by_name,
            literal_routes: HashMap::new(),
            segments: vec![SegmentNode::default()],
            referer_finder: None,
        };
        for (service, (name, routes)) in merged.into_iter().enumerate() {
            let first = table.routes.len();
            for given in routes {
                table.add_route(service, given);
            }
            table.services.push(Service {
                name,
                routes: first..table.routes.len(),
            });
        }
        let needles = table.services.iter().map(|s| format!("/{}", s.name));
        // Only fails beyond limits no route table comes near (patterns of
        // gigabytes); the Referer fallback is then off, logged.
        table.referer_finder = AhoCorasick::new(needles)
            .inspect_err(|e| log::error!("route table: Referer fallback disabled: {e}"))
            .ok();
        table
    }

    fn add_route(&mut self, service: usize, given: String) {
        let rank = self.routes.len();
        let pattern = RoutePattern::new(strip_method(&given));
        if pattern.is_literal() {
            let text = pattern.literal_prefix().to_string();
            self.literal_routes.entry(text).or_default().push(rank);
        } else {
            // A matching path starts with the literal prefix, so it has every
            // segment of it that a `/` follows: those lead to the pattern.
            let mut node = 0;
            if let Some((complete, _)) = pattern.literal_prefix().rsplit_once('/') {
                for segment in complete.split('/') {
                    node = self.child(node, segment);
                }
            }
            self.segments[node].routes.push(rank);
        }
        self.routes.push(Route {
            service,
            given,
            pattern,
        });
    }

    /// The node one `segment` below `node`, created when missing.
    fn child(&mut self, node: usize, segment: &str) -> usize {
        if let Some(&child) = self.segments[node].children.get(segment) {
            return child;
        }
        let child = self.segments.len();
        self.segments.push(SegmentNode::default());
        self.segments[node].children.insert(segment.into(), child);
        child
    }

    /// Every route that matches `target`'s path (its query string, if any,
    /// is not part of matching), in first-match order, found lazily.
    pub fn matches<'t, 'p>(&'t self, target: &'p str) -> Matches<'t, 'p> {
        let path = pathname(target);
        let mut lists: Vec<&'t [usize]> = Vec::with_capacity(8);
        if let Some(literal) = self.literal_routes.get(path) {
            lists.push(literal);
        }
        let mut node = &self.segments[0];
        let mut segments = path.split('/').peekable();
        loop {
            if !node.routes.is_empty() {
                lists.push(&node.routes);
            }
            // Only a segment followed by a `/` leads further down.
            let (Some(segment), Some(_)) = (segments.next(), segments.peek()) else {
                break;
            };
            match node.children.get(segment) {
                Some(&child) => node = &self.segments[child],
                None => break,
            }
        }
        Matches {
            table: self,
            path,
            candidates: RankMerge { lists },
        }
    }

    /// Where Node's routing rules (with the #86 fix, see the module docs)
    /// send a request for `target` (origin form, `/path?query`) with this
    /// `referer`, or `None` for a 404. `is_live(service)` says whether a
    /// service has a live instance. It is asked about candidates only (the
    /// services of matching routes, or those the Referer names), in order and
    /// at most once each, so a live first match costs one call; the
    /// service-prefix fallback, which has one candidate, does not ask.
    pub fn resolve<'t>(
        &'t self,
        target: &str,
        referer: Option<&str>,
        mut is_live: impl FnMut(&str) -> bool,
    ) -> Option<Resolved<'t>> {
        let mut asked: Vec<(usize, bool)> = Vec::new();
        let mut live = |service: usize| match asked.iter().find(|(s, _)| *s == service) {
            Some(&(_, live)) => live,
            None => {
                let live = is_live(&self.services[service].name);
                asked.push((service, live));
                live
            }
        };
        if let Some((rank, live)) = first_live(self.matching_ranks(target), &mut live, |&r| self.routes[r].service) {
            let route = &self.routes[rank];
            return Some(Resolved {
                service: self.name(route.service),
                path_to_forward: target.to_string(),
                by: ResolvedBy::Route {
                    pattern: route.pattern.as_str(),
                },
                live: Some(live),
            });
        }
        if let Some((service, live)) = referer.and_then(|r| first_live(self.referer_services(r), &mut live, |&s| s)) {
            return Some(Resolved {
                service: self.name(service),
                path_to_forward: target.to_string(),
                by: ResolvedBy::Referer,
                live: Some(live),
            });
        }
        let (service, rest) = self.service_prefix(target)?;
        Some(Resolved {
            service: self.name(service),
            path_to_forward: if rest.is_empty() || rest.starts_with('?') {
                format!("/{rest}")
            } else {
                rest.to_string()
            },
            by: ResolvedBy::ServicePrefix,
            live: None,
        })
    }

    fn matching_ranks(&self, target: &str) -> impl Iterator<Item = usize> {
        let mut matches = self.matches(target);
        std::iter::from_fn(move || matches.next_rank())
    }

    /// The services whose `/<name>` occurs in `referer`, in table order.
    fn referer_services(&self, referer: &str) -> impl Iterator<Item = usize> {
        let mut found: Vec<usize> = match &self.referer_finder {
            Some(finder) => finder
                .find_overlapping_iter(referer)
                .map(|m| m.pattern().as_usize())
                .collect(),
            None => Vec::new(),
        };
        found.sort_unstable();
        found.dedup();
        found.into_iter()
    }

    /// The service named by `target`'s first path segment, and what follows
    /// that segment (query included).
    fn service_prefix<'p>(&self, target: &'p str) -> Option<(usize, &'p str)> {
        let after_slash = target.strip_prefix('/')?;
        let end = after_slash.find(['/', '?']).unwrap_or(after_slash.len());
        let service = *self.service_by_name.get(&after_slash[..end])?;
        Some((service, &after_slash[end..]))
    }

    fn name(&self, service: usize) -> &str {
        &self.services[service].name
    }

    /// Whether a service of this name has a route set (even an empty one).
    pub fn contains_service(&self, name: &str) -> bool {
        self.service_by_name.contains_key(name)
    }

    /// The service names, in table order.
    pub fn service_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.services.iter().map(|s| s.name.as_str())
    }

    /// A service's routes as given (method included), in order; empty for an
    /// unknown service. Lets a refresh of one service rebuild the table from
    /// the others' current routes.
    pub fn routes_of(&self, service: &str) -> impl ExactSizeIterator<Item = &str> {
        let routes = match self.service_by_name.get(service) {
            Some(&s) => &self.routes[self.services[s].routes.clone()],
            None => &[],
        };
        routes.iter().map(|r| r.given.as_str())
    }

    /// How many services the table holds.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// How many routes the table holds, all services together.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The `result` of `/v1/router/list/routes`, as Node's:
    /// `[{"serviceName": …, "routes": [pattern without [method], …]}, …]`
    /// in table order.
    pub fn list_routes(&self) -> Value {
        let services = self.services.iter().map(|service| {
            let patterns: Vec<&str> = self.routes[service.routes.clone()]
                .iter()
                .map(|r| r.pattern.as_str())
                .collect();
            json!({"serviceName": service.name, "routes": patterns})
        });
        Value::Array(services.collect())
    }
}

/// The routes matching one path, in first-match order: see
/// [`RouteTable::matches`].
#[derive(Debug, Clone)]
pub struct Matches<'t, 'p> {
    table: &'t RouteTable,
    path: &'p str,
    candidates: RankMerge<'t>,
}

impl Matches<'_, '_> {
    /// The rank of the next matching route.
    fn next_rank(&mut self) -> Option<usize> {
        let (routes, path) = (&self.table.routes, self.path);
        self.candidates.find(|&rank| routes[rank].pattern.is_match(path))
    }
}

impl<'t> Iterator for Matches<'t, '_> {
    type Item = RouteMatch<'t>;

    fn next(&mut self) -> Option<RouteMatch<'t>> {
        let route = &self.table.routes[self.next_rank()?];
        Some(RouteMatch {
            service: self.table.name(route.service),
            pattern: route.pattern.as_str(),
        })
    }
}

/// Merges ascending lists of ranks into one ascending sequence (they never
/// share a rank: each route sits in one place of the index).
#[derive(Debug, Clone)]
struct RankMerge<'t> {
    lists: Vec<&'t [usize]>,
}

impl Iterator for RankMerge<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let (list, &rank) = self
            .lists
            .iter()
            .enumerate()
            .filter_map(|(i, list)| list.first().map(|r| (i, r)))
            .min_by_key(|&(_, &r)| r)?;
        self.lists[list] = &self.lists[list][1..];
        Some(rank)
    }
}

/// The first candidate whose service is live, or the first candidate when
/// none is, with that liveness.
fn first_live<T: Copy>(
    mut candidates: impl Iterator<Item = T>,
    live: &mut impl FnMut(usize) -> bool,
    service_of: impl Fn(&T) -> usize,
) -> Option<(T, bool)> {
    let first = candidates.next()?;
    if live(service_of(&first)) {
        return Some((first, true));
    }
    Some(
        candidates
            .find(|c| live(service_of(c)))
            .map_or((first, false), |c| (c, true)),
    )
}

/// A route as stored in Redis without its method: everything after the
/// first `]`, or all of it.
fn strip_method(route: &str) -> &str {
    route.split_once(']').map_or(route, |(_, pattern)| pattern)
}

/// The part of a request target that routes match: up to any `?`.
fn pathname(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use proptest::prelude::*;

    use super::*;

    fn table(services: &[(&str, &[&str])]) -> RouteTable {
        RouteTable::new(
            services
                .iter()
                .map(|(name, routes)| (name.to_string(), routes.iter().map(|r| r.to_string()).collect())),
        )
    }

    /// The three routes hydra registers for every service.
    fn automatic(service: &str) -> Vec<String> {
        vec![
            format!("[get]/{service}"),
            format!("[get]/{service}/"),
            format!("[get]/{service}/:rest"),
        ]
    }

    fn all_live(_: &str) -> bool {
        true
    }

    fn routed<'t>(service: &'t str, path: &str, pattern: &'t str, live: bool) -> Resolved<'t> {
        Resolved {
            service,
            path_to_forward: path.to_string(),
            by: ResolvedBy::Route { pattern },
            live: Some(live),
        }
    }

    fn matching<'t>(table: &'t RouteTable, path: &str) -> Vec<(&'t str, &'t str)> {
        table.matches(path).map(|m| (m.service, m.pattern)).collect()
    }

    #[test]
    fn the_first_match_in_table_order_wins_not_the_most_specific() {
        let table = table(&[
            ("alpha", &["[get]/v1/alpha", "[get]/v1/:any/1"]),
            ("beta", &["[get]/v1/alpha/1", "[get]/*all"]),
            ("gamma", &["[get]/v1/alpha/:id"]),
        ]);
        assert_eq!(
            table.resolve("/v1/alpha/1", None, all_live),
            Some(routed("alpha", "/v1/alpha/1", "/v1/:any/1", true))
        );
        assert_eq!(
            matching(&table, "/v1/alpha/1"),
            [
                ("alpha", "/v1/:any/1"),
                ("beta", "/v1/alpha/1"),
                ("beta", "/*all"),
                ("gamma", "/v1/alpha/:id")
            ]
        );
        assert_eq!(
            matching(&table, "/v1/alpha"),
            [("alpha", "/v1/alpha"), ("beta", "/*all")]
        );
        assert_eq!(matching(&table, "/other"), [("beta", "/*all")]);
    }

    #[test]
    fn matching_ignores_the_method_and_takes_routes_without_one_whole() {
        let table = table(&[(
            "svc",
            &["[post]/v1/posted", "/v1/bare/:id", "odd]/v1/odd", "[get]/v1/a]b"],
        )]);
        assert_eq!(
            table.resolve("/v1/posted", None, all_live),
            Some(routed("svc", "/v1/posted", "/v1/posted", true))
        );
        assert_eq!(matching(&table, "/v1/bare/7"), [("svc", "/v1/bare/:id")]);
        assert_eq!(matching(&table, "/v1/odd"), [("svc", "/v1/odd")]);
        assert_eq!(
            matching(&table, "/v1/a]b"),
            [("svc", "/v1/a]b")],
            "only the first `]` ends the method"
        );
        assert!(matching(&table, "[post]/v1/posted").is_empty());
    }

    #[test]
    fn a_route_of_a_service_without_instances_never_shadows_a_live_one() {
        let table = table(&[
            ("gone", &["[get]/v1/:anything", "[get]/v1/shared"]),
            ("stale", &["[get]/v1/shared"]),
            ("live", &["[get]/v1/shared"]),
            ("unrelated", &["[get]/v1/other/x"]),
        ]);
        let asked = RefCell::new(Vec::new());
        let is_live = |service: &str| {
            asked.borrow_mut().push(service.to_string());
            service == "live" || service == "unrelated"
        };
        assert_eq!(
            table.resolve("/v1/shared", None, is_live),
            Some(routed("live", "/v1/shared", "/v1/shared", true))
        );
        assert_eq!(
            *asked.borrow(),
            ["gone", "stale", "live"],
            "each service asked once, in order"
        );

        // When none of the matching services is live: the first match, for a 503.
        asked.borrow_mut().clear();
        assert_eq!(
            table.resolve("/v1/nobody", None, is_live),
            Some(routed("gone", "/v1/nobody", "/v1/:anything", false))
        );
        assert_eq!(*asked.borrow(), ["gone"], "only matching services are asked");

        // A live first match costs one question.
        asked.borrow_mut().clear();
        assert_eq!(
            table.resolve("/v1/shared", None, |s| {
                asked.borrow_mut().push(s.to_string());
                true
            }),
            Some(routed("gone", "/v1/shared", "/v1/:anything", true))
        );
        assert_eq!(*asked.borrow(), ["gone"]);
    }

    #[test]
    fn the_referer_fallback_keeps_the_path_and_prefers_a_live_service() {
        let mut services = vec![
            ("api".to_string(), vec!["[get]/v1/api/:id".to_string()]),
            ("site".to_string(), automatic("site")),
            ("sitemap".to_string(), automatic("sitemap")),
        ];
        services[2].1.push("[get]/v1/sitemap".to_string());
        let table = RouteTable::new(services);
        let resolved =
            |path: &str, referer: &str, live: &dyn Fn(&str) -> bool| table.resolve(path, Some(referer), live);
        let by_referer = |service, path: &str, live| Resolved {
            service,
            path_to_forward: path.to_string(),
            by: ResolvedBy::Referer,
            live: Some(live),
        };
        // An asset of a page served by `site`: `/css/app.css` matches no route.
        assert_eq!(
            resolved("/css/app.css?v=2", "http://gw.example/site/index.html", &all_live),
            Some(by_referer("site", "/css/app.css?v=2", true))
        );
        // A plain substring test: `/sitemap` contains `/site` too; table order
        // first, then the live one.
        assert_eq!(
            resolved("/css/app.css", "http://gw.example/sitemap/", &all_live),
            Some(by_referer("site", "/css/app.css", true))
        );
        assert_eq!(
            resolved("/css/app.css", "http://gw.example/sitemap/", &|s| s == "sitemap"),
            Some(by_referer("sitemap", "/css/app.css", true))
        );
        assert_eq!(
            resolved("/css/app.css", "http://gw.example/sitemap/", &|_| false),
            Some(by_referer("site", "/css/app.css", false))
        );
        // A route match comes first; an unknown Referer falls through to 404.
        assert_eq!(
            resolved("/v1/api/7", "http://gw.example/site/", &all_live),
            Some(routed("api", "/v1/api/7", "/v1/api/:id", true))
        );
        assert_eq!(resolved("/css/app.css", "http://gw.example/shop/", &all_live), None);
    }

    #[test]
    fn the_service_prefix_fallback_forwards_the_rest_of_the_path() {
        let mut services = vec![("users".to_string(), automatic("users"))];
        services.push(("bare".to_string(), vec!["[get]/v1/bare/x".to_string()]));
        let table = RouteTable::new(services);
        let by_prefix = |service, path: &str| {
            Some(Resolved {
                service,
                path_to_forward: path.to_string(),
                by: ResolvedBy::ServicePrefix,
                live: None,
            })
        };
        // One segment after the name matches the automatic `:rest` route and
        // keeps the prefix; two do not, and lose it.
        assert_eq!(
            table.resolve("/users/page", None, all_live),
            Some(routed("users", "/users/page", "/users/:rest", true))
        );
        assert_eq!(
            table.resolve("/users/a/b?x=1", None, all_live),
            by_prefix("users", "/a/b?x=1")
        );
        assert_eq!(
            table.resolve("/users", None, all_live),
            Some(routed("users", "/users", "/users", true))
        );
        assert_eq!(
            table.resolve("/users/", None, all_live),
            Some(routed("users", "/users/", "/users/", true))
        );
        // A service without the automatic routes: `/<svc>` and `/<svc>/` forward `/`.
        assert_eq!(table.resolve("/bare", None, all_live), by_prefix("bare", "/"));
        assert_eq!(table.resolve("/bare/", None, all_live), by_prefix("bare", "/"));
        assert_eq!(table.resolve("/bare?q=1", None, all_live), by_prefix("bare", "/?q=1"));
        assert_eq!(table.resolve("/bare/v1/x", None, all_live), by_prefix("bare", "/v1/x"));
        assert_eq!(table.resolve("/barefoot/x", None, all_live), None);
        assert_eq!(table.resolve("/nobody/x", None, all_live), None);
    }

    #[test]
    fn matching_is_on_the_raw_pathname_without_the_query() {
        let table = table(&[("svc", &["[get]/v1/x", "[get]/v1/item/:id", "[get]/v1/q"])]);
        assert_eq!(
            table.resolve("/v1/x?next=/v1/q", None, all_live),
            Some(routed("svc", "/v1/x?next=/v1/q", "/v1/x", true))
        );
        assert_eq!(matching(&table, "/v1/x?"), [("svc", "/v1/x")]);
        assert_eq!(matching(&table, "/v1/item/a%2Fb"), [("svc", "/v1/item/:id")]);
        assert!(matching(&table, "/v1/%78").is_empty(), "no percent-decoding, as Node");
        assert!(matching(&table, "/v1/item/a/b").is_empty());
        assert!(matching(&table, "/v1/X").is_empty());
    }

    #[test]
    fn an_empty_table_routes_nothing() {
        let table = RouteTable::new(Vec::new());
        assert_eq!(table.resolve("/", Some("http://x/"), all_live), None);
        assert_eq!(table.resolve("", None, all_live), None);
        assert_eq!(table.matches("/v1/x").count(), 0);
        assert_eq!((table.service_count(), table.route_count()), (0, 0));
        assert_eq!(table.list_routes(), json!([]));
    }

    #[test]
    fn listings_keep_table_order_and_a_repeated_name_its_last_routes() {
        let table = RouteTable::new([
            (
                "zeta".to_string(),
                vec!["[get]/v1/zeta/:id".to_string(), "[post]/v1/zeta".to_string()],
            ),
            ("alpha".to_string(), vec!["[get]/v1/old".to_string()]),
            ("empty".to_string(), Vec::new()),
            ("alpha".to_string(), vec!["[put]/v1/alpha".to_string()]),
        ]);
        assert_eq!(
            table.list_routes(),
            json!([
                {"serviceName": "zeta", "routes": ["/v1/zeta/:id", "/v1/zeta"]},
                {"serviceName": "alpha", "routes": ["/v1/alpha"]},
                {"serviceName": "empty", "routes": []},
            ])
        );
        assert_eq!(table.service_names().collect::<Vec<_>>(), ["zeta", "alpha", "empty"]);
        assert_eq!(table.routes_of("alpha").collect::<Vec<_>>(), ["[put]/v1/alpha"]);
        assert_eq!(table.routes_of("nobody").count(), 0);
        assert!(table.contains_service("empty") && !table.contains_service("nobody"));
        assert_eq!((table.service_count(), table.route_count()), (3, 3));
        assert!(matching(&table, "/v1/old").is_empty());
        assert_eq!(
            table.resolve("/empty/x", None, all_live).map(|r| r.service),
            Some("empty")
        );
    }

    // ---- the index agrees with Node's linear scan ----

    /// Node's algorithm, as written: every route of every service in turn.
    fn linear_resolve<'a>(
        services: &'a [(String, Vec<String>)],
        target: &str,
        referer: Option<&str>,
        live: &dyn Fn(&str) -> bool,
    ) -> Option<(&'a str, String, Option<String>)> {
        let path = target.split('?').next().unwrap_or(target);
        let matches: Vec<(&str, String)> = services
            .iter()
            .flat_map(|(name, routes)| routes.iter().map(move |r| (name.as_str(), strip_method(r).to_string())))
            .filter(|(_, pattern)| RoutePattern::new(pattern).matches(path).is_some())
            .collect();
        let first_live = |candidates: &[&'a str]| candidates.iter().find(|s| live(s)).or(candidates.first()).copied();
        let services_matched: Vec<&str> = matches.iter().map(|(s, _)| *s).collect();
        if let Some(service) = first_live(&services_matched) {
            let (_, pattern) = matches.iter().find(|(s, _)| *s == service)?;
            return Some((service, target.to_string(), Some(pattern.clone())));
        }
        let named: Vec<&str> = services
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| referer.is_some_and(|r| r.contains(&format!("/{name}"))))
            .collect();
        if let Some(service) = first_live(&named) {
            return Some((service, target.to_string(), None));
        }
        let first_segment = path.strip_prefix('/')?.split('/').next()?;
        let (name, _) = services.iter().find(|(name, _)| name == first_segment)?;
        let rest = &target[1 + name.len()..];
        let forward = if rest.is_empty() || rest.starts_with('?') {
            format!("/{rest}")
        } else {
            rest.to_string()
        };
        Some((name.as_str(), forward, None))
    }

    fn joined(pieces: &'static [&'static str], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(pieces), len).prop_map(|v| v.concat())
    }

    const NAMES: &[&str] = &["s0", "s1", "s10", "v1", "a"];

    /// A route as stored: a method or not, then a pattern.
    fn route_string() -> impl Strategy<Value = String> {
        let pattern = joined(
            &[
                "/", "/", "v1", "s0", "s1", "a", "b", ":p", "*s", "(/a)", "(/:o)", "(", ")", ".json", "é", "%2F",
            ],
            0..7,
        );
        (proptest::sample::select(&["[get]", "[post]", "", "x]"][..]), pattern)
            .prop_map(|(method, pattern)| format!("{method}{pattern}"))
    }

    /// Some of the names, in any order, each with up to 5 routes.
    fn tables() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
        proptest::sample::subsequence(NAMES, 0..=NAMES.len())
            .prop_shuffle()
            .prop_flat_map(|names| {
                let n = names.len();
                (
                    Just(names),
                    proptest::collection::vec(proptest::collection::vec(route_string(), 0..6), n),
                )
            })
            .prop_map(|(names, routes)| names.into_iter().map(str::to_string).zip(routes).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// On random tables, targets, Referers and live sets, the index finds
        /// exactly the routes a linear scan finds, in the same order, and
        /// resolves like Node's algorithm with the #86 fix, asking about each
        /// service at most once.
        #[test]
        fn the_index_answers_as_a_linear_scan(
            services in tables(),
            targets in proptest::collection::vec(
                joined(&["/", "/", "v1", "s0", "s1", "s10", "a", "b", ".json", "é", "%2F", "?", "q=1"], 0..8),
                1..8,
            ),
            referer in proptest::option::of(joined(&["http://h", "/", "s0", "s1", "a", "x"], 0..5)),
            live_mask in 0u8..32,
        ) {
            let table = RouteTable::new(services.clone());
            let live = |name: &str| NAMES.iter().position(|n| *n == name).is_some_and(|i| live_mask & (1 << i) != 0);
            for target in &targets {
                let path = target.split('?').next().unwrap_or(target);
                let scanned: Vec<(&str, &str)> = services
                    .iter()
                    .flat_map(|(name, routes)| routes.iter().map(move |r| (name.as_str(), strip_method(r))))
                    .filter(|(_, pattern)| RoutePattern::new(pattern).matches(path).is_some())
                    .collect();
                prop_assert_eq!(matching(&table, target), scanned);

                let asked = RefCell::new(Vec::new());
                let resolved = table.resolve(target, referer.as_deref(), |s| {
                    asked.borrow_mut().push(s.to_string());
                    live(s)
                });
                let mut distinct = asked.borrow().clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), asked.borrow().len(), "a service asked twice");
                let got = resolved.map(|r| {
                    let pattern = match r.by {
                        ResolvedBy::Route { pattern } => Some(pattern.to_string()),
                        _ => None,
                    };
                    (r.service, r.path_to_forward, pattern)
                });
                prop_assert_eq!(got, linear_resolve(&services, target, referer.as_deref(), &live));
            }
        }
    }
}
