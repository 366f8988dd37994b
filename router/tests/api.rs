//! The router's own API (spec §1.8), its access rules (§1.9) and its
//! configuration (§1.14), against a real `hydra-router` process, a private
//! Redis and Rust services behind it.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Answer, RouterProcess, TempDir, TestService, get, raw_exchange, raw_redis, run_router, send, wait_until};
use hydra::{Config, Hydra};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

/// Generous deadline for anything that happens in the background.
const WAIT: Duration = Duration::from_secs(15);
/// A UUIDv4, as Node's router requires of `routerToken`.
const TOKEN: &str = "0f8e2a4c-6b1d-4e3f-9a7b-5c2d1e0f3a4b";

fn api(router: &RouterProcess, endpoint: &str) -> String {
    format!("{}/v1/router/{endpoint}", router.base_url())
}

/// Waits until the router forwards `GET /v1/<service>/echo` to the service.
fn wait_for_route(router: &RouterProcess, service: &str) {
    let url = format!("{}/v1/{service}/echo", router.base_url());
    wait_until(&format!("the router to route to {service}"), WAIT, || {
        get(&url).status == 200
    });
}

fn post_json(url: &str, body: &Value) -> Answer {
    send(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn array(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("not an array: {value}"))
}

fn find<'v>(entries: &'v Value, field: &str, wanted: &str) -> Option<&'v Value> {
    array(entries).iter().find(|e| e[field] == wanted)
}

/// A Hydra client (not registered) on the test's Redis.
fn client(redis: &RedisServer) -> Hydra {
    let config = Config::builder()
        .service_name("api-test-client")
        .redis_url(&redis.url(0))
        .build()
        .expect("config");
    Hydra::init(config).expect("init")
}

