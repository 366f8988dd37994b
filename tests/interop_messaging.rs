//! Messaging interop with real Node `hydra@1.9.3`: messages, replies,
//! request–reply, broadcasts, instance targeting and `via`, both ways.

mod common;

use std::time::Duration;

use common::{collect, echo, raw, received_numbers, register, wait_for};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// A registered Node service whose subscriptions are live, and its instance ID.
fn node_service(server: &RedisServer, name: &str) -> (NodePeer, String) {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {
        "serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": server.url(15)}
    }});
    node.call("init", json!([config])).unwrap();
    node.call("registerService", json!([])).unwrap();
    let id = node
        .call("getInstanceID", json!([]))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    // Node's registerService resolves before its SUBSCRIBEs complete.
    let mut conn = raw(server);
    let channel = format!("hydra:service:mc:{name}:{id}");
    wait_for(WAIT, || {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query(&mut conn).ok()?;
        (counts.first()?.1 >= 1).then_some(())
    })
    .expect("Node peer never subscribed");
    (node, id)
}

fn node_message(node: &NodePeer) -> Value {
    node.wait_event("message", WAIT)
        .expect("the Node peer received no message")
}

#[test]
fn node_to_rust_and_rust_to_node() {
    let server = RedisServer::start();
    let ours = register(&server, "rust-svc");
    let inbox = collect(&ours);
    let (node, node_id) = node_service(&server, "node-svc");

    let body = json!({"text": "from node ✓", "n": 1.5, "list": [1, {"a": null}]});
    node.call(
        "sendMessage",
        json!([{"to": "rust-svc:/", "from": "node-svc:/", "body": body, "headers": {"x-h": "v"}, "type": "t1"}]),
    )
    .unwrap();
    let got = inbox.recv_timeout(WAIT).unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.from, "node-svc:/");
    assert_eq!(got.headers, Some(json!({"x-h": "v"})));
    assert_eq!(got.message_type.as_deref(), Some("t1"));
    assert_eq!(got.mid.len(), 36);
    assert_eq!(got.version, "UMF/1.4.6");

    let msg = ours.create_umf_message("node-svc:/", json!({"text": "from rust ✓"}));
    ours.send_message(&msg).unwrap();
    let event = node_message(&node);
    assert_eq!(event["bdy"], json!({"text": "from rust ✓"}));
    assert_eq!(event["frm"], "rust-svc:/");
    assert_eq!(event["mid"], msg.mid.as_str());
    assert_eq!(event["ts"], msg.timestamp.as_str());

    // Instance-targeted from our side.
    let to = format!("{node_id}@node-svc:/");
    ours.send_message(&ours.create_umf_message(&to, json!({"targeted": true})))
        .unwrap();
    assert_eq!(node_message(&node)["bdy"], json!({"targeted": true}));
}

#[test]
fn node_replies_to_our_request() {
    let server = RedisServer::start();
    let ours = register(&server, "rust-caller");
    let (node, _) = node_service(&server, "node-responder");
    let requester = {
        let ours = ours.clone();
        std::thread::spawn(move || {
            ours.request(
                &ours.create_umf_message("node-responder:/", json!({"question": 42})),
                WAIT,
            )
        })
    };
    let received = node_message(&node);
    assert_eq!(received["bdy"], json!({"question": 42}));
    assert_eq!(received["frm"], format!("{}@rust-caller:/", ours.get_instance_id()));
    node.call("sendReplyMessage", json!([received, {"body": {"answer": 42}}]))
        .unwrap();
    let reply = requester.join().unwrap().expect("Node's reply reached our request");
    assert_eq!(reply.body, json!({"answer": 42}));
    assert_eq!(reply.rmid.as_deref(), received["mid"].as_str());
    assert_eq!(ours.message_stats().replies_matched, 1);
}

#[test]
fn we_reply_to_a_node_sender() {
    let server = RedisServer::start();
    let ours = register(&server, "rust-echo");
    echo(&ours);
    let (node, node_id) = node_service(&server, "node-asker");
    let from = format!("{node_id}@node-asker:/");
    node.call(
        "sendMessage",
        json!([{"to": "rust-echo:/", "from": from, "mid": "11111111-2222-4333-8444-555555555555", "body": {"q": "ping"}}]),
    )
    .unwrap();
    let reply = node_message(&node);
    assert_eq!(reply["rmid"], "11111111-2222-4333-8444-555555555555");
    assert_eq!(reply["bdy"], json!({"echo": {"q": "ping"}}));
    assert_eq!(reply["to"], from);
    assert_eq!(reply["frm"], "rust-echo:/");
}

