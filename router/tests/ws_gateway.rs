//! The WebSocket gateway, black box: real `hydra-router` processes on a
//! private Redis, real services behind them, and WebSocket clients in Rust
//! (tungstenite, blocking sockets with read timeouts) in front (spec
//! §1.10–1.11).
//!
//! Covered: the `connection` welcome; request/reply to a Rust service over
//! pub/sub (`via`); HTTP-style calls; the router's own API; `ping`; bad
//! frames (not JSON, no `to`/`from`/`body`, unsigned when signatures are
//! required, oversized); a client that never reads; two routers on one
//! Redis (a `forward` across them, the offline queue replayed in order on
//! `reconnect` through the other router, `reconnection`); 1,000 connections
//! opened and dropped (directory empty, RSS back near where it was).

mod common;

use common::ws_client::{WsClient, body, hydra_on, responder};
use common::{RouterProcess, TestService, WAIT, get, raw_redis, wait_until};
use hydra::Hydra;
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

/// Node's key prefix of the offline queue (spec §1.11).
const QUEUE_PREFIX: &str = "hydra-router:message:queue";

// --- Routers and services ------------------------------------------------------

/// The router's instance ID (from its health).
fn router_id(router: &RouterProcess) -> String {
    let health = get(&format!("{}/v1/router/health", router.base_url())).json();
    health["result"]["instanceID"]
        .as_str()
        .unwrap_or_else(|| panic!("health without instanceID: {health}"))
        .to_string()
}