#[test]
fn read_endpoints_answer_as_nodes_router_does() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let service = TestService::start(&redis, "api-svc");
    wait_for_route(&router, "api-svc");

    // It registers as Node's router does: service `hydra-router`, type `router`, with its routes.
    let services = client(&redis).get_services().expect("services");
    let own = services
        .iter()
        .find(|s| s.service_name == "hydra-router")
        .expect("hydra-router registered");
    assert_eq!(own.service_type, "router");
    let mut redis_connection = raw_redis(&redis);
    let routes: Vec<String> = redis::cmd("SMEMBERS")
        .arg("hydra:service:hydra-router:service:routes")
        .query(&mut redis_connection)
        .expect("SMEMBERS");
    for route in [
        "[get]/v1/router/health",
        "[get]/v1/router/list/:thing",
        "[post]/v1/router/message",
        "[post]/v1/router/stream/:name",
    ] {
        assert!(routes.iter().any(|r| r == route), "{route} missing from {routes:?}");
    }

    let health = get(&api(&router, "health"));
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["statusMessage"], "OK");
    assert_eq!(health["result"]["serviceName"], "hydra-router");
    assert_eq!(health["result"]["processID"], router.pid());
    let router_instance = health["result"]["instanceID"].as_str().expect("instanceID").to_string();
    assert_eq!(router_instance.len(), 32);

    let version = get(&api(&router, "version"));
    assert_eq!(version.status, 200);
    assert_eq!(version.json()["result"], json!({"version": env!("CARGO_PKG_VERSION")}));

    // list/routes: patterns without their [method], per service.
    let listed = get(&api(&router, "list/routes"));
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    let svc_routes = find(&listed["result"], "serviceName", "api-svc").expect("api-svc in list/routes");
    let svc_routes: Vec<&str> = array(&svc_routes["routes"]).iter().filter_map(Value::as_str).collect();
    assert!(svc_routes.contains(&"/v1/api-svc/echo/:id"), "{svc_routes:?}");
    assert!(svc_routes.iter().all(|r| !r.starts_with('[')), "{svc_routes:?}");
    let own_routes = find(&listed["result"], "serviceName", "hydra-router").expect("the router's own routes");
    assert!(array(&own_routes["routes"]).contains(&json!("/v1/router/health")));

    // list/services: one merged object per live instance (presence + health + log).
    let mut merged = Value::Null;
    wait_until("api-svc's health fields in list/services", WAIT, || {
        let answer = get(&api(&router, "list/services"));
        assert_eq!(answer.status, 200);
        merged = find(&answer.json()["result"], "instanceID", &service.instance_id())
            .cloned()
            .unwrap_or(Value::Null);
        merged.get("sampledOn").is_some()
    });
    assert_eq!(merged["serviceName"], "api-svc");
    assert_eq!(merged["port"], service.port);
    assert!(merged["log"].is_array(), "{merged}");
    assert!(merged["uptimeSeconds"].is_number(), "{merged}");

    // list/nodes: every entry, dead ones included, with `elapsed`; top-level fields.
    let ghost = "0123456789abcdef0123456789abcdef";
    let ghost_entry = json!({"serviceName": "ghost-svc", "serviceDescription": "", "version": "1.0.0",
        "instanceID": ghost, "updatedOn": "2024-01-02T03:04:05.678Z", "processID": 4242,
        "ip": "127.0.0.1", "port": 1, "hostName": "gone"});
    let _: () = redis::cmd("HSET")
        .arg("hydra:service:nodes")
        .arg(ghost)
        .arg(ghost_entry.to_string())
        .query(&mut redis_connection)
        .expect("HSET");
    // Gone two seconds ago: listed, and kept by clear (Node's limit is 5 s).
    let just_gone = "fedcba9876543210fedcba9876543210";
    let two_seconds_ago = std::time::SystemTime::now() - Duration::from_secs(2);
    let just_gone_entry = json!({"serviceName": "ghost-svc", "serviceDescription": "", "version": "1.0.0",
        "instanceID": just_gone, "updatedOn": humantime::format_rfc3339_millis(two_seconds_ago).to_string(),
        "processID": 4243, "ip": "127.0.0.1", "port": 2, "hostName": "gone"});
    let _: () = redis::cmd("HSET")
        .arg("hydra:service:nodes")
        .arg(just_gone)
        .arg(just_gone_entry.to_string())
        .query(&mut redis_connection)
        .expect("HSET");
    let nodes = get(&api(&router, "list/nodes"));
    assert_eq!(nodes.status, 200);
    let nodes = nodes.json();
    assert_eq!(nodes["instanceID"], router_instance.as_str());
    assert!(nodes["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{nodes}");
    assert_eq!(nodes["version"], env!("CARGO_PKG_VERSION"));
    let dead = find(&nodes["result"], "instanceID", ghost).expect("the dead node is listed");
    assert!(dead["elapsed"].as_u64().is_some_and(|e| e > 5), "{dead}");
    let live = find(&nodes["result"], "instanceID", &service.instance_id()).expect("api-svc listed");
    assert!(live["elapsed"].as_u64().is_some_and(|e| e <= 5), "{live}");
    assert!(find(&nodes["result"], "instanceID", &router_instance).is_some());

    // clear: dead entries go, live ones stay, and the answer sends the browser back.
    let cleared = get(&api(&router, "clear"));
    assert_eq!(cleared.status, 302);
    assert_eq!(cleared.header("location"), Some("/"));
    let nodes = get(&api(&router, "list/nodes")).json();
    assert!(find(&nodes["result"], "instanceID", ghost).is_none(), "{nodes}");
    assert!(find(&nodes["result"], "instanceID", just_gone).is_some(), "{nodes}");
    assert!(find(&nodes["result"], "instanceID", &service.instance_id()).is_some());
    assert!(find(&nodes["result"], "instanceID", &router_instance).is_some());

    let wsdir = get(&api(&router, "list/wsdir"));
    assert_eq!(wsdir.status, 200);
    assert!(wsdir.json()["result"].is_object());
    for missing in ["list/bogus", "list", "nope", "health/extra"] {
        let answer = get(&api(&router, missing));
        assert_eq!(answer.status, 404, "{missing}");
        assert_eq!(answer.json()["result"], json!({}), "{missing}");
    }

    // log: Node's {logs:[{ts,type,entry}]}, with the router's start-up line.
    let log = get(&api(&router, "log"));
    assert_eq!(log.status, 200);
    let log = log.json();
    let entries = array(&log["result"]["logs"]);
    assert!(!entries.is_empty());
    for entry in entries {
        for field in ["ts", "type", "entry"] {
            assert!(entry[field].is_string(), "{field} in {entry}");
        }
    }
    assert!(
        entries
            .iter()
            .any(|e| e["entry"].as_str().is_some_and(|t| t.contains("serves on port"))),
        "{log}"
    );
}