#[test]
fn broadcasts_both_ways() {
    let server = RedisServer::start();
    let ours_a = register(&server, "rust-many");
    let ours_b = register(&server, "rust-many");
    let (inbox_a, inbox_b) = (collect(&ours_a), collect(&ours_b));
    let (node_a, _) = node_service(&server, "node-many");
    let (node_b, _) = node_service(&server, "node-many");

    node_a
        .call(
            "sendBroadcastMessage",
            json!([{"to": "rust-many:/", "from": "node-many:/", "body": {"all": "rust"}}]),
        )
        .unwrap();
    assert_eq!(inbox_a.recv_timeout(WAIT).unwrap().body, json!({"all": "rust"}));
    assert_eq!(inbox_b.recv_timeout(WAIT).unwrap().body, json!({"all": "rust"}));

    ours_a
        .send_broadcast_message(&ours_a.create_umf_message("node-many:/", json!({"all": "node"})))
        .unwrap();
    assert_eq!(node_message(&node_a)["bdy"], json!({"all": "node"}));
    assert_eq!(node_message(&node_b)["bdy"], json!({"all": "node"}));
}

#[test]
fn node_targets_one_of_our_instances() {
    let server = RedisServer::start();
    let first = register(&server, "rust-pair");
    let second = register(&server, "rust-pair");
    let (inbox_first, inbox_second) = (collect(&first), collect(&second));
    let (node, _) = node_service(&server, "node-sender");
    let to = format!("{}@rust-pair:/", second.get_instance_id());
    for n in 0..5 {
        node.call(
            "sendMessage",
            json!([{"to": to, "from": "node-sender:/", "body": {"n": n}}]),
        )
        .unwrap();
    }
    assert_eq!(received_numbers(&inbox_second, 5, WAIT), (0..5).collect::<Vec<_>>());
    // A marker to `first` from the same Node connection, published after the
    // five: once `first` has it, it has read anything misrouted to it.
    let marker = format!("{}@rust-pair:/", first.get_instance_id());
    node.call(
        "sendMessage",
        json!([{"to": marker, "from": "node-sender:/", "body": {"n": "marker"}}]),
    )
    .unwrap();
    assert_eq!(inbox_first.recv_timeout(WAIT).unwrap().body, json!({"n": "marker"}));
    assert_eq!(
        first.message_stats().received,
        1,
        "a targeted message reached another instance"
    );
}

#[test]
fn replies_follow_via_across_languages() {
    let server = RedisServer::start();
    let ours = register(&server, "rust-echo");
    echo(&ours);
    let (asker, _) = node_service(&server, "node-asker");
    let (relay, relay_id) = node_service(&server, "node-relay");
    node_call_send(&asker, &relay_id);
    let reply = node_message(&relay);
    assert_eq!(reply["bdy"], json!({"echo": {"relayed": true}}));
    assert_eq!(reply["fwd"], "client-7@browser:/");
    assert!(
        asker.wait_event("message", Duration::from_millis(300)).is_none(),
        "the reply went to from, not via"
    );
}

fn node_call_send(asker: &NodePeer, relay_id: &str) {
    asker
        .call(
            "sendMessage",
            json!([{
                "to": "rust-echo:/", "from": "node-asker:/",
                "via": format!("{relay_id}@node-relay:/"), "forward": "client-7@browser:/",
                "body": {"relayed": true}
            }]),
        )
        .unwrap();
}

/// Node's hydra-router forwards a WebSocket client's message with
/// `via = <routerID>-<clientID>@hydra-router:/` and delivers the reply to that
/// client only when the reply still carries `via` (hydra-tools.md §1.10). A Node
/// hydra registered as `hydra-router` plays the router here.
#[test]
fn replies_keep_via_for_a_node_router() {
    let server = RedisServer::start();
    let ours = register(&server, "rust-echo");
    echo(&ours);
    let (router, router_id) = node_service(&server, "hydra-router");
    let via = format!("{router_id}-wsclient7@hydra-router:/");
    router
        .call(
            "sendMessage",
            json!([{
                "to": format!("{}@rust-echo:/", ours.get_instance_id()),
                "from": "wsclient7@client:/", "via": via,
                "mid": "11111111-2222-4333-8444-666666666666", "body": {"from": "browser"}
            }]),
        )
        .unwrap();
    let reply = node_message(&router);
    assert_eq!(reply["rmid"], "11111111-2222-4333-8444-666666666666");
    assert_eq!(reply["bdy"], json!({"echo": {"from": "browser"}}));
    assert_eq!(reply["to"], via);
    assert_eq!(reply["via"], via, "the router needs via to find its client");
    assert_eq!(reply["frm"], format!("{}@rust-echo:/", ours.get_instance_id()));
    for leak in ["aut", "hdr", "typ", "tmo"] {
        assert!(reply.get(leak).is_none(), "{leak} leaked into the reply: {reply}");
    }
}
