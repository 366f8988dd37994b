//! Service queues against a private redis-server: Node-compatible
//! queue/take/mark, blocking takes, workers with retries and dead letters,
//! statistics, redrive, shutdown, Redis restarts, and at-least-once delivery
//! while consumer processes are killed.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{init, raw, wait_for};
use crossbeam_channel::unbounded;
use hydra::umf::INVALID_UMF_REASON;
use hydra::{Error, Hydra, QueueOptions, QueueWorker, QueuedMessage, Umf};
use hydra_testkit::RedisServer;
use redis::Commands;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn q(svc: &str, list: &str) -> String {
    format!("hydra:service:{svc}:{list}")
}

fn message(to: &str, body: Value) -> Umf {
    Umf::new(to, "tester:/", body)
}

fn fast(vt_ms: u64, max_deliveries: u32) -> QueueOptions {
    QueueOptions::new()
        .with_visibility_timeout(Duration::from_millis(vt_ms))
        .with_max_deliveries(max_deliveries)
}

// Workers and messages move between threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<hydra::QueueWorker>();
    assert_send_sync::<QueuedMessage>();
    assert_send_sync::<hydra::QueueStats>();
};

#[test]
fn queue_message_refuses_invalid_messages_like_node() {
    let server = RedisServer::start();
    let hydra = init(&server, "producer");
    for bad in [
        Umf::new("jobs:/", "", json!({"a": 1})),
        Umf::new("", "me:/", json!({"a": 1})),
        Umf::new("jobs:/", "me:/", Value::Null),
        Umf::new("jobs:/", "me:/", json!("")),
    ] {
        let err = hydra.queue_message(&bad).unwrap_err();
        assert!(
            matches!(&err, Error::BadRequest(r) if r == INVALID_UMF_REASON),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 400);
    }
    let err = hydra.queue_message(&message("jobs", json!({"a": 1}))).unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(r) if r == "route field has invalid number of routable segments"),
        "{err:?}"
    );
    let keys: Vec<String> = raw(&server).keys("*").unwrap();
    assert!(keys.is_empty(), "nothing written: {keys:?}");
}

#[test]
fn queue_message_writes_the_short_form_javascript_would_print() {
    let server = RedisServer::start();
    let hydra = init(&server, "producer");
    let mut m = Umf::parse(
        r#"{"to":"jobs:/work","from":"producer:/","mid":"m-1","timestamp":"2026-01-02T03:04:05.006Z",
            "type":"t","body":{"n":1.50,"big":123456789012345678901234567890,"2":"index","s":"é\u0007/"}}"#,
    )
    .unwrap();
    m.headers = Some(json!({"x": 1e21}));
    hydra.queue_message(&m).unwrap();
    let items: Vec<String> = raw(&server).lrange(q("jobs", "mqrecieved"), 0, -1).unwrap();
    assert_eq!(
        items,
        vec![
            r#"{"to":"jobs:/work","frm":"producer:/","hdr":{"x":1e+21},"mid":"m-1","ts":"2026-01-02T03:04:05.006Z","typ":"t","ver":"UMF/1.4.6","bdy":{"2":"index","n":1.5,"big":1.2345678901234568e+29,"s":"é\u0007/"}}"#
        ]
    );
}

#[test]
fn take_is_fifo_and_marks_work_like_node() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let mut conn = raw(&server);
    assert!(hydra.get_queued_message("jobs").unwrap().is_none());
    for n in 0..3 {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
    }
    let first = hydra.get_queued_message("jobs").unwrap().unwrap();
    let second = hydra.get_queued_message("jobs").unwrap().unwrap();
    let third = hydra.get_queued_message("jobs").unwrap().unwrap();
    assert!(hydra.get_queued_message("jobs").unwrap().is_none());
    assert_eq!(
        [&first, &second, &third].map(|m| m.message.body["n"].as_i64().unwrap()),
        [0, 1, 2]
    );
    assert_eq!(first.queue(), "jobs");
    assert_eq!(first.delivery_count(), 1);
    let in_progress: Vec<String> = conn.lrange(q("jobs", "mqinprogress"), 0, -1).unwrap();
    assert_eq!(in_progress, vec![third.raw(), second.raw(), first.raw()]);

    assert!(hydra.mark_queue_message(&second, true, None).unwrap());
    assert!(!hydra.mark_queue_message(&second, true, None).unwrap(), "already gone");
    assert!(hydra.mark_queue_message(&first, false, Some("failed it")).unwrap());
    assert!(hydra.mark_queue_message(&third, false, None).unwrap());
    let in_progress: i64 = conn.llen(q("jobs", "mqinprogress")).unwrap();
    assert_eq!(in_progress, 0);
    let incomplete: Vec<String> = conn.lrange(q("jobs", "mqincomplete"), 0, -1).unwrap();
    let reasons: Vec<Value> = incomplete
        .iter()
        .map(|s| serde_json::from_str::<Value>(s).unwrap()["bdy"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![
            json!({"n": 0, "reason": "failed it"}),
            json!({"n": 2, "reason": "reason not provided"})
        ]
    );
    // The rest of the item is unchanged, in the same key order.
    assert_eq!(
        incomplete[0],
        first
            .raw()
            .replace(r#""bdy":{"n":0}"#, r#""bdy":{"n":0,"reason":"failed it"}"#)
    );
}

#[test]
fn marking_uses_the_queue_the_message_came_from() {
    let server = RedisServer::start();
    let hydra = init(&server, "someone-else");
    hydra.queue_message(&message("jobs:/", json!({"a": 1}))).unwrap();
    let taken = hydra.get_queued_message("jobs").unwrap().unwrap();
    hydra.mark_queue_message(&taken, false, Some("no")).unwrap();
    let mut conn = raw(&server);
    assert_eq!(conn.llen::<_, i64>(q("jobs", "mqinprogress")).unwrap(), 0);
    assert_eq!(conn.llen::<_, i64>(q("jobs", "mqincomplete")).unwrap(), 1);
    assert!(!conn.exists::<_, bool>(q("someone-else", "mqincomplete")).unwrap());
}

#[test]
fn blocking_take_waits_for_a_message_or_times_out() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let started = Instant::now();
    assert!(
        hydra
            .get_queued_message_timeout("jobs", Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    let producer = {
        let hydra = hydra.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            hydra.queue_message(&message("jobs:/", json!({"late": true}))).unwrap();
        })
    };
    let started = Instant::now();
    // Longer than the command timeout (1 s): the wait must not be cut short.
    let got = hydra
        .get_queued_message_timeout("jobs", Duration::from_secs(3))
        .unwrap()
        .expect("the message that arrived during the wait");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(got.message.body, json!({"late": true}));
    producer.join().unwrap();
    assert_eq!(raw(&server).llen::<_, i64>(q("jobs", "mqinprogress")).unwrap(), 1);
    // The pooled connection is usable with its normal timeout afterwards.
    assert!(hydra.get_queued_message("jobs").unwrap().is_none());
}