/// The router's client directory (`/v1/router/list/wsdir`'s result:
/// `{routerID: {clientID: 1}}`).
fn wsdir(router: &RouterProcess) -> Value {
    let answer = get(&format!("{}/v1/router/list/wsdir", router.base_url()));
    assert_eq!(
        answer.status,
        200,
        "list/wsdir: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["result"].clone()
}

/// Which router the directory says holds `client` (None when none).
fn holder(directory: &Value, client: &str) -> Option<String> {
    directory
        .as_object()?
        .iter()
        .find(|(_, clients)| clients.get(client).is_some())
        .map(|(router, _)| router.clone())
}

/// How many clients the directory lists, over all routers.
fn directory_size(directory: &Value) -> usize {
    directory
        .as_object()
        .map(|routers| {
            routers
                .values()
                .map(|clients| clients.as_object().map_or(0, |c| c.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// Length of the offline queue list `<client>:<which>` (`queued`, `processing`).
fn queue_len(redis: &mut redis::Connection, client: &str, which: &str) -> usize {
    redis::cmd("LLEN")
        .arg(format!("{QUEUE_PREFIX}:{client}:{which}"))
        .query(redis)
        .expect("LLEN")
}

/// `VmRSS` of a process, kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

// --- Tests ------------------------------------------------------------------------

#[test]
fn a_client_is_welcomed_with_its_id_in_short_form() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let iid = router_id(&router);

    let client = WsClient::connect(router.port());
    let welcome = &client.welcome;
    assert!(!client.id.is_empty(), "{welcome}");
    assert_eq!(welcome["to"], format!("{}@client:/", client.id), "{welcome}");
    assert_eq!(welcome["frm"], format!("{iid}@hydra-router:/"), "{welcome}");
    assert_eq!(welcome["typ"], "connection", "{welcome}");
    assert!(
        welcome.get("from").is_none() && welcome.get("body").is_none(),
        "short form: {welcome}"
    );
    assert!(welcome["mid"].is_string() && welcome["ts"].is_string(), "{welcome}");
    let ip = welcome["bdy"]["ip"].as_str().unwrap_or_default();
    assert!(ip.contains("127.0.0.1"), "the client's address: {welcome}");

    // Behind a proxy: x-forwarded-for is the address; every client its own id.
    let proxied = WsClient::connect_with(router.port(), &[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(proxied.welcome["bdy"]["ip"], "203.0.113.9", "{}", proxied.welcome);
    assert_ne!(proxied.id, client.id);

    // Both are in the router's directory, under its own instance ID.
    let directory = wsdir(&router);
    assert_eq!(
        holder(&directory, &client.id).as_deref(),
        Some(iid.as_str()),
        "{directory}"
    );
    assert_eq!(
        holder(&directory, &proxied.id).as_deref(),
        Some(iid.as_str()),
        "{directory}"
    );
    let closed = client.id.clone();
    client.close();
    wait_until("the closed client to leave the directory", WAIT, || {
        holder(&wsdir(&router), &closed).is_none()
    });
    assert!(holder(&wsdir(&router), &proxied.id).is_some());
}

#[test]
fn request_reply_to_a_rust_service_comes_back_to_the_socket() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let service = responder(&redis, "ws-rust");
    let mut client = WsClient::connect(router.port());

    // To the service (any instance): the reply carries rmid = our mid.
    for n in 0..5 {
        let request = client.message("ws-rust:/", json!({"n": n}));
        let reply = client.call(&request);
        assert_eq!(body(&reply)["echo"], json!({"n": n}), "{reply}");
        assert_eq!(body(&reply)["by"], "ws-rust", "{reply}");
        assert!(reply.get("via").is_none(), "the router removes via: {reply}");
    }

    // To a named instance.
    let named = format!("{}@ws-rust:/", service.get_instance_id());
    let request = client.message(&named, json!({"named": true}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["echo"], json!({"named": true}), "{reply}");

    // To a service with no instance: Node's error, and the socket stays open.
    let request = client.message("nobody-home:/", json!({}));
    client.send(&request);
    let error = client.next_frame("the no-instance error");
    assert!(
        body(&error)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("No nobody-home instances available"),
        "{error}"
    );
    let request = client.message("ws-rust:/", json!({"still": "open"}));
    assert_eq!(body(&client.call(&request))["echo"], json!({"still": "open"}));

    // A service pushes to the client through the router (`forward`).
    let mut push = service.create_umf_message(&format!("{}@hydra-router:/", router_id(&router)), json!({"push": 1}));
    push.forward = Some(client.route());
    service.send_message(&push).expect("push");
    let pushed = client.next_frame("the push");
    assert_eq!(body(&pushed)["push"], 1, "{pushed}");

    // The router counted the frames per target service (Node's wsStats, and
    // the Prometheus counters).
    let stats = get(&format!("{}/v1/router/stats", router.base_url())).json();
    let counted: u64 = stats["result"]["wsStats"]["ws-rust"]
        .as_array()
        .unwrap_or_else(|| panic!("no wsStats for ws-rust: {stats}"))
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(counted, 7, "{}", stats["result"]["wsStats"]);
    let metrics = get(&format!("{}/v1/router/metrics", router.base_url()));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l == "hydra_router_ws_messages_total{service=\"ws-rust\"} 7"),
        "{text}"
    );
}

#[test]
fn http_style_calls_router_api_and_ping() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let _service = TestService::start(&redis, "ws-http");
    let url = format!("{}/v1/ws-http/echo", router.base_url());
    wait_until("the router to route to ws-http", WAIT, || get(&url).status == 200);
    let iid = router_id(&router);
    let mut client = WsClient::connect(router.port());

    // An HTTP-style call: the reply's body is the service's `result`.
    let request = client.message("ws-http:[get]/v1/ws-http/echo?x=1", json!({}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["method"], "GET", "{reply}");
    assert_eq!(body(&reply)["path"], "/v1/ws-http/echo", "{reply}");
    assert_eq!(reply["to"], client.route(), "{reply}");

    // A POST with a body reaches the service as JSON.
    let request = client.message("ws-http:[post]/v1/ws-http/echo", json!({"posted": 1}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["method"], "POST", "{reply}");
    let hex: String = br#"{"posted":1}"#.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(body(&reply)["bodyHex"], hex, "{reply}");

    // To a service with no instance: an answer naming the cause, socket open.
    let request = client.message("ws-gone:[get]/v1/ws-gone/x", json!({}));
    let reply = client.call(&request);
    assert!(body(&reply).to_string().contains("Unavailable"), "{reply}");

    // The router's own API.
    let version = get(&format!("{}/v1/router/version", router.base_url())).json()["result"]["version"].clone();
    assert!(version.is_string(), "{version}");
    let request = client.message("hydra-router:[get]/v1/router/version", json!({}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["version"], version, "{reply}");
    let request = client.message("hydra-router:[get]/v1/router/health", json!({}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["instanceID"], iid.as_str(), "{reply}");
    let request = client.message("hydra-router:[get]/v1/router/nothing-here", json!({}));
    client.send(&request);
    let reply = client.next_frame("the not-routable answer");
    assert!(
        body(&reply)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("is not routable"),
        "{reply}"
    );

    // ping → pong (short form), rmid = the ping's mid.
    let pong = client.ping();
    assert_eq!(pong["typ"], "pong", "{pong}");
    assert_eq!(pong["bdy"]["typ"], "pong", "{pong}");
    assert_eq!(pong["to"], client.route(), "{pong}");
}

#[test]
fn bad_frames_get_an_error_frame_and_a_close() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let cases = [
        ("not JSON", "{this is not json".to_string()),
        ("no to", json!({"frm": "x@client:/", "bdy": {}}).to_string()),
        ("no from", json!({"to": "hydra-router:/", "bdy": {}}).to_string()),
        (
            "no body",
            json!({"to": "hydra-router:/", "frm": "x@client:/"}).to_string(),
        ),
        (
            "an unknown router request",
            json!({"to": "hydra-router:/", "frm": "x@client:/", "bdy": {}}).to_string(),
        ),
    ];
    for (what, text) in cases {
        let mut client = WsClient::connect(router.port());
        assert!(client.send_text(&text));
        let frames = client.frames_until_closed(&format!("the close after {what}"));
        let error = frames
            .first()
            .unwrap_or_else(|| panic!("{what}: closed without an error frame"));
        assert_eq!(error["to"], "client:/", "{what}: {error}");
        let reason = body(error)["error"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "{what}: {error}");
        if what != "an unknown router request" {
            assert!(reason.contains("Invalid UMF message"), "{what}: {error}");
        }
        let id = client.id.clone();
        wait_until(
            &format!("{what}: the closed client to leave the directory"),
            WAIT,
            || holder(&wsdir(&router), &id).is_none(),
        );
    }

    // A frame over the size limit closes that socket; the router lives on.
    let mut big = WsClient::connect(router.port());
    let huge = format!(
        r#"{{"to":"hydra-router:/","frm":"{}","typ":"ping","bdy":{{"pad":"{}"}}}}"#,
        big.route(),
        "x".repeat(OVERSIZED_FRAME)
    );
    if big.send_text(&huge) {
        let frames = big.frames_until_closed("the close after an oversized frame");
        assert!(
            frames.iter().all(|f| f["typ"] != "pong"),
            "an oversized ping was answered: {frames:?}"
        );
    }
    let mut after = WsClient::connect(router.port());
    assert_eq!(after.ping()["typ"], "pong");
}

/// Bytes of padding in the oversized frame: beyond the router's default
/// maximum message size (1 MiB; Node's `ws` allowed 100 MiB).
const OVERSIZED_FRAME: usize = 4 * 1024 * 1024;

#[test]
fn signatures_are_enforced_when_required() {
    let redis = RedisServer::start();
    let secret = "3a0f5c2e-5f9e-4b8e-9f1e-6c1d2b3a4f5e";
    let router = RouterProcess::start(
        &redis,
        json!({"forceMessageSignature": true, "signatureSharedSecret": secret}),
    );

    // Signed, long form: accepted (a ping answered).
    let mut client = WsClient::connect(router.port());
    let mut ping = client.router_message("ping", json!({"n": 1}));
    ping.sign("sha256", secret.as_bytes()).expect("sign");
    assert!(client.send_text(&ping.to_long_json()));
    let pong = client.reply_to(&ping.mid);
    assert_eq!(pong["typ"], "pong", "{pong}");

    // Signed, short form: the router checks the long form it rebuilds.
    let mut ping = client.router_message("ping", json!({"n": 2}));
    ping.sign("sha256", secret.as_bytes()).expect("sign");
    assert!(client.send_text(&ping.to_short_json()));
    let pong = client.reply_to(&ping.mid);
    assert_eq!(pong["typ"], "pong", "{pong}");

    // Signed with another secret: closed.
    let mut forged = client.router_message("ping", json!({"n": 3}));
    forged.sign("sha256", b"not the secret").expect("sign");
    assert!(client.send_text(&forged.to_long_json()));
    let frames = client.frames_until_closed("the close after a bad signature");
    assert!(frames.iter().all(|f| f["typ"] != "pong"), "{frames:?}");

    // A body changed after signing: closed.
    let mut client = WsClient::connect(router.port());
    let mut tampered = client.router_message("ping", json!({"amount": 1}));
    tampered.sign("sha256", secret.as_bytes()).expect("sign");
    tampered.body = json!({"amount": 1000});
    assert!(client.send_text(&tampered.to_long_json()));
    let frames = client.frames_until_closed("the close after a tampered frame");
    assert!(frames.iter().all(|f| f["typ"] != "pong"), "{frames:?}");

    // Unsigned: an error frame, then closed.
    let mut client = WsClient::connect(router.port());
    let ping = client.router_message("ping", json!({}));
    client.send(&ping);
    let frames = client.frames_until_closed("the close after an unsigned frame");
    assert!(frames.iter().all(|f| f["typ"] != "pong"), "{frames:?}");
    assert!(
        frames.iter().any(|f| body(f)["error"].is_string()),
        "no error frame before the close: {frames:?}"
    );
}

#[test]
fn a_client_that_never_reads_does_not_hold_up_the_others() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let _service = responder(&redis, "ws-busy");

    // `stuck` never reads; `flooder` forwards it 400 frames of 64 KiB (25 MiB,
    // more than the socket buffers hold), from its own thread.
    let stuck = WsClient::connect(router.port());
    let mut flooder = WsClient::connect(router.port());
    let target = stuck.route();
    let flood = std::thread::spawn(move || {
        let pad = "f".repeat(64 * 1024);
        let mut sent = 0;
        for n in 0..400 {
            let message = flooder.forward_message(&target, json!({"n": n, "pad": pad}));
            if !flooder.send_text(&message.to_short_json()) {
                break;
            }
            sent += 1;
        }
        (flooder, sent)
    });

    // Meanwhile and after, another client's round trips are all answered.
    let mut other = WsClient::connect(router.port());
    for n in 0..100u32 {
        let ping = other.router_message("ping", json!({"n": n}));
        assert_eq!(other.call(&ping)["typ"], "pong");
        if n.is_multiple_of(10) {
            let request = other.message("ws-busy:/", json!({"n": n}));
            assert_eq!(body(&other.call(&request))["echo"], json!({"n": n}));
        }
    }
    let (_flooder, sent) = flood.join().expect("the flooding thread");
    assert_eq!(sent, 400, "the router stopped reading the flooder");
    for n in 0..20 {
        let request = other.message("ws-busy:/", json!({"after": n}));
        assert_eq!(body(&other.call(&request))["echo"], json!({"after": n}));
    }
    assert_eq!(get(&format!("{}/v1/router/health", router.base_url())).status, 200);
    drop(stuck);
}

#[test]
fn a_forward_reaches_a_client_on_another_router() {
    let redis = RedisServer::start();
    let router_a = RouterProcess::start(&redis, json!({}));
    let router_b = RouterProcess::start(&redis, json!({}));
    let iid_a = router_id(&router_a);

    let mut on_a = WsClient::connect(router_a.port());
    let mut on_b = WsClient::connect(router_b.port());
    let id_a = on_a.id.clone();
    wait_until("router B to learn of A's client (wsdir.add)", WAIT, || {
        holder(&wsdir(&router_b), &id_a).as_deref() == Some(iid_a.as_str())
    });

    for n in 0..3 {
        let message = on_b.forward_message(&on_a.route(), json!({"hello": "from B", "n": n}));
        on_b.send(&message);
        let got = on_a.next_frame("the forward from router B");
        assert_eq!(body(&got)["hello"], "from B", "{got}");
        assert_eq!(body(&got)["n"], n, "in order: {got}");
        // (`to` names router A: Node relays with `to` = the holding router
        // and delivers the message as it arrives.)
    }

    // wsdir.loc: router B tells where A's client is, and that an unknown
    // client is nowhere.
    let locate = on_b.router_message("wsdir.loc", json!({"clientID": id_a}));
    let found = on_b.call(&locate);
    assert_eq!(body(&found)["routerID"], iid_a.as_str(), "{found}");
    assert_eq!(body(&found)["clientID"], id_a.as_str(), "{found}");
    let locate = on_b.router_message("wsdir.loc", json!({"clientID": "nobody"}));
    let found = on_b.call(&locate);
    assert_eq!(body(&found)["routerID"], "", "{found}");

    // And back, A to B.
    let id_b = on_b.id.clone();
    let iid_b = router_id(&router_b);
    wait_until("router A to learn of B's client", WAIT, || {
        holder(&wsdir(&router_a), &id_b).as_deref() == Some(iid_b.as_str())
    });
    let message = on_a.forward_message(&on_b.route(), json!({"hello": "from A"}));
    on_a.send(&message);
    let got = on_b.next_frame("the forward from router A");
    assert_eq!(body(&got)["hello"], "from A", "{got}");

    // A router that starts later learns the directory (wsdir.sha / wsdir.dir).
    let router_c = RouterProcess::start(&redis, json!({}));
    wait_until("router C to learn of A's and B's clients", WAIT, || {
        let directory = wsdir(&router_c);
        holder(&directory, &id_a).is_some() && holder(&directory, &id_b).is_some()
    });
}

#[test]
fn messages_queued_while_away_are_replayed_in_order_through_another_router() {
    let redis = RedisServer::start();
    let router_a = RouterProcess::start(&redis, json!({}));
    let router_b = RouterProcess::start(&redis, json!({}));
    let iid_a = router_id(&router_a);
    let pusher = hydra_on(&redis, "ws-pusher");
    pusher.register_service().expect("register");
    let mut keys = raw_redis(&redis);

    // X connects to A and goes away.
    let away = WsClient::connect(router_a.port());
    let id = away.id.clone();
    away.close();
    wait_until("both routers to forget the client", WAIT, || {
        holder(&wsdir(&router_a), &id).is_none() && holder(&wsdir(&router_b), &id).is_none()
    });

    // Six messages for it, alternately pushed by a service through router A
    // and forwarded by a client of router B; each lands before the next.
    let mut sender = WsClient::connect(router_b.port());
    let to = format!("{id}@client:/");
    for seq in 0..6usize {
        if seq.is_multiple_of(2) {
            let mut push = pusher.create_umf_message(&format!("{iid_a}@hydra-router:/"), json!({"seq": seq}));
            push.forward = Some(to.clone());
            pusher.send_message(&push).expect("push through router A");
        } else {
            let message = sender.forward_message(&to, json!({"seq": seq}));
            sender.send(&message);
        }
        wait_until(&format!("message {seq} to be queued under Node's key"), WAIT, || {
            queue_len(&mut keys, &id, "queued") == seq + 1
        });
    }
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{QUEUE_PREFIX}:{id}:queued"))
        .query(&mut keys)
        .expect("TTL");
    assert!(ttl > 86_000 && ttl <= 86_400, "Node's TTL (24 h): {ttl}");

    // It comes back through router B and takes over its old id.
    let mut back = WsClient::connect(router_b.port());
    let reconnect = back.router_message("reconnect", json!({"id": id}));
    back.send(&reconnect);
    let mut welcomed = false;
    let mut seqs = Vec::new();
    while seqs.len() < 6 {
        let frame = back.next_frame("the queued messages");
        if frame["typ"] == "connection" {
            assert_eq!(body(&frame)["id"], id.as_str(), "the welcome names the old id: {frame}");
            assert!(seqs.is_empty(), "the welcome comes before the queued messages");
            welcomed = true;
        } else if let Some(seq) = body(&frame)["seq"].as_u64() {
            seqs.push(seq);
        } else {
            panic!("unexpected frame: {frame}");
        }
    }
    assert!(welcomed, "no welcome after reconnect");
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5], "replayed in the order sent");
    wait_until("the queue to be emptied", WAIT, || {
        queue_len(&mut keys, &id, "queued") == 0 && queue_len(&mut keys, &id, "processing") == 0
    });

    // It now holds the old id on router B: the directory says so everywhere,
    // and a forward to that id reaches it.
    let iid_b = router_id(&router_b);
    wait_until("both routers to place the old id on router B", WAIT, || {
        holder(&wsdir(&router_a), &id).as_deref() == Some(iid_b.as_str())
            && holder(&wsdir(&router_b), &id).as_deref() == Some(iid_b.as_str())
    });
    let message = sender.forward_message(&to, json!({"live": true}));
    sender.send(&message);
    let got = back.next_frame("a forward to the old id");
    assert_eq!(body(&got)["live"], true, "{got}");
}

#[test]
fn reconnection_is_accepted_as_the_documented_name() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let mut keys = raw_redis(&redis);

    let away = WsClient::connect(router.port());
    let id = away.id.clone();
    away.close();
    wait_until("the router to forget the client", WAIT, || {
        holder(&wsdir(&router), &id).is_none()
    });
    let mut sender = WsClient::connect(router.port());
    for seq in 0..3 {
        let message = sender.forward_message(&format!("{id}@client:/"), json!({"seq": seq}));
        sender.send(&message);
        wait_until("the message to be queued", WAIT, || {
            queue_len(&mut keys, &id, "queued") == seq + 1
        });
    }

    let mut back = WsClient::connect(router.port());
    let reconnect = back.router_message("reconnection", json!({"id": id}));
    back.send(&reconnect);
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let frame = back.next_frame("the queued messages");
        if let Some(seq) = body(&frame)["seq"].as_u64() {
            seqs.push(seq);
        } else {
            assert_eq!(frame["typ"], "connection", "unexpected frame: {frame}");
        }
    }
    assert_eq!(seqs, vec![0, 1, 2]);
}

#[test]
fn a_thousand_connections_leave_no_trace() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let cycle = |n: usize| {
        let client = WsClient::connect(router.port());
        if n.is_multiple_of(2) {
            client.close();
        } else {
            // Gone without a close frame (a phone losing its network).
            drop(client);
        }
    };
    let settled = |what: &str| {
        wait_until(what, WAIT, || directory_size(&wsdir(&router)) == 0);
    };

    // Warm up (allocator arenas, buffers), then measure around 1,000 more.
    for n in 0..100 {
        cycle(n);
    }
    settled("the directory to empty after the warm-up");
    let before = rss_kb(router.pid());
    for n in 0..1000 {
        cycle(n);
    }
    settled("the directory to empty after 1,000 connections");
    let after = rss_kb(router.pid());
    eprintln!("router RSS: {before} kB after the warm-up, {after} kB after 1,000 connections");
    assert!(
        after <= before + 10 * 1024,
        "router RSS grew from {before} kB to {after} kB over 1,000 connections"
    );

    // The router still serves.
    let mut client = WsClient::connect(router.port());
    assert_eq!(client.ping()["typ"], "pong");
}

#[test]
fn a_router_that_stops_closes_its_clients_and_leaves_the_directory() {
    let redis = RedisServer::start();
    let router_a = RouterProcess::start(&redis, json!({}));
    let router_b = RouterProcess::start(&redis, json!({}));
    let mut on_a = WsClient::connect(router_a.port());
    let id = on_a.id.clone();
    wait_until("router B to learn of A's client", WAIT, || {
        holder(&wsdir(&router_b), &id).is_some()
    });

    router_a.terminate();
    // The client sees its socket closed (not left hanging) ...
    let frames = on_a.frames_until_closed("the close on shutdown");
    assert!(frames.iter().all(|f| f["typ"] != "connection"), "{frames:?}");
    // ... and router B forgets router A's clients (wsdir.rem / wsdir.del).
    wait_until("router B to drop the stopped router's client", WAIT, || {
        holder(&wsdir(&router_b), &id).is_none()
    });
}

/// An auth service for `requireWebsocketAuth`: `POST /v1/ws-auth/check`
/// with `{key}` answers 200 `{result: {user}}` for the key `user:pw`, else 401.
fn auth_service(redis: &RedisServer) -> Hydra {
    let hydra = hydra_on(redis, "ws-auth");
    hydra.register_service().expect("register");
    let routes = hydra::HttpRoutes::new().post("/v1/ws-auth/check", |_, request: &hydra::HttpRequest| {
        let key = request.json().ok().and_then(|b| b["key"].as_str().map(str::to_string));
        if key.as_deref() == Some("user:pw") {
            hydra::HttpResponse::json(200, &json!({"result": {"user": "alice"}}))
        } else {
            hydra::HttpResponse::json(401, &json!({"result": {"reason": "who are you"}}))
        }
    });
    hydra.serve_http(routes).expect("serve");
    hydra
}

#[test]
fn websocket_auth_admits_known_clients_and_passes_the_answer_on() {
    let redis = RedisServer::start();
    let _auth = auth_service(&redis);
    let _service = responder(&redis, "ws-authed");
    let router = RouterProcess::start(
        &redis,
        json!({"requireWebsocketAuth": true, "websocketAuthService": "ws-auth",
               "websocketAuthServiceAPI": "v1/ws-auth/check"}),
    );

    // "Basic " + base64("user:pw"): admitted, the auth answer in the welcome
    // and in the body of every message it sends.
    let mut client = WsClient::connect_with(router.port(), &[("authorization", "Basic dXNlcjpwdw==")]);
    assert_eq!(
        client.welcome["bdy"]["authResponse"],
        json!({"user": "alice"}),
        "{}",
        client.welcome
    );
    let request = client.message("ws-authed:/", json!({"n": 1}));
    let reply = client.call(&request);
    assert_eq!(
        body(&reply)["echo"]["authResponse"],
        json!({"user": "alice"}),
        "{reply}"
    );
    assert_eq!(body(&reply)["echo"]["n"], 1, "{reply}");

    // Wrong credentials, or none: closed, never welcomed.
    for headers in [vec![("authorization", "Basic bWFsbG9yeTp4")], vec![]] {
        // (Refused at the handshake, or welcomed by a close as Node does.)
        if let Ok(mut refused) = WsClient::try_open(router.port(), &headers) {
            let frames = refused.frames_until_closed("the refusal");
            assert!(frames.iter().all(|f| f["typ"] != "connection"), "{frames:?}");
        }
    }
    assert_eq!(directory_size(&wsdir(&router)), 1, "{}", wsdir(&router));
}
