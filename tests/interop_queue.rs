//! Queue interop with real Node `hydra@1.9.3`: Node producers and our
//! workers, our producers and Node consumers (whose `markQueueMessage` finds
//! items only if our JSON is byte for byte what JavaScript prints), Node's
//! incomplete marks, and Node consumers holding messages while our workers
//! reap.

mod common;

use std::time::Duration;

use common::{init, raw, wait_for};
use crossbeam_channel::unbounded;
use hydra::{QueueOptions, QueuedMessage, Umf};
use hydra_testkit::{NodePeer, RedisServer};
use redis::Commands;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Bodies that only survive Node's `LREM` if serialized exactly as
/// JavaScript does: non-ASCII, control characters, escapes, numbers that
/// JavaScript prints differently from their text, index-like keys.
const AWKWARD_BODIES: [&str; 6] = [
    r#"{"text":"✓ ñ 😀 \u0000\u0007\b\f\n\r\t\"\\\/ \u2028\u2029\u007f end"}"#,
    r#"{"n":1.50,"big":123456789012345678901234567890,"tiny":1.5e-7,"e21":1e21,"neg0":-0,"exp":1E5}"#,
    r#"{"float":0.30000000000000004,"max":1.7976931348623157e308,"half":817830907484182.25,"min":5e-324}"#,
    r#"{"z":1,"2":"index key","1":"first","a":{"10":0,"9":0,"x":[1,{"b":null,"a":true}]}}"#,
    r#"{"deep":[[[[{"k":"v"}]]]],"empty":{},"list":[],"s":""}"#,
    r#"{"ctrl":"\u001f\u0001\u0010","quote":"she said \"hi\"","slash":"a/b\\c"}"#,
];

fn bodies() -> Vec<Value> {
    AWKWARD_BODIES
        .iter()
        .map(|text| serde_json::from_str(text).unwrap())
        .collect()
}

fn q(svc: &str, list: &str) -> String {
    format!("hydra:service:{svc}:{list}")
}

/// A Node hydra initialized (not registered) as `name`. Node's
/// `markQueueMessage` uses its own service name for the lists, so a Node
/// consumer of queue `jobs` must be named `jobs`.
fn node(server: &RedisServer, name: &str) -> NodePeer {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {
        "serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": server.url(15)}
    }});
    node.call("init", json!([config])).unwrap();
    node
}

fn options(vt_ms: u64) -> QueueOptions {
    QueueOptions::new().with_visibility_timeout(Duration::from_millis(vt_ms))
}

#[test]
fn node_producer_our_worker() {
    let server = RedisServer::start();
    let producer = node(&server, "node-producer");
    let ours = init(&server, "jobs");
    let (tx, rx) = unbounded();
    let worker = ours
        .queue_worker_with("jobs", 2, options(1000), move |m: &QueuedMessage| {
            tx.send(m.message.clone()).unwrap();
            Ok(())
        })
        .unwrap();
    for (n, body) in bodies().into_iter().enumerate() {
        producer
            .call(
                "queueMessage",
                json!([{"to": "jobs:/work", "from": "node-producer:/", "mid": format!("mid-{n}"), "body": body}]),
            )
            .unwrap();
    }
    let mut got: Vec<Umf> = (0..AWKWARD_BODIES.len())
        .map(|_| rx.recv_timeout(WAIT).expect("our worker got every Node message"))
        .collect();
    got.sort_by(|a, b| a.mid.cmp(&b.mid));
    for (n, (message, body)) in got.iter().zip(bodies()).enumerate() {
        assert_eq!(message.mid, format!("mid-{n}"));
        assert_eq!(message.from, "node-producer:/");
        assert_eq!(message.to, "jobs:/work");
        // Same JSON value (numbers compared as JavaScript reads them).
        assert_eq!(as_js(&message.body), as_js(&body), "body {n}");
    }
    wait_for(WAIT, || {
        (worker.stats().completed == AWKWARD_BODIES.len() as u64).then_some(())
    })
    .expect("all completed");
    let stats = ours.queue_stats("jobs").unwrap();
    assert_eq!((stats.waiting, stats.in_progress, stats.incomplete), (0, 0, 0));
}