#[test]
fn items_that_are_not_umf_are_moved_aside() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let mut conn = raw(&server);
    let _: () = conn.lpush(q("jobs", "mqrecieved"), "not json").unwrap();
    let _: () = conn.lpush(q("jobs", "mqrecieved"), "[1,2]").unwrap();
    let _: () = conn.lpush(q("jobs", "mqrecieved"), &b"\xff\xfe"[..]).unwrap();
    hydra.queue_message(&message("jobs:/", json!({"ok": 1}))).unwrap();
    let got = hydra.get_queued_message("jobs").unwrap().unwrap();
    assert_eq!(got.message.body, json!({"ok": 1}));
    let aside: Vec<Vec<u8>> = conn.lrange(q("jobs", "mqincomplete"), 0, -1).unwrap();
    assert_eq!(
        aside,
        vec![b"not json".to_vec(), b"[1,2]".to_vec(), b"\xff\xfe".to_vec()]
    );
    let in_progress: Vec<String> = conn.lrange(q("jobs", "mqinprogress"), 0, -1).unwrap();
    assert_eq!(in_progress, vec![got.raw()]);
}

#[test]
fn worker_runs_handlers_concurrently_and_completes_messages() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let barrier = Arc::new(Barrier::new(4));
    let (tx, rx) = unbounded();
    let worker = {
        let barrier = barrier.clone();
        hydra
            .queue_worker("jobs", 4, move |m: &QueuedMessage| {
                let n = m.message.body["n"].as_i64().unwrap();
                if n < 4 {
                    // The first four are only released when all four run at once.
                    barrier.wait();
                }
                tx.send((n, m.delivery_count(), std::thread::current().name().map(String::from)))
                    .unwrap();
                Ok(())
            })
            .unwrap()
    };
    for n in 0..20 {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
    }
    let mut seen: Vec<i64> = (0..20)
        .map(|_| {
            let (n, deliveries, thread) = rx.recv_timeout(WAIT).expect("every message handled");
            assert_eq!(deliveries, 1);
            assert!(thread.unwrap().starts_with("hydra-queue-"));
            n
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    let stats = wait_for(WAIT, || Some(worker.stats()).filter(|s| s.completed == 20)).expect("all marked");
    assert_eq!((stats.taken, stats.failed, stats.dead_lettered), (20, 0, 0));
    let queue = hydra.queue_stats("jobs").unwrap();
    assert_eq!((queue.waiting, queue.in_progress, queue.incomplete), (0, 0, 0));
    assert_eq!(queue.consumers, 4);
    hydra.shutdown().unwrap();
}

#[test]
fn poison_message_ends_in_the_dead_letter_list_after_n_attempts() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let attempts = attempts.clone();
        hydra
            .queue_worker_with("jobs", 2, fast(1000, 3), move |m: &QueuedMessage| {
                attempts.lock().unwrap().push(m.delivery_count());
                if m.message.body["kind"] == "panic" {
                    panic!("handler exploded");
                }
                Err(format!("cannot handle {}", m.message.body["kind"]).into())
            })
            .unwrap()
    };
    hydra
        .queue_message(&message("jobs:/", json!({"kind": "error"})))
        .unwrap();
    let stats = wait_for(WAIT, || Some(worker.stats()).filter(|s| s.dead_lettered == 1)).expect("dead-lettered");
    assert_eq!((stats.failed, stats.retried, stats.completed), (3, 2, 0));
    assert_eq!(*attempts.lock().unwrap(), vec![1, 2, 3]);
    let mut conn = raw(&server);
    let dead: Vec<String> = conn.lrange(q("jobs", "mqincomplete"), 0, -1).unwrap();
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(
        dead["bdy"],
        json!({"kind": "error", "reason": "cannot handle \"error\""})
    );

    // A panicking handler is treated the same way, and the threads live on.
    attempts.lock().unwrap().clear();
    hydra
        .queue_message(&message("jobs:/", json!({"kind": "panic"})))
        .unwrap();
    let stats = wait_for(WAIT, || Some(worker.stats()).filter(|s| s.dead_lettered == 2)).expect("dead-lettered");
    assert_eq!((stats.failed, stats.panicked), (6, 3));
    let dead: Vec<String> = conn.lrange(q("jobs", "mqincomplete"), 1, 1).unwrap();
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(dead["bdy"]["reason"], "handler panicked: handler exploded");
    let queue = hydra.queue_stats("jobs").unwrap();
    assert_eq!((queue.waiting, queue.in_progress, queue.incomplete), (0, 0, 2));
    let deliveries: i64 = conn.hlen(q("jobs", "mqdeliveries")).unwrap();
    assert_eq!(deliveries, 0, "counts of dead letters are forgotten");
}

