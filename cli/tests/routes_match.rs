//! `routes match <path>` agrees with a real hydra-router on the same Redis:
//! Node's first-match order, a dead service's route never shadowing a live
//! one (#86), the service-prefix fallback, the router's own paths, 404s.
//!
//! The router is the crate's `Router` (what the `hydra-router` binary runs),
//! started in the test process: Cargo builds only this package's binary for
//! its tests. Requests reach it over HTTP, through the library's
//! `call_service`.

mod common;
mod services;

use common::{Home, run};
use hydra::{HttpResponse, HttpRoutes, Hydra, RequestOptions, ServiceRequest};
use hydra_router::config::RouterConfig;
use hydra_router::gateway::Router;
use hydra_router::log_ring::LogRing;
use hydra_testkit::{ExpressPeer, RedisServer};
use serde_json::{Value, json};
use services::{rust_handle, rust_http, url};

/// Routes that answer with the service's name, the route and the path.
fn answering(name: &str, routes: &[(&str, &str)]) -> HttpRoutes {
    routes.iter().fold(HttpRoutes::new(), |all, &(method, pattern)| {
        let (name, pattern_text) = (name.to_string(), pattern.to_string());
        all.route(method, pattern, move |_, request| {
            HttpResponse::send_response(
                200,
                json!({"service": name, "route": pattern_text, "path": request.path}),
            )
        })
    })
}

/// What the router did with `method path`: its status, and the service and
/// path that answered (from the body the services above write).
fn router_pick(client: &Hydra, method: &str, path: &str) -> (u16, Option<String>, Option<String>) {
    let request = ServiceRequest {
        service: "hydra-router".to_string(),
        method: method.to_string(),
        path: path.to_string(),
        body: if method == "POST" { b"{}".to_vec() } else { Vec::new() },
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        ..ServiceRequest::default()
    };
    let answer = client
        .call_service(&request, RequestOptions::default())
        .expect("the router answers");
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let text = |field: &str| body["result"][field].as_str().map(str::to_string);
    (answer.status, text("service"), text("path"))
}