#[test]
fn refresh_rereads_the_routes_from_redis() {
    let redis = RedisServer::start();
    // Services first; their route sets are then hidden, so the router starts without them.
    let first = TestService::start(&redis, "late-a");
    let second = TestService::start(&redis, "late-b");
    let mut connection = raw_redis(&redis);
    let mut saved = HashMap::new();
    for name in ["late-a", "late-b"] {
        let key = format!("hydra:service:{name}:service:routes");
        let routes: Vec<String> = redis::cmd("SMEMBERS").arg(&key).query(&mut connection).unwrap();
        assert!(!routes.is_empty());
        let _: () = redis::cmd("DEL").arg(&key).query(&mut connection).unwrap();
        saved.insert(key, routes);
    }
    // No periodic re-read during the test: only `refresh` brings the routes back.
    let router = RouterProcess::start(&redis, json!({"routeRefreshInterval": 3600}));
    let echo = |name: &str| get(&format!("{}/v1/{name}/echo", router.base_url()));
    assert_eq!(echo("late-a").status, 404);
    assert_eq!(echo("late-b").status, 404);
    for (key, routes) in &saved {
        let _: () = redis::cmd("SADD").arg(key).arg(routes).query(&mut connection).unwrap();
    }
    assert_eq!(echo("late-a").status, 404, "the table changed without a refresh");

    let refreshed = get(&api(&router, "refresh"));
    assert_eq!(refreshed.status, 200);
    assert_eq!(refreshed.json()["result"], json!({}));
    let answer = echo("late-a");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"]["instance"], first.instance_id());

    // refresh/:service answers the same way.
    let _: () = redis::cmd("DEL")
        .arg("hydra:service:late-b:service:routes")
        .query(&mut connection)
        .unwrap();
    let refreshed = get(&api(&router, "refresh/late-b"));
    assert_eq!(refreshed.status, 200);
    assert_eq!(refreshed.json()["result"], json!({}));
    assert_eq!(echo("late-b").status, 404);
    let _: () = redis::cmd("SADD")
        .arg("hydra:service:late-b:service:routes")
        .arg(&saved["hydra:service:late-b:service:routes"])
        .query(&mut connection)
        .unwrap();
    assert_eq!(get(&api(&router, "refresh/late-b")).status, 200);
    let answer = echo("late-b");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"]["instance"], second.instance_id());
}

/// Sums the whole per-second array of `service` in one of `stats`' sets,
/// checking it is Node's 3600 numbers.
fn counted(stats: &Value, set: &str, service: &str) -> (u64, u64) {
    let Some(seconds) = stats[set].get(service) else {
        return (0, 0);
    };
    let seconds = array(seconds);
    assert_eq!(seconds.len(), 3600, "{set}.{service}");
    let numbers: Vec<u64> = seconds
        .iter()
        .map(|n| n.as_u64().unwrap_or_else(|| panic!("{n} in {set}")))
        .collect();
    let recent = numbers[numbers.len() - 30..].iter().sum();
    (numbers.iter().sum(), recent)
}