#[test]
fn redrive_puts_dead_letters_back_in_order() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    for n in 0..3 {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
        let m = hydra.get_queued_message("jobs").unwrap().unwrap();
        hydra.mark_queue_message(&m, false, Some("broken")).unwrap();
    }
    hydra.queue_message(&message("jobs:/", json!({"n": "new"}))).unwrap();
    assert_eq!(hydra.queue_stats("jobs").unwrap().incomplete, 3);
    assert_eq!(hydra.redrive_dead_letters("jobs").unwrap(), 3);
    assert_eq!(hydra.redrive_dead_letters("jobs").unwrap(), 0);
    let order: Vec<Value> = std::iter::from_fn(|| hydra.get_queued_message("jobs").unwrap())
        .map(|m| m.message.body)
        .collect();
    assert_eq!(
        order,
        vec![
            json!({"n": "new"}),
            json!({"n": 0, "reason": "broken"}),
            json!({"n": 1, "reason": "broken"}),
            json!({"n": 2, "reason": "broken"}),
        ]
    );
}

#[test]
fn peek_shows_the_next_messages_in_take_order_and_leaves_them() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    assert!(hydra.peek_queue("jobs", 10).unwrap().is_empty());
    for n in 0..5 {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
    }
    let mut conn = raw(&server);
    let _: () = conn.lpush(q("jobs", "mqrecieved"), "not json").unwrap();
    let bodies = |peeked: &[hydra::WaitingMessage]| -> Vec<Value> {
        peeked
            .iter()
            .map(|w| w.message.as_ref().map_or(Value::Null, |m| m.body.clone()))
            .collect()
    };
    let first_three = hydra.peek_queue("jobs", 3).unwrap();
    assert_eq!(
        bodies(&first_three),
        vec![json!({"n": 0}), json!({"n": 1}), json!({"n": 2})]
    );
    assert_eq!(first_three[0].raw, hydra.peek_queue("jobs", 1).unwrap()[0].raw);
    assert!(first_three.iter().all(|w| w.failed_deliveries == 0));
    // More than there are: all of them, the item that is not UMF last.
    let all = hydra.peek_queue("jobs", 100).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].raw, "not json");
    assert_eq!(all[5].message, None);
    assert!(hydra.peek_queue("jobs", 0).unwrap().is_empty());
    // Nothing moved: the takes come in the order peek showed.
    assert_eq!(hydra.queue_stats("jobs").unwrap().waiting, 6);
    for expected in &bodies(&all)[..5] {
        let taken = hydra.get_queued_message("jobs").unwrap().unwrap();
        assert_eq!(&taken.message.body, expected);
    }

    // A message a worker failed waits again (at the back of the line) with
    // its failed delivery; the worker holds the next one meanwhile.
    let (holding_tx, holding_rx) = unbounded();
    let (go_tx, go_rx) = unbounded::<()>();
    let failed_once = Arc::new(AtomicU32::new(0));
    let worker = hydra
        .queue_worker_with("retries", 1, fast(60_000, 5), move |m: &QueuedMessage| {
            if m.message.body["r"] == 1 && failed_once.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err("broken".into());
            }
            if m.message.body["r"] == 2 {
                holding_tx.send(()).unwrap();
                let _ = go_rx.recv_timeout(WAIT);
            }
            Ok(())
        })
        .unwrap();
    hydra.queue_message(&message("retries:/", json!({"r": 1}))).unwrap();
    hydra.queue_message(&message("retries:/", json!({"r": 2}))).unwrap();
    holding_rx
        .recv_timeout(WAIT)
        .expect("the worker took the second message");
    let peeked = hydra.peek_queue("retries", 10).unwrap();
    go_tx.send(()).unwrap();
    worker.stop();
    assert_eq!(peeked.len(), 1, "{peeked:?}");
    assert_eq!(peeked[0].message.as_ref().unwrap().body, json!({"r": 1}));
    assert_eq!(peeked[0].failed_deliveries, 1);
}