/// A JSON value with every number as the double JavaScript reads.
fn as_js(value: &Value) -> Value {
    match value {
        Value::Number(n) => {
            let x: f64 = n.to_string().parse().unwrap();
            if x.is_finite() {
                json!(if x == 0.0 { 0.0 } else { x })
            } else {
                Value::Null
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(as_js).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), as_js(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn our_json_is_byte_for_byte_what_node_enqueues() {
    let server = RedisServer::start();
    let producer = node(&server, "producer");
    let ours = init(&server, "producer");
    let mut conn = raw(&server);
    for (n, body) in bodies().into_iter().enumerate() {
        let fields = json!({
            "to": format!("bytes{n}:/x"), "from": "producer:/", "mid": format!("m{n}"),
            "timestamp": "2026-01-02T03:04:05.006Z", "type": "job", "headers": {"h": 1.0}, "body": body,
        });
        producer.call("queueMessage", json!([fields])).unwrap();
        let node_bytes: Vec<String> = conn.lrange(q(&format!("bytes{n}"), "mqrecieved"), 0, -1).unwrap();
        ours.queue_message(&Umf::from_value(fields).unwrap()).unwrap();
        let both: Vec<String> = conn.lrange(q(&format!("bytes{n}"), "mqrecieved"), 0, -1).unwrap();
        assert_eq!(node_bytes.len(), 1);
        assert_eq!(both[0], node_bytes[0], "body {n}: ours vs Node's");
    }
}

#[test]
fn node_consumer_completes_what_we_enqueue() {
    let server = RedisServer::start();
    let ours = init(&server, "producer");
    let consumer = node(&server, "jobs");
    let sent: Vec<Umf> = bodies()
        .into_iter()
        .map(|body| ours.create_umf_message("jobs:/", body))
        .collect();
    for message in &sent {
        ours.queue_message(message).unwrap();
    }
    for message in &sent {
        let taken = consumer.call("getQueuedMessage", json!(["jobs"])).unwrap();
        assert_eq!(taken["mid"], message.mid.as_str(), "FIFO");
        assert_eq!(as_js(&taken["bdy"]), as_js(&message.body));
        consumer.call("markQueueMessage", json!([taken, true, "done"])).unwrap();
    }
    assert_eq!(consumer.call("getQueuedMessage", json!(["jobs"])).unwrap(), Value::Null);
    let stats = ours.queue_stats("jobs").unwrap();
    assert_eq!(
        (stats.waiting, stats.in_progress, stats.incomplete),
        (0, 0, 0),
        "Node's LREM found every item we wrote"
    );
}

#[test]
fn node_marks_incomplete_and_we_redrive() {
    let server = RedisServer::start();
    let ours = init(&server, "producer");
    let consumer = node(&server, "jobs");
    let message = ours.create_umf_message("jobs:/", json!({"task": "resize", "size": 1.50}));
    ours.queue_message(&message).unwrap();
    let taken = consumer.call("getQueuedMessage", json!(["jobs"])).unwrap();
    let length = consumer
        .call("markQueueMessage", json!([taken, false, "failed it"]))
        .unwrap();
    assert_eq!(length, json!(1));
    let stats = ours.queue_stats("jobs").unwrap();
    assert_eq!((stats.waiting, stats.in_progress, stats.incomplete), (0, 0, 1));
    let incomplete: Vec<String> = raw(&server).lrange(q("jobs", "mqincomplete"), 0, -1).unwrap();
    let item: Value = serde_json::from_str(&incomplete[0]).unwrap();
    assert_eq!(
        item["bdy"],
        json!({"task": "resize", "size": 1.5, "reason": "failed it"})
    );
    assert_eq!(item["mid"], message.mid.as_str());

    // Our redrive puts it back; our worker completes it.
    assert_eq!(ours.redrive_dead_letters("jobs").unwrap(), 1);
    let (tx, rx) = unbounded();
    let _worker = ours
        .queue_worker_with("jobs", 1, options(1000), move |m: &QueuedMessage| {
            tx.send(m.message.body.clone()).unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        json!({"task": "resize", "size": 1.5, "reason": "failed it"})
    );
    wait_for(WAIT, || {
        let s = ours.queue_stats("jobs").ok()?;
        (s.waiting + s.in_progress + s.incomplete == 0).then_some(())
    })
    .expect("completed");
}

#[test]
fn we_mark_what_node_enqueues() {
    let server = RedisServer::start();
    let producer = node(&server, "node-producer");
    let ours = init(&server, "someone");
    for body in bodies() {
        producer
            .call(
                "queueMessage",
                json!([{"to": "jobs:/", "from": "node-producer:/", "body": body}]),
            )
            .unwrap();
    }
    let mut marked = 0;
    while let Some(taken) = ours.get_queued_message("jobs").unwrap() {
        assert!(ours.mark_queue_message(&taken, marked % 2 == 0, Some("odd")).unwrap());
        marked += 1;
    }
    assert_eq!(marked, AWKWARD_BODIES.len());
    let stats = ours.queue_stats("jobs").unwrap();
    assert_eq!((stats.waiting, stats.in_progress, stats.incomplete), (0, 0, 3));
}

#[test]
fn a_node_consumer_keeps_its_message_past_the_visibility_timeout() {
    let server = RedisServer::start();
    let ours = init(&server, "producer");
    let consumer = node(&server, "jobs");
    ours.queue_message(&ours.create_umf_message("jobs:/", json!({"slow": true})))
        .unwrap();
    let taken = consumer.call("getQueuedMessage", json!(["jobs"])).unwrap();
    assert_eq!(taken["bdy"], json!({"slow": true}));

    // Our workers (two processes' worth) run their reapers meanwhile.
    let (tx, rx) = unbounded();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let tx = tx.clone();
            ours.queue_worker_with("jobs", 2, options(300), move |m: &QueuedMessage| {
                tx.send(m.message.body.clone()).unwrap();
                Ok(())
            })
            .unwrap()
        })
        .collect();
    // Five visibility timeouts' worth of real reaper passes (the workers take
    // turns, one pass per eighth of the timeout at most): each one would
    // have put the message back had it taken it for a dead consumer's.
    let passes = || workers.iter().map(|w| w.stats().reaper_passes).sum::<u64>();
    let target = passes() + 5 * 8 + 1;
    wait_for(Duration::from_secs(60), || (passes() >= target).then_some(()))
        .unwrap_or_else(|| panic!("{} of {target} reaper passes within 60 s", passes()));
    assert!(workers.iter().all(|w| w.stats().requeued == 0));
    let in_progress: Vec<String> = raw(&server).lrange(q("jobs", "mqinprogress"), 0, -1).unwrap();
    assert_eq!(in_progress.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&in_progress[0]).unwrap()["bdy"],
        json!({"slow": true})
    );
    assert!(workers.iter().all(|w| w.stats().taken == 0));
    assert!(rx.try_recv().is_err(), "our workers took the Node consumer's message");

    // Meanwhile new messages flow to our workers as usual.
    ours.queue_message(&ours.create_umf_message("jobs:/", json!({"fast": true})))
        .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), json!({"fast": true}));

    consumer.call("markQueueMessage", json!([taken, true, null])).unwrap();
    wait_for(WAIT, || {
        let s = ours.queue_stats("jobs").ok()?;
        (s.waiting + s.in_progress == 0).then_some(())
    })
    .expect("the Node consumer's mark emptied mqinprogress");
}

