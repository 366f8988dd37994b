//! The WebSocket gateway end to end: real WebSocket clients (tungstenite)
//! connected to the `hydra-router` binary, a Rust service behind it, and a
//! private redis-server. Request/reply to a service, HTTP-style calls, the
//! router API, ping, client-to-client forward, and the offline queue
//! replayed in order on reconnect.

mod common;

use std::time::{Duration, Instant};

use common::ws_client::{WsClient, body, responder};
use common::{RouterProcess, TestService, WAIT};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

#[test]
fn clients_reach_services_the_router_and_each_other() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let service = responder(&redis, "ws-echo");
    let http = TestService::start(&redis, "ws-http");
    let mut a = WsClient::connect(router.port());
    let mut b = WsClient::connect(router.port());
    assert_ne!(a.id, b.id);

    // Request/reply to a Rust service, through `via`.
    let request = a.message("ws-echo:/", json!({"n": 1}));
    let answer = a.call(&request);
    assert_eq!(body(&answer)["echo"], json!({"n": 1}));

    // An HTTP-style call: the service's `result`.
    let request = a.message("ws-http:[get]/v1/ws-http/echo?q=1", json!({}));
    let answer = a.call(&request);
    assert_eq!(body(&answer)["path"], "/v1/ws-http/echo");
    assert_eq!(body(&answer)["query"], "q=1");

    // The router API.
    let request = a.message("hydra-router:[get]/v1/router/list/wsdir", json!({}));
    let answer = a.call(&request);
    let directory = body(&answer).as_object().expect("a directory");
    let ours = directory.values().next().expect("this router's entry");
    assert_eq!(ours.get(&a.id), Some(&json!(1)));
    assert_eq!(ours.get(&b.id), Some(&json!(1)));

    // ping → pong.
    let pong = a.ping();
    assert_eq!(pong["typ"], "pong", "{pong}");

    // Client to client.
    let message = a.forward_message(&b.route(), json!({"hi": "b"}));
    a.send(&message);
    let got = b.next_frame("the forward");
    assert_eq!(body(&got), &json!({"hi": "b"}));
    assert_eq!(got["to"], b.route());
    drop(http);
    service.shutdown().unwrap();
}

#[test]
fn the_offline_queue_is_replayed_in_order_on_reconnect() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let mut a = WsClient::connect(router.port());
    let b = WsClient::connect(router.port());
    let b_id = b.id.clone();
    drop(b);
    // Until the router notices b is gone its frames may still be queued for
    // the socket; messages sent after that go to the offline queue. Ask the
    // directory (the router API) until b has left it.
    let deadline = Instant::now() + WAIT;
    loop {
        let locate = a.router_message("wsdir.loc", json!({"clientID": b_id}));
        if body(&a.call(&locate))["routerID"] == "" {
            break;
        }
        assert!(Instant::now() < deadline, "the router did not notice the closed client");
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in 1..=5 {
        let message = a.forward_message(&format!("{b_id}@client:/"), json!({"n": n}));
        a.send(&message);
    }
    // A frame after the five: when its answer comes, the five were handled.
    a.ping();

    let mut again = WsClient::connect(router.port());
    let reconnect = again.router_message("reconnect", json!({"id": b_id}));
    again.send(&reconnect);
    let welcome = again.next_frame("the welcome under the old id");
    assert_eq!(welcome["typ"], "connection");
    assert_eq!(body(&welcome)["id"], b_id.as_str());
    let order: Vec<Value> = (0..5)
        .map(|_| body(&again.next_frame("a queued message"))["n"].clone())
        .collect();
    assert_eq!(order, vec![json!(1), json!(2), json!(3), json!(4), json!(5)]);
}
