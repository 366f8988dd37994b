//! What registration writes, key by key, and how it is kept alive and removed,
//! against a private redis-server.

mod common;

use std::time::{Duration, Instant};

use common::{builder, init, raw, register, wait_for};
use hydra::{Config, Error, Hydra};
use hydra_testkit::RedisServer;
use redis::Commands;
use serde_json::Value;

fn json_keys(text: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(text).unwrap() {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn registration_writes_exactly_nodes_keys() {
    common::init_logging();
    let server = RedisServer::start();
    let hydra = Hydra::init(
        builder(&server, "Alpha-Service")
            .service_description("alpha desc")
            .service_type("test")
            .service_version("2.3.4")
            .service_port("15555")
            .build()
            .unwrap(),
    )
    .unwrap();
    let info = hydra.register_service().unwrap();
    assert_eq!(info.service_name, "alpha-service");
    assert_eq!(info.service_ip, "127.0.0.1");
    assert_eq!(info.service_port, 15555);
    let id = hydra.get_instance_id().to_string();
    assert_eq!(id.len(), 32);
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{id}"
    );

    let mut conn = raw(&server);
    let mut keys: Vec<String> = conn.keys("*").unwrap();
    keys.sort();
    let mut expected = vec![
        "hydra:service:alpha-service:service".to_string(),
        format!("hydra:service:alpha-service:{id}:presence"),
        format!("hydra:service:alpha-service:{id}:health"),
        // Ours only: the service's instance index (see `node_index`).
        "hydra:service:alpha-service:nodeids".to_string(),
        "hydra:service:nodes".to_string(),
        "hydra:service:services".to_string(),
    ];
    expected.sort();
    assert_eq!(keys, expected);

    // The service record: no TTL, Node's three fields in Node's order.
    let service: String = conn.get("hydra:service:alpha-service:service").unwrap();
    assert_eq!(json_keys(&service), ["serviceName", "type", "registeredOn"]);
    let service: Value = serde_json::from_str(&service).unwrap();
    assert_eq!(service["serviceName"], "alpha-service");
    assert_eq!(service["type"], "test");
    assert_eq!(service["registeredOn"].as_str().unwrap().len(), 24);
    let ttl: i64 = conn.ttl("hydra:service:alpha-service:service").unwrap();
    assert_eq!(ttl, -1);

    // Presence: the instance ID, TTL 3 s.
    let presence_key = format!("hydra:service:alpha-service:{id}:presence");
    let presence: String = conn.get(&presence_key).unwrap();
    assert_eq!(presence, id);
    let ttl: i64 = conn.ttl(&presence_key).unwrap();
    assert!((1..=3).contains(&ttl), "presence ttl {ttl}");

    // The nodes entry: nine fields in Node's order; a fixed port is a string.
    let node: String = conn.hget("hydra:service:nodes", &id).unwrap();
    assert_eq!(
        json_keys(&node),
        [
            "serviceName",
            "serviceDescription",
            "version",
            "instanceID",
            "updatedOn",
            "processID",
            "ip",
            "port",
            "hostName"
        ]
    );
    let node: Value = serde_json::from_str(&node).unwrap();
    assert_eq!(node["serviceName"], "alpha-service");
    assert_eq!(node["serviceDescription"], "alpha desc");
    assert_eq!(node["version"], "2.3.4");
    assert_eq!(node["instanceID"], id.as_str());
    assert_eq!(node["processID"], std::process::id());
    assert_eq!(node["ip"], "127.0.0.1");
    assert_eq!(node["port"], "15555");
    let ttl: i64 = conn.ttl("hydra:service:nodes").unwrap();
    assert_eq!(ttl, -1);

    // Health: written at once (Node waits 5 s), TTL longer than its 5 s refresh.
    let health_key = format!("hydra:service:alpha-service:{id}:health");
    let health: String = conn.get(&health_key).unwrap();
    let fields = json_keys(&health);
    assert_eq!(
        &fields[..6],
        [
            "updatedOn",
            "serviceName",
            "instanceID",
            "hostName",
            "sampledOn",
            "processID"
        ]
    );
    assert!(fields.contains(&"memory".to_string()) && fields.last().unwrap() == "uptimeSeconds");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert!(health["memory"]["rss"].as_u64().unwrap() > 0);
    let ttl: i64 = conn.ttl(&health_key).unwrap();
    assert!(ttl > 5 && ttl <= hydra::HEALTH_TTL_SECS as i64, "health ttl {ttl}");

    hydra.shutdown().unwrap();
}

#[test]
fn a_chosen_port_is_written_as_a_number() {
    let server = RedisServer::start();
    let hydra = register(&server, "beta");
    let mut conn = raw(&server);
    let node: String = conn.hget("hydra:service:nodes", hydra.get_instance_id()).unwrap();
    let node: Value = serde_json::from_str(&node).unwrap();
    assert_eq!(
        node["port"].as_u64(),
        Some(u64::from(hydra.service_info().service_port))
    );
}

#[test]
fn heartbeat_refreshes_presence_nodes_and_health() {
    let server = RedisServer::start();
    let hydra = register(&server, "beat");
    let id = hydra.get_instance_id().to_string();
    let mut conn = raw(&server);
    let first: String = conn.hget("hydra:service:nodes", &id).unwrap();
    let first_updated = serde_json::from_str::<Value>(&first).unwrap()["updatedOn"].clone();
    // updatedOn moves within about a second (Node's test asserts the same).
    let moved = wait_for(Duration::from_millis(1500), || {
        let now: String = conn.hget("hydra:service:nodes", &id).ok()?;
        let updated = serde_json::from_str::<Value>(&now).ok()?["updatedOn"].clone();
        (updated != first_updated).then_some(())
    });
    assert!(moved.is_some(), "nodes entry was not refreshed within 1.5 s");
    // Presence outlives its 3 s TTL because it is refreshed every second.
    let presence_key = format!("hydra:service:beat:{id}:presence");
    // With a TTL, surviving 4 s means refreshed (a key without one would
    // pass the loop below without any heartbeat).
    let ttl: i64 = conn.pttl(&presence_key).unwrap();
    assert!((1..=3000).contains(&ttl), "presence pttl {ttl}");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let exists: bool = conn.exists(&presence_key).unwrap();
        assert!(exists, "presence lapsed after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    // Health is refreshed every 5 s; with a 10 s TTL it never lapses.
    let health_key = format!("hydra:service:beat:{id}:health");
    let first_health: String = conn.get(&health_key).unwrap();
    let refreshed = wait_for(Duration::from_secs(6), || {
        let now: String = conn.get(&health_key).ok()?;
        (now != first_health).then_some(())
    });
    assert!(refreshed.is_some(), "health not refreshed within 6 s");
}

#[test]
fn shutdown_removes_the_instance_and_stops_the_heartbeat() {
    let server = RedisServer::start();
    let hydra = register(&server, "leaver");
    let id = hydra.get_instance_id().to_string();
    let mut conn = raw(&server);
    let started = Instant::now();
    hydra.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        started.elapsed()
    );
    let presence_key = format!("hydra:service:leaver:{id}:presence");
    let exists: bool = conn.exists(&presence_key).unwrap();
    assert!(!exists, "presence still there right after shutdown");
    let node: Option<String> = conn.hget("hydra:service:nodes", &id).unwrap();
    assert_eq!(node, None, "own nodes entry not removed");
    let ttl: i64 = conn.ttl(format!("hydra:service:leaver:{id}:health")).unwrap();
    assert!((0..=3).contains(&ttl), "health ttl after shutdown {ttl}");
    let log: Vec<String> = conn
        .lrange(format!("hydra:service:leaver:{id}:health:log"), 0, -1)
        .unwrap();
    assert!(log[0].contains("Service is shutting down."), "{log:?}");
    let ttl: i64 = conn.ttl(format!("hydra:service:leaver:{id}:health:log")).unwrap();
    assert!(ttl > 604_000, "health log ttl {ttl}");
    // The service record stays, as in Node.
    let service: bool = conn.exists("hydra:service:leaver:service").unwrap();
    assert!(service);
    // That the heartbeat thread has ended (so nothing can write presence
    // back) is checked in its own process: shutdown_ends_the_heartbeat_thread.
    assert!(!hydra.is_registered());
    // Idempotent, and re-registering a shut-down handle is refused.
    hydra.shutdown().unwrap();
    assert!(matches!(hydra.register_service(), Err(Error::InvalidState(_))));
}

/// The threads of this process named `hydra-heartbeat`.
fn heartbeat_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "hydra-heartbeat")
        .count()
}

