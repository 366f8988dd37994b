//! Interop with real Node `hydra@1.9.3` (interop/peer.js): each side finds
//! the other's instances, records, health and configs on one Redis.

mod common;

use std::time::{Duration, Instant};

use common::{init, register, wait_for};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

fn node_service(server: &RedisServer, name: &str) -> NodePeer {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {
        "serviceName": name,
        "serviceDescription": "a node peer",
        "serviceIP": "127.0.0.1",
        "servicePort": 0,
        "serviceType": "node-type",
        "serviceVersion": "9.8.7",
        "redis": {"url": server.url(15)}
    }});
    node.call("init", json!([config])).expect("node init");
    node.call("registerService", json!([])).expect("node registerService");
    node
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected an array, got {other}"),
    }
}

#[test]
fn node_finds_our_instance() {
    let server = RedisServer::start();
    let ours = register(&server, "rust-svc");
    let node = node_service(&server, "node-svc");

    let presence = array(node.call("getServicePresence", json!(["rust-svc"])).unwrap());
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0]["instanceID"], ours.get_instance_id());
    assert_eq!(presence[0]["ip"], "127.0.0.1");
    assert_eq!(
        presence[0]["port"].as_u64(),
        Some(u64::from(ours.service_info().service_port))
    );
    assert!(presence[0]["updatedOnTS"].as_i64().unwrap() > 0);
    assert_eq!(node.call("hasServicePresence", json!(["rust-svc"])).unwrap(), true);

    let nodes = array(node.call("getServiceNodes", json!([])).unwrap());
    let entry = nodes
        .iter()
        .find(|n| n["instanceID"] == ours.get_instance_id())
        .expect("our nodes entry");
    assert_eq!(entry["serviceName"], "rust-svc");
    assert_eq!(entry["processID"], std::process::id());
    assert!(entry["elapsed"].as_u64().unwrap() <= 2);

    let record = node.call("findService", json!(["rust-svc"])).unwrap();
    assert_eq!(record["serviceName"], "rust-svc");
    assert!(record["registeredOn"].as_str().unwrap().ends_with('Z'));

    let services = array(node.call("getServices", json!([])).unwrap());
    assert!(services.iter().any(|s| s["serviceName"] == "rust-svc"), "{services:?}");

    // Our health key is always there (TTL 10 s > 5 s refresh), so Node sees it.
    let all = array(node.call("getServiceHealthAll", json!([])).unwrap());
    let rust = all
        .iter()
        .find(|s| {
            s["health"]
                .as_array()
                .is_some_and(|h| h.iter().any(|x| x["serviceName"] == "rust-svc"))
        })
        .unwrap_or_else(|| panic!("Node's getServiceHealthAll lacks our health: {all:?}"));
    assert_eq!(array(rust["presence"].clone())[0]["instanceID"], ours.get_instance_id());

    // After our shutdown Node no longer sees us (hasServicePresence is uncached).
    ours.shutdown().unwrap();
    assert_eq!(node.call("hasServicePresence", json!(["rust-svc"])).unwrap(), false);
}

#[test]
fn we_find_a_node_instance() {
    let server = RedisServer::start();
    let node = node_service(&server, "node-svc");
    let node_id = node.call("getProperty", json!(["instanceID"])).unwrap();
    let ours = init(&server, "rust-reader");

    let presence = ours.get_service_presence("node-svc").unwrap();
    assert_eq!(presence.len(), 1);
    let instance = &presence[0];
    assert_eq!(instance.instance_id, node_id.as_str().unwrap());
    assert_eq!(instance.service_description, "a node peer");
    assert_eq!(instance.version, "9.8.7");
    assert_eq!(instance.ip, "127.0.0.1");
    assert!(instance.port > 0); // Node stores a chosen port as a number
    assert!(ours.has_service_presence("node-svc").unwrap());

    let record = ours.find_service("node-svc").unwrap();
    assert_eq!(record.service_type, "node-type");
    assert!(
        ours.get_services()
            .unwrap()
            .iter()
            .any(|s| s.service_name == "node-svc")
    );
    assert!(
        ours.get_service_nodes()
            .unwrap()
            .iter()
            .any(|n| n.instance_id == instance.instance_id)
    );

    node.call("sendToHealthLog", json!(["info", "hello from node"]))
        .unwrap();
    let log = ours.get_service_health_log("node-svc").unwrap();
    assert!(
        log.iter().any(|e| e.msg == "hello from node" && e.entry_type == "info"),
        "{log:?}"
    );

    let all = ours.get_service_health_all().unwrap();
    let node_health = all
        .iter()
        .find(|s| s.service.service_name == "node-svc")
        .expect("node-svc in health all");
    assert_eq!(node_health.presence.len(), 1);

    // Node's health appears after 5 s and lives 3 s of every 5; wait for it once.
    let health = wait_for(Duration::from_secs(8), || {
        let all = ours.get_service_health_all().ok()?;
        let svc = all.into_iter().find(|s| s.service.service_name == "node-svc")?;
        svc.health.into_iter().next()
    })
    .expect("Node's health record never seen");
    assert_eq!(health["instanceID"], node_id);
    assert!(health["memory"]["rss"].as_u64().unwrap() > 0);
}

