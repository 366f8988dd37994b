//! HTTP interop with real Node `hydra@1.9.3` (`makeAPIRequest`) and
//! `hydra-express@1.9.5` (routes served by Express).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{init, register};
use hydra::{HttpResponse, HttpRoutes, Hydra, RequestOptions};
use hydra_testkit::{ExpressPeer, NodePeer, RedisServer};
use serde_json::{Value, json};

fn rust_web(server: &RedisServer) -> Hydra {
    let hydra = register(server, "rust-web");
    hydra
        .serve_http(
            HttpRoutes::new()
                .get("/v1/rust/hello/:name", |_, req| {
                    HttpResponse::send_response(200, json!({"hello": req.param("name"), "q": req.query_param("q")}))
                })
                .post("/v1/rust/echo", |_, req| {
                    let headers: HashMap<String, String> = req.headers.iter().cloned().collect();
                    HttpResponse::send_response(
                        201,
                        json!({"body": req.json().unwrap_or(Value::Null), "headers": headers}),
                    )
                })
                .get("/v1/rust/fail", |_, _| HttpResponse::error(500, "rust route failed")),
        )
        .unwrap();
    hydra
}

fn node_client(server: &RedisServer) -> NodePeer {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {"serviceName": "node-client", "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": server.url(15)}}});
    node.call("init", json!([config])).unwrap();
    node
}

#[test]
fn node_make_api_request_reaches_our_routes() {
    let server = RedisServer::start();
    let _web = rust_web(&server);
    let node = node_client(&server);

    let reply = node
        .call(
            "makeAPIRequest",
            json!([{"to": "rust-web:[get]/v1/rust/hello/ann?q=7", "from": "node-client:/", "body": {}}]),
        )
        .unwrap();
    assert_eq!(reply["statusCode"], 200);
    assert_eq!(reply["statusMessage"], "OK");
    assert_eq!(reply["result"], json!({"hello": "ann", "q": "7"}));

    let reply = node
        .call(
            "makeAPIRequest",
            json!([{"to": "rust-web:[post]/v1/rust/echo", "from": "node-client:/", "body": {"hi": "there", "n": 1.5},
                    "headers": {"x-custom": "abc"}, "authorization": "Bearer t0k3n"}]),
        )
        .unwrap();
    assert_eq!(reply["statusCode"], 201);
    assert_eq!(reply["statusMessage"], "Created");
    assert_eq!(reply["result"]["body"], json!({"hi": "there", "n": 1.5}));
    assert_eq!(reply["result"]["headers"]["x-custom"], "abc");
    assert_eq!(reply["result"]["headers"]["authorization"], "Bearer t0k3n");
    assert_eq!(reply["result"]["headers"]["content-type"], "application/json");

    let reply = node
        .call(
            "makeAPIRequest",
            json!([{"to": "rust-web:[get]/v1/rust/fail", "from": "node-client:/", "body": {}}]),
        )
        .unwrap();
    assert_eq!(reply["statusCode"], 500);
    assert_eq!(reply["result"]["reason"], "rust route failed");

    let reply = node
        .call(
            "makeAPIRequest",
            json!([{"to": "rust-web:[get]/v1/rust/missing", "from": "node-client:/", "body": {}}]),
        )
        .unwrap();
    assert_eq!(reply["statusCode"], 404);

    // Node sees our routes the way it sees hydra-express's.
    let routes = node.call("getAllServiceRoutes", json!([])).unwrap();
    let ours = routes["rust-web"].as_array().expect("our routes listed by Node");
    assert!(ours.contains(&json!("[get]/v1/rust/hello/:name")));
    assert!(ours.contains(&json!("[post]/v1/rust/echo")));
}