#[test]
fn delivery_counts_of_messages_node_completed_are_forgotten() {
    let server = RedisServer::start();
    let ours = init(&server, "producer");
    let counters = || -> usize { raw(&server).hlen(q("jobs", "mqdeliveries")).unwrap() };
    for name in ["a", "b"] {
        ours.queue_message(&ours.create_umf_message("jobs:/", json!({"name": name})))
            .unwrap();
    }
    // Both fail here once: each gets a delivery counter.
    let (failed_tx, failed_rx) = unbounded();
    let failing = ours
        .queue_worker_with(
            "jobs",
            1,
            options(2000).with_max_deliveries(1000),
            move |m: &QueuedMessage| {
                failed_tx.send(m.message.body["name"].clone()).unwrap();
                Err("not yet".into())
            },
        )
        .unwrap();
    wait_for(WAIT, || (counters() == 2).then_some(())).expect("two counters");
    failing.stop();
    drop(failed_rx);

    // A Node consumer completes one of them: its counter is left behind.
    let consumer = node(&server, "jobs");
    let taken = consumer.call("getQueuedMessage", json!(["jobs"])).unwrap();
    consumer.call("markQueueMessage", json!([taken, true, null])).unwrap();
    let other = if taken["bdy"]["name"] == "a" { "b" } else { "a" };
    assert_eq!(counters(), 2);

    // The next keeper step forgets the stale counter and keeps the live one:
    // the other message comes back as a repeated delivery.
    let (tx, rx) = unbounded();
    let (release_tx, release_rx) = unbounded::<()>();
    let _worker = ours
        .queue_worker_with(
            "jobs",
            1,
            options(400).with_max_deliveries(1000),
            move |m: &QueuedMessage| {
                tx.send((m.message.body["name"].clone(), m.delivery_count())).unwrap();
                // Held past every wait below: the live counter stays live.
                let _ = release_rx.recv_timeout(WAIT * 3);
                Ok(())
            },
        )
        .unwrap();
    let (name, delivery) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(name, other);
    assert!(delivery >= 2, "the live message's count was kept: delivery {delivery}");
    wait_for(WAIT, || (counters() == 1).then_some(())).expect("the stale counter is pruned");
    release_tx.send(()).unwrap();
    wait_for(WAIT, || (counters() == 0).then_some(())).expect("completing forgets the last one");
}