#[test]
fn config_store_is_shared_with_node() {
    let server = RedisServer::start();
    let node = node_service(&server, "node-svc");
    let ours = init(&server, "rust-admin");

    let doc = json!({"hydra": {"serviceName": "shared", "serviceVersion": "1.0.0"}, "feature": {"on": true}});
    ours.put_config("shared:1.0.0", &doc).unwrap();
    assert_eq!(node.call("getConfig", json!(["shared:1.0.0"])).unwrap(), doc);

    let from_node = json!({"hydra": {"serviceName": "shared"}, "n": [1, 2.5, "three"]});
    node.call("putConfig", json!(["shared:2.0.0", from_node])).unwrap();
    assert_eq!(ours.get_config("shared:2.0.0").unwrap(), Some(from_node));
    assert_eq!(ours.list_config("shared").unwrap(), ["shared:1.0.0", "shared:2.0.0"]);
    assert_eq!(
        node.call("listConfig", json!(["shared"])).unwrap(),
        json!(["shared:1.0.0", "shared:2.0.0"])
    );
}

#[test]
fn node_shutdown_and_crash_are_seen() {
    let server = RedisServer::start();
    let ours = init(&server, "rust-watcher");

    let graceful = node_service(&server, "node-graceful");
    assert!(ours.has_service_presence("node-graceful").unwrap());
    graceful.call("shutdown", json!([])).unwrap();
    assert!(!ours.has_service_presence("node-graceful").unwrap());

    let mut crashing = node_service(&server, "node-crash");
    assert!(ours.has_service_presence("node-crash").unwrap());
    crashing.kill();
    let killed = Instant::now();
    let gone = wait_for(Duration::from_secs(5), || {
        (!ours.has_service_presence("node-crash").ok()?).then(|| killed.elapsed())
    })
    .expect("a killed Node instance stayed present");
    assert!(gone <= Duration::from_millis(3100), "{gone:?}");
    assert!(ours.get_service_presence("node-crash").unwrap().is_empty());
}

/// Our lookups read a per-service index that only we write; a Node instance
/// that starts after the indexes were trusted (Node writes only `nodes` and
/// presence) must still be found at once, and one that stops is dropped.
#[test]
fn a_node_instance_started_after_our_lookups_is_found_at_once() {
    let server = RedisServer::start();
    let ours = register(&server, "late-reader");
    assert!(ours.get_service_presence("late-node").unwrap().is_empty());
    assert_eq!(ours.get_service_presence("late-reader").unwrap().len(), 1);

    let first = node_service(&server, "late-node");
    let first_id = first.call("getProperty", json!(["instanceID"])).unwrap();
    let found = ours.get_service_presence("late-node").unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance_id, first_id.as_str().unwrap());

    let second = node_service(&server, "late-node");
    let second_id = second.call("getProperty", json!(["instanceID"])).unwrap();
    let mut ids: Vec<String> = ours
        .get_service_presence("late-node")
        .unwrap()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    ids.sort();
    let mut expected = vec![
        first_id.as_str().unwrap().to_string(),
        second_id.as_str().unwrap().to_string(),
    ];
    expected.sort();
    assert_eq!(ids, expected);

    first.call("shutdown", json!([])).unwrap();
    let left = wait_for(Duration::from_secs(5), || {
        let found = ours.get_service_presence("late-node").ok()?;
        (found.len() == 1).then(|| found[0].instance_id.clone())
    });
    assert_eq!(left.as_deref(), second_id.as_str());
}
