//! Route-matching benchmark: what choosing a service costs the router per
//! request, with 1,000 services × 10 routes registered (10,000 patterns).
//!
//! ```text
//! cargo run --release -p hydra-router --example bench_matching
//! ```
//!
//! Every service has routes shaped like real ones (`/v1/<svc>/items/:id`,
//! optional groups, a splat) plus the three hydra registers for it
//! (`/<svc>`, `/<svc>/`, `/<svc>/:rest`); services are in name order, as the
//! router passes them. Requests hit early, middle and late services, the
//! automatic routes, the Referer and service-prefix fallbacks, and nothing
//! (404). For each, the table shows p50/p99 of `RouteTable::resolve` and, in
//! the same run, of Node's way: every pattern in turn with
//! `RoutePattern::matches` until one matches, then the Referer test against
//! every service name, then the prefix lookup. Then the time to build the
//! table, which a route refresh does, next to compiling the patterns alone.
//!
//! Target (hydra-router issue): p50 ≤ 20 µs per request over the mix. The
//! program is a report: it exits 0 whether or not the target is met, and
//! non-zero only when the table's answer differs from Node's.
//!
//! `HYDRA_BENCH_SMOKE=1` runs every step on 100 services with few samples.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use hydra::http::RoutePattern;
use hydra_router::route_table::{ResolvedBy, RouteTable};
use hydra_testkit::bench::{self, Latencies, Summary, Table, verdict};

const ROUTES_PER_SERVICE: usize = 10;
/// Target p50 per request over the whole mix, µs.
const TARGET_P50_MICROS: f64 = 20.0;
/// Words service names are made of, so that names look like real ones and
/// sort in another order than they are made.
const WORDS: [&str; 8] = [
    "billing", "users", "orders", "catalog", "search", "media", "auth", "reports",
];

fn main() -> ExitCode {
    bench::exit_code("bench_matching", run())
}

/// The table as the router builds it: `(service, routes)` in name order.
fn services(count: usize) -> Vec<(String, Vec<String>)> {
    let mut names: Vec<String> = (0..count)
        .map(|i| format!("{}-{:04}", WORDS[i % WORDS.len()], i))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|svc| {
            let routes = vec![
                format!("[get]/v1/{svc}/items"),
                format!("[post]/v1/{svc}/items"),
                format!("[get]/v1/{svc}/items/:id"),
                format!("[put]/v1/{svc}/items/:id"),
                format!("[get]/v1/{svc}/items/:id/history(/:page)"),
                format!("[get]/v1/{svc}/search(/:term)"),
                format!("[get]/v1/{svc}/files/*path"),
                format!("[get]/{svc}"),
                format!("[get]/{svc}/"),
                format!("[get]/{svc}/:rest"),
            ];
            debug_assert_eq!(routes.len(), ROUTES_PER_SERVICE);
            (svc, routes)
        })
        .collect()
}

/// One kind of request: its targets (and Referer), and what must come out.
struct Kind {
    label: String,
    requests: Vec<Request>,
}

struct Request {
    target: String,
    referer: Option<String>,
    /// `(service, path to forward, pattern)`, or `None` for a 404.
    expected: Option<(String, String, Option<String>)>,
}

