//! `message create|send|queue`, `rest` and `request` against real Rust and
//! Node services on a private Redis, in table and `--json` form, and what
//! they say about bad input.

mod common;
mod services;

use std::sync::mpsc;

use common::{Home, run};
use hydra::{HttpResponse, HttpRoutes};
use hydra_testkit::{ExpressPeer, RedisServer};
use serde_json::{Value, json};
use services::{WAIT, body_of, node_service, rust_echo, rust_http, rust_service, url};

#[test]
fn message_create_prints_nodes_template_as_the_document_in_both_forms() {
    let home = Home::new();
    let table = run(&home, None, &["message", "create"]).ok();
    let json = run(&home, None, &["message", "create", "--json"]).ok().json();
    let printed: Value = serde_json::from_str(&table.stdout).expect("the table form is the JSON message");
    for message in [&printed, &json] {
        assert_eq!(message["to"], "{serviceName here}:/");
        assert_eq!(message["from"], "hydra-cli:/");
        assert_eq!(message["version"], "UMF/1.4.6");
        assert_eq!(message["body"], json!({}));
        assert_eq!(message["mid"].as_str().map(str::len), Some(36), "{message}");
        assert!(message["timestamp"].as_str().unwrap().ends_with('Z'), "{message}");
    }
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["to", "from", "mid", "timestamp", "version", "body"]);
    // Fresh message IDs each time.
    assert_ne!(printed["mid"], json["mid"]);
    // The template is refused until it names a service.
    let file = home.write("template.json", &table.stdout);
    let refused = run(
        &home,
        Some("redis://127.0.0.1:1/15"),
        &["message", "send", file.to_str().unwrap()],
    );
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("still has the template's `to`"),
        "{}",
        refused.stderr
    );
}

