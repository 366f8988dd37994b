//! Messaging against a private redis-server: send, instance targeting,
//! broadcast, replies, request–reply under load, bad input, panicking and
//! saturated handlers, and a Redis restart.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{builder, collect, command_calls, echo, init, raw, received_numbers, register, wait_for};
use crossbeam_channel::{Receiver, Sender, unbounded};
use hydra::{Error, Hydra, Umf};
use hydra_testkit::RedisServer;
use redis::Commands;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn a_message_reaches_a_handler_intact() {
    let server = RedisServer::start();
    let receiver = register(&server, "receiver");
    let inbox = collect(&receiver);
    let sender = init(&server, "sender");
    let body = json!({"text": "héllo ✓", "n": [1, 2.5, 12345678901234567890u64], "nested": {"z": 1, "a": null}});
    let mut msg = sender.create_umf_message("receiver:/", body.clone());
    msg.headers = Some(json!({"x-trace": "abc"}));
    msg.message_type = Some("greeting".into());
    sender.send_message(&msg).unwrap();
    let got = inbox.recv_timeout(WAIT).unwrap();
    assert_eq!(got, msg, "the message arrives field for field");
    assert_eq!(got.body, body);
    let stats = wait_for(WAIT, || Some(receiver.message_stats()).filter(|s| s.handled == 1)).unwrap();
    assert_eq!(stats.received, 1);
    assert_eq!(stats.subscriptions, 1);
    assert_eq!(sender.message_stats().sent, 1);
}

#[test]
fn instance_targeting_and_unavailable_reasons() {
    let server = RedisServer::start();
    let first = register(&server, "multi");
    let second = register(&server, "multi");
    let inbox_first = collect(&first);
    let inbox_second = collect(&second);
    let sender = init(&server, "sender");
    for n in 0..20 {
        let to = format!("{}@multi:/", second.get_instance_id());
        sender
            .send_message(&sender.create_umf_message(&to, json!({"n": n})))
            .unwrap();
    }
    assert_eq!(received_numbers(&inbox_second, 20, WAIT), (0..20).collect::<Vec<_>>());
    // A marker sent to `first` after them: Redis delivers one publisher's
    // messages in order, so once the marker is handled, `first` has read
    // anything misrouted to it (and counted it as received).
    let marker = format!("{}@multi:/", first.get_instance_id());
    sender
        .send_message(&sender.create_umf_message(&marker, json!({"n": "marker"})))
        .unwrap();
    assert_eq!(inbox_first.recv_timeout(WAIT).unwrap().body, json!({"n": "marker"}));
    assert_eq!(
        first.message_stats().received,
        1,
        "a targeted message reached another instance"
    );

    // Untargeted messages go to one instance each, both get some.
    for n in 0..40 {
        sender
            .send_message(&sender.create_umf_message("multi:/", json!({"n": n})))
            .unwrap();
    }
    let mut counts = [0, 0];
    let deadline = Instant::now() + WAIT;
    while counts[0] + counts[1] < 40 && Instant::now() < deadline {
        if inbox_first.recv_timeout(Duration::from_millis(20)).is_ok() {
            counts[0] += 1;
        }
        if inbox_second.recv_timeout(Duration::from_millis(20)).is_ok() {
            counts[1] += 1;
        }
    }
    assert_eq!(counts[0] + counts[1], 40, "{counts:?}");
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "random choice never picked one instance: {counts:?}"
    );

    let err = sender
        .send_message(&sender.create_umf_message("nobody:/", json!({})))
        .unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable(_)));
    assert_eq!(err.to_string(), "Unavailable nobody instances");
    assert_eq!(err.http_status(), 503);
    let err = sender
        .send_message(&sender.create_umf_message("abc123@multi:/", json!({})))
        .unwrap_err();
    assert_eq!(err.to_string(), "Unavailable multi instance named abc123");
    let err = sender
        .send_message(&sender.create_umf_message("no-route", json!({})))
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
}

#[test]
fn broadcasts_reach_every_instance() {
    let server = RedisServer::start();
    let instances: Vec<Hydra> = (0..3).map(|_| register(&server, "fanout")).collect();
    let inboxes: Vec<Receiver<Umf>> = instances.iter().map(collect).collect();
    let sender = init(&server, "sender");
    sender
        .send_broadcast_message(&sender.create_umf_message("fanout:/", json!({"all": true})))
        .unwrap();
    for inbox in &inboxes {
        assert_eq!(inbox.recv_timeout(WAIT).unwrap().body, json!({"all": true}));
    }
    // hydra-router absent: quietly fine, as in Node. Anyone else absent: 503.
    sender
        .send_broadcast_message(&sender.create_umf_message("hydra-router:/refresh", json!({"action": "refresh"})))
        .unwrap();
    let err = sender
        .send_broadcast_message(&sender.create_umf_message("nobody:/", json!({})))
        .unwrap_err();
    assert_eq!(err.to_string(), "Unavailable nobody instances");
}

