//! A real Node `hydra@1.9.3` next to the router: it finds the router the way
//! Node tools do (`getServices`, presence, routes), and reaches Rust services
//! through the router's message gateway with its own `makeAPIRequest`.

mod common;

use common::{RouterProcess, TestService, WAIT, get, wait_for_subscriber};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

/// A Node hydra on the router's Redis (db 0), initialised as `name`.
fn node_peer(redis: &RedisServer, name: &str) -> NodePeer {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {"serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": redis.url(0)}}});
    node.call("init", json!([config])).expect("Node hydra init");
    node
}

fn array(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("not an array: {value}"))
}

/// Node's `makeAPIRequest` to one of the router's POST endpoints, with
/// `message` (a UMF message) as the HTTP body.
fn node_posts_to_router(node: &NodePeer, endpoint: &str, message: Value) -> Value {
    let request = json!({"to": format!("hydra-router:[post]/v1/router/{endpoint}"),
        "from": "node-client:/", "body": message});
    node.call_with_timeout("makeAPIRequest", json!([request]), WAIT)
        .unwrap_or_else(|e| panic!("makeAPIRequest {endpoint}: {e}"))
}

#[test]
fn node_hydra_sees_the_router_as_a_router() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let node = node_peer(&redis, "node-client");

    let services = node.call("getServices", json!([])).expect("getServices");
    let own = array(&services)
        .iter()
        .find(|s| s["serviceName"] == "hydra-router")
        .unwrap_or_else(|| panic!("hydra-router not in Node's getServices: {services}"));
    assert_eq!(own["type"], "router");

    let health = get(&format!("{}/v1/router/health", router.base_url())).json();
    let presence = node
        .call("getServicePresence", json!(["hydra-router"]))
        .expect("getServicePresence");
    let instance = &array(&presence)[0];
    assert_eq!(instance["instanceID"], health["result"]["instanceID"]);
    assert_eq!(instance["port"], router.port());

    let routes = node
        .call("getAllServiceRoutes", json!([]))
        .expect("getAllServiceRoutes");
    let router_routes = array(&routes["hydra-router"]);
    assert!(router_routes.contains(&json!("[post]/v1/router/send")), "{routes}");
    assert!(router_routes.contains(&json!("[get]/v1/router/health")), "{routes}");

    // And through the router: Node's own health call answers.
    let answer = node
        .call_with_timeout(
            "makeAPIRequest",
            json!([{"to": "hydra-router:[get]/v1/router/health", "from": "node-client:/", "body": {}}]),
            WAIT,
        )
        .expect("makeAPIRequest health");
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(answer["result"]["serviceName"], "hydra-router");
}

#[test]
fn node_reaches_a_rust_service_through_send_queue_and_message() {
    let redis = RedisServer::start();
    let _router = RouterProcess::start(&redis, json!({}));
    let service = TestService::start(&redis, "rust-target");
    let inbox = service.hydra.messages();
    let node = node_peer(&redis, "node-client");

    // send: the Rust service receives the message over pub/sub.
    let mid = "9a8b7c6d-0000-4000-8000-00000000000a";
    let answer = node_posts_to_router(
        &node,
        "send",
        json!({"to": "rust-target:/", "from": "node-client:/", "mid": mid, "body": {"from": "node"}}),
    );
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["result"]["mid"], mid);
    let received = inbox.recv_timeout(WAIT).expect("the Rust service receives the message");
    assert_eq!(received.mid, mid);
    assert_eq!(received.body, json!({"from": "node"}));

    // queue: the message waits in the Rust service's queue.
    let mid = "9a8b7c6d-0000-4000-8000-00000000000b";
    let answer = node_posts_to_router(
        &node,
        "queue",
        json!({"to": "rust-target:/", "from": "node-client:/", "mid": mid, "body": {"job": "resize"}}),
    );
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["result"]["mid"], mid);
    let queued = service
        .hydra
        .get_queued_message("rust-target")
        .expect("read the queue")
        .expect("the message is queued");
    assert_eq!(queued.message.mid, mid);
    assert_eq!(queued.message.body, json!({"job": "resize"}));

    // message: the router makes the HTTP call named by `forward`.
    let answer = node_posts_to_router(
        &node,
        "message",
        json!({"to": "hydra-router:/", "from": "node-client:/",
               "forward": "rust-target:[get]/v1/rust-target/status/202", "body": {}}),
    );
    assert_eq!(answer["statusCode"], 202, "{answer}");
    assert_eq!(answer["result"]["code"], 202);

    // A malformed message gets Node's 400.
    let answer = node_posts_to_router(&node, "send", json!({"body": {"no": "address"}}));
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert!(inbox.try_recv().is_err(), "a refused message was delivered");
}

#[test]
fn the_router_delivers_to_a_node_service() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let node = node_peer(&redis, "node-svc");
    node.call("registerService", json!([])).expect("registerService");
    let instance = node.call("getInstanceID", json!([])).expect("getInstanceID");
    let instance = instance.as_str().expect("instance ID").to_string();
    // Node's registerService resolves before its SUBSCRIBEs complete.
    wait_for_subscriber(&redis, &format!("hydra:service:mc:node-svc:{instance}"));
    let message = json!({"to": "node-svc:/", "from": "web:/", "body": {"to": "node"}});
    let answer = common::send(
        "POST",
        &format!("{}/v1/router/send", router.base_url()),
        &[("content-type", "application/json")],
        Some(message.to_string().as_bytes()),
    );
    assert_eq!(answer.status, 200);
    let mid = answer.json()["result"]["mid"].as_str().expect("mid").to_string();
    let received = node.wait_event("message", WAIT).expect("the Node service receives it");
    assert_eq!(received["mid"], mid.as_str(), "{received}");
    let body = received.get("bdy").or_else(|| received.get("body")).expect("body");
    assert_eq!(body, &json!({"to": "node"}));
}