#[test]
fn queue_stats_reports_lengths_and_the_oldest_waiting_age() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let empty = hydra.queue_stats("jobs").unwrap();
    assert_eq!(
        (empty.waiting, empty.in_progress, empty.incomplete, empty.consumers),
        (0, 0, 0, 0)
    );
    assert_eq!(empty.oldest_waiting_age, None);
    for n in 0..4 {
        let mut m = message("jobs:/", json!({"n": n}));
        if n == 2 {
            m.timestamp = hydra_iso(std::time::SystemTime::now() - Duration::from_secs(30));
        }
        hydra.queue_message(&m).unwrap();
    }
    let taken = hydra.get_queued_message("jobs").unwrap().unwrap();
    hydra.mark_queue_message(&taken, false, None).unwrap();
    hydra.get_queued_message("jobs").unwrap().unwrap();
    // Waiting: 3, then 2 (next to be taken, 30 s old).
    let stats = hydra.queue_stats("jobs").unwrap();
    assert_eq!((stats.waiting, stats.in_progress, stats.incomplete), (2, 1, 1));
    let age = stats.oldest_waiting_age.unwrap();
    assert!(
        age >= Duration::from_millis(29_000) && age < Duration::from_secs(40),
        "{age:?}"
    );
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["oldest_waiting_ms"].as_u64().unwrap() >= 29_000, "{json}");
}

/// Waits until `workers` together have run `passes` more reaper passes than
/// now. The passes of one queue are at least a reap interval (an eighth of
/// the visibility timeout) apart, as the reaper lock lasts that long, so they
/// span at least `passes - 1` intervals: a check made afterwards cannot pass
/// just because no reaper ran.
fn wait_for_reaper_passes(workers: &[&QueueWorker], passes: u64) {
    let total = || workers.iter().map(|w| w.stats().reaper_passes).sum::<u64>();
    let target = total() + passes;
    let deadline = Duration::from_secs(60);
    wait_for(deadline, || (total() >= target).then_some(()))
        .unwrap_or_else(|| panic!("{} of {target} reaper passes within {deadline:?}", total()));
}

/// Counts the reaper passes of every consumer of queue `svc`, in this process
/// or not, as Redis announces them: each pass sets the queue's reaper lock
/// (`SET NX PX`), a keyspace event.
struct ReaperPassesSeenByRedis {
    conn: redis::Connection,
}

impl ReaperPassesSeenByRedis {
    fn subscribe(server: &RedisServer, svc: &str) -> ReaperPassesSeenByRedis {
        let mut conn = raw(server);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg("K$")
            .query(&mut conn)
            .unwrap();
        let channel = format!("__keyspace@15__:{}", q(svc, "mqreaper"));
        let _: () = redis::cmd("SUBSCRIBE").arg(&channel).query(&mut conn).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        ReaperPassesSeenByRedis { conn }
    }

    /// Waits for `passes` more passes (each at most `WAIT` after the last).
    fn wait(&mut self, passes: usize) {
        let mut pubsub = self.conn.as_pubsub();
        let mut seen = 0;
        while seen < passes {
            let event = pubsub
                .get_message()
                .unwrap_or_else(|e| panic!("{seen} of {passes} reaper passes: {e}"));
            if event.get_payload::<String>().unwrap() == "set" {
                seen += 1;
            }
        }
    }
}

fn hydra_iso(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[test]
fn shutdown_stops_workers_promptly_and_deregisters_them() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let handled = Arc::new(AtomicUsize::new(0));
    // The first three messages are held together, so by three different
    // threads: the worker's threads, whose thread IDs are noted.
    let (busy_tx, busy) = unbounded();
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let worker = {
        let handled = handled.clone();
        hydra
            .queue_worker("jobs", 3, move |_: &QueuedMessage| {
                if handled.fetch_add(1, Ordering::SeqCst) < 3 {
                    busy_tx.send(std::fs::read_link("/proc/thread-self").unwrap()).unwrap();
                    let _ = released.recv_timeout(WAIT);
                }
                Ok(())
            })
            .unwrap()
    };
    assert_eq!(hydra.queue_stats("jobs").unwrap().consumers, 3);
    for n in 0..3 {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
    }
    // "<pid>/task/<tid>", relative to /proc.
    let mut threads: Vec<std::path::PathBuf> = (0..3)
        .map(|_| Path::new("/proc").join(busy.recv_timeout(WAIT).expect("three messages taken")))
        .collect();
    drop(release);
    threads.sort();
    threads.dedup();
    assert_eq!(threads.len(), 3, "{threads:?}");
    assert!(threads.iter().all(|t| t.exists()), "{threads:?}");
    wait_for(WAIT, || (worker.stats().completed == 3).then_some(())).expect("three completed");
    // Threads may or may not have started their blocking waits yet: either
    // way, shutdown must not wait for a wait to time out (1 s).
    let started = Instant::now();
    hydra.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "blocked takes were interrupted: {:?}",
        started.elapsed()
    );
    let mut conn = raw(&server);
    assert!(!conn.exists::<_, bool>(q("jobs", "mqconsumers")).unwrap());
    // Every worker thread has ended, so none can take the next message.
    let running: Vec<_> = threads.iter().filter(|t| t.exists()).collect();
    assert!(running.is_empty(), "worker threads still running: {running:?}");
    let other = init(&server, "producer");
    other.queue_message(&message("jobs:/", json!({}))).unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 3);
    assert_eq!(other.queue_stats("jobs").unwrap().waiting, 1);
    worker.stop(); // idempotent
    let err = hydra.queue_worker("jobs", 1, |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err:?}");
}