#[test]
fn request_reply_timeout_and_late_replies() {
    let server = RedisServer::start();
    let responder = register(&server, "echo");
    echo(&responder);
    let caller = register(&server, "caller");
    let reply = caller
        .request(&caller.create_umf_message("echo:/", json!({"q": 1})), WAIT)
        .unwrap();
    assert_eq!(reply.body, json!({"echo": {"q": 1}}));
    assert_eq!(reply.to, format!("{}@caller:/", caller.get_instance_id()));
    assert_eq!(reply.from, "echo:/");

    // A responder that answers too late: Timeout, then the late reply is
    // discarded and counted, never handed to the next request.
    let (release_tx, release_rx) = unbounded::<()>();
    let slow = register(&server, "slow");
    slow.on_message(move |h, msg| {
        if msg.body["wait"] == true {
            let _ = release_rx.recv_timeout(WAIT);
        }
        h.reply(&msg, json!({"answer": msg.body}))?;
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    let err = caller
        .request(
            &caller.create_umf_message("slow:/", json!({"wait": true})),
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    release_tx.send(()).unwrap();
    wait_for(WAIT, || Some(()).filter(|_| caller.message_stats().replies_late == 1)).expect("late reply counted");
    let reply = caller
        .request(&caller.create_umf_message("slow:/", json!({"wait": false})), WAIT)
        .unwrap();
    assert_eq!(reply.body, json!({"answer": {"wait": false}}));

    // Requests need a registered service; replies are addressed to it.
    let unregistered = init(&server, "loner");
    let err = unregistered
        .request(&unregistered.create_umf_message("echo:/", json!({})), WAIT)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)));
}

#[test]
fn ten_thousand_concurrent_requests_each_get_their_own_reply() {
    let server = RedisServer::start();
    let responders: Vec<Hydra> = (0..2)
        .map(|_| {
            let h = Hydra::init(builder(&server, "echo").message_queue_capacity(20_000).build().unwrap()).unwrap();
            h.register_service().unwrap();
            echo(&h);
            h
        })
        .collect();
    let caller = register(&server, "caller");
    let threads = 8;
    let per_thread = 1250;
    let barrier = Arc::new(Barrier::new(threads));
    let mismatches = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let caller = caller.clone();
            let barrier = barrier.clone();
            let mismatches = mismatches.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    let tag = format!("{t}-{i}");
                    let msg = caller.create_umf_message("echo:/", json!({ "tag": tag }));
                    let reply = caller.request(&msg, Duration::from_secs(20)).unwrap();
                    if reply.body != json!({"echo": {"tag": tag}}) || reply.rmid.as_deref() != Some(msg.mid.as_str()) {
                        mismatches.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(mismatches.load(Ordering::SeqCst), 0);
    let stats = caller.message_stats();
    assert_eq!(stats.replies_matched, 10_000);
    assert_eq!(stats.replies_late, 0);
    // A handler's `handled` is counted after it returns, so after its reply.
    let handled = || -> u64 { responders.iter().map(|r| r.message_stats().handled).sum() };
    wait_for(WAIT, || (handled() == 10_000).then_some(()));
    assert_eq!(handled(), 10_000);
}

/// The calling thread's kernel thread ID (Linux).
fn current_tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name().expect("a tid").to_string_lossy().into_owned()
}

/// Waits until thread `tid` of this process sleeps in the kernel (state `S`),
/// i.e. it has reached the blocking call it was about to make.
fn wait_until_sleeping(tid: &str) {
    let sleeping = wait_for(WAIT, || {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        (state == 'S').then_some(())
    });
    assert!(sleeping.is_some(), "thread {tid} never blocked");
}

