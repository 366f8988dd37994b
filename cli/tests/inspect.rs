//! `nodes`, `services`, `routes`, `health`, `healthlog`, `refresh node list`
//! against a private Redis holding a Rust service (the library, registered
//! here), a real Node hydra 1.9.3 service and the entries of dead instances;
//! each in table and `--json` form, plus unknown services and unreachable Redis.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Home, eventually, run};
use hydra::{Config, Hydra};
use hydra_testkit::{NodePeer, RedisServer};
use redis::Commands;
use serde_json::{Value, json};

/// A Redis with a Rust service, a Node service and two dead entries.
struct World {
    server: RedisServer,
    url: String,
    rust: Hydra,
    node: NodePeer,
    node_id: String,
}

const DEAD_ID: &str = "deadbeefdeadbeefdeadbeefdeadbeef";
const DEAD_NODE_ID: &str = "0000000000000000000000000000dead";

fn rust_service(url: &str) -> Hydra {
    let config = Config::builder()
        .service_name("rust-svc")
        .service_type("rust-type")
        .service_version("1.2.3")
        .service_ip("127.0.0.1")
        .redis_url(url)
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    hydra
        .register_routes(&[
            "[get]/v1/rust/items/:id".to_string(),
            "[post]/v1/rust/items".to_string(),
        ])
        .unwrap();
    hydra
}

fn node_service(url: &str) -> (NodePeer, String) {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {
        "serviceName": "node-svc",
        "serviceDescription": "a node peer",
        "serviceIP": "127.0.0.1",
        "servicePort": 0,
        "serviceType": "node-type",
        "serviceVersion": "9.8.7",
        "redis": {"url": url}
    }});
    node.call("init", json!([config])).expect("node init");
    node.call("registerService", json!([])).expect("node registerService");
    node.call("registerRoutes", json!([["[get]/v1/node/hello"]]))
        .expect("node registerRoutes");
    let id = node.call("getProperty", json!(["instanceID"])).unwrap();
    (node, id.as_str().unwrap().to_string())
}

/// The `nodes` entry of an instance that died long ago (no presence key).
fn dead_entry(service: &str, id: &str) -> String {
    json!({
        "serviceName": service, "serviceDescription": "gone", "version": "0.0.1", "instanceID": id,
        "updatedOn": "2020-01-01T00:00:00.000Z", "processID": 4242, "ip": "10.0.0.9", "port": "3000",
        "hostName": "old-host"
    })
    .to_string()
}

fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url(15))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

fn world() -> World {
    let server = RedisServer::start();
    let url = server.url(15);
    let rust = rust_service(&url);
    let (node, node_id) = node_service(&url);
    let mut conn = raw(&server);
    let _: () = conn
        .hset("hydra:service:nodes", DEAD_ID, dead_entry("rust-svc", DEAD_ID))
        .unwrap();
    let _: () = conn
        .hset(
            "hydra:service:nodes",
            DEAD_NODE_ID,
            dead_entry("node-svc", DEAD_NODE_ID),
        )
        .unwrap();
    World {
        server,
        url,
        rust,
        node,
        node_id,
    }
}

fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
}

fn field<'a>(list: &'a [Value], key: &str, value: &str) -> &'a Value {
    list.iter()
        .find(|item| item[key] == value)
        .unwrap_or_else(|| panic!("no {key}={value} in {list:?}"))
}

fn assert_unknown_service(run: &common::Run) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("no service named nosuch is registered") && run.stderr.contains("hydra-cli services"),
        "{}",
        run.stderr
    );
}

