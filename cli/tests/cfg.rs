//! `cfg push|pull|list|remove` against a private Redis, with a real Node
//! hydra 1.9.3 reading what we store and storing what we read; and the bad
//! inputs: missing file, invalid JSON, not an object, bad label, not stored.

mod common;

use common::{Home, run};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

fn node_admin(url: &str) -> NodePeer {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {
        "serviceName": "node-admin", "serviceIP": "127.0.0.1", "servicePort": 0, "redis": {"url": url}
    }});
    node.call("init", json!([config])).expect("node init");
    node
}

#[test]
fn push_pull_list_remove_round_trip_with_node() {
    let server = RedisServer::start();
    let url = server.url(15);
    let home = Home::new();
    let redis = Some(url.as_str());
    let document =
        json!({"hydra": {"serviceName": "billing", "serviceVersion": "1.9.0"}, "limits": {"max": 5, "ratio": 0.25}});
    let file = home.write("billing.json", &serde_json::to_string_pretty(&document).unwrap());
    let file = file.to_str().unwrap();

    let pushed = run(&home, redis, &["cfg", "push", "billing:1.9.0", file, "--json"])
        .ok()
        .json();
    assert_eq!(
        pushed,
        json!({"label": "billing:1.9.0", "service": "billing", "version": "1.9.0", "stored": true})
    );
    let text = run(&home, redis, &["cfg", "push", "billing:1.10.0", file]).ok();
    assert!(
        text.stdout.contains("stored") && text.stdout.contains("billing:1.10.0"),
        "{}",
        text.stdout
    );

    // Node reads what we stored; we read what Node stores.
    let node = node_admin(&url);
    assert_eq!(node.call("getConfig", json!(["billing:1.9.0"])).unwrap(), document);
    let from_node = json!({"hydra": {"serviceName": "billing"}, "n": [1, 2.5, "three"]});
    node.call("putConfig", json!(["billing:2.0.0", from_node])).unwrap();

    // --json prints the document itself, so pull > file and push round-trip.
    let pulled = run(&home, redis, &["cfg", "pull", "billing:2.0.0", "--json"])
        .ok()
        .json();
    assert_eq!(pulled, from_node);
    let pretty = run(&home, redis, &["cfg", "pull", "billing:1.9.0"]).ok();
    assert_eq!(serde_json::from_str::<Value>(&pretty.stdout).unwrap(), document);
    assert!(
        pretty.stdout.contains("\n  \"hydra\""),
        "pretty printed: {}",
        pretty.stdout
    );

    // Versions in numeric order (Node's text order put 1.10.0 before 1.9.0).
    let listed = run(&home, redis, &["cfg", "list", "billing", "--json"]).ok().json();
    assert_eq!(listed["versions"], json!(["1.9.0", "1.10.0", "2.0.0"]));
    assert_eq!(listed["labels"][0], "billing:1.9.0");
    let table = run(&home, redis, &["cfg", "list", "billing"]).ok();
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["1.9.0", "billing:1.9.0"],
            ["1.10.0", "billing:1.10.0"],
            ["2.0.0", "billing:2.0.0"]
        ]
    );

    let removed = run(&home, redis, &["cfg", "remove", "billing:1.9.0", "--json"])
        .ok()
        .json();
    assert_eq!(removed, json!({"label": "billing:1.9.0", "removed": true}));
    assert_eq!(node.call("getConfig", json!(["billing:1.9.0"])).unwrap(), Value::Null);
    assert_eq!(
        node.call("listConfig", json!(["billing"])).unwrap(),
        json!(["billing:1.10.0", "billing:2.0.0"])
    );

    let none = run(&home, redis, &["cfg", "list", "nothing-here", "--json"])
        .ok()
        .json();
    assert_eq!(none["versions"], json!([]));
}

#[test]
fn bad_files_and_labels_exit_2_and_missing_configs_exit_1() {
    let server = RedisServer::start();
    let url = server.url(15);
    let home = Home::new();
    let redis = Some(url.as_str());

    let missing = home.path().join("nope.json");
    let run_missing = run(&home, redis, &["cfg", "push", "svc:1", missing.to_str().unwrap()]);
    assert_eq!(run_missing.code, Some(2), "{run_missing:?}");
    assert!(
        run_missing.stderr.contains("cannot read") && run_missing.stderr.contains("nope.json"),
        "{}",
        run_missing.stderr
    );

    let broken = home.write("broken.json", "{\n  \"hydra\": {\"serviceName\": \"svc\",}\n}\n");
    let invalid = run(
        &home,
        redis,
        &["cfg", "push", "svc:1", broken.to_str().unwrap(), "--json"],
    );
    assert_eq!(invalid.code, Some(2), "{invalid:?}");
    let message = invalid.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("broken.json is not valid JSON") && message.contains("line 2 column"),
        "{message}"
    );

    let array = home.write("array.json", "[1, 2]");
    let not_object = run(&home, redis, &["cfg", "push", "svc:1", array.to_str().unwrap()]);
    assert_eq!(not_object.code, Some(2));
    assert!(not_object.stderr.contains("not an object"), "{}", not_object.stderr);

    let good = home.write("good.json", "{\"a\": 1}");
    let no_hydra = run(&home, redis, &["cfg", "push", "svc:1", good.to_str().unwrap()]).ok();
    assert!(no_hydra.stdout.contains("no \"hydra\" object"), "{}", no_hydra.stdout);
    for label in ["svc", "svc:1:2", ":1"] {
        let bad = run(&home, redis, &["cfg", "push", label, good.to_str().unwrap()]);
        assert_eq!(bad.code, Some(2), "{label}: {bad:?}");
        assert!(bad.stderr.contains("service:version"), "{}", bad.stderr);
    }
    // Nothing bad was stored.
    let listed = run(&home, redis, &["cfg", "list", "svc", "--json"]).ok().json();
    assert_eq!(listed["versions"], json!(["1"]));

    let pull = run(&home, redis, &["cfg", "pull", "svc:9"]);
    assert_eq!(pull.code, Some(1), "{pull:?}");
    assert!(
        pull.stderr.contains("no config is stored as svc:9") && pull.stderr.contains("hydra-cli cfg list svc"),
        "{}",
        pull.stderr
    );
    let remove = run(&home, redis, &["cfg", "remove", "svc:9", "--json"]);
    assert_eq!(remove.code, Some(1));
    assert_eq!(remove.json()["error"]["kind"], "failed");
}