#[test]
fn shutdown_wakes_a_thread_blocked_on_the_pull_receiver() {
    let server = RedisServer::start();
    let puller = register(&server, "puller");
    let inbox = puller.messages();
    let (tid_tx, tid_rx) = unbounded();
    let waiter = std::thread::spawn(move || {
        tid_tx.send(current_tid()).unwrap();
        inbox.recv_timeout(Duration::from_secs(30))
    });
    wait_until_sleeping(&tid_rx.recv_timeout(WAIT).unwrap());
    puller.shutdown().unwrap();
    // Before, the receiver stayed connected: the thread slept its 30 s and got Timeout.
    let woken = waiter.join().unwrap();
    assert_eq!(woken.unwrap_err(), crossbeam_channel::RecvTimeoutError::Disconnected);
    assert!(
        puller.messages().recv_timeout(WAIT).is_err(),
        "a receiver taken after shutdown is disconnected"
    );
}

#[test]
fn a_pull_receiver_gets_messages_when_no_handler_is_set() {
    let server = RedisServer::start();
    let puller = register(&server, "puller");
    let inbox = puller.messages();
    let sender = init(&server, "sender");
    sender
        .send_message(&sender.create_umf_message("puller:/", json!({"pulled": 1})))
        .unwrap();
    assert_eq!(inbox.recv_timeout(WAIT).unwrap().body, json!({"pulled": 1}));
}

#[test]
fn malformed_payloads_are_dropped_and_counted_on_both_channels() {
    common::init_logging();
    let server = RedisServer::start();
    let target = Hydra::init(builder(&server, "target").max_message_bytes(1024).build().unwrap()).unwrap();
    target.register_service().unwrap();
    let inbox = collect(&target);
    let mut conn = raw(&server);
    let service_channel = "hydra:service:mc:target".to_string();
    let instance_channel = format!("hydra:service:mc:target:{}", target.get_instance_id());
    let oversized = format!(
        r#"{{"to":"target:/","frm":"x:/","bdy":{{"pad":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let garbage: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1,2,3]".to_vec(),
        b"42".to_vec(),
        br#"{"to":"target:/"}"#.to_vec(),
        br#"{"to":5,"frm":"x:/","bdy":{}}"#.to_vec(),
        vec![0xff, 0xfe, b'{'],
        oversized.into_bytes(),
    ];
    for channel in [&service_channel, &instance_channel] {
        for payload in &garbage {
            let receivers: i64 = conn.publish(channel, payload.as_slice()).unwrap();
            assert_eq!(receivers, 1);
        }
    }
    // A valid message after the garbage still arrives, and nothing else did.
    let good = Umf::new("target:/", "x:/", json!({"ok": true}));
    let _: i64 = conn.publish(&instance_channel, good.to_short_json()).unwrap();
    assert_eq!(inbox.recv_timeout(WAIT).unwrap().body, json!({"ok": true}));
    // The valid message was read after all the garbage, so every payload has
    // been counted by now: 14 invalid of 15 leaves the one that was delivered.
    let stats = target.message_stats();
    assert_eq!(stats.invalid, 14);
    assert_eq!(stats.received, 15);
}

#[test]
fn a_panicking_or_failing_handler_does_not_kill_the_worker() {
    let server = RedisServer::start();
    let target = Hydra::init(builder(&server, "fragile").message_workers(1).build().unwrap()).unwrap();
    target.register_service().unwrap();
    let (tx, rx) = unbounded();
    target
        .on_message(move |_, msg| {
            match msg.body["do"].as_str() {
                Some("panic") => panic!("handler panics on purpose"),
                Some("fail") => return Err("handler fails on purpose".into()),
                _ => {}
            }
            tx.send(msg.body).unwrap();
            Ok(())
        })
        .unwrap();
    let sender = init(&server, "sender");
    for action in ["panic", "fail", "panic", "work"] {
        sender
            .send_message(&sender.create_umf_message("fragile:/", json!({"do": action})))
            .unwrap();
    }
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), json!({"do": "work"}));
    // `handled` is counted once the handler has returned, after it sent.
    let stats = wait_for(WAIT, || Some(target.message_stats()).filter(|s| s.handled == 1))
        .unwrap_or_else(|| target.message_stats());
    assert_eq!((stats.failed, stats.panicked, stats.handled), (3, 2, 1));
}