/// The value of `name{service="<service>"}` in Prometheus text (0 when absent).
fn metric(text: &str, name: &str, service: &str) -> f64 {
    let prefix = format!("{name}{{service=\"{service}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

#[test]
fn stats_and_metrics_count_forwarded_calls() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let _service = TestService::start(&redis, "stat-svc");
    wait_for_route(&router, "stat-svc");

    let stats_now = || {
        let answer = get(&api(&router, "stats"));
        assert_eq!(answer.status, 200);
        answer.json()["result"].clone()
    };
    let metrics_now = || {
        let answer = get(&api(&router, "metrics"));
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain"))
        );
        String::from_utf8(answer.body).expect("UTF-8")
    };
    let before = stats_now();
    assert!(
        before["wsStats"].is_object() && before["errorStats"].is_object(),
        "{before}"
    );
    let metrics_before = metrics_now();

    let base = router.base_url();
    let calls = [
        ("/v1/stat-svc/echo", 200),
        ("/v1/stat-svc/echo/1", 200),
        ("/v1/stat-svc/echo/2", 200),
        // Node counts every status above 201 as an error; 400 and up are.
        ("/v1/stat-svc/status/201", 201),
        ("/v1/stat-svc/status/404", 404),
        ("/v1/stat-svc/status/418", 418),
        ("/v1/stat-svc/status/500", 500),
    ];
    for (path, status) in calls {
        assert_eq!(get(&format!("{base}{path}")).status, status, "{path}");
    }
    // The router's own API and unknown paths are not a service's traffic.
    assert_eq!(get(&format!("{base}/v1/nobody/here")).status, 404);

    // Node counts /send and /queue under their target service too (not as errors).
    let message = json!({"to": "stat-svc:/", "from": "web:/", "body": {}});
    assert_eq!(post_json(&api(&router, "send"), &message).status, 200);
    assert_eq!(post_json(&api(&router, "queue"), &message).status, 200);

    let after = stats_now();
    let (http_before, _) = counted(&before, "httpStats", "stat-svc");
    let (http_after, http_recent) = counted(&after, "httpStats", "stat-svc");
    let (errors_before, _) = counted(&before, "errorStats", "stat-svc");
    let (errors_after, errors_recent) = counted(&after, "errorStats", "stat-svc");
    assert_eq!(http_after - http_before, 9, "calls counted in httpStats");
    assert_eq!(errors_after - errors_before, 3, "errors counted in errorStats");
    assert!(
        http_recent >= 9 && errors_recent >= 3,
        "the last seconds hold the calls: {http_recent} and {errors_recent}"
    );
    let counted_services: Vec<&String> = after["httpStats"].as_object().expect("httpStats").keys().collect();
    assert_eq!(counted_services, ["stat-svc"]);

    let metrics_after = metrics_now();
    let requests = "hydra_router_http_requests_total";
    let errors = "hydra_router_http_errors_total";
    assert_eq!(
        metric(&metrics_after, requests, "stat-svc") - metric(&metrics_before, requests, "stat-svc"),
        9.0,
        "{metrics_after}"
    );
    assert_eq!(
        metric(&metrics_after, errors, "stat-svc") - metric(&metrics_before, errors, "stat-svc"),
        3.0,
        "{metrics_after}"
    );
    assert_eq!(metric(&metrics_after, requests, "stat-svc") as u64, http_after);
    assert!(metrics_after.contains("# TYPE hydra_router_http_requests_total counter"));
}