#[test]
fn message_send_reaches_a_rust_and_a_node_service() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let rust = rust_service(&redis, "rust-inbox");
    let inbox = rust.messages();
    let file = home.write(
        "to-rust.json",
        r#"{"to": "rust-inbox:/", "body": {"text": "hello ✓", "n": 1.5}, "type": "greeting"}"#,
    );
    let sent = run(&home, Some(&url), &["message", "send", file.to_str().unwrap()]).ok();
    let got = inbox.recv_timeout(WAIT).expect("the Rust service received the message");
    assert_eq!(got.body, json!({"text": "hello ✓", "n": 1.5}));
    assert_eq!(got.from, "hydra-cli:/", "from defaults to the CLI's");
    assert_eq!(got.message_type.as_deref(), Some("greeting"));
    assert!(
        sent.stdout
            .contains(&format!("sent to rust-inbox instance {}", rust.get_instance_id())),
        "{}",
        sent.stdout
    );
    assert!(sent.stdout.contains(&got.mid), "the mid is printed:\n{}", sent.stdout);

    let (node, node_id) = node_service(&redis, "node-inbox");
    let file = home.write(
        "to-node.json",
        r#"{"to": "node-inbox:/", "frm": "ops:/", "bdy": {"from": "the cli"}}"#,
    );
    let sent = run(
        &home,
        Some(&url),
        &["message", "send", file.to_str().unwrap(), "--json"],
    )
    .ok()
    .json();
    let event = node
        .wait_event("message", WAIT)
        .expect("the Node service received the message");
    assert_eq!(body_of(&event), &json!({"from": "the cli"}));
    assert_eq!(event["frm"], "ops:/");
    assert_eq!(event["mid"], sent["mid"]);
    assert_eq!(sent["instance_id"], node_id.as_str());
    assert_eq!(sent["service"], "node-inbox");
    assert_eq!(sent["to"], format!("{node_id}@node-inbox:/"));
    assert_eq!(sent["message"]["body"], json!({"from": "the cli"}));

    // A file naming an instance that is not live, and a service with none.
    let file = home.write("ghost.json", r#"{"to": "ghost1@node-inbox:/", "body": {}}"#);
    let ghost = run(&home, Some(&url), &["message", "send", file.to_str().unwrap()]);
    assert_eq!(ghost.code, Some(1), "{ghost:?}");
    assert!(
        ghost.stderr.contains("no live instance of node-inbox is named ghost1"),
        "{}",
        ghost.stderr
    );
    let file = home.write("nobody.json", r#"{"to": "nobody:/", "body": {"a": 1}}"#);
    let nobody = run(
        &home,
        Some(&url),
        &["message", "send", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(nobody.code, Some(1), "{nobody:?}");
    assert!(
        nobody.stderr.contains("no live instance of nobody"),
        "{}",
        nobody.stderr
    );
    assert!(nobody.stderr.contains("hydra-cli nodes nobody"), "{}", nobody.stderr);
    assert_eq!(nobody.json()["error"]["kind"], "failed");
}

#[test]
fn message_queue_is_taken_by_a_node_consumer_and_a_rust_worker() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let (node, _) = node_service(&redis, "node-consumer");
    let file = home.write("job.json", r#"{"to": "jobs:/", "from": "ops:/", "body": {"job": 1}}"#);
    let queued = run(
        &home,
        Some(&url),
        &["message", "queue", file.to_str().unwrap(), "--json"],
    )
    .ok()
    .json();
    assert_eq!(queued["service"], "jobs");
    assert_eq!(queued["waiting"], 1);
    assert_eq!(queued["live_instances"], 0);
    // Node's getQueuedMessage takes it as Node would have queued it.
    let taken = node.call("getQueuedMessage", json!(["jobs"])).unwrap();
    assert_eq!(taken["mid"], queued["mid"]);
    assert_eq!(body_of(&taken), &json!({"job": 1}));
    assert_eq!(taken["frm"], "ops:/");

    // A Rust worker takes the next one; the table form says the depth.
    let worker_host = rust_service(&redis, "jobs");
    let table = run(&home, Some(&url), &["message", "queue", file.to_str().unwrap()]).ok();
    assert!(table.stdout.contains("for jobs: 1 waiting"), "{}", table.stdout);
    assert!(
        !table.stdout.contains("no instance of jobs is live"),
        "{}",
        table.stdout
    );
    let (tx, rx) = mpsc::channel();
    let worker = worker_host
        .queue_worker("jobs", 1, move |queued| {
            let _ = tx.send(queued.message.clone());
            Ok(())
        })
        .unwrap();
    let got = rx.recv_timeout(WAIT).expect("the Rust worker took the message");
    worker.stop();
    assert_eq!(got.body, json!({"job": 1}));
    let mid = table.stdout.split_whitespace().nth(1).unwrap();
    assert_eq!(got.mid, mid, "{}", table.stdout);

    // Not a message: which field is missing.
    let file = home.write("no-body.json", r#"{"to": "jobs:/"}"#);
    let refused = run(&home, Some(&url), &["message", "queue", file.to_str().unwrap()]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("no `body` field"), "{}", refused.stderr);
}

#[test]
fn bad_message_files_are_refused_naming_the_file_and_what_is_wrong() {
    let home = Home::new();
    // No Redis is needed to refuse a file: an unreachable one proves it.
    let unreachable = Some("redis://127.0.0.1:1/15");
    let missing = home.path().join("missing.json");
    for verb in ["send", "queue"] {
        let run_on = |file: &std::path::Path| run(&home, unreachable, &["message", verb, file.to_str().unwrap()]);
        let gone = run_on(&missing);
        assert_eq!(gone.code, Some(2), "{gone:?}");
        assert!(
            gone.stderr.contains("cannot read") && gone.stderr.contains("missing.json"),
            "{}",
            gone.stderr
        );

        let broken = home.write("broken.json", "{\n  \"to\": \"svc:/\",\n  \"body\": {,}\n}");
        let invalid = run_on(&broken);
        assert_eq!(invalid.code, Some(2), "{invalid:?}");
        assert!(
            invalid.stderr.contains("broken.json is not valid JSON"),
            "{}",
            invalid.stderr
        );
        assert!(
            invalid.stderr.contains("line 3 column"),
            "the position is named: {}",
            invalid.stderr
        );

        let no_to = home.write("no-to.json", r#"{"from": "a:/", "body": {}}"#);
        let refused = run_on(&no_to);
        assert_eq!(refused.code, Some(2), "{refused:?}");
        assert!(
            refused
                .stderr
                .contains("no-to.json is not a UMF message: it has no `to` field"),
            "{}",
            refused.stderr
        );

        let array = home.write("array.json", "[1, 2]");
        let refused = run_on(&array);
        assert_eq!(refused.code, Some(2), "{refused:?}");
        assert!(refused.stderr.contains("holds an array"), "{}", refused.stderr);

        let no_route = home.write("no-route.json", r#"{"to": "just-a-name", "body": {}}"#);
        let refused = run_on(&no_route);
        assert_eq!(refused.code, Some(2), "{refused:?}");
        assert!(refused.stderr.contains("is not a route"), "{}", refused.stderr);
    }
}

fn rust_routes() -> HttpRoutes {
    HttpRoutes::new()
        .get("/v1/rusty/hello/:who", |_, request| {
            HttpResponse::send_response(200, json!({"hello": request.param("who"), "query": request.query}))
        })
        .post("/v1/rusty/echo", |_, request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            HttpResponse::send_response(201, json!({"got": body}))
        })
        .get("/v1/rusty/teapot", |_, _| HttpResponse::error(418, "short and stout"))
}

#[test]
fn rest_calls_rust_and_express_routes_and_prints_what_they_answer() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let rust = rust_http(&redis, "rusty", rust_routes());

    // GET, table form: status, headers, the body pretty-printed.
    let got = run(&home, Some(&url), &["rest", "rusty:[get]/v1/rusty/hello/ops?x=1"]).ok();
    assert!(got.stdout.contains("200 OK"), "{}", got.stdout);
    assert!(got.stdout.contains(rust.get_instance_id()), "{}", got.stdout);
    assert!(
        got.stdout.contains("content-type"),
        "headers are shown:\n{}",
        got.stdout
    );
    assert!(got.stdout.contains("\"hello\": \"ops\""), "{}", got.stdout);
    // GET, JSON form: Node's shape in snake_case; result is the envelope's.
    let got = run(&home, Some(&url), &["rest", "rusty:[get]/v1/rusty/hello/ops", "--json"])
        .ok()
        .json();
    assert_eq!(got["status_code"], 200);
    assert_eq!(got["status_message"], "OK");
    assert_eq!(got["status_description"], "Request succeeded without error");
    assert_eq!(got["result"]["hello"], "ops");
    assert!(
        got["headers"]["content-type"].as_str().unwrap().contains("json"),
        "{got}"
    );
    assert_eq!(got["instance_id"], rust.get_instance_id());
    // POST with a payload file, pinned to the instance.
    let payload = home.write("payload.json", r#"{"item": "disk", "count": 2}"#);
    let to = format!("{}@rusty:[post]/v1/rusty/echo", rust.get_instance_id());
    let posted = run(&home, Some(&url), &["rest", &to, payload.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(posted["status_code"], 201);
    assert_eq!(posted["result"]["got"], json!({"item": "disk", "count": 2}));
    // A non-2xx answer is printed, and the exit status says it failed.
    let teapot = run(&home, Some(&url), &["rest", "rusty:[get]/v1/rusty/teapot", "--json"]);
    assert_eq!(teapot.code, Some(1), "{teapot:?}");
    assert_eq!(teapot.json()["status_code"], 418);
    assert_eq!(teapot.json()["result"]["reason"], "short and stout");
    assert!(teapot.stderr.contains("rusty answered 418"), "{}", teapot.stderr);

    // The Node express service.
    let express = ExpressPeer::spawn(&url, "express-svc").expect("start the express peer");
    let hello = run(
        &home,
        Some(&url),
        &["rest", "express-svc:[get]/v1/express/hello?q=7", "--json"],
    )
    .ok()
    .json();
    assert_eq!(hello["status_code"], 200);
    assert_eq!(hello["result"]["hello"], "from express");
    assert_eq!(hello["instance_id"], express.instance_id());
    let echoed = run(
        &home,
        Some(&url),
        &[
            "rest",
            "express-svc:[post]/v1/express/echo",
            payload.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(echoed["result"]["body"], json!({"item": "disk", "count": 2}));
    assert_eq!(echoed["result"]["headers"]["content-type"], "application/json");
    let text = run(
        &home,
        Some(&url),
        &["rest", "express-svc:[get]/v1/express/text", "--json"],
    )
    .ok()
    .json();
    assert_eq!(
        text["result"], "plain text body",
        "a body that is not JSON comes as text"
    );
    let table = run(&home, Some(&url), &["rest", "express-svc:[get]/v1/express/fail"]);
    assert_eq!(table.code, Some(1), "{table:?}");
    assert!(table.stdout.contains("500 Server Error"), "{}", table.stdout);
    assert!(
        table.stdout.contains("express route failed on purpose"),
        "{}",
        table.stdout
    );
}

#[test]
fn rest_refuses_bad_routes_and_payloads() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let payload = home.write("payload.json", r#"{"a": 1}"#);
    let payload = payload.to_str().unwrap();
    for (args, expected) in [
        (vec!["rest", "svc:/v1/x"], "HTTP method not specified in `to` field"),
        (
            vec!["rest", "svc:[get]/v1/x", payload],
            "Payload not allowed for HTTP 'get' method",
        ),
        (
            vec!["rest", "svc:[delete]/v1/x", payload],
            "Payload not allowed for HTTP 'delete' method",
        ),
        (vec!["rest", "no-route"], "is not a route"),
        (
            vec!["rest", "svc:[post]/v1/x", "/nonexistent/payload.json"],
            "cannot read /nonexistent/payload.json",
        ),
    ] {
        let refused = run(&home, Some(&url), &args);
        assert_eq!(refused.code, Some(2), "{args:?}: {refused:?}");
        assert!(refused.stderr.contains(expected), "{args:?}: {}", refused.stderr);
    }
    let bad = home.write("bad.json", "{\"a\": }");
    let refused = run(&home, Some(&url), &["rest", "svc:[post]/v1/x", bad.to_str().unwrap()]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("bad.json is not valid JSON") && refused.stderr.contains("line 1 column"));
    let nobody = run(&home, Some(&url), &["rest", "nobody:[get]/v1/x", "--json"]);
    assert_eq!(nobody.code, Some(1), "{nobody:?}");
    assert!(
        nobody.stderr.contains("no live instance of nobody"),
        "{}",
        nobody.stderr
    );
    assert_eq!(nobody.json()["error"]["kind"], "failed");
}

#[test]
fn request_prints_the_reply_of_a_rust_and_a_node_service() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let _rust = rust_echo(&redis, "rust-echo");
    let reply = run(
        &home,
        Some(&url),
        &["request", "rust-echo:/", r#"{"ping": 1}"#, "--json"],
    )
    .ok()
    .json();
    assert_eq!(reply["body"], json!({"echo": {"ping": 1}, "by": "rust-echo"}));
    assert_eq!(reply["rmid"], reply["mid"], "the reply refers to the request");
    assert_ne!(reply["reply_mid"], reply["mid"]);
    assert_eq!(reply["reply"]["body"], reply["body"]);
    assert_eq!(reply["from"], "rust-echo:/");
    assert!(reply["elapsed_ms"].as_f64().is_some(), "{reply}");
    let table = run(&home, Some(&url), &["request", "rust-echo:/", r#"{"ping": 2}"#]).ok();
    assert!(table.stdout.contains("reply from rust-echo:/"), "{}", table.stdout);
    assert!(table.stdout.contains("\"ping\": 2"), "{}", table.stdout);
    assert!(table.stdout.contains("reply mid"), "{}", table.stdout);

    let (node, _) = node_service(&redis, "node-echo");
    node.call("echo", json!([])).unwrap();
    let reply = run(
        &home,
        Some(&url),
        &["request", "node-echo:/", r#"{"from": "cli"}"#, "--json"],
    )
    .ok()
    .json();
    assert_eq!(reply["body"], json!({"echo": {"from": "cli"}}));
    assert_eq!(reply["rmid"], reply["mid"]);
    // Straight away again, twice: the Node service still has hydra-cli's
    // instance list of the first call in its 3-s cache, and answers because
    // the CLI comes back under the same instance ID.
    for n in 1..=2 {
        let again = run(
            &home,
            Some(&url),
            &[
                "request",
                "node-echo:/",
                &format!(r#"{{"again": {n}}}"#),
                "--json",
                "--timeout",
                "2s",
            ],
        )
        .ok()
        .json();
        assert_eq!(again["body"], json!({"echo": {"again": n}}));
        assert_eq!(
            again["reply"]["to"], reply["reply"]["to"],
            "the same CLI instance ID each run"
        );
    }

    // The CLI's own instance is gone afterwards (it is never left in `nodes`).
    let nodes: Vec<String> = redis::Commands::hkeys(&mut services::raw(&redis), "hydra:service:nodes").unwrap();
    assert_eq!(nodes.len(), 2, "only the two services: {nodes:?}");
}

#[test]
fn request_says_when_no_reply_came_and_refuses_bad_json() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    // Registered, but never replies.
    let _silent = rust_service(&redis, "silent");
    let timed_out = run(&home, Some(&url), &["request", "silent:/", "{}", "--timeout", "300ms"]);
    assert_eq!(timed_out.code, Some(1), "{timed_out:?}");
    assert!(
        timed_out.stderr.contains("no reply from silent within 300ms"),
        "{}",
        timed_out.stderr
    );
    assert!(
        timed_out.stderr.contains("hydra-cli nodes silent"),
        "{}",
        timed_out.stderr
    );

    let invalid = run(&home, Some(&url), &["request", "silent:/", "{ping}"]);
    assert_eq!(invalid.code, Some(2), "{invalid:?}");
    assert!(invalid.stderr.contains("not valid JSON"), "{}", invalid.stderr);
    let empty = run(&home, Some(&url), &["request", "silent:/", "null"]);
    assert_eq!(empty.code, Some(2), "{empty:?}");
    let nobody = run(&home, Some(&url), &["request", "nobody:/", "{}", "--json"]);
    assert_eq!(nobody.code, Some(1), "{nobody:?}");
    assert!(
        nobody.stderr.contains("no live instance of nobody"),
        "{}",
        nobody.stderr
    );
    assert_eq!(nobody.json()["error"]["kind"], "failed");
}

#[test]
fn ctrl_c_during_a_request_removes_the_clis_instance() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let _silent = rust_service(&redis, "silent");
    let mut command = common::command(
        &home,
        &["--redis", &url, "request", "silent:/", "{}", "--timeout", "30s"],
    );
    let child = command.spawn().expect("start hydra-cli");
    let pid = child.id();
    let mut conn = services::raw(&redis);
    let cli_nodes = |conn: &mut redis::Connection| -> usize {
        let nodes: Vec<String> = redis::Commands::hvals(conn, "hydra:service:nodes").unwrap_or_default();
        nodes
            .iter()
            .filter(|n| n.contains("\"serviceName\":\"hydra-cli\""))
            .count()
    };
    assert!(
        services::until(WAIT, || (cli_nodes(&mut conn) == 1).then_some(())).is_some(),
        "the CLI never registered for the reply"
    );
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut child = child;
    let status = services::until(WAIT, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = child.wait();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted after"), "{stderr}");
    assert_eq!(cli_nodes(&mut conn), 0, "the CLI's nodes entry is gone");
    let presence: Vec<String> = redis::cmd("KEYS")
        .arg("*:hydra-cli:*:presence")
        .query(&mut conn)
        .unwrap();
    assert!(presence.is_empty(), "{presence:?}");
}

#[test]
fn a_request_beside_another_running_one_registers_under_an_id_of_its_own() {
    let redis = RedisServer::start();
    let url = url(&redis);
    let home = Home::new();
    let _silent = rust_service(&redis, "silent");
    let _rust = rust_echo(&redis, "rust-echo");
    let first = run(&home, Some(&url), &["request", "rust-echo:/", "{}", "--json"])
        .ok()
        .json();
    let stable_route = first["reply"]["to"].as_str().unwrap().to_string();
    let stable_id = stable_route.split('@').next().unwrap().to_string();
    assert_eq!(stable_id.len(), 32, "Node's instance ID form: {stable_route}");

    // A long request holds the usual ID...
    let mut waiting = common::command(
        &home,
        &["--redis", &url, "request", "silent:/", "{}", "--timeout", "30s"],
    )
    .spawn()
    .expect("start hydra-cli");
    let presence_key = format!("hydra:service:hydra-cli:{stable_id}:presence");
    let mut conn = services::raw(&redis);
    let held = services::until(WAIT, || {
        redis::Commands::exists::<_, bool>(&mut conn, &presence_key)
            .unwrap()
            .then_some(())
    });
    // ...so one beside it takes another and is answered there.
    let beside = held.map(|()| run(&home, Some(&url), &["request", "rust-echo:/", "{}", "--json"]));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &waiting.id().to_string()])
        .status();
    let _ = services::until(WAIT, || waiting.try_wait().ok().flatten());
    let _ = waiting.kill();
    let _ = waiting.wait();
    assert!(held.is_some(), "the waiting request never registered under {stable_id}");
    let beside = beside.unwrap().ok().json();
    assert_eq!(beside["body"]["echo"], json!({}));
    let beside_route = beside["reply"]["to"].as_str().unwrap();
    assert!(
        beside_route.ends_with("@hydra-cli:/") && beside_route != stable_route,
        "{beside_route}"
    );
}