#[test]
fn worker_options_are_checked() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    for (concurrency, options) in [
        (0, QueueOptions::new()),
        (1000, QueueOptions::new()),
        (1, fast(10, 5)),
        (1, fast(1000, 0)),
    ] {
        let err = hydra
            .queue_worker_with("jobs", concurrency, options, |_| Ok(()))
            .unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
    }
    assert!(matches!(
        hydra.queue_worker("a:b", 1, |_| Ok(())).unwrap_err(),
        Error::BadRequest(_)
    ));
}

#[test]
fn messages_taken_without_a_lease_are_never_reaped() {
    // What Node's getQueuedMessage (and ours) leaves in mqinprogress belongs
    // to a consumer the reaper cannot see: it must stay, however long.
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    hydra.queue_message(&message("jobs:/", json!({"held": true}))).unwrap();
    let held = hydra.get_queued_message("jobs").unwrap().unwrap();
    let (tx, rx) = unbounded();
    let worker = hydra
        .queue_worker_with("jobs", 2, fast(200, 5), move |m: &QueuedMessage| {
            tx.send(m.message.body.clone()).unwrap();
            Ok(())
        })
        .unwrap();
    // Six visibility timeouts' worth of real reaper passes: each one would
    // have put the held message back had it taken it for a dead consumer's.
    wait_for_reaper_passes(&[&worker], 6 * 8 + 1);
    assert_eq!(worker.stats().requeued, 0, "held message was put back");
    let in_progress: Vec<String> = raw(&server).lrange(q("jobs", "mqinprogress"), 0, -1).unwrap();
    assert_eq!(in_progress, vec![held.raw()]);
    hydra.queue_message(&message("jobs:/", json!({"fresh": true}))).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), json!({"fresh": true}));
    assert_eq!(worker.stats().taken, 1, "held message was taken");
    assert!(hydra.mark_queue_message(&held, true, None).unwrap());
}

#[test]
fn workers_resume_after_a_redis_restart() {
    common::init_logging();
    let mut server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let (tx, rx) = unbounded();
    let worker = hydra
        .queue_worker_with("jobs", 2, fast(1000, 5), move |m: &QueuedMessage| {
            tx.send(m.message.body.clone()).unwrap();
            Ok(())
        })
        .unwrap();
    hydra.queue_message(&message("jobs:/", json!({"before": 1}))).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), json!({"before": 1}));
    // Both worker threads waiting in BLMOVE again (as Redis sees them), so the
    // restart cuts blocked takes.
    let mut conn = raw(&server);
    wait_for(WAIT, || {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).ok()?;
        let blocked = clients
            .lines()
            .filter(|c| c.contains(" cmd=blmove ") && c.split(' ').any(|f| f.starts_with("flags=") && f.contains('b')))
            .count();
        (blocked == 2).then_some(())
    })
    .expect("both worker threads blocked in BLMOVE");
    drop(conn);
    server.restart(); // empty, same port
    let restarted = Instant::now();
    // Enqueue through a fresh handle so only the worker has to recover.
    let producer = init(&server, "producer");
    producer.queue_message(&message("jobs:/", json!({"after": 1}))).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), json!({"after": 1}));
    eprintln!("worker resumed {:?} after the restart", restarted.elapsed());
    // The keeper registers the slots again, so the worker is visible.
    wait_for(WAIT, || {
        (producer.queue_stats("jobs").ok()?.consumers == 2).then_some(())
    })
    .expect("slots registered again");
    wait_for(WAIT, || (worker.stats().completed == 2).then_some(())).expect("both completed");
    assert!(worker.stats().redis_errors >= 1);
    hydra.shutdown().unwrap();
}

#[test]
fn new_keys_do_not_match_node_read_globs() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    // A handler that holds its message, so the slot lists exist.
    let (started_tx, started) = unbounded();
    let (release, released) = unbounded::<()>();
    let _worker = hydra
        .queue_worker_with("jobs", 2, fast(1000, 5), move |_: &QueuedMessage| {
            started_tx.send(()).unwrap();
            let _ = released.recv_timeout(WAIT);
            Ok(())
        })
        .unwrap();
    hydra.queue_message(&message("jobs:/", json!({"a": 1}))).unwrap();
    hydra.queue_message(&message("jobs:/", json!({"a": 2}))).unwrap();
    hydra.queue_message(&message("jobs:/", json!({"a": 3}))).unwrap();
    started.recv_timeout(WAIT).unwrap();
    started.recv_timeout(WAIT).unwrap();
    let mut conn = raw(&server);
    let all: Vec<String> = conn.keys("*").unwrap();
    assert!(all.iter().any(|k| k.contains(":mqclaimed:")), "{all:?}");
    assert!(all.iter().any(|k| k.ends_with(":mqconsumers")), "{all:?}");
    for glob in [
        "*:service",
        "*:routes",
        "*:jobs:*:presence",
        "*:jobs:*:health",
        "*:jobs:*:health:log",
    ] {
        let hits: Vec<String> = conn.keys(glob).unwrap();
        assert!(hits.is_empty(), "{glob} matches {hits:?}");
    }
    drop(release);
}

