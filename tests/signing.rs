//! Signed messages (`signatureSecret`): what we send carries Node's UMF HMAC,
//! what arrives without a valid one is refused and counted, never delivered;
//! Node senders that sign with the same secret are accepted; migration mode
//! lets unsigned messages in. Real Redis, real Node hydra 1.9.3.

mod common;

use std::time::Duration;

use common::{builder, collect, echo, raw, wait_for};
use hydra::{Hydra, Umf};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const SECRET: &str = "s3cret-shared";

fn signed_service(server: &RedisServer, name: &str, secret: &str, accept_unsigned: bool) -> Hydra {
    let config = builder(server, name)
        .signature_secret(secret)
        .accept_unsigned_messages(accept_unsigned)
        .build()
        .expect("valid config");
    let hydra = Hydra::init(config).expect("init");
    hydra.register_service().expect("register");
    hydra
}

/// Waits until `hydra`'s stats satisfy `check` (messages are counted on the listener thread).
fn stats_reach(hydra: &Hydra, check: impl Fn(&hydra::MessageStats) -> bool) -> hydra::MessageStats {
    wait_for(WAIT, || {
        let stats = hydra.message_stats();
        check(&stats).then_some(stats)
    })
    .unwrap_or_else(|| panic!("stats never got there: {:?}", hydra.message_stats()))
}

fn publish(server: &RedisServer, channel: &str, payload: &str) {
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query(&mut raw(server))
        .unwrap();
    assert!(receivers >= 1, "nobody listens on {channel}");
}

#[test]
fn signed_services_talk_and_forgeries_are_refused() {
    let server = RedisServer::start();
    let responder = signed_service(&server, "signed-echo", SECRET, false);
    echo(&responder);
    let caller = signed_service(&server, "signed-caller", SECRET, false);

    // What goes on the wire is signed with the shared secret.
    let mut watcher_conn = raw(&server);
    let mut watcher = watcher_conn.as_pubsub();
    watcher.psubscribe("hydra:service:mc:signed-echo:*").unwrap();
    watcher.set_read_timeout(Some(WAIT)).unwrap();

    let reply = caller
        .request(&caller.create_umf_message("signed-echo:/", json!({"q": 1})), WAIT)
        .expect("a signed request is answered");
    assert_eq!(reply.body, json!({"echo": {"q": 1}}));
    assert!(
        reply.verify("sha256", SECRET.as_bytes()).unwrap(),
        "the reply is signed"
    );

    let seen: String = watcher.get_message().unwrap().get_payload().unwrap();
    let on_wire = Umf::parse(&seen).unwrap();
    assert!(on_wire.signature.is_some(), "unsigned on the wire: {seen}");
    assert!(on_wire.verify("sha256", SECRET.as_bytes()).unwrap());
    assert!(!on_wire.verify("sha256", b"another").unwrap());

    // Unsigned, wrongly signed and tampered messages never reach the handler.
    let channel = format!("hydra:service:mc:signed-echo:{}", responder.get_instance_id());
    let unsigned = Umf::new("signed-echo:/", "intruder:/", json!({"evil": 1}));
    publish(&server, &channel, &unsigned.to_short_json());
    let mut wrong = Umf::new("signed-echo:/", "intruder:/", json!({"evil": 2}));
    wrong.sign("sha256", b"guessed").unwrap();
    publish(&server, &channel, &wrong.to_short_json());
    let mut tampered = Umf::new("signed-echo:/", "intruder:/", json!({"evil": 3}));
    tampered.sign("sha256", SECRET.as_bytes()).unwrap();
    tampered.body = json!({"evil": 4});
    publish(&server, &channel, &tampered.to_short_json());
    // The handler is counted when it returns, which may be after its reply arrived.
    let stats = stats_reach(&responder, |s| s.signature_rejected == 3 && s.handled >= 1);
    assert_eq!(stats.handled, 1, "only the signed request was handled: {stats:?}");

    // A forged reply to a waiting request is refused too: the request times out.
    let other = signed_service(&server, "signed-quiet", SECRET, false);
    let inbox = collect(&other);
    let waiting = {
        let caller = caller.clone();
        std::thread::spawn(move || {
            caller.request(
                &caller.create_umf_message("signed-quiet:/", json!({"q": 2})),
                Duration::from_secs(2),
            )
        })
    };
    let asked = inbox.recv_timeout(WAIT).expect("the request arrived");
    let forged = asked.reply(json!({"forged": true}));
    let caller_channel = format!("hydra:service:mc:signed-caller:{}", caller.get_instance_id());
    publish(&server, &caller_channel, &forged.to_short_json());
    assert!(
        waiting.join().unwrap().is_err(),
        "a forged reply must not answer the request"
    );
    assert_eq!(stats_reach(&caller, |s| s.signature_rejected == 1).replies_matched, 1);
}