#[test]
fn nodes_lists_every_entry_with_its_state() {
    let w = world();
    let home = Home::new();
    let url = Some(w.url.as_str());

    let doc = run(&home, url, &["nodes", "--json"]).ok().json();
    let nodes = array(&doc["nodes"]);
    assert_eq!(nodes.len(), 4, "{doc}");
    let rust = field(nodes, "instance_id", w.rust.get_instance_id());
    assert_eq!(rust["service"], "rust-svc");
    assert_eq!(rust["version"], "1.2.3");
    assert_eq!(rust["state"], "alive");
    assert_eq!(rust["present"], true);
    assert_eq!(rust["ip"], "127.0.0.1");
    let node = field(nodes, "instance_id", &w.node_id);
    assert_eq!(node["service"], "node-svc");
    assert_eq!(node["version"], "9.8.7");
    assert_eq!(node["state"], "alive");
    let dead = field(nodes, "instance_id", DEAD_ID);
    assert_eq!(dead["state"], "stale");
    assert_eq!(dead["present"], false);
    assert!(dead["age_seconds"].as_u64().unwrap() > 86_400);
    assert_eq!(dead["port"], 3000, "Node's string port read as a number");
    assert_eq!(doc["counts"], json!({"alive": 2, "late": 0, "stale": 2}));
    // Sorted by service, then heartbeat age: the live instance before the dead one.
    let order: Vec<&str> = nodes.iter().map(|n| n["instance_id"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [w.node_id.as_str(), DEAD_NODE_ID, w.rust.get_instance_id(), DEAD_ID]
    );

    let table = run(&home, url, &["nodes"]).ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].contains("SERVICE") && lines[0].contains("HEARTBEAT") && lines[0].contains("STATE"));
    let dead_line = lines.iter().find(|l| l.contains(DEAD_ID)).expect("dead entry listed");
    assert!(
        dead_line.contains("stale") && dead_line.contains("10.0.0.9:3000") && dead_line.contains("old-host"),
        "{dead_line}"
    );
    assert!(lines.iter().any(|l| l.contains(&w.node_id) && l.contains("alive")));
    assert!(
        table.stdout.contains("4 entries: 2 alive, 0 late, 2 stale"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains('\x1b'), "no colour into a pipe");

    let only = run(&home, url, &["nodes", "Node-Svc", "--json"]).ok().json();
    let ids: Vec<&str> = array(&only["nodes"])
        .iter()
        .map(|n| n["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.node_id.as_str(), DEAD_NODE_ID]);

    assert_unknown_service(&run(&home, url, &["nodes", "nosuch"]));
    let json_error = run(&home, url, &["nodes", "nosuch", "--json"]);
    assert_eq!(json_error.json()["error"]["kind"], "failed");
}

#[test]
fn services_count_live_instances_entries_and_routes() {
    let w = world();
    let home = Home::new();
    let url = Some(w.url.as_str());

    let doc = run(&home, url, &["services", "--json"]).ok().json();
    let services = array(&doc["services"]);
    let names: Vec<&str> = services.iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-svc", "rust-svc"]);
    let rust = field(services, "service", "rust-svc");
    assert_eq!(rust["type"], "rust-type");
    assert_eq!(rust["live_instances"], 1);
    assert_eq!(rust["node_entries"], 2);
    // Two routes of ours plus Node's three automatic ones.
    assert_eq!(rust["routes"], 5);
    assert!(rust["registered_on"].as_str().unwrap().ends_with('Z'));
    let node = field(services, "service", "node-svc");
    assert_eq!(node["type"], "node-type");
    assert_eq!(node["live_instances"], 1);
    assert_eq!(node["routes"], 4);

    let table = run(&home, url, &["services"]).ok();
    let line = table
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rust-svc"))
        .expect("rust-svc row");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[0], "rust-svc");
    assert_eq!(cells[1], "rust-type");
    assert_eq!(&cells[3..], ["1", "2", "5"], "{line}");
    assert!(
        table.stdout.contains("2 services, 2 live instances"),
        "{}",
        table.stdout
    );

    let one = run(&home, url, &["services", "node-svc", "--json"]).ok().json();
    assert_eq!(array(&one["services"]).len(), 1);

    // After the Node instance stops, its service stays registered with no live instance.
    w.node.call("shutdown", json!([])).unwrap();
    let after = run(&home, url, &["services", "node-svc", "--json"]).ok().json();
    assert_eq!(after["services"][0]["live_instances"], 0);

    assert_unknown_service(&run(&home, url, &["services", "nosuch"]));
}

#[test]
fn routes_are_keyed_by_the_service_name() {
    let w = world();
    let home = Home::new();
    let url = Some(w.url.as_str());

    let doc = run(&home, url, &["routes", "--json"]).ok().json();
    let node_routes = array(&doc["routes"]["node-svc"]);
    assert!(node_routes.contains(&json!("[get]/v1/node/hello")), "{doc}");
    assert!(array(&doc["routes"]["rust-svc"]).contains(&json!("[post]/v1/rust/items")));

    // Node printed {"serviceName": [...]} here; ours names the service.
    let one = run(&home, url, &["routes", "node-svc", "--json"]).ok().json();
    assert_eq!(one["routes"].as_object().unwrap().len(), 1, "{one}");
    assert!(one["routes"].get("serviceName").is_none());
    assert!(array(&one["routes"]["node-svc"]).contains(&json!("[get]/v1/node/hello")));

    let table = run(&home, url, &["routes", "rust-svc"]).ok();
    assert!(table.stdout.lines().next().unwrap().contains("METHOD"));
    let post = table
        .stdout
        .lines()
        .find(|l| l.contains("/v1/rust/items") && !l.contains(":id"))
        .expect("the post route");
    assert_eq!(
        post.split_whitespace().collect::<Vec<_>>(),
        ["rust-svc", "post", "/v1/rust/items"]
    );
    assert!(!table.stdout.contains("node-svc"));

    assert_unknown_service(&run(&home, url, &["routes", "nosuch"]));
}

#[test]
fn health_shows_each_live_instance_of_rust_and_node() {
    let w = world();
    let home = Home::new();
    let url = Some(w.url.as_str());

    // Node writes its first health record 5 s after registering, then keeps it
    // 3 s of every 5 s: ask until both records are there.
    let mut doc = Value::Null;
    let both = eventually(Duration::from_secs(20), || {
        doc = run(&home, url, &["health", "--json"]).ok().json();
        array(&doc["health"]).iter().all(|h| !h["health"].is_null()) && array(&doc["health"]).len() == 2
    });
    assert!(both, "{doc}");
    let list = array(&doc["health"]);
    let rust = field(list, "instance_id", w.rust.get_instance_id());
    assert_eq!(rust["state"], "alive");
    assert_eq!(rust["health"]["serviceName"], "rust-svc");
    assert!(rust["memory_rss_bytes"].as_u64().unwrap() > 0);
    assert!(rust["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let node = field(list, "instance_id", &w.node_id);
    assert_eq!(
        node["health"]["nodeVersion"].as_str().unwrap().chars().next(),
        Some('v')
    );
    assert!(node["health"]["memory"]["heapUsed"].as_u64().unwrap() > 0);
    assert!(
        list.iter().all(|h| h["instance_id"] != DEAD_ID),
        "dead instances have no health"
    );

    let table = run(&home, url, &["health", "rust-svc"]).ok();
    let header = table.stdout.lines().next().unwrap();
    assert!(header.contains("UPTIME") && header.contains("MEMORY"), "{header}");
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(w.rust.get_instance_id()))
        .expect("the rust instance");
    assert!(
        row.contains("alive") && row.contains("1.2.3") && row.contains(" MB"),
        "{row}"
    );
    assert!(!table.stdout.contains(&w.node_id));

    assert_unknown_service(&run(&home, url, &["health", "nosuch"]));
}

#[test]
fn healthlog_merges_instances_newest_first() {
    let w = world();
    let home = Home::new();
    let url = Some(w.url.as_str());
    w.rust.send_to_health_log("info", "first from rust").unwrap();
    std::thread::sleep(Duration::from_millis(5)); // distinct millisecond timestamps
    w.rust.send_to_health_log("error", "second from rust").unwrap();
    w.node
        .call("sendToHealthLog", json!(["warn", "from node", false]))
        .unwrap();

    let doc = run(&home, url, &["healthlog", "rust-svc", "--json"]).ok().json();
    assert_eq!(doc["service"], "rust-svc");
    let entries = array(&doc["entries"]);
    let messages: Vec<&str> = entries.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["second from rust", "first from rust"]);
    assert_eq!(entries[0]["type"], "error");
    assert_eq!(entries[0]["process_id"], std::process::id());
    let times: Vec<&str> = entries.iter().map(|e| e["ts"].as_str().unwrap()).collect();
    assert!(times[0] > times[1], "newest first: {times:?}");

    let node = run(&home, url, &["healthlog", "node-svc"]).ok();
    let line = node
        .stdout
        .lines()
        .find(|l| l.contains("from node"))
        .expect("node's entry");
    assert!(line.trim_start().starts_with("warn"), "{line}");
    assert!(node.stdout.lines().next().unwrap().contains("MESSAGE"));

    assert_unknown_service(&run(&home, url, &["healthlog", "nosuch"]));
    assert_eq!(run(&home, url, &["healthlog"]).code, Some(2), "the service is required");
}

#[test]
fn refresh_node_list_removes_only_stale_entries() {
    let w = world();
    let home = Home::new();
    let url = Some(w.url.as_str());

    let doc = run(&home, url, &["refresh", "node", "list", "--json"]).ok().json();
    assert_eq!(doc["removed"], 2, "{doc}");
    let mut gone: Vec<&str> = array(&doc["entries"])
        .iter()
        .map(|e| e["instance_id"].as_str().unwrap())
        .collect();
    gone.sort();
    assert_eq!(gone, [DEAD_NODE_ID, DEAD_ID]);
    let left = run(&home, url, &["nodes", "--json"]).ok().json();
    assert_eq!(array(&left["nodes"]).len(), 2, "live instances stay: {left}");

    let mut conn = raw(&w.server);
    let _: () = conn
        .hset("hydra:service:nodes", DEAD_ID, dead_entry("rust-svc", DEAD_ID))
        .unwrap();
    let text = run(&home, url, &["refresh", "node", "list"]).ok();
    assert!(text.stdout.contains("1 entries removed"), "{}", text.stdout);
    assert!(text.stdout.contains(DEAD_ID));
    let again = run(&home, url, &["refresh", "node", "list"]).ok();
    assert_eq!(again.stdout.trim(), "0 entries removed");
}

#[test]
fn unreachable_redis_exits_2_within_the_connect_timeout() {
    let home = Home::new();
    let refused = run(&home, Some("redis://127.0.0.1:1/0"), &["nodes"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("unable to connect to Redis at redis://127.0.0.1:1/0"),
        "{}",
        refused.stderr
    );
    let json = run(&home, Some("redis://127.0.0.1:1/0"), &["services", "--json"]);
    assert_eq!(json.code, Some(2));
    assert_eq!(json.json()["error"]["kind"], "connection");

    // A server that accepts the connection and never answers: the run ends
    // by itself (the harness would kill it at its deadline, code None).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}/15", silent.local_addr().unwrap().port());
    let hung = run(&home, Some(&url), &["--connect-timeout", "1s", "services"]);
    assert_eq!(hung.code, Some(2), "{hung:?}");
    assert!(
        hung.stderr.contains("unable to connect to Redis at") && hung.stderr.contains("(from --redis) within 1s"),
        "{}",
        hung.stderr
    );
    drop(silent);
}