fn kinds(names: &[&str]) -> Vec<Kind> {
    let (early, middle, late) = (names[0], names[names.len() / 2], names[names.len() - 1]);
    let routed = |svc: &str, target: String, pattern: String| Request {
        expected: Some((svc.to_string(), target.clone(), Some(pattern))),
        target,
        referer: None,
    };
    let items = |svc: &str| {
        (0..4)
            .map(|id| routed(svc, format!("/v1/{svc}/items/{id}"), format!("/v1/{svc}/items/:id")))
            .collect()
    };
    vec![
        Kind {
            label: "`/v1/<svc>/items/:id`, first service".into(),
            requests: items(early),
        },
        Kind {
            label: "`/v1/<svc>/items/:id`, middle service".into(),
            requests: items(middle),
        },
        Kind {
            label: "`/v1/<svc>/items/:id`, last service".into(),
            requests: items(late),
        },
        Kind {
            label: "`/v1/<svc>/files/*path?query`, last service".into(),
            requests: vec![routed(
                late,
                format!("/v1/{late}/files/a/b/report.pdf?download=1"),
                format!("/v1/{late}/files/*path"),
            )],
        },
        Kind {
            label: "automatic `/<svc>/:rest`, middle service".into(),
            requests: vec![routed(middle, format!("/{middle}/page"), format!("/{middle}/:rest"))],
        },
        Kind {
            label: "service-prefix fallback `/<svc>/a/b`".into(),
            requests: vec![Request {
                target: format!("/{middle}/static/app.js"),
                referer: None,
                expected: Some((middle.to_string(), "/static/app.js".into(), None)),
            }],
        },
        Kind {
            label: "Referer fallback (an asset of `/<svc>/`)".into(),
            requests: vec![Request {
                target: "/css/site/app.css".into(),
                referer: Some(format!("https://gw.example.com/{middle}/index.html")),
                expected: Some((middle.to_string(), "/css/site/app.css".into(), None)),
            }],
        },
        Kind {
            label: "no match (404)".into(),
            requests: vec![
                Request {
                    target: "/v1/nobody/items/1".into(),
                    referer: None,
                    expected: None,
                },
                Request {
                    target: "/favicon/x.ico".into(),
                    referer: Some("https://gw.example.com/".into()),
                    expected: None,
                },
            ],
        },
    ]
}

/// What a resolution came to, comparable between the two ways.
type Answer = Option<(String, String, Option<String>)>;

fn indexed(table: &RouteTable, request: &Request) -> Answer {
    table
        .resolve(&request.target, request.referer.as_deref(), |_| true)
        .map(|r| {
            let pattern = match r.by {
                ResolvedBy::Route { pattern } => Some(pattern.to_string()),
                ResolvedBy::Referer | ResolvedBy::ServicePrefix => None,
            };
            (r.service.to_string(), r.path_to_forward, pattern)
        })
}

/// Node hydra-router's algorithm, as written (every service live).
struct LinearScan {
    routes: Vec<(usize, RoutePattern)>,
    names: Vec<String>,
    by_name: HashMap<String, usize>,
}

impl LinearScan {
    fn new(services: &[(String, Vec<String>)]) -> LinearScan {
        let routes = services
            .iter()
            .enumerate()
            .flat_map(|(s, (_, routes))| {
                routes
                    .iter()
                    .map(move |r| (s, RoutePattern::new(r.split_once(']').map_or(r.as_str(), |(_, p)| p))))
            })
            .collect();
        let names: Vec<String> = services.iter().map(|(name, _)| name.clone()).collect();
        let by_name = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        LinearScan { routes, names, by_name }
    }

    fn resolve(&self, request: &Request) -> Answer {
        let target = request.target.as_str();
        let path = target.split('?').next().unwrap_or(target);
        if let Some((s, pattern)) = self.routes.iter().find(|(_, p)| p.matches(path).is_some()) {
            return Some((
                self.names[*s].clone(),
                target.to_string(),
                Some(pattern.as_str().to_string()),
            ));
        }
        if let Some(referer) = &request.referer
            && let Some(name) = self.names.iter().find(|n| referer.contains(&format!("/{n}")))
        {
            return Some((name.clone(), target.to_string(), None));
        }
        let first = path.strip_prefix('/')?.split('/').next()?;
        let s = *self.by_name.get(first)?;
        let rest = &target[1 + first.len()..];
        let forward = if rest.is_empty() || rest.starts_with('?') {
            format!("/{rest}")
        } else {
            rest.to_string()
        };
        Some((self.names[s].clone(), forward, None))
    }
}

/// Times `samples` calls of `call` on the kind's requests in turn; counts
/// the answers that differ from the expected ones.
fn measure(kind: &Kind, samples: usize, latencies: &mut Latencies, mut call: impl FnMut(&Request) -> Answer) -> usize {
    let mut wrong = 0;
    let started = Instant::now();
    for n in 0..samples {
        let request = &kind.requests[n % kind.requests.len()];
        let t = Instant::now();
        let answer = black_box(call(black_box(request)));
        latencies.record(t.elapsed());
        if answer != request.expected {
            if wrong == 0 {
                eprintln!(
                    "ERROR: {} for {:?} (Referer {:?}): expected {:?}",
                    kind.label, request.target, request.referer, request.expected
                );
                eprintln!("       got {answer:?}");
            }
            wrong += 1;
        }
    }
    latencies.add_wall(started.elapsed());
    wrong
}

