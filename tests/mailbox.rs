//! Mailboxes (hydra-router's offline queues) against a private redis-server:
//! Node's keys and time to live, oldest-first takes, the database chosen,
//! and items that are not UMF.

mod common;

use std::time::Duration;

use common::init;
use hydra::{DEFAULT_MAILBOX_TTL, Error, Umf};
use hydra_testkit::RedisServer;
use redis::Commands;
use serde_json::json;

fn raw_db(server: &RedisServer, db: u8) -> redis::Connection {
    let client = redis::Client::open(server.url(db)).expect("client");
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    conn
}

fn numbered(n: u64) -> Umf {
    Umf::new("k3x9@client:/", "svc:/", json!({ "n": n }))
}

#[test]
fn messages_come_back_oldest_first_under_nodes_key_and_ttl() {
    let server = RedisServer::start();
    let hydra = init(&server, "mailer");
    let boxes = hydra.mailboxes(0).expect("mailboxes");
    for n in 1..=5 {
        boxes.push("k3x9", &numbered(n), DEFAULT_MAILBOX_TTL).expect("push");
    }
    assert_eq!(boxes.len("k3x9").unwrap(), 5);

    // Node's key, in the database asked for (0), not the handle's (15).
    let mut db0 = raw_db(&server, 0);
    let key = "hydra-router:message:queue:k3x9:queued";
    assert_eq!(db0.llen::<_, usize>(key).unwrap(), 5);
    let ttl: i64 = db0.ttl(key).unwrap();
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");
    let mut db15 = raw_db(&server, 15);
    assert!(!db15.exists::<_, bool>(key).unwrap());
    // Stored as short-form UMF, as the router sends it to clients.
    let first: String = db0.lindex(key, 0).unwrap();
    assert!(first.contains("\"bdy\":{\"n\":1}"), "{first}");

    let taken: Vec<u64> = boxes
        .take("k3x9", 3)
        .unwrap()
        .iter()
        .map(|m| m.body["n"].as_u64().unwrap())
        .collect();
    assert_eq!(taken, vec![1, 2, 3]);
    let rest: Vec<u64> = boxes
        .take("k3x9", 100)
        .unwrap()
        .iter()
        .map(|m| m.body["n"].as_u64().unwrap())
        .collect();
    assert_eq!(rest, vec![4, 5]);
    assert!(boxes.take("k3x9", 100).unwrap().is_empty());
    assert_eq!(boxes.len("k3x9").unwrap(), 0);
    assert!(!db0.exists::<_, bool>(key).unwrap());
}

#[test]
fn a_node_style_long_form_item_is_read_and_garbage_is_dropped() {
    let server = RedisServer::start();
    let hydra = init(&server, "mailer");
    let boxes = hydra.mailboxes(15).expect("mailboxes");
    let mut db15 = raw_db(&server, 15);
    let key = "hydra-router:message:queue:abc:queued";
    let _: () = db15.rpush(key, "not json").unwrap();
    let long = r#"{"to":"abc@client:/","from":"svc:/","mid":"m1","timestamp":"2026-01-01T00:00:00.000Z","version":"UMF/1.4.6","body":{"x":1}}"#;
    let _: () = db15.rpush(key, long).unwrap();
    let taken = boxes.take("abc", 10).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].mid, "m1");
    assert_eq!(taken[0].body, json!({ "x": 1 }));
}

#[test]
fn recipients_that_would_name_other_keys_are_refused() {
    let server = RedisServer::start();
    let hydra = init(&server, "mailer");
    let boxes = hydra.mailboxes(0).unwrap();
    for bad in ["", "a:b", "a*", "a b"] {
        let pushed = boxes.push(bad, &numbered(1), DEFAULT_MAILBOX_TTL);
        assert!(matches!(pushed, Err(Error::BadRequest(_))), "{bad:?}: {pushed:?}");
        assert!(matches!(boxes.take(bad, 1), Err(Error::BadRequest(_))));
    }
    assert!(hydra.mailboxes(-1).is_err());
}