#[test]
fn node_senders_signing_with_the_secret_are_accepted_and_unsigned_ones_refused() {
    let server = RedisServer::start();
    let ours = signed_service(&server, "rust-signed", SECRET, false);
    let inbox = collect(&ours);
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    node.call(
        "init",
        json!([{"hydra": {"serviceName": "node-sender", "serviceIP": "127.0.0.1", "servicePort": 0,
                          "redis": {"url": server.url(15)}}}]),
    )
    .unwrap();
    node.call("registerService", json!([])).unwrap();

    // Node's own UMFMessage.signMessage, then Node's sendMessage.
    let signed: Value = node
        .call(
            "signMessage",
            json!([{"to": "rust-signed:/", "from": "node-sender:/", "body": {"n": 1, "text": "é ✓", "x": 1.5}},
                   "sha256", SECRET]),
        )
        .unwrap();
    node.call("sendMessage", json!([signed])).unwrap();
    let got = inbox.recv_timeout(WAIT).expect("Node's signed message was delivered");
    assert_eq!(got.body, json!({"n": 1, "text": "é ✓", "x": 1.5}));

    node.call(
        "sendMessage",
        json!([{"to": "rust-signed:/", "from": "node-sender:/", "body": {"n": 2}}]),
    )
    .unwrap();
    let wrong: Value = node
        .call(
            "signMessage",
            json!([{"to": "rust-signed:/", "from": "node-sender:/", "body": {"n": 3}}, "sha256", "not-it"]),
        )
        .unwrap();
    node.call("sendMessage", json!([wrong])).unwrap();
    let stats = stats_reach(&ours, |s| s.signature_rejected == 2);
    assert!(inbox.try_recv().is_err(), "a refused message was delivered");
    assert_eq!(stats.handled, 1);
}

#[test]
fn migration_mode_lets_unsigned_in_and_still_refuses_wrong_signatures() {
    let server = RedisServer::start();
    let ours = signed_service(&server, "migrating", SECRET, true);
    let inbox = collect(&ours);
    let channel = format!("hydra:service:mc:migrating:{}", ours.get_instance_id());
    publish(
        &server,
        &channel,
        &Umf::new("migrating:/", "old:/", json!({"n": 1})).to_short_json(),
    );
    assert_eq!(inbox.recv_timeout(WAIT).unwrap().body, json!({"n": 1}));
    let mut wrong = Umf::new("migrating:/", "old:/", json!({"n": 2}));
    wrong.sign("sha256", b"guessed").unwrap();
    publish(&server, &channel, &wrong.to_short_json());
    let stats = stats_reach(&ours, |s| s.signature_rejected == 1);
    assert_eq!(stats.unsigned_accepted, 1);
    assert!(inbox.try_recv().is_err());

    // It signs what it sends all the same.
    let peer = signed_service(&server, "strict-peer", SECRET, false);
    let peer_inbox = collect(&peer);
    ours.send_message(&ours.create_umf_message("strict-peer:/", json!({"n": 3})))
        .unwrap();
    assert_eq!(peer_inbox.recv_timeout(WAIT).unwrap().body, json!({"n": 3}));
}

#[test]
fn queued_messages_are_signed_and_unsigned_ones_are_kept_aside_unrun() {
    let server = RedisServer::start();
    let producer = signed_service(&server, "queue-producer", SECRET, false);
    let consumer = signed_service(&server, "queue-consumer", SECRET, false);
    // A big number: stored as JavaScript prints it, and signed as stored.
    producer
        .queue_message(&producer.create_umf_message("jobs:/", json!({"n": 1, "big": 12345678901234567890u64})))
        .unwrap();
    let mut conn = raw(&server);
    redis::cmd("LPUSH")
        .arg("hydra:service:jobs:mqrecieved")
        .arg(Umf::new("jobs:/", "intruder:/", json!({"n": 2})).to_short_json())
        .query::<()>(&mut conn)
        .unwrap();
    let (done_tx, done) = crossbeam_channel::unbounded();
    let worker = consumer
        .queue_worker("jobs", 1, move |taken| {
            let _ = done_tx.send(taken.message.body.clone());
            Ok(())
        })
        .unwrap();
    let first = done.recv_timeout(WAIT).expect("the signed job ran");
    assert_eq!(first["n"], 1);
    let dead: Vec<String> = wait_for(WAIT, || {
        let dead: Vec<String> = redis::cmd("LRANGE")
            .arg("hydra:service:jobs:mqincomplete")
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .ok()?;
        (!dead.is_empty()).then_some(dead)
    })
    .expect("the unsigned job was kept in mqincomplete");
    assert!(dead[0].contains("\"n\":2") && dead[0].contains("unsigned"), "{dead:?}");
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "the unsigned job ran"
    );
    worker.stop();

    // The untracked take refuses it the same way.
    redis::cmd("LPUSH")
        .arg("hydra:service:jobs:mqrecieved")
        .arg(Umf::new("jobs:/", "intruder:/", json!({"n": 3})).to_short_json())
        .query::<()>(&mut conn)
        .unwrap();
    assert!(consumer.get_queued_message("jobs").unwrap().is_none());
    let dead: i64 = redis::cmd("LLEN")
        .arg("hydra:service:jobs:mqincomplete")
        .query(&mut conn)
        .unwrap();
    assert_eq!(dead, 2);
}
