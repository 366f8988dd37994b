//! `doctor` and `redis info` against private redis-servers: a healthy system,
//! leftovers that deserve a warning, a Redis user that lacks a permission,
//! and a Redis that is not there.

mod common;

use std::time::Duration;

use common::{Home, run};
use hydra::{Config, Hydra};
use hydra_testkit::RedisServer;
use serde_json::Value;

fn rust_service(server: &RedisServer, name: &str, routes: &[&str]) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(&server.url(15))
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    if !routes.is_empty() {
        let routes: Vec<String> = routes.iter().map(|r| r.to_string()).collect();
        hydra.register_routes(&routes).unwrap();
    }
    hydra
}

fn redis(server: &RedisServer) -> redis::Connection {
    let conn = redis::Client::open(server.url(15))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn
}

/// The check named `name` in a `doctor --json` document.
fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc:#}"))
}

#[test]
fn a_healthy_system_passes_every_check() {
    let server = RedisServer::start();
    let _live = rust_service(&server, "billing", &["[get]/v1/billing/:id"]);
    let home = Home::new();
    let url = server.url(15);

    let doc = run(&home, Some(&url), &["doctor", "--json"]).ok().json();
    for c in doc["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c:#}");
        for field in ["name", "status", "detail", "advice"] {
            assert!(c[field].is_string(), "{field} in {c:#}");
        }
        assert!(c["items"].as_array().unwrap().is_empty(), "{c:#}");
    }
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["source"], "--redis");
    assert!(
        check(&doc, "acl")["detail"]
            .as_str()
            .unwrap()
            .contains("user default may run every command")
    );
    assert!(check(&doc, "version")["detail"].as_str().unwrap().contains("Redis "));
    assert!(check(&doc, "database")["detail"].as_str().unwrap().starts_with("db 15"));

    let table = run(&home, Some(&url), &["doctor"]).ok();
    let header = table.stdout.lines().next().unwrap();
    for column in ["CHECK", "STATUS", "DETAIL", "WHAT TO DO"] {
        assert!(header.contains(column), "{header}");
    }
    for name in [
        "redis",
        "version",
        "latency",
        "database",
        "acl",
        "stale nodes",
        "routes",
        "memory",
        "persistence",
    ] {
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains(" ok ")),
            "{name} not ok:\n{}",
            table.stdout
        );
    }
    assert!(table.stdout.contains("0 warnings, 0 failed"), "{}", table.stdout);
    assert!(!table.stdout.contains('\x1b'), "no colour off a terminal");
}

