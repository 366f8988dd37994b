//! `queue stats|peek|redrive` on queues filled and worked by real Rust and
//! Node consumers, in table and `--json` form.

mod common;
mod services;

use common::{Home, run};
use hydra::Umf;
use hydra_testkit::RedisServer;
use serde_json::{Value, json};
use services::{body_of, node_service, rust_handle, rust_service, url};

fn job(n: u64) -> Umf {
    Umf::new("jobs:/", "tester:/", json!({"n": n}))
}

#[test]
fn stats_count_waiting_in_flight_and_dead_letters() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let jobs = rust_service(&redis, "jobs");
    for n in 0..4 {
        jobs.queue_message(&job(n)).unwrap();
    }
    // One in flight (taken by Node), one dead letter (marked incomplete).
    let (node, _) = node_service(&redis, "node-worker");
    let taken = node.call("getQueuedMessage", json!(["jobs"])).unwrap();
    assert_eq!(body_of(&taken), &json!({"n": 0}));
    let failed = jobs.get_queued_message("jobs").unwrap().unwrap();
    jobs.mark_queue_message(&failed, false, Some("broken")).unwrap();

    let stats = run(&home, Some(&url), &["queue", "stats", "jobs", "--json"])
        .ok()
        .json();
    assert_eq!(stats["service"], "jobs");
    assert_eq!(stats["waiting"], 2);
    assert_eq!(stats["in_flight"], 1);
    assert_eq!(stats["dead_letters"], 1);
    assert_eq!(stats["consumers"], 0);
    assert!(stats["oldest_waiting_ms"].as_u64().is_some(), "{stats}");
    assert_eq!(stats["keys"]["waiting"], "hydra:service:jobs:mqrecieved");

    let table = run(&home, Some(&url), &["queue", "stats", "jobs"]).ok();
    let line = |label: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row:\n{}", table.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("waiting"), "waiting 2 hydra:service:jobs:mqrecieved");
    assert_eq!(line("in flight"), "in flight 1 hydra:service:jobs:mqinprogress");
    assert_eq!(line("dead letters"), "dead letters 1 hydra:service:jobs:mqincomplete");
    assert!(
        table.stdout.contains("hydra-cli queue redrive jobs"),
        "{}",
        table.stdout
    );
}

#[test]
fn peek_shows_the_next_messages_in_take_order_and_leaves_them() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let producer = rust_handle(&redis, "producer");
    let mut mids = Vec::new();
    for n in 0..5 {
        let message = job(n);
        mids.push(message.mid.clone());
        producer.queue_message(&message).unwrap();
    }
    let peeked = run(&home, Some(&url), &["queue", "peek", "jobs", "3", "--json"])
        .ok()
        .json();
    assert_eq!(peeked["waiting"], 5);
    assert_eq!(peeked["shown"], 3);
    let shown: Vec<&Value> = peeked["messages"].as_array().unwrap().iter().collect();
    let shown_mids: Vec<&str> = shown.iter().map(|m| m["mid"].as_str().unwrap()).collect();
    assert_eq!(shown_mids, &mids[..3], "oldest first: the order they are taken");
    assert_eq!(shown[0]["body"], json!({"n": 0}));
    assert_eq!(shown[0]["position"], 1);
    assert_eq!(shown[0]["failed_deliveries"], 0);
    assert_eq!(shown[0]["from"], "tester:/");

    let table = run(&home, Some(&url), &["queue", "peek", "jobs"]).ok();
    assert!(
        table.stdout.contains("next 5 of 5 waiting for jobs"),
        "{}",
        table.stdout
    );
    let positions: Vec<usize> = mids
        .iter()
        .map(|mid| {
            table
                .stdout
                .find(mid.as_str())
                .expect("every waiting message is listed")
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "take order:\n{}",
        table.stdout
    );

    // Nothing was taken: a Node consumer and a Rust one get them in that order.
    let (node, _) = node_service(&redis, "node-worker");
    let first = node.call("getQueuedMessage", json!(["jobs"])).unwrap();
    assert_eq!(first["mid"], mids[0].as_str());
    let second = producer.get_queued_message("jobs").unwrap().unwrap();
    assert_eq!(second.message.mid, mids[1]);
    let after = run(&home, Some(&url), &["queue", "peek", "jobs", "10", "--json"])
        .ok()
        .json();
    assert_eq!(after["waiting"], 3);
    assert_eq!(after["messages"][0]["mid"], mids[2].as_str());
}

#[test]
fn redrive_moves_dead_letters_back_and_says_how_many() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let jobs = rust_service(&redis, "jobs");
    for n in 0..3 {
        jobs.queue_message(&job(n)).unwrap();
        let taken = jobs.get_queued_message("jobs").unwrap().unwrap();
        jobs.mark_queue_message(&taken, false, Some("broken")).unwrap();
    }
    let moved = run(&home, Some(&url), &["queue", "redrive", "jobs", "--json"])
        .ok()
        .json();
    assert_eq!(
        moved,
        json!({"service": "jobs", "moved": 3, "waiting": 3, "dead_letters": 0})
    );
    // Oldest first, each with the reason its failure wrote.
    let next = jobs.get_queued_message("jobs").unwrap().unwrap();
    assert_eq!(next.message.body, json!({"n": 0, "reason": "broken"}));
    let again = run(&home, Some(&url), &["queue", "redrive", "jobs"]).ok();
    assert!(again.stdout.contains("no dead letters for jobs"), "{}", again.stdout);
    let taken = jobs.get_queued_message("jobs").unwrap().unwrap();
    jobs.mark_queue_message(&taken, false, None).unwrap();
    let table = run(&home, Some(&url), &["queue", "redrive", "jobs"]).ok();
    assert!(
        table
            .stdout
            .contains("moved 1 dead letter back to the queue of jobs: 2 waiting now"),
        "{}",
        table.stdout
    );
}

#[test]
fn an_unknown_service_with_an_empty_queue_is_an_error() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    for args in [
        vec!["queue", "stats", "nope"],
        vec!["queue", "peek", "nope"],
        vec!["queue", "redrive", "nope", "--json"],
    ] {
        let refused = run(&home, Some(&url), &args);
        assert_eq!(refused.code, Some(1), "{args:?}: {refused:?}");
        assert!(
            refused.stderr.contains("no service named nope is registered"),
            "{}",
            refused.stderr
        );
        assert!(refused.stderr.contains("hydra-cli services"), "{}", refused.stderr);
    }
    // A queue that holds messages is shown whoever registered: anyone may queue.
    rust_handle(&redis, "producer")
        .queue_message(&Umf::new("adhoc:/", "p:/", json!({"a": 1})))
        .unwrap();
    let stats = run(&home, Some(&url), &["queue", "stats", "adhoc", "--json"])
        .ok()
        .json();
    assert_eq!(stats["waiting"], 1);
    let bad_count = run(&home, Some(&url), &["queue", "peek", "adhoc", "many"]);
    assert_eq!(bad_count.code, Some(2), "{bad_count:?}");
}