fn micros(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.2} µs")
    } else {
        format!("{us:.0} µs")
    }
}

fn run() -> Result<bool, String> {
    let service_count = bench::scaled(1_000, 100);
    let (indexed_samples, linear_samples, rounds) = bench::scaled((20_000, 200, 5), (500, 4, 2));
    let rebuilds = bench::scaled(20, 3);

    let services = services(service_count);
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    let kinds = kinds(&names);
    let table = RouteTable::new(services.clone());
    let linear = LinearScan::new(&services);
    eprintln!(
        "bench_matching: {} services × {ROUTES_PER_SERVICE} routes = {} patterns; {rounds} rounds of \
         {indexed_samples} indexed and {linear_samples} linear lookups per kind of request",
        table.service_count(),
        table.route_count(),
    );

    // Rounds alternate the two ways so that a busy machine slows both alike.
    let mut ours: Vec<Latencies> = kinds.iter().map(|_| Latencies::new()).collect();
    let mut node: Vec<Latencies> = kinds.iter().map(|_| Latencies::new()).collect();
    let mut all_ours = Latencies::new();
    let mut all_node = Latencies::new();
    let mut wrong = 0;
    for round in 0..rounds {
        for (k, kind) in kinds.iter().enumerate() {
            let mut lat = Latencies::new();
            wrong += measure(kind, indexed_samples, &mut lat, |r| indexed(&table, r));
            all_ours.merge(lat.clone());
            ours[k].merge(lat);
            let mut lat = Latencies::new();
            wrong += measure(kind, linear_samples, &mut lat, |r| linear.resolve(r));
            all_node.merge(lat.clone());
            node[k].merge(lat);
        }
        eprintln!("  round {}/{rounds} done", round + 1);
    }

    let mut report = Table::new(&[
        "request",
        "route table p50",
        "p99",
        "linear scan (Node's algorithm) p50",
        "p99",
        "speed-up (p50)",
    ]);
    let mut row = |label: &str, ours: Summary, node: Summary| {
        report.row([
            label.to_string(),
            micros(ours.p50),
            micros(ours.p99),
            micros(node.p50),
            micros(node.p99),
            format!("{:.0}×", node.p50 / ours.p50),
        ]);
    };
    for (k, kind) in kinds.iter().enumerate() {
        row(&kind.label, ours[k].summary(), node[k].summary());
    }
    let (mix_ours, mix_node) = (all_ours.summary(), all_node.summary());
    row("**all of the above**", mix_ours, mix_node);
    println!(
        "## Route matching: {} services × {ROUTES_PER_SERVICE} routes ({} patterns), per request",
        table.service_count(),
        table.route_count()
    );
    report.print();
    println!();
    println!(
        "Target: p50 ≤ {TARGET_P50_MICROS} µs per request over the mix: {} {}",
        micros(mix_ours.p50),
        verdict(mix_ours.p50 <= TARGET_P50_MICROS)
    );

    // A refresh rebuilds the table from every service's routes.
    let mut build = Latencies::new();
    let mut compile = Latencies::new();
    for _ in 0..rebuilds {
        let input = services.clone();
        let t = Instant::now();
        black_box(RouteTable::new(input));
        build.record(t.elapsed());
        let t = Instant::now();
        black_box(LinearScan::new(&services));
        compile.record(t.elapsed());
    }
    let (build, compile) = (build.summary(), compile.summary());
    let mut builds = Table::new(&["building the table (a refresh)", "p50", "max"]);
    let ms = |us: f64| format!("{:.1} ms", us / 1000.0);
    builds.row(["route table (index included)".into(), ms(build.p50), ms(build.max)]);
    builds.row([
        "patterns compiled, no index (Node's table)".into(),
        ms(compile.p50),
        ms(compile.max),
    ]);
    builds.print();

    if wrong > 0 {
        eprintln!("bench_matching: {wrong} wrong answers (see above)");
    }
    Ok(wrong == 0)
}