#[test]
fn routes_match_picks_what_the_router_picks() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    // Sorted first, so its route comes first in the router's order; dead.
    let dead = rust_http(
        &redis,
        "aaa-dead",
        answering("aaa-dead", &[("GET", "/v1/shared/:id"), ("GET", "/v1/deadonly")]),
    );
    dead.shutdown().unwrap();
    let _alpha = rust_http(&redis, "alpha", answering("alpha", &[("GET", "/v1/shared/:id")]));
    let _beta = rust_http(
        &redis,
        "beta",
        answering("beta", &[("GET", "/v1/shared/special"), ("POST", "/v1/beta/items")]),
    );
    let express = ExpressPeer::spawn(&url, "express-svc").expect("start the express peer");
    let config = RouterConfig::from_document(
        json!({"hydra": {"serviceName": "hydra-router", "servicePort": 0, "serviceIP": "127.0.0.1",
                         "redis": {"url": url}}}),
        &[],
    )
    .expect("router config");
    let router = Router::start(config, LogRing::new()).expect("the router starts");
    let client = rust_handle(&redis, "tester");

    let cases = [
        // (method, path, service, how, path forwarded)
        ("GET", "/v1/shared/special", "alpha", "route", "/v1/shared/special"),
        ("GET", "/v1/shared/42?x=1", "alpha", "route", "/v1/shared/42?x=1"),
        ("POST", "/v1/beta/items", "beta", "route", "/v1/beta/items"),
        ("GET", "/v1/express/hello", "express-svc", "route", "/v1/express/hello"),
        ("GET", "/alpha/page", "alpha", "route", "/alpha/page"),
        ("GET", "/beta/a/b", "beta", "service_prefix", "/a/b"),
    ];
    for (method, path, service, how, forwarded) in cases {
        let cli = run(
            &home,
            Some(&url),
            &["routes", "match", path, "--method", method, "--json"],
        )
        .ok()
        .json();
        assert_eq!(cli["service"], service, "{path}: {cli}");
        assert_eq!(cli["by"], how, "{path}: {cli}");
        assert_eq!(cli["path_forwarded"], forwarded, "{path}: {cli}");
        assert_eq!(cli["live"], true, "{path}: {cli}");
        let (status, answered_by, answered_path) = router_pick(&client, method, path);
        if service == "express-svc" {
            // The express peer's own body: it does not name itself.
            assert_eq!(status, 200, "{path}");
        } else {
            assert_eq!(
                (status, answered_by.as_deref()),
                (200, Some(service)),
                "{path}: the router disagrees"
            );
            assert_eq!(answered_path.as_deref(), forwarded.split('?').next(), "{path}");
        }
    }
    assert_eq!(
        router_pick(&client, "GET", "/v1/express/hello").0,
        200,
        "{}",
        express.log_tail(20)
    );

    // A URL pasted from a log: its path is matched.
    let pasted = format!("http://127.0.0.1:{}/v1/shared/42?x=1", router.port());
    let from_url = run(&home, Some(&url), &["routes", "match", &pasted, "--json"])
        .ok()
        .json();
    assert_eq!(
        (from_url["service"].as_str(), from_url["path"].as_str()),
        (Some("alpha"), Some("/v1/shared/42?x=1"))
    );

    // #86: the dead service's earlier route is listed, not chosen.
    let special = run(&home, Some(&url), &["routes", "match", "/v1/shared/special", "--json"])
        .ok()
        .json();
    let candidates: Vec<(String, u64, bool)> = special["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap().to_string(),
                c["live_instances"].as_u64().unwrap(),
                c["chosen"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        candidates,
        [
            ("aaa-dead".to_string(), 0, false),
            ("alpha".to_string(), 1, true),
            ("beta".to_string(), 1, false)
        ]
    );
    let table = run(&home, Some(&url), &["routes", "match", "/v1/shared/special"]).ok();
    assert!(
        table.stdout.contains("every matching route, in the router's order"),
        "{}",
        table.stdout
    );
    let first_line = table.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        first_line.contains("alpha") && first_line.contains("/v1/shared/:id"),
        "{}",
        table.stdout
    );

    // Only a dead service matches: chosen, said to be dead; the router 503s.
    let dead_only = run(&home, Some(&url), &["routes", "match", "/v1/deadonly", "--json"])
        .ok()
        .json();
    assert_eq!(dead_only["service"], "aaa-dead");
    assert_eq!(dead_only["live"], false);
    assert_eq!(router_pick(&client, "GET", "/v1/deadonly").0, 503);
    let dead_table = run(&home, Some(&url), &["routes", "match", "/v1/deadonly"]).ok();
    assert!(
        dead_table.stdout.contains("aaa-dead has no live instance"),
        "{}",
        dead_table.stdout
    );

    // The method is shown against what was registered.
    let get_items = run(&home, Some(&url), &["routes", "match", "/v1/beta/items"]).ok();
    assert!(
        get_items.stdout.contains("registered for POST only"),
        "{}",
        get_items.stdout
    );
    let post_items = run(
        &home,
        Some(&url),
        &["routes", "match", "/v1/beta/items", "--method", "post", "--json"],
    )
    .ok()
    .json();
    assert_eq!(post_items["method_registered"], true);
    assert_eq!(post_items["registered_as"], json!(["[post]/v1/beta/items"]));

    // The router's own paths.
    let own = run(&home, Some(&url), &["routes", "match", "/v1/router/health", "--json"])
        .ok()
        .json();
    assert_eq!(
        (own["service"].as_str(), own["by"].as_str()),
        (Some("hydra-router"), Some("router_api"))
    );

    // Nothing matches: exit 1, and the router answers 404.
    let nothing = run(&home, Some(&url), &["routes", "match", "/nothing/here", "--json"]);
    assert_eq!(nothing.code, Some(1), "{nothing:?}");
    assert!(
        nothing.stderr.contains("nothing matched /nothing/here"),
        "{}",
        nothing.stderr
    );
    assert_eq!(nothing.json()["error"]["kind"], "failed");
    assert_eq!(router_pick(&client, "GET", "/nothing/here").0, 404);

    // Not a path.
    let bad = run(&home, Some(&url), &["routes", "match", "v1/x"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    router.shutdown();
}