/// Runs `queue_consumer_child` as a separate process.
struct ChildConsumer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildConsumer {
    fn spawn(server: &RedisServer, mode: &str) -> ChildConsumer {
        ChildConsumer::spawn_with(server, mode, 1000)
    }

    fn spawn_with(server: &RedisServer, mode: &str, max_deliveries: u32) -> ChildConsumer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "queue_consumer_child",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("HYDRA_TEST_QUEUE_CHILD_URL", server.url(15))
            .env("HYDRA_TEST_QUEUE_CHILD_MODE", mode)
            .env("HYDRA_TEST_QUEUE_CHILD_MAX", max_deliveries.to_string())
            .stdin(Stdio::piped())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness prints "test queue_consumer_child ... " unterminated.
                for word in ["ready", "took"] {
                    if let Some((_, rest)) = line.split_once(&format!("{word} ")) {
                        let _ = tx.send(format!("{word} {}", rest.trim()));
                    }
                }
            }
        });
        let consumer = ChildConsumer {
            stdin: child.stdin.take(),
            child,
            lines,
        };
        consumer.expect("ready");
        consumer
    }

    fn expect(&self, word: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("child never said {word}"));
            if let Some(rest) = line.strip_prefix(&format!("{word} ")) {
                return rest.to_string();
            }
        }
    }

    /// SIGKILL: no cleanup runs.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Closing stdin asks the child to shut down cleanly.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "child did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Re-run of this test binary as a consumer process (see `ChildConsumer`).
/// Visibility timeout 1 s, delivery limit from the parent. Modes: `hang`
/// takes one message, prints `took <mid>` and holds it until
/// killed; `work` counts every message it handles in the hash
/// `test:processed` (field = body.n), taking 5 ms each on 2 threads.
/// Ignored so it never counts as a test of its own.
#[test]
#[ignore = "child process of the queue crash tests"]
fn queue_consumer_child() {
    let Ok(url) = std::env::var("HYDRA_TEST_QUEUE_CHILD_URL") else {
        return;
    };
    hydra_testkit::exit_when_stdin_closes();
    let mode = std::env::var("HYDRA_TEST_QUEUE_CHILD_MODE").unwrap();
    let config = hydra::Config::builder()
        .service_name("queue-child")
        .redis_url(&url)
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    let max = std::env::var("HYDRA_TEST_QUEUE_CHILD_MAX").unwrap().parse().unwrap();
    let options = fast(1000, max);
    let worker = if mode == "hang" {
        hydra
            .queue_worker_with("jobs", 1, options, |m: &QueuedMessage| {
                println!("took {}", m.message.mid);
                std::thread::sleep(Duration::from_secs(3600));
                Ok(())
            })
            .unwrap()
    } else {
        let counter = Mutex::new(redis::Client::open(url.as_str()).unwrap().get_connection().unwrap());
        hydra
            .queue_worker_with("jobs", 2, options, move |m: &QueuedMessage| {
                let n = m.message.body["n"].as_u64().ok_or("no n")?;
                counter.lock().unwrap().hincr::<_, _, _, ()>("test:processed", n, 1)?;
                std::thread::sleep(Duration::from_millis(5));
                Ok(())
            })
            .unwrap()
    };
    println!("ready {}", worker.consumer_id());
    // Until the parent closes stdin (or kills us).
    let _ = std::io::stdin().lines().count();
    hydra.shutdown().unwrap();
}

#[test]
fn a_killed_consumers_message_is_redelivered_after_the_visibility_timeout() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let child = ChildConsumer::spawn(&server, "hang");
    let sent = message("jobs:/", json!({"job": 1}));
    hydra.queue_message(&sent).unwrap();
    assert_eq!(child.expect("took"), sent.mid);
    let mut passes = ReaperPassesSeenByRedis::subscribe(&server, "jobs");
    let (tx, rx) = unbounded();
    let worker = hydra
        .queue_worker_with("jobs", 1, fast(1000, 5), move |m: &QueuedMessage| {
            tx.send((Instant::now(), m.message.mid.clone(), m.delivery_count()))
                .unwrap();
            Ok(())
        })
        .unwrap();
    // Reaper passes (ours or the child's) spanning 1.5 s (12 reap intervals)
    // since the child took the message: the last ones ran after its lease
    // would have run out, had the child not renewed it.
    passes.wait(13);
    let held: Vec<String> = raw(&server).keys(q("jobs", "mqclaimed:*")).unwrap();
    let ours = format!("{}-", worker.consumer_id());
    let held: Vec<Vec<String>> = held
        .iter()
        .filter(|key| !key.contains(&ours))
        .map(|key| raw(&server).lrange(key, 0, -1).unwrap())
        .collect();
    let in_progress: Vec<String> = raw(&server).lrange(q("jobs", "mqinprogress"), 0, -1).unwrap();
    assert_eq!(held, vec![in_progress], "the live child still holds the message");
    assert!(rx.try_recv().is_err(), "taken from a live consumer");
    let killed = Instant::now();
    child.kill();
    let (at, mid, deliveries) = rx.recv_timeout(WAIT).expect("redelivered");
    let latency = at - killed;
    eprintln!("redelivered {latency:?} after the kill (visibility timeout 1 s)");
    assert_eq!((mid, deliveries), (sent.mid, 2));
    assert!(
        // A lease runs out 1 s after its last renewal (every 125 ms) and
        // reapers look every 125 ms: 0.875 to 1.125 s, plus slack for a busy
        // machine.
        latency >= Duration::from_millis(700) && latency <= Duration::from_millis(3500),
        "{latency:?}"
    );
    wait_for(WAIT, || {
        let s = hydra.queue_stats("jobs").ok()?;
        (s.waiting + s.in_progress == 0).then_some(())
    })
    .expect("completed");
}