/// A service with one message worker whose handler blocks until released,
/// and a sender that has sent it `count` messages (the first one running).
fn blocked_service(server: &RedisServer, config: hydra::ConfigBuilder, count: usize) -> (Hydra, Sender<()>, Hydra) {
    let target = Hydra::init(config.message_workers(1).build().unwrap()).unwrap();
    target.register_service().unwrap();
    let (release_tx, release_rx) = unbounded::<()>();
    let (started_tx, started_rx) = unbounded::<()>();
    target
        .on_message(move |_, _| {
            let _ = started_tx.send(());
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
            Ok(())
        })
        .unwrap();
    let sender = init(server, "sender");
    let pad = "x".repeat(1000);
    sender
        .send_message(&sender.create_umf_message("busy:/", json!({"n": 0, "pad": pad})))
        .unwrap();
    started_rx.recv_timeout(WAIT).unwrap(); // the one worker is now busy
    for n in 1..count {
        sender
            .send_message(&sender.create_umf_message("busy:/", json!({"n": n, "pad": pad})))
            .unwrap();
    }
    (target, release_tx, sender)
}

#[test]
fn a_full_queue_stops_reading_and_loses_nothing() {
    let server = RedisServer::start();
    // About 1.5 KiB per message (payload + 512): two fit in 4 KiB.
    let config = builder(&server, "busy").max_queued_message_bytes(4096);
    let (target, release, _sender) = blocked_service(&server, config, 50);
    let paused = wait_for(WAIT, || Some(target.message_stats()).filter(|s| s.read_pauses >= 1))
        .unwrap_or_else(|| target.message_stats());
    assert!(paused.read_pauses >= 1, "the reader paused: {paused:?}");
    assert!(paused.received < 10, "the reader stopped reading: {paused:?}");
    for _ in 0..50 {
        release.send(()).unwrap();
    }
    let stats = wait_for(Duration::from_secs(20), || {
        Some(target.message_stats()).filter(|s| s.handled == 50)
    })
    .unwrap_or_else(|| target.message_stats());
    assert_eq!(
        (stats.received, stats.handled, stats.overflow),
        (50, 50, 0),
        "{stats:?}"
    );
}

#[test]
fn a_queue_that_stays_full_drops_and_counts_after_the_pause() {
    let server = RedisServer::start();
    let config = builder(&server, "busy").message_queue_capacity(2);
    let (target, release, _sender) = blocked_service(&server, config, 20);
    // The reader pauses for 5 s, then reads on and drops what does not fit.
    let stats = wait_for(Duration::from_secs(20), || {
        Some(target.message_stats()).filter(|s| s.received == 20 && s.overflow + 3 >= 20)
    })
    .unwrap_or_else(|| target.message_stats());
    assert_eq!(stats.overflow, 17, "1 running + 2 queued, the rest dropped: {stats:?}");
    assert_eq!(stats.read_pauses, 1, "{stats:?}");
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    let stats = wait_for(WAIT, || Some(target.message_stats()).filter(|s| s.handled == 3)).unwrap();
    assert_eq!(stats.handled, 3);
}

#[test]
fn up_to_message_workers_handlers_run_at_once_while_the_subscription_is_read() {
    let server = RedisServer::start();
    let target = Hydra::init(builder(&server, "busy").message_workers(3).build().unwrap()).unwrap();
    target.register_service().unwrap();
    let (release_tx, release_rx) = unbounded::<()>();
    let (started_tx, started_rx) = unbounded::<u64>();
    target
        .on_message(move |_, msg| {
            let _ = started_tx.send(msg.body["n"].as_u64().unwrap_or(u64::MAX));
            let _ = release_rx.recv_timeout(WAIT);
            Ok(())
        })
        .unwrap();
    let sender = init(&server, "sender");
    let send = |n: u64| {
        sender
            .send_message(&sender.create_umf_message("busy:/", json!({"n": n})))
            .unwrap()
    };
    for n in 0..3 {
        send(n);
    }
    for _ in 0..3 {
        started_rx.recv_timeout(WAIT).expect("three handlers run at once");
    }
    // Every worker is busy, yet the subscription is still read: the fourth
    // message is received and waits in the queue instead of starting.
    send(3);
    wait_for(WAIT, || Some(()).filter(|_| target.message_stats().received == 4)).expect("read while busy");
    assert!(
        started_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a fourth handler started with message_workers(3)"
    );
    release_tx.send(()).unwrap();
    assert_eq!(
        started_rx.recv_timeout(WAIT).unwrap(),
        3,
        "the queued message runs once a worker is free"
    );
    for _ in 0..3 {
        release_tx.send(()).unwrap();
    }
    let stats = wait_for(WAIT, || Some(target.message_stats()).filter(|s| s.handled == 4)).unwrap();
    assert_eq!((stats.overflow, stats.failed), (0, 0));
}