/// Child process of `shutdown_ends_the_heartbeat_thread`: the only `Hydra`
/// in its process, so its heartbeat thread is the only one of that name.
/// Prints `heartbeats <before shutdown> <after shutdown> <instance id>`.
#[test]
#[ignore = "child process of shutdown_ends_the_heartbeat_thread"]
fn heartbeat_child() {
    let Ok(url) = std::env::var("HYDRA_TEST_HEARTBEAT_CHILD_URL") else {
        return; // only meaningful as the child
    };
    let config = Config::builder()
        .service_name("leaver")
        .redis_url(&url)
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    // A new thread names itself once it runs.
    let before = wait_for(Duration::from_secs(5), || Some(heartbeat_threads()).filter(|n| *n > 0)).unwrap_or(0);
    hydra.shutdown().unwrap();
    let after = heartbeat_threads();
    println!("heartbeats {before} {after} {}", hydra.get_instance_id());
}

#[test]
fn shutdown_ends_the_heartbeat_thread() {
    // Once shutdown returns, the thread is gone (not merely quiet for a
    // while): nothing is left that could write presence back.
    let server = RedisServer::start();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "heartbeat_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HYDRA_TEST_HEARTBEAT_CHILD_URL", server.url(15))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = wait_for(Duration::from_secs(30), || child.try_wait().unwrap()) else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("child did not finish within 30 s");
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "child failed: {stdout}");
    // The harness prints "test heartbeat_child ... " before our line, unterminated.
    let report = stdout
        .split_once("heartbeats ")
        .unwrap_or_else(|| panic!("no report: {stdout}"))
        .1;
    let report: Vec<&str> = report.split_whitespace().take(3).collect();
    assert_eq!(report[..2], ["1", "0"], "heartbeat threads before and after shutdown");
    let exists: bool = raw(&server)
        .exists(format!("hydra:service:leaver:{}:presence", report[2]))
        .unwrap();
    assert!(!exists, "presence after shutdown");
}