#[test]
fn message_send_queue_and_stream_reach_services() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let service = TestService::start(&redis, "msg-svc");
    let inbox = service.hydra.messages();
    wait_for_route(&router, "msg-svc");

    // message: the router makes the HTTP call named by `forward`.
    let message = json!({"to": "hydra-router:[post]/v1/router/message", "from": "web:/",
        "forward": "msg-svc:[post]/v1/msg-svc/echo", "body": {"order": 17}});
    let answer = post_json(&api(&router, "message"), &message);
    assert_eq!(answer.status, 200);
    let result = answer.json()["result"].clone();
    assert_eq!(result["method"], "POST");
    assert_eq!(result["path"], "/v1/msg-svc/echo");
    let body_hex = result["bodyHex"].as_str().expect("bodyHex");
    let body: Vec<u8> = (0..body_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&body_hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"order": 17}));
    let message = json!({"to": "hydra-router:/", "from": "web:/",
        "forward": "msg-svc:[get]/v1/msg-svc/status/418", "body": {}});
    let answer = post_json(&api(&router, "message"), &message);
    assert_eq!(answer.status, 418, "the service's status comes back");
    assert_eq!(answer.json()["result"]["code"], 418);

    // No instance of the forward's service: Node's 503, with a reason.
    let message = json!({"to": "hydra-router:/", "from": "web:/",
        "forward": "nobody-home:[get]/v1/nobody-home/x", "body": {}});
    let answer = post_json(&api(&router, "message"), &message);
    assert_eq!(answer.status, 503);
    assert!(answer.json()["result"]["reason"].is_string());

    // send: over pub/sub to the service.
    let mid = "4d3c2b1a-0000-4000-8000-000000000001";
    let message = json!({"to": "msg-svc:/", "from": "web:/", "mid": mid, "body": {"hello": "rust"}});
    let answer = post_json(&api(&router, "send"), &message);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"], json!({"mid": mid}));
    let received = inbox.recv_timeout(WAIT).expect("the service receives the message");
    assert_eq!(received.mid, mid);
    assert_eq!(received.body, json!({"hello": "rust"}));
    assert_eq!(received.from, "web:/");

    // queue: onto the service's queue.
    let mid = "4d3c2b1a-0000-4000-8000-000000000002";
    let message = json!({"to": "msg-svc:/", "from": "web:/", "mid": mid, "body": {"job": 3}});
    let answer = post_json(&api(&router, "queue"), &message);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"], json!({"mid": mid}));
    let queued = service
        .hydra
        .get_queued_message("msg-svc")
        .expect("read the queue")
        .expect("the message is queued");
    assert_eq!(queued.message.mid, mid);
    assert_eq!(queued.message.body, json!({"job": 3}));

    // stream/:name: XADD hydra:stream:<name>.
    let message = json!({"to": "msg-svc:/", "from": "web:/", "body": {"event": "placed"}});
    let answer = post_json(&api(&router, "stream/orders"), &message);
    assert_eq!(answer.status, 200);
    let id = answer.json()["result"]["id"].as_str().expect("stream id").to_string();
    let mut connection = raw_redis(&redis);
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("hydra:stream:orders")
        .arg("-")
        .arg("+")
        .query(&mut connection)
        .expect("XRANGE");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id);
    let stored: Value = serde_json::from_str(&entries[0].1["message"]).expect("JSON message");
    let stored_body = stored.get("bdy").or_else(|| stored.get("body")).expect("body");
    assert_eq!(stored_body, &json!({"event": "placed"}));

    // Malformed messages: 400, nothing sent.
    let not_umf: [&[u8]; 4] = [b"not json", b"{\"body\": {}}", b"[1,2]", b"\xff\xfe"];
    for endpoint in ["message", "send", "queue", "stream/orders"] {
        for body in not_umf {
            let answer = send(
                "POST",
                &api(&router, endpoint),
                &[("content-type", "application/json")],
                Some(body),
            );
            assert_eq!(answer.status, 400, "{endpoint} {body:?}");
            assert!(answer.json()["result"]["reason"].is_string());
        }
    }
    let no_forward = json!({"to": "msg-svc:/", "from": "web:/", "body": {}});
    assert_eq!(post_json(&api(&router, "message"), &no_forward).status, 400);
    assert!(inbox.try_recv().is_err(), "a refused message was delivered");
    assert!(service.hydra.get_queued_message("msg-svc").unwrap().is_none());
    let length: u64 = redis::cmd("XLEN")
        .arg("hydra:stream:orders")
        .query(&mut connection)
        .unwrap();
    assert_eq!(length, 1);
}

/// `GET <path>` on a raw socket with the given `Host` header.
fn get_with_host(router: &RouterProcess, path: &str, host: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (answers, rest) = raw_exchange(router.port(), request.as_bytes());
    assert_eq!(answers.len(), 1, "{path} Host {host}: then {rest:?}");
    answers[0].status
}