#[test]
fn a_handler_can_wait_for_a_reply_with_a_single_worker() {
    // The reply to the handler's own request must be read while the only
    // worker is busy in that handler.
    let server = RedisServer::start();
    let backend = register(&server, "backend");
    echo(&backend);
    let relay = Hydra::init(builder(&server, "relay").message_workers(1).build().unwrap()).unwrap();
    relay.register_service().unwrap();
    relay
        .on_message(|h, msg| {
            let answer = h.request(&h.create_umf_message("backend:/", msg.body.clone()), WAIT)?;
            h.reply(&msg, json!({"relayed": answer.body}))?;
            Ok(())
        })
        .unwrap();
    let caller = register(&server, "caller");
    for n in 0..20 {
        let reply = caller
            .request(&caller.create_umf_message("relay:/", json!({"n": n})), WAIT)
            .unwrap();
        assert_eq!(reply.body, json!({"relayed": {"echo": {"n": n}}}));
    }
    assert_eq!(relay.message_stats().failed, 0);
}

#[test]
fn messages_flow_again_after_a_redis_restart() {
    common::init_logging();
    let mut server = RedisServer::start();
    let target = register(&server, "survivor");
    let inbox = collect(&target);
    let sender = init(&server, "sender");
    sender
        .send_message(&sender.create_umf_message("survivor:/", json!({"before": true})))
        .unwrap();
    assert_eq!(inbox.recv_timeout(WAIT).unwrap().body, json!({"before": true}));

    server.restart();
    // Wait until the listener has resubscribed and the heartbeat re-registered.
    let mut conn = raw(&server);
    let channel = format!("hydra:service:mc:survivor:{}", target.get_instance_id());
    wait_for(Duration::from_secs(5), || {
        let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query::<Vec<(String, i64)>>(&mut conn)
            .ok()?
            .pop()?;
        let present: bool = conn
            .exists(format!("hydra:service:survivor:{}:presence", target.get_instance_id()))
            .ok()?;
        (subscribers == 1 && present).then_some(())
    })
    .expect("listener did not resubscribe within 5 s of Redis coming back");
    sender
        .send_message(&sender.create_umf_message("survivor:/", json!({"after": true})))
        .unwrap();
    assert_eq!(inbox.recv_timeout(WAIT).unwrap().body, json!({"after": true}));
}

#[test]
fn request_reply_under_load_recovers_from_a_redis_restart() {
    // Four callers keep requests in flight while Redis restarts under them:
    // failures are errors (never hangs, never a wrong reply), and afterwards
    // every thread of both sides works again.
    common::init_logging();
    let mut server = RedisServer::start();
    let responder = register(&server, "steady");
    echo(&responder);
    let caller = register(&server, "busy-caller");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, wrong) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (caller, stop, ok, wrong) = (caller.clone(), stop.clone(), ok.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let msg = caller.create_umf_message("steady:/", json!({"t": t, "n": n}));
                    match caller.request(&msg, Duration::from_millis(500)) {
                        Ok(reply) if reply.body == json!({"echo": {"t": t, "n": n}}) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {
                            wrong.fetch_add(1, Ordering::SeqCst);
                        }
                        // Redis is down: fast errors; back off a little.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    wait_for(WAIT, || (ok.load(Ordering::SeqCst) >= 200).then_some(())).expect("requests flow");
    server.restart();
    let after_restart = ok.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(10), || {
        (ok.load(Ordering::SeqCst) >= after_restart + 200).then_some(())
    })
    .expect("requests flow again after the restart");
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().expect("no caller thread panicked");
    }
    assert_eq!(wrong.load(Ordering::SeqCst), 0, "a reply reached the wrong request");
    assert!(caller.message_stats().subscriptions >= 2, "the caller resubscribed");
    assert!(
        responder.message_stats().subscriptions >= 2,
        "the responder resubscribed"
    );
    assert_eq!(responder.message_stats().panicked, 0);
}

#[test]
fn a_frozen_redis_is_detected_and_the_listener_recovers() {
    common::init_logging();
    let server = RedisServer::start();
    let target = register(&server, "patient");
    let inbox = collect(&target);
    let sender = init(&server, "sender");
    // Frozen long enough for the listener's quiet-line ping to time out.
    server.freeze();
    std::thread::sleep(Duration::from_secs(4));
    server.resume();
    let mut conn = raw(&server);
    let channel = format!("hydra:service:mc:patient:{}", target.get_instance_id());
    // The listener drops the frozen connection and subscribes on a new one.
    let mut sent = 0;
    let arrived = wait_for(Duration::from_secs(8), || {
        if target.message_stats().subscriptions < 2 {
            return None;
        }
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query(&mut conn).ok()?;
        (counts.first()?.1 >= 1).then_some(())?;
        sent += 1;
        sender
            .send_message(&sender.create_umf_message("patient:/", json!({"n": sent})))
            .ok()?;
        inbox.recv_timeout(Duration::from_millis(500)).ok()
    });
    assert!(
        arrived.is_some(),
        "no message arrived after Redis was frozen and resumed"
    );
    assert!(
        target.message_stats().subscriptions >= 2,
        "the frozen connection was never replaced"
    );
    assert!(target.is_registered());
}