#[test]
fn leftovers_are_warnings_naming_them_with_advice() {
    // No hydra-rs service runs here: its heartbeat prunes entries this old by itself.
    let server = RedisServer::start();
    let mut conn = redis(&server);
    // Two instances of a service that died long ago: entries stay, presence is gone.
    for id in ["deadbeefdeadbeefdeadbeefdeadbee1", "deadbeefdeadbeefdeadbeefdeadbee2"] {
        let record = format!(
            r#"{{"serviceName":"old-reports","serviceDescription":"","version":"1.0.0","instanceID":"{id}","updatedOn":"2026-01-01T00:00:00.000Z","processID":7,"ip":"10.0.0.9","port":"8080","hostName":"gone"}}"#
        );
        let _: () = redis::cmd("HSET")
            .arg("hydra:service:nodes")
            .arg(id)
            .arg(record)
            .query(&mut conn)
            .unwrap();
    }
    // Routes of a service nobody runs any more (hydra-router would still route to it).
    let _: () = redis::cmd("SADD")
        .arg("hydra:service:old-reports:service:routes")
        .arg("[get]/v1/reports/:id")
        .query(&mut conn)
        .unwrap();
    // A Node service whose nodes entries are all gone (pruned): its record and
    // routes remain, and a Node hydra-router still routes to it.
    let _: () = redis::cmd("SET")
        .arg("hydra:service:legacy-api:service")
        .arg(r#"{"serviceName":"legacy-api","type":"node","registeredOn":"2025-01-01T00:00:00.000Z"}"#)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("hydra:service:legacy-api:service:routes")
        .arg(&["[get]/v1/legacy", "[post]/v1/legacy"])
        .query(&mut conn)
        .unwrap();
    let home = Home::new();
    let url = server.url(15);

    let done = run(&home, Some(&url), &["doctor", "--json"]);
    assert_eq!(done.code, Some(0), "warnings leave the exit status 0: {done:?}");
    let doc = done.json();
    assert_eq!(doc["status"], "warn");
    let stale = check(&doc, "stale nodes");
    assert_eq!(stale["status"], "warn");
    assert!(stale["detail"].as_str().unwrap().contains("2 of 2"), "{stale:#}");
    assert!(
        stale["detail"].as_str().unwrap().contains("old-reports ×2"),
        "{stale:#}"
    );
    assert!(
        stale["advice"]
            .as_str()
            .unwrap()
            .contains("hydra-cli refresh node list"),
        "{stale:#}"
    );
    let routes = check(&doc, "routes");
    assert_eq!(routes["status"], "warn");
    assert!(
        routes["detail"].as_str().unwrap().contains("old-reports (1 route)"),
        "{routes:#}"
    );
    assert!(
        routes["advice"].as_str().unwrap().contains("start an instance"),
        "{routes:#}"
    );
    assert!(
        routes["detail"].as_str().unwrap().contains("legacy-api (2 routes)"),
        "{routes:#}"
    );
    assert_eq!(
        routes["items"],
        serde_json::json!(["legacy-api (2 routes)", "old-reports (1 route)"]),
        "{routes:#}"
    );
    let services = check(&doc, "services");
    assert_eq!(services["status"], "warn", "{services:#}");
    assert!(
        services["detail"].as_str().unwrap().contains("legacy-api"),
        "{services:#}"
    );

    let table = run(&home, Some(&url), &["doctor"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(table.stdout.contains("3 warnings, 0 failed"), "{}", table.stdout);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("stale nodes") && l.contains("warn")),
        "{}",
        table.stdout
    );
}

#[test]
fn a_user_without_publish_fails_the_acl_check() {
    let server = RedisServer::start();
    let mut conn = redis(&server);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "svc-user", "on", ">secret", "~*", "&*", "+@all", "-publish"])
        .query(&mut conn)
        .unwrap();
    let home = Home::new();
    let limited = format!("redis://svc-user:secret@127.0.0.1:{}/15", server.port());

    let done = run(&home, Some(&limited), &["doctor", "--json"]);
    assert_eq!(done.code, Some(1), "a failed check exits 1: {done:?}");
    assert!(done.stderr.contains("doctor: acl failed"), "{}", done.stderr);
    let doc = done.json();
    assert_eq!(doc["status"], "fail");
    let acl = check(&doc, "acl");
    assert_eq!(acl["status"], "fail", "{acl:#}");
    let detail = acl["detail"].as_str().unwrap();
    assert!(detail.contains("user svc-user may not run"), "{detail}");
    assert!(detail.contains("PUBLISH on channel hydra:service:mc:"), "{detail}");
    assert!(!detail.contains("SUBSCRIBE"), "only PUBLISH is missing: {detail}");
    assert!(acl["advice"].as_str().unwrap().contains("+publish"), "{acl:#}");

    let table = run(&home, Some(&limited), &["doctor"]);
    assert_eq!(table.code, Some(1), "{table:?}");
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("acl") && l.contains("fail") && l.contains("PUBLISH")),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("1 failed"), "{}", table.stdout);

    // An administrator checks that user by name.
    let by_admin = run(
        &home,
        Some(&server.url(15)),
        &["doctor", "--json", "--acl-user", "svc-user"],
    );
    assert_eq!(by_admin.code, Some(1), "{by_admin:?}");
    assert!(
        check(&by_admin.json(), "acl")["detail"]
            .as_str()
            .unwrap()
            .contains("PUBLISH")
    );
    // Bad input: the option without its value is a usage error.
    let missing = run(&home, Some(&server.url(15)), &["doctor", "--acl-user"]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
}

#[test]
fn an_unreachable_redis_exits_2_within_the_connect_timeout() {
    let home = Home::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/15");
    let done = run(&home, Some(&url), &["doctor", "--connect-timeout", "1s"]);
    assert_eq!(done.code, Some(2), "{done:?}");
    assert!(done.stderr.contains("unable to connect to Redis"), "{}", done.stderr);
    assert!(done.stderr.contains(&port.to_string()), "{}", done.stderr);
    assert!(done.stdout.is_empty(), "no checks printed: {}", done.stdout);
    let json = run(&home, Some(&url), &["doctor", "--json", "--connect-timeout", "1s"]);
    assert_eq!(json.code, Some(2));
    assert_eq!(json.json()["error"]["kind"], "connection");
}

#[test]
fn redis_info_prints_every_section() {
    let server = RedisServer::start();
    let home = Home::new();
    let url = server.url(15);
    let table = run(&home, Some(&url), &["redis", "info"]).ok();
    for heading in ["# Server", "# Memory", "# Persistence", "# Keyspace"] {
        assert!(
            table.stdout.lines().any(|l| l == heading),
            "{heading}:\n{}",
            table.stdout
        );
    }
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some("redis_version"))
    );
    let doc = run(&home, Some(&url), &["redis", "info", "--json"]).ok().json();
    let version = doc["sections"]["server"]["redis_version"].as_str().unwrap();
    assert!(version.split('.').count() >= 2, "{version}");
    assert!(doc["sections"]["memory"]["maxmemory_policy"].is_string(), "{doc:#}");
}