#[test]
fn the_token_guards_the_api_and_host_localhost_opens_nothing() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({ "routerToken": TOKEN }));
    let routes = api(&router, "list/routes");
    assert_eq!(get(&routes).status, 404);
    assert_eq!(get(&format!("{routes}?token=wrong")).status, 404);
    assert_eq!(
        get(&format!("{routes}?token={}", &TOKEN[..TOKEN.len() - 1])).status,
        404
    );
    assert_eq!(get(&format!("{routes}?tok={TOKEN}")).status, 404);
    let port = router.port();
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        "127.0.0.1".to_string(),
    ] {
        assert_eq!(
            get_with_host(&router, "/v1/router/list/routes", &host),
            404,
            "Host {host}"
        );
        assert_eq!(get_with_host(&router, "/v1/router/metrics", &host), 404, "Host {host}");
    }
    let allowed = get(&format!("{routes}?token={TOKEN}"));
    assert_eq!(allowed.status, 200);
    assert!(allowed.json()["result"].is_array());
    assert_eq!(
        get_with_host(
            &router,
            &format!("/v1/router/list/routes?x=1&token={TOKEN}"),
            "localhost"
        ),
        200
    );
    // Documented exceptions: health, and the dashboard's files (they hold no data).
    assert_eq!(get(&api(&router, "health")).status, 200);
    assert_eq!(get(&router.base_url()).status, 200);
    // Metrics are part of the API unless publicMetrics is set.
    assert_eq!(get(&api(&router, "metrics")).status, 404);
    assert_eq!(get(&format!("{}?token={TOKEN}", api(&router, "metrics"))).status, 200);
    // Writes are guarded too.
    let message = json!({"to": "nobody:/", "from": "web:/", "body": {}});
    assert_eq!(post_json(&api(&router, "send"), &message).status, 404);
    let with_token = post_json(&format!("{}?token={TOKEN}", api(&router, "send")), &message);
    // Past the guard: refused only because no instance of `nobody` runs.
    assert_eq!(with_token.status, 503);
    assert!(with_token.json()["result"]["reason"].is_string());
    // clear keeps the token on its way back to the dashboard.
    let cleared = get(&format!("{}?token={TOKEN}", api(&router, "clear")));
    assert_eq!(cleared.status, 302);
    assert_eq!(cleared.header("location"), Some(format!("/?token={TOKEN}").as_str()));
}

#[test]
fn a_token_with_reserved_characters_is_compared_decoded() {
    // Not a UUID (Node demands one; we take any text), so it may need percent-encoding.
    let token = "s3cr3t +/&=\u{fc}";
    let encoded = "s3cr3t%20%2B%2F%26%3D%C3%BC";
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({ "routerToken": token }));
    let routes = api(&router, "list/routes");
    assert_eq!(get(&format!("{routes}?token={encoded}")).status, 200);
    // `+` is a space in a query string, as browsers and Node read it.
    assert_eq!(get(&format!("{routes}?token=s3cr3t+%2B%2F%26%3D%C3%BC")).status, 200);
    assert_eq!(get(&format!("{routes}?token=s3cr3t%20%2B%2F")).status, 404);
    assert_eq!(get(&format!("{routes}?token=s3cr3t%20%2B%2F%26%3D%C3%BD")).status, 404);
    // clear's way back to the dashboard carries a token that works again.
    let cleared = get(&format!("{}?token={encoded}", api(&router, "clear")));
    assert_eq!(cleared.status, 302);
    let location = cleared.header("location").expect("location").to_string();
    let query = location.strip_prefix("/?").expect("a query");
    assert_eq!(get(&format!("{routes}?{query}")).status, 200, "{location}");
}

#[test]
fn public_metrics_need_no_token() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({ "routerToken": TOKEN, "publicMetrics": true }));
    let metrics = get(&api(&router, "metrics"));
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("hydra_router_http_requests_total"));
    assert_eq!(get(&api(&router, "list/routes")).status, 404);
    assert_eq!(get(&api(&router, "stats")).status, 404);
}

/// What a router with the API disabled answers.
fn assert_api_disabled(router: &RouterProcess) {
    assert_eq!(get(&api(router, "list/routes")).status, 404);
    assert_eq!(get(&api(router, "stats")).status, 404);
    assert_eq!(get(&api(router, "metrics")).status, 404);
    assert_eq!(get(&router.base_url()).status, 404);
    assert_eq!(get_with_host(router, "/v1/router/list/routes", "localhost"), 404);
    let message = json!({"to": "nobody:/", "from": "web:/", "body": {}});
    assert_eq!(post_json(&api(router, "queue"), &message).status, 404);
    let health = get(&api(router, "health"));
    assert_eq!(health.status, 200, "health stays on");
    assert_eq!(health.json()["result"]["serviceName"], "hydra-router");
}