#[test]
fn replies_go_to_via_when_set() {
    let server = RedisServer::start();
    let responder = register(&server, "echo");
    echo(&responder);
    let router = register(&server, "relay");
    let relay_inbox = collect(&router);
    let origin = register(&server, "origin");
    let origin_inbox = collect(&origin);
    let mut msg = origin.create_umf_message("echo:/", json!({"via": "test"}));
    msg.via = Some(format!("{}@relay:/", router.get_instance_id()));
    msg.forward = Some("someone@elsewhere:/".into());
    origin.send_message(&msg).unwrap();
    let reply = relay_inbox.recv_timeout(WAIT).unwrap();
    assert_eq!(reply.rmid.as_deref(), Some(msg.mid.as_str()));
    assert_eq!(reply.forward.as_deref(), Some("someone@elsewhere:/"));
    assert_eq!(reply.body, json!({"echo": {"via": "test"}}));
    assert!(origin_inbox.recv_timeout(Duration::from_millis(300)).is_err());
}

#[test]
fn shutdown_wakes_waiting_requests() {
    let server = RedisServer::start();
    let silent = register(&server, "silent");
    silent.on_message(|_, _| Ok(())).unwrap();
    let caller = register(&server, "caller");
    let waiter = {
        let caller = caller.clone();
        std::thread::spawn(move || {
            caller.request(
                &caller.create_umf_message("silent:/", json!({})),
                Duration::from_secs(30),
            )
        })
    };
    wait_for(WAIT, || Some(()).filter(|_| silent.message_stats().handled == 1)).unwrap();
    let started = Instant::now();
    caller.shutdown().unwrap();
    let result: Result<Umf, Error> = waiter.join().unwrap();
    assert!(matches!(result, Err(Error::InvalidState(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_present_instance_that_does_not_listen_is_skipped() {
    let server = RedisServer::start();
    let live = register(&server, "mixed");
    let inbox = collect(&live);
    // A "ghost": presence and nodes entry, but nobody subscribed to its channel
    // (e.g. a process that died a moment ago).
    let mut conn = raw(&server);
    let ghost = json!({"serviceName":"mixed","serviceDescription":"","version":"1","instanceID":"0000ghost","updatedOn":"2026-01-01T00:00:00.000Z","processID":1,"ip":"127.0.0.1","port":1,"hostName":"h"});
    let _: () = conn
        .hset("hydra:service:nodes", "0000ghost", ghost.to_string())
        .unwrap();
    let _: () = conn
        .set_ex("hydra:service:mixed:0000ghost:presence", "0000ghost", 60)
        .unwrap();
    let sender = init(&server, "sender");
    for n in 0..10 {
        sender
            .send_message(&sender.create_umf_message("mixed:/", json!({"n": n})))
            .unwrap();
    }
    assert_eq!(received_numbers(&inbox, 10, WAIT), (0..10).collect::<Vec<_>>());
    // Pinned to the ghost: nobody receives it, and the sender is told.
    let err = sender
        .send_message(&sender.create_umf_message("0000ghost@mixed:/", json!({})))
        .unwrap_err();
    assert_eq!(err.to_string(), "Unavailable mixed instance named 0000ghost");
}

/// A registered service whose handler answers every message with the same
/// body (no nesting, so JSON depth can never stop a loop).
fn constant_replier(server: &RedisServer, name: &str) -> Hydra {
    let hydra = register(server, name);
    hydra
        .on_message(|h, msg| {
            h.reply(&msg, json!({"pong": true}))?;
            Ok(())
        })
        .unwrap();
    hydra
}

/// Asks `target` from another service and waits for the answer (so `target`
/// has read everything published to it before), then until every message it
/// received has an outcome: handlers run on a pool, so one received before the
/// marker may finish after it (a request's handler counts as handled only
/// once it returns, after its reply went out).
fn handled_after_marker(server: &RedisServer, target: &Hydra) -> hydra::MessageStats {
    let marker = register(server, "marker");
    let service = target.get_service_name().to_string();
    marker
        .request(
            &marker.create_umf_message(&format!("{service}:/"), json!({"marker": true})),
            WAIT,
        )
        .expect("the marker was answered");
    wait_for(WAIT, || {
        let s = target.message_stats();
        let outcomes = s.handled
            + s.failed
            + s.panicked
            + s.invalid
            + s.overflow
            + s.unhandled
            + s.looped
            + s.replies_matched
            + s.replies_late
            + s.signature_rejected;
        (outcomes >= s.received).then_some(s)
    })
    .expect("every message received had an outcome")
}

#[test]
fn a_spoofed_sender_naming_this_instance_never_reaches_the_handler() {
    let server = RedisServer::start();
    let target = constant_replier(&server, "looper");
    let mut conn = raw(&server);
    let id = target.get_instance_id().to_string();
    let spoofed = json!({
        "to": "looper:/", "frm": format!("{id}@looper:/"),
        "mid": "11111111-2222-4333-8444-777777777777", "ts": "2026-11-27T00:00:00.000Z",
        "ver": "UMF/1.4.6", "bdy": {"ping": true}
    });
    let _: i64 = conn
        .publish(format!("hydra:service:mc:looper:{id}"), spoofed.to_string())
        .unwrap();
    let stats = handled_after_marker(&server, &target);
    // Before the guard, the handler answered itself without end.
    assert_eq!((stats.looped, stats.handled), (1, 1), "{stats:?}");
}

#[test]
fn a_handler_answering_itself_stops_after_one_turn() {
    let server = RedisServer::start();
    let target = constant_replier(&server, "looper");
    let mut conn = raw(&server);
    let id = target.get_instance_id().to_string();
    // `from` names the service: the reply goes to the service (this instance),
    // whose handler answers the reply, and so on.
    let spoofed = json!({
        "to": format!("{id}@looper:/"), "frm": "looper:/",
        "mid": "11111111-2222-4333-8444-888888888888", "ts": "2026-11-27T00:00:00.000Z",
        "ver": "UMF/1.4.6", "bdy": {"ping": true}
    });
    let _: i64 = conn
        .publish(format!("hydra:service:mc:looper:{id}"), spoofed.to_string())
        .unwrap();
    let looped =
        wait_for(WAIT, || Some(target.message_stats()).filter(|s| s.looped >= 1)).expect("the guard stopped it");
    assert_eq!(looped.looped, 1, "{looped:?}");
    let stats = handled_after_marker(&server, &target);
    // The message, our own reply to it (as Node delivers), then the marker.
    assert_eq!((stats.looped, stats.handled), (1, 3), "{stats:?}");
}

#[test]
fn requests_and_messages_to_this_very_instance_still_work() {
    let server = RedisServer::start();
    let target = constant_replier(&server, "self-talk");
    let to = format!("{}@self-talk:/", target.get_instance_id());
    let reply = target
        .request(&target.create_umf_message(&to, json!({"q": 1})), WAIT)
        .unwrap();
    assert_eq!(reply.body, json!({"pong": true}));
    let stats = handled_after_marker(&server, &target);
    assert_eq!(
        (stats.looped, stats.handled, stats.replies_matched),
        (0, 2, 1),
        "{stats:?}"
    );
}

#[test]
fn a_user_without_subscribe_permission_is_told_so_at_once() {
    let server = RedisServer::start();
    let mut admin = raw(&server);
    for (user, rules) in [
        ("nosub", vec!["~*", "&*", "+@all", "-subscribe"]),
        ("nochannels", vec!["~*", "resetchannels", "+@all"]),
    ] {
        let mut acl = redis::cmd("ACL");
        acl.arg("SETUSER").arg(user).arg("on").arg(">pw");
        for rule in rules {
            acl.arg(rule);
        }
        let _: () = acl.query(&mut admin).unwrap();
        let url = format!("redis://{user}:pw@127.0.0.1:{}/15", server.port());
        let hydra = Hydra::init(builder(&server, "guarded").redis_url(&url).build().unwrap()).unwrap();
        // Before, this waited the whole deadline and said Timeout("could not subscribe … within 2s").
        match hydra.register_service() {
            Err(Error::PermissionDenied(why)) => {
                assert!(why.contains("SUBSCRIBE"), "{user}: {why}");
                assert!(why.contains("hydra:service:mc:guarded"), "{user}: {why}");
                assert!(why.contains("no permissions"), "{user}: {why}");
            }
            other => panic!("{user}: expected PermissionDenied, got {other:?}"),
        }
    }
}

/// Reads `MONITOR` output (one command per line, in the order Redis ran
/// them) until a line contains `until`, at most `WAIT`; returns the lines.
fn monitor_until(monitor: &mut std::io::BufReader<std::net::TcpStream>, until: &str) -> Vec<String> {
    use std::io::BufRead;
    let deadline = Instant::now() + WAIT;
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        let mut line = String::new();
        match monitor.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                let done = line.contains(until);
                lines.push(line);
                if done {
                    return lines;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("MONITOR: {e}"),
        }
    }
    panic!("no command with {until} within {WAIT:?}; saw {lines:#?}");
}

/// The README's guarantee: `register_service` subscribes before it writes
/// presence, so a message sent the moment an instance appears is not lost.
/// `MONITOR` lists commands in the order Redis ran them.
#[test]
fn register_service_subscribes_before_presence_appears() {
    use std::io::Write;
    let server = RedisServer::start();
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    (&stream).write_all(b"MONITOR\r\n").unwrap();
    let mut monitor = std::io::BufReader::new(stream);
    monitor_until(&mut monitor, "OK");

    let hydra = init(&server, "early-bird");
    let id = hydra.get_instance_id().to_string();
    hydra.register_service().unwrap();
    let presence = format!("hydra:service:early-bird:{id}:presence");
    let lines = monitor_until(&mut monitor, &presence);
    let subscribed = lines
        .iter()
        .position(|l| l.contains("\"SUBSCRIBE\"") && l.contains(&format!("hydra:service:mc:early-bird:{id}")));
    assert!(
        subscribed.is_some(),
        "SUBSCRIBE to the instance channel came after the first presence write: {lines:#?}"
    );
}

/// The README's "each request costs exactly two Redis commands": the two
/// PUBLISHes (presence comes from the routing cache, kept for the whole test
/// here so that its refreshes do not blur the count). Heartbeats may run
/// meanwhile; nothing else may.
#[test]
fn a_request_costs_exactly_two_redis_commands() {
    let server = RedisServer::start();
    let cached = |name: &str| {
        let hydra = Hydra::init(
            builder(&server, name)
                .presence_cache_ttl(Duration::from_secs(600))
                .build()
                .unwrap(),
        )
        .unwrap();
        hydra.register_service().unwrap();
        hydra
    };
    let responder = cached("echo");
    echo(&responder);
    let caller = cached("caller");
    let ask = |n: u64| {
        let reply = caller
            .request(&caller.create_umf_message("echo:/", json!({"n": n})), WAIT)
            .unwrap();
        assert_eq!(reply.body, json!({"echo": {"n": n}}));
    };
    ask(0); // fills the routing caches (caller → echo, echo → caller)
    let mut conn = raw(&server);
    let before = command_calls(&mut conn);
    let requests = 200;
    for n in 1..=requests {
        ask(n);
    }
    let after = command_calls(&mut conn);
    let heartbeat_or_probe = ["set", "hset", "expire", "info", "select"];
    let mut others = Vec::new();
    for (command, calls) in &after {
        let delta = calls - before.get(command).copied().unwrap_or(0);
        if command == "publish" {
            assert_eq!(delta, 2 * requests, "PUBLISHes for {requests} requests");
        } else if delta > 0 && !heartbeat_or_probe.contains(&command.as_str()) {
            others.push(format!("{command} ×{delta}"));
        }
    }
    assert!(others.is_empty(), "commands besides the PUBLISHes: {others:?}");
}

#[test]
fn a_full_pull_receiver_stops_reading_and_loses_nothing() {
    let server = RedisServer::start();
    let puller = Hydra::init(builder(&server, "puller").message_queue_capacity(2).build().unwrap()).unwrap();
    puller.register_service().unwrap();
    let inbox = puller.messages();
    let sender = init(&server, "sender");
    for n in 0..10 {
        sender
            .send_message(&sender.create_umf_message("puller:/", json!({"n": n})))
            .unwrap();
    }
    let paused = wait_for(WAIT, || Some(puller.message_stats()).filter(|s| s.read_pauses >= 1))
        .unwrap_or_else(|| puller.message_stats());
    assert!(
        paused.read_pauses >= 1 && paused.received < 10,
        "the reader stopped: {paused:?}"
    );
    let mut got: Vec<u64> = (0..10)
        .map(|_| {
            inbox.recv_timeout(WAIT).expect("every message arrives").body["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(puller.message_stats().overflow, 0);
}