#[test]
fn our_make_api_request_reaches_hydra_express_routes() {
    let server = RedisServer::start();
    let express = ExpressPeer::spawn(&server.url(15), "express-svc").expect("start the hydra-express peer");
    let client = init(&server, "rust-client");
    let call = |to: &str, body: Value| {
        client
            .make_api_request(
                &client.create_umf_message(to, body),
                RequestOptions::timeout(Duration::from_secs(5)),
            )
            .unwrap()
    };

    let response = call("express-svc:[get]/v1/express/hello?x=1", json!({}));
    assert_eq!(response.status, 200);
    assert_eq!(response.instance_id, express.instance_id());
    assert_eq!(response.result().unwrap()["hello"], "from express");
    assert_eq!(response.result().unwrap()["query"], json!({"x": "1"}));

    let mut msg = client.create_umf_message("express-svc:[post]/v1/express/echo", json!({"a": [1, 2], "ü": "ß"}));
    msg.headers = Some(json!({"x-trace": "t-1"}));
    msg.authorization = Some("Bearer abc".into());
    let response = client.make_api_request(&msg, RequestOptions::default()).unwrap();
    let result = response.result().unwrap();
    assert_eq!(result["body"], json!({"a": [1, 2], "ü": "ß"}));
    assert_eq!(result["headers"]["x-trace"], "t-1");
    assert_eq!(result["headers"]["authorization"], "Bearer abc");

    let response = call("express-svc:[get]/v1/express/fail", json!({}));
    assert_eq!(response.status, 500);
    assert_eq!(response.result().unwrap()["reason"], "express route failed on purpose");

    let response = call("express-svc:[get]/v1/express/nothing-here", json!({}));
    assert_eq!(response.status, 404);

    let routes = client.get_all_service_routes().unwrap();
    assert!(
        routes["express-svc"].contains(&"[get]/v1/express/hello".to_string()),
        "{routes:?}"
    );
}

/// Node's own HTTP client (what hydra and hydra-router use) on one kept-alive
/// connection: a body or content-length on a 204 or 304 would be read as the
/// start of the next response (`Parse Error: Expected HTTP/`).
#[test]
fn nodes_http_client_reads_our_204_and_304_on_a_kept_alive_connection() {
    let server = RedisServer::start();
    let svc = register(&server, "rust-bodiless");
    let port = svc
        .serve_http(
            HttpRoutes::new()
                .get("/v1/b/nothing", |_, _| {
                    HttpResponse::send_response(204, json!({"not": "sent"}))
                })
                .get("/v1/b/same", |_, _| {
                    HttpResponse::send_response(304, json!({"not": "sent"})).with_header("etag", "\"v1\"")
                })
                .get("/v1/b/hello", |_, _| {
                    HttpResponse::send_response(200, json!({"hello": "node"}))
                }),
        )
        .unwrap();
    let script = r#"
const http = require('http');
const port = Number(process.argv[1]);
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
const paths = ['/v1/b/nothing', '/v1/b/same', '/v1/b/hello', '/v1/b/nothing', '/v1/b/same', '/v1/b/hello'];
const results = [];
const sockets = new Set();
function next(i) {
  if (i === paths.length) {
    console.log(JSON.stringify({results, sockets: sockets.size}));
    agent.destroy();
    return;
  }
  const req = http.get({host: '127.0.0.1', port, path: paths[i], agent}, (res) => {
    sockets.add(res.socket);
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { body += c; });
    res.on('end', () => {
      results.push({status: res.statusCode, body, length: res.headers['content-length'] || null});
      next(i + 1);
    });
  });
  req.on('error', (e) => {
    console.log(JSON.stringify({error: e.message, results}));
    agent.destroy();
  });
  req.setTimeout(5000, () => req.destroy(new Error('timed out')));
}
next(0);
"#;
    let output = std::process::Command::new("node")
        .args(["-e", script, &port.to_string()])
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "node printed {text:?} ({e}); stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(report.get("error").is_none(), "Node's HTTP client failed: {report}");
    let statuses: Vec<u64> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [204, 304, 200, 204, 304, 200], "{report}");
    for result in report["results"].as_array().unwrap() {
        if result["status"] != 200 {
            assert_eq!(result["body"], "", "{report}");
            assert_eq!(result["length"], Value::Null, "{report}");
        }
    }
    assert_eq!(report["sockets"], 1, "one kept-alive connection: {report}");
}