#[test]
fn every_message_is_completed_while_consumers_are_killed() {
    const MESSAGES: u64 = 10_000;
    const CONSUMERS: usize = 4;
    let server = RedisServer::start();
    let hydra = init(&server, "producer");
    let mut conn = raw(&server);
    for n in 0..MESSAGES {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
    }
    let started = Instant::now();
    let mut consumers: Vec<Option<ChildConsumer>> = (0..CONSUMERS)
        .map(|_| Some(ChildConsumer::spawn(&server, "work")))
        .collect();
    let mut kills = 0;
    // Done when every message was processed and none is anywhere any more:
    // a copy may still sit in a killed consumer's slot lists (taken again
    // after it had been processed) until a reaper brings it back.
    let done = |conn: &mut redis::Connection| -> bool {
        let processed: u64 = conn.hlen("test:processed").unwrap();
        let stats = hydra.queue_stats("jobs").unwrap();
        let held: Vec<String> = conn.keys("hydra:service:jobs:mq*:*").unwrap();
        processed == MESSAGES && stats.waiting == 0 && stats.in_progress == 0 && held.is_empty()
    };
    while !done(&mut conn) {
        assert!(started.elapsed() < Duration::from_secs(90), "not done after 90 s");
        std::thread::sleep(Duration::from_secs(1));
        if done(&mut conn) {
            break;
        }
        let slot = kills % CONSUMERS;
        consumers[slot].take().unwrap().kill();
        kills += 1;
        consumers[slot] = Some(ChildConsumer::spawn(&server, "work"));
    }
    let elapsed = started.elapsed();
    for consumer in consumers.into_iter().flatten() {
        consumer.stop();
    }
    let processed: HashMap<u64, u64> = conn.hgetall("test:processed").unwrap();
    assert_eq!(processed.len() as u64, MESSAGES, "every message processed");
    assert!((0..MESSAGES).all(|n| processed.get(&n).is_some_and(|c| *c >= 1)));
    let duplicates: u64 = processed.values().map(|c| c - 1).sum();
    let stats = hydra.queue_stats("jobs").unwrap();
    assert_eq!((stats.waiting, stats.in_progress, stats.incomplete), (0, 0, 0));
    let leftovers: Vec<String> = conn.keys("hydra:service:jobs:mq*:*").unwrap();
    assert!(leftovers.is_empty(), "slot lists left: {leftovers:?}");
    let counts: i64 = conn.hlen(q("jobs", "mqdeliveries")).unwrap();
    eprintln!(
        "crash test: {MESSAGES} messages, {CONSUMERS} consumers, {kills} SIGKILLs in {elapsed:?}: \
         {duplicates} duplicate deliveries, {counts} delivery counters left"
    );
    assert!(kills >= 3, "the test must actually kill consumers ({kills})");
    assert_eq!(counts, 0, "completed messages forget their counts");
}

#[test]
fn delivery_count_survives_into_the_handler_after_retries() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let calls = Arc::new(AtomicU32::new(0));
    let (tx, rx) = unbounded();
    let _worker = {
        let calls = calls.clone();
        hydra
            .queue_worker_with("jobs", 1, fast(1000, 5), move |m: &QueuedMessage| {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err("transient".into());
                }
                tx.send(m.delivery_count()).unwrap();
                Ok(())
            })
            .unwrap()
    };
    hydra.queue_message(&message("jobs:/", json!({"x": 1}))).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 3);
    wait_for(WAIT, || {
        let count: i64 = raw(&server).hlen(q("jobs", "mqdeliveries")).ok()?;
        (count == 0).then_some(())
    })
    .expect("count forgotten on completion");
}