#[test]
fn disable_router_endpoint_turns_the_api_off_from_the_file_or_the_environment() {
    let redis = RedisServer::start();
    let disabled = RouterProcess::start(&redis, json!({ "disableRouterEndpoint": true }));
    assert_api_disabled(&disabled);
    drop(disabled);

    // The environment overrides the file, and its text means what it says.
    let enabled = RouterProcess::start_with_env(
        &redis,
        json!({ "disableRouterEndpoint": true }),
        &[("HYDRA_ROUTER_DISABLEROUTERENDPOINT", "false")],
    );
    assert_eq!(get(&api(&enabled, "list/routes")).status, 200);
    drop(enabled);
    let disabled = RouterProcess::start_with_env(
        &redis,
        json!({ "disableRouterEndpoint": false }),
        &[("HYDRA_ROUTER_DISABLEROUTERENDPOINT", "true")],
    );
    assert_api_disabled(&disabled);
}

#[test]
fn invalid_configuration_exits_2_naming_the_field() {
    let dir = TempDir::new();
    let write = |name: &str, text: &str| {
        let path = dir.path.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let cases = [
        (write("timeout.json", r#"{"requestTimeout": "soon"}"#), "requestTimeout"),
        (
            write("disable.json", r#"{"disableRouterEndpoint": "maybe"}"#),
            "disableRouterEndpoint",
        ),
        (
            write("port.json", r#"{"hydra": {"servicePort": "http"}}"#),
            "hydra.servicePort",
        ),
        (write("token.json", r#"{"routerToken": 42}"#), "routerToken"),
        (write("broken.json", r#"{"requestTimeout": 5"#), "not valid JSON"),
        (
            dir.path.join("missing.json").to_string_lossy().into_owned(),
            "cannot read",
        ),
    ];
    for (path, named) in &cases {
        let (code, stderr) = run_router(&["--config", path], &[]);
        assert_eq!(code, Some(2), "{path}: {stderr}");
        assert!(stderr.contains(named), "{path}: {named} not in {stderr:?}");
    }
    let (code, stderr) = run_router(&[], &[("HYDRA_ROUTER_REQUESTTIMEOUT", "abc")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("HYDRA_ROUTER_REQUESTTIMEOUT"), "{stderr}");
    let (code, stderr) = run_router(&[], &[("HYDRA_ROUTER_DISABLEROUTERENDPOINT", "perhaps")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("HYDRA_ROUTER_DISABLEROUTERENDPOINT"), "{stderr}");
    let (code, stderr) = run_router(&["--no-such-flag"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn starts_without_a_config_file() {
    let redis = RedisServer::start();
    let url = redis.url(0);
    let router = RouterProcess::start_with_args(
        &[],
        &[("HYDRA_REDIS_URL", &url), ("HYDRA_ROUTER_HYDRA_SERVICEPORT", "0")],
    );
    let health = get(&api(&router, "health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["result"]["serviceName"], "hydra-router");
    let services = client(&redis).get_services().expect("services");
    assert!(
        services.iter().any(|s| s.service_name == "hydra-router"),
        "{services:?}"
    );
    let status = router.terminate();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn unreachable_redis_exits_1_with_a_clear_message() {
    // Nothing listens: the connection is refused.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new();
    let path = dir.path.join("refused.json");
    let config = json!({"hydra": {"servicePort": 0, "redis": {"url": format!("redis://127.0.0.1:{free_port}/0")}}});
    std::fs::write(&path, config.to_string()).unwrap();
    let (code, stderr) = run_router(&["--config", &path.to_string_lossy()], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot start"), "{stderr}");
    assert!(stderr.to_ascii_lowercase().contains("redis"), "{stderr}");

    // A Redis that accepts connections but never answers: still a bounded wait.
    let redis = RedisServer::start();
    redis.freeze();
    let path = dir.path.join("frozen.json");
    let config = json!({"hydra": {"servicePort": 0, "redis": {"url": redis.url(0)}}});
    std::fs::write(&path, config.to_string()).unwrap();
    let started = Instant::now();
    let (code, stderr) = run_router(&["--config", &path.to_string_lossy()], &[]);
    redis.resume();
    assert_eq!(code, Some(1), "after {:?}: {stderr}", started.elapsed());
    assert!(stderr.to_ascii_lowercase().contains("redis"), "{stderr}");
}