#[test]
fn dropping_the_last_clone_shuts_down() {
    let server = RedisServer::start();
    let hydra = register(&server, "dropper");
    let id = hydra.get_instance_id().to_string();
    let clone = hydra.clone();
    drop(hydra);
    let mut conn = raw(&server);
    let presence_key = format!("hydra:service:dropper:{id}:presence");
    let exists: bool = conn.exists(&presence_key).unwrap();
    assert!(exists, "a live clone must keep the instance registered");
    drop(clone);
    let exists: bool = conn.exists(&presence_key).unwrap();
    assert!(!exists, "presence remains after the last clone was dropped");
}

#[test]
fn registering_twice_is_refused() {
    let server = RedisServer::start();
    let hydra = register(&server, "twice");
    assert!(matches!(hydra.register_service(), Err(Error::InvalidState(_))));
}

#[test]
fn redis_restart_recreates_the_registration_within_two_seconds() {
    common::init_logging();
    let mut server = RedisServer::start();
    let hydra = register(&server, "phoenix");
    let id = hydra.get_instance_id().to_string();
    let peer = init(&server, "observer");

    server.stop();
    // While Redis is down, calls fail fast with Error::Redis.
    for _ in 0..3 {
        let started = Instant::now();
        let err = peer.get_service_presence("phoenix").unwrap_err();
        assert!(matches!(err, Error::Redis(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1100),
            "took {:?}",
            started.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(1500)); // let the heartbeat fail a few times

    server.restart();
    let back = Instant::now();
    let mut conn = raw(&server);
    let restored = wait_for(Duration::from_secs(3), || {
        let presence: bool = conn.exists(format!("hydra:service:phoenix:{id}:presence")).ok()?;
        let node: bool = conn.hexists("hydra:service:nodes", &id).ok()?;
        let service: bool = conn.exists("hydra:service:phoenix:service").ok()?;
        let health: bool = conn.exists(format!("hydra:service:phoenix:{id}:health")).ok()?;
        let indexed: bool = conn.sismember("hydra:service:services", "phoenix").ok()?;
        (presence && node && service && health && indexed).then(|| back.elapsed())
    });
    let took = restored.expect("registration not re-created within 3 s of Redis answering");
    assert!(took <= Duration::from_secs(2), "re-created after {took:?}");
    // The heartbeat is alive and the other handle reconnects by itself.
    assert!(hydra.is_registered());
    let found = peer.get_service_presence("phoenix").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, id);
}

#[test]
fn routes_come_back_after_redis_loses_its_data() {
    common::init_logging();
    let server = RedisServer::start();
    let hydra = register(&server, "routed");
    hydra
        .register_routes(&["[get]/v1/routed/:id".to_string(), "[post]/v1/routed".to_string()])
        .unwrap();
    let mut conn = raw(&server);
    let mut registered: Vec<String> = conn.smembers("hydra:service:routed:service:routes").unwrap();
    registered.sort();
    assert_eq!(registered.len(), 5, "{registered:?}");

    let _: () = redis::cmd("FLUSHDB").query(&mut conn).unwrap();
    let restored = wait_for(Duration::from_secs(10), || {
        let mut routes: Vec<String> = conn.smembers("hydra:service:routed:service:routes").ok()?;
        routes.sort();
        (routes == registered).then_some(())
    });
    assert!(restored.is_some(), "routes not re-created within 10 s of FLUSHDB");
    // And routers that read them find the service again.
    let routes = init(&server, "router-like").get_all_service_routes().unwrap();
    assert_eq!(routes.get("routed"), Some(&registered));
}

#[test]
fn unreachable_redis_fails_init_within_the_timeout() {
    // Nothing listens on this port: refused at once.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = Config::builder()
        .service_name("lonely")
        .redis_url(&format!("redis://127.0.0.1:{port}/15"))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = Hydra::init(config).unwrap_err();
    assert!(matches!(err, Error::Redis(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Something accepts the connection but never answers: the handshake times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = Config::builder()
        .service_name("lonely")
        .redis_url(&format!("redis://127.0.0.1:{port}/15"))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = Hydra::init(config).unwrap_err();
    assert!(matches!(err, Error::Redis(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn acl_user_and_password_in_the_url() {
    let server = RedisServer::start_with_args(&["--user", "alice", "on", ">s3cret", "~*", "&*", "+@all"]);
    let url = format!("redis://alice:s3cret@127.0.0.1:{}/15", server.port());
    let config = Config::builder().service_name("acl").redis_url(&url).build().unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    assert_eq!(hydra.get_service_presence("acl").unwrap().len(), 1);

    let wrong = format!("redis://alice:nope@127.0.0.1:{}/15", server.port());
    let config = Config::builder().service_name("acl").redis_url(&wrong).build().unwrap();
    let err = Hydra::init(config).unwrap_err();
    assert!(matches!(err, Error::Redis(_)), "{err:?}");
    assert!(!err.to_string().contains("nope"), "password leaked: {err}");
}

/// Re-run of this test binary as a child process that registers and then
/// waits to be killed (see `presence_disappears_after_a_crash`). Ignored so it
/// never counts as a test of its own; the parent runs it with `--ignored`.
#[test]
#[ignore = "child process of presence_disappears_after_a_crash"]
fn crash_child() {
    let Ok(url) = std::env::var("HYDRA_TEST_CRASH_CHILD_URL") else {
        return; // only meaningful as the child
    };
    hydra_testkit::exit_when_stdin_closes();
    let config = Config::builder()
        .service_name("crasher")
        .redis_url(&url)
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    println!("ready {}", hydra.get_instance_id());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn presence_disappears_after_a_crash() {
    use std::io::BufRead;
    let server = RedisServer::start();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HYDRA_TEST_CRASH_CHILD_URL", server.url(15))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let id = loop {
        let line = lines.next().expect("child exited before registering").unwrap();
        // The harness prints "test crash_child ... " before our line, unterminated.
        if let Some((_, id)) = line.split_once("ready ") {
            break id.trim().to_string();
        }
    };
    let observer = init(&server, "observer");
    assert_eq!(observer.get_service_presence("crasher").unwrap().len(), 1);
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    let killed = Instant::now();
    child.wait().unwrap();
    let mut conn = raw(&server);
    let gone = wait_for(Duration::from_secs(5), || {
        let exists: bool = conn.exists(format!("hydra:service:crasher:{id}:presence")).ok()?;
        (!exists).then(|| killed.elapsed())
    })
    .expect("presence of a killed process never expired");
    assert!(
        gone <= Duration::from_millis(3100),
        "presence lasted {gone:?} after the kill"
    );
    assert!(observer.get_service_presence("crasher").unwrap().is_empty());
    assert!(!observer.has_service_presence("crasher").unwrap());
}

#[test]
fn concurrent_registrations_register_once() {
    let server = RedisServer::start();
    let hydra = init(&server, "racer");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let results: Vec<Result<hydra::ServiceInfo, Error>> = (0..4)
        .map(|_| {
            let hydra = hydra.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                hydra.register_service()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, Error::InvalidState(_)))
    );
    assert!(hydra.is_registered());
    let mut conn = raw(&server);
    let fields: Vec<String> = conn.hkeys("hydra:service:nodes").unwrap();
    assert_eq!(fields, [hydra.get_instance_id().to_string()]);
}

#[test]
fn acl_denials_name_the_command_and_the_key() {
    let server = RedisServer::start_with_args(&[
        "--user",
        "nohset",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
        "-hset",
        "--user",
        "alphaonly",
        "on",
        ">pw",
        "~hydra:service:alpha:*",
        "~hydra:service:nodes*",
        "~hydra:service:services",
        "%R~hydra:service:beta:*",
        "&*",
        "+@all",
    ]);
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}/15", server.port());
    let handle = |user: &str, name: &str| {
        let config = Config::builder()
            .service_name(name)
            .service_ip("127.0.0.1")
            .redis_url(&url(user))
            .build()
            .unwrap();
        Hydra::init(config).unwrap()
    };

    // A command the user may not run, inside a pipeline and a script.
    let err = handle("nohset", "alpha").register_service().unwrap_err();
    let Error::PermissionDenied(reason) = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("HSET"), "{reason}");
    assert!(reason.contains("hydra:service:nodes"), "{reason}");
    assert_eq!(err.code(), hydra::ErrorCode::PermissionDenied);

    // A key the user may not read, and one it may read but not write.
    let alpha = handle("alphaonly", "alpha");
    alpha.register_service().unwrap();
    let err = alpha.get_config("gamma:1.0.0").unwrap_err();
    let Error::PermissionDenied(reason) = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("HGET on hydra:service:gamma:configs"), "{reason}");
    assert_eq!(alpha.get_config("beta:1.0.0").unwrap(), None);
    let err = alpha.put_config("beta:1.0.0", &serde_json::json!({})).unwrap_err();
    let Error::PermissionDenied(reason) = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("HSET on hydra:service:beta:configs"), "{reason}");
    alpha.shutdown().unwrap();
}

#[test]
fn init_checks_the_redis_version_and_tolerates_a_user_without_info() {
    let server = RedisServer::start_with_args(&["--user", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info"]);
    let mut conn = raw(&server);
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap();
    assert!(info.contains("redis_version:"), "{info}");
    let before: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    let calls = |stats: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_info:calls="))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    init(&server, "versioned").shutdown().unwrap();
    let after: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    // One INFO by init (the version check), plus the one that read `before`.
    assert_eq!(calls(&after) - calls(&before), 2);

    let url = format!("redis://noinfo:pw@127.0.0.1:{}/15", server.port());
    let config = Config::builder()
        .service_name("noinfo")
        .redis_url(&url)
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    hydra.shutdown().unwrap();
}

#[test]
fn an_instance_registers_and_is_messaged_under_a_chosen_id() {
    let server = RedisServer::start();
    let config = builder(&server, "tool").instance_id("tool_on_host_1").build().unwrap();
    let first = Hydra::init(config.clone()).unwrap();
    assert_eq!(first.get_instance_id(), "tool_on_host_1");
    first.register_service().unwrap();
    let mut conn = raw(&server);
    let presence: String = conn.get("hydra:service:tool:tool_on_host_1:presence").unwrap();
    assert_eq!(presence, "tool_on_host_1");
    assert!(
        conn.hexists::<_, _, bool>("hydra:service:nodes", "tool_on_host_1")
            .unwrap()
    );
    first.shutdown().unwrap();

    // Back under the same ID: a message addressed to that instance reaches it.
    let again = Hydra::init(config).unwrap();
    again.register_service().unwrap();
    let inbox = common::collect(&again);
    let sender = register(&server, "sender");
    let message = sender.create_umf_message("tool_on_host_1@tool:/", serde_json::json!({"n": 1}));
    sender.send_message(&message).unwrap();
    let got = inbox
        .recv_timeout(Duration::from_secs(5))
        .expect("delivered to the chosen ID");
    assert_eq!(got.body["n"], 1);
}