#[test]
fn a_message_whose_consumers_keep_dying_becomes_a_dead_letter() {
    // Deliveries lost with their consumer count too: after the limit the
    // message is dead-lettered without running the handler again.
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let first = ChildConsumer::spawn_with(&server, "hang", 2);
    let sent = message("jobs:/", json!({"crashes": "everyone"}));
    hydra.queue_message(&sent).unwrap();
    assert_eq!(first.expect("took"), sent.mid);
    let second = ChildConsumer::spawn_with(&server, "hang", 2);
    first.kill();
    // The second consumer's reaper puts it back and its thread takes it.
    assert_eq!(second.expect("took"), sent.mid);
    let (tx, rx) = unbounded();
    let worker = hydra
        .queue_worker_with("jobs", 1, fast(1000, 2), move |m: &QueuedMessage| {
            tx.send(m.message.mid.clone()).unwrap();
            Ok(())
        })
        .unwrap();
    second.kill();
    wait_for(WAIT, || (worker.stats().dead_lettered == 1).then_some(())).expect("dead-lettered");
    assert!(rx.try_recv().is_err(), "the handler must not run a third time");
    let dead: Vec<String> = raw(&server).lrange(q("jobs", "mqincomplete"), 0, -1).unwrap();
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(dead["mid"], sent.mid.as_str());
    assert!(
        dead["bdy"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("delivered 2 times without being completed"),
        "{dead}"
    );
    let stats = hydra.queue_stats("jobs").unwrap();
    assert_eq!((stats.waiting, stats.in_progress, stats.incomplete), (0, 0, 1));
}

#[test]
fn a_handler_can_stop_its_own_worker_without_stalling() {
    let server = RedisServer::start();
    let hydra = init(&server, "self-stopper");
    let worker_slot: Arc<std::sync::OnceLock<hydra::QueueWorker>> = Arc::new(std::sync::OnceLock::new());
    let (tx, rx) = unbounded();
    let slot = worker_slot.clone();
    let worker = hydra
        .queue_worker_with("jobs", 2, fast(1000, 5), move |_m: &QueuedMessage| {
            if let Some(worker) = slot.get() {
                let started = Instant::now();
                worker.stop();
                let _ = tx.send(started.elapsed());
            }
            Ok(())
        })
        .unwrap();
    assert!(worker_slot.set(worker).is_ok());
    hydra
        .queue_message(&hydra.create_umf_message("jobs:/", json!({"stop": true})))
        .unwrap();
    let took = rx.recv_timeout(Duration::from_secs(10)).expect("the handler ran");
    assert!(
        took < Duration::from_secs(2),
        "stopping from inside a handler took {took:?}"
    );
}

/// A TCP proxy to Redis that, once armed, passes the next request on to
/// Redis but closes the client's connection instead of returning the reply:
/// the command ran, and the client only sees its connection drop.
struct ReplyDropper {
    port: u16,
    armed: Arc<std::sync::atomic::AtomicBool>,
    dropped: crossbeam_channel::Receiver<()>,
}

impl ReplyDropper {
    fn start(redis_port: u16) -> ReplyDropper {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dropped_tx, dropped) = unbounded();
        let armed_for_proxy = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    return;
                };
                let (mut client_in, mut upstream_out) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n @ 1..) = client_in.read(&mut buf) {
                        if upstream_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = upstream_out.shutdown(Shutdown::Both);
                });
                let armed = armed_for_proxy.clone();
                let dropped_tx = dropped_tx.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n @ 1..) = upstream.read(&mut buf) {
                        if armed.swap(false, Ordering::SeqCst) {
                            let _ = dropped_tx.send(());
                            break;
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = upstream.shutdown(Shutdown::Both);
                });
            }
        });
        ReplyDropper { port, armed, dropped }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

/// A `jobs` handle that reaches Redis through a [`ReplyDropper`], with
/// messages `{"n": 0}` … `{"n": count - 1}` queued (which also leaves it a
/// pooled connection, the one a retry follows); the proxy is armed.
fn queued_behind_a_reply_dropper(count: u64) -> (RedisServer, ReplyDropper, Hydra) {
    let server = RedisServer::start();
    let proxy = ReplyDropper::start(server.port());
    let config = hydra::Config::builder()
        .service_name("jobs")
        .service_ip("127.0.0.1")
        .redis_url(&format!("redis://127.0.0.1:{}/15", proxy.port))
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    for n in 0..count {
        hydra.queue_message(&message("jobs:/", json!({"n": n}))).unwrap();
    }
    proxy.arm();
    (server, proxy, hydra)
}

#[test]
fn a_take_whose_reply_was_lost_is_not_repeated_on_retry() {
    let (server, proxy, hydra) = queued_behind_a_reply_dropper(3);
    let taken = hydra.get_queued_message("jobs").unwrap().expect("a message");
    proxy
        .dropped
        .recv_timeout(Duration::from_secs(5))
        .expect("the proxy dropped the reply");
    assert_eq!(taken.message.body["n"], 0, "the message the lost reply carried");
    let mut conn = raw(&server);
    let in_progress: Vec<String> = conn.lrange(q("jobs", "mqinprogress"), 0, -1).unwrap();
    assert_eq!(in_progress, vec![taken.raw()], "nothing stranded in mqinprogress");
    let waiting: i64 = conn.llen(q("jobs", "mqrecieved")).unwrap();
    assert_eq!(waiting, 2);
    // Marking works as usual, and the next takes go on in order.
    assert!(hydra.mark_queue_message(&taken, true, None).unwrap());
    let next = hydra.get_queued_message("jobs").unwrap().unwrap();
    assert_eq!(next.message.body["n"], 1);
}

#[test]
fn a_blocking_take_is_not_retried_after_a_dropped_connection() {
    let (server, _proxy, hydra) = queued_behind_a_reply_dropper(2);
    let err = hydra
        .get_queued_message_timeout("jobs", Duration::from_secs(2))
        .unwrap_err();
    assert!(matches!(err, Error::Redis(_)), "{err:?}");
    // One message moved (its reply lost), not a second one by a retry.
    let mut conn = raw(&server);
    let in_progress: i64 = conn.llen(q("jobs", "mqinprogress")).unwrap();
    let waiting: i64 = conn.llen(q("jobs", "mqrecieved")).unwrap();
    assert_eq!((in_progress, waiting), (1, 1));
}
