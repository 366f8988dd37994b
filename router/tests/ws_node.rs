//! The WebSocket gateway with a Node client: `interop/ws-client.js` (the
//! `ws` package, 8.5.0, the version Node's hydra-router ships with), driven
//! over JSON lines, talks to a real `hydra-router` as a browser or app
//! would: request/reply to a Rust service and to a Node hydra 1.9.3 service
//! (which replies with `sendReplyMessage`, to `via`), an HTTP-style call, a
//! router API call, and `ping`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::ws_client::{body, responder};
use common::{RouterProcess, TestService, WAIT, get, wait_for_subscriber, wait_until};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use hydra::Umf;
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

/// A Node `ws` client in its own process (`node interop/ws-client.js <url>`).
struct NodeWsClient {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// The id from the router's welcome.
    id: String,
}

impl NodeWsClient {
    /// Starts the client on `ws://127.0.0.1:<port>/`, waits for the socket
    /// to open and reads the welcome.
    fn connect(port: u16) -> NodeWsClient {
        let script = NodePeer::interop_dir().join("ws-client.js");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(format!("ws://127.0.0.1:{port}/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start node {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "stray", "data": line}));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut client = NodeWsClient {
            child,
            stdin,
            events,
            id: String::new(),
        };
        let opened = client.next_event("the socket to open");
        assert_eq!(opened["event"], "open", "{opened}");
        let welcome = client.next_frame("the welcome");
        assert_eq!(welcome["typ"], "connection", "{welcome}");
        client.id = welcome["bdy"]["id"].as_str().expect("welcome bdy.id").to_string();
        client
    }

    fn next_event(&mut self, what: &str) -> Value {
        match self.events.recv_timeout(WAIT) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => panic!("nothing from the Node client within {WAIT:?} ({what})"),
            Err(RecvTimeoutError::Disconnected) => panic!("the Node client exited ({what})"),
        }
    }

    /// The next frame, parsed (panics on a close or an error).
    fn next_frame(&mut self, what: &str) -> Value {
        let event = self.next_event(what);
        assert_eq!(event["event"], "frame", "waiting for {what}: {event}");
        let text = event["data"].as_str().expect("frame text");
        serde_json::from_str(text).unwrap_or_else(|e| panic!("a frame that is not JSON ({e}): {text}"))
    }

    fn send_text(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{}", json!({ "send": text })).expect("write to the Node client");
        stdin.flush().expect("flush");
    }

    /// Sends `message` (short form) and waits for the frame with its `rmid`.
    fn call(&mut self, message: &Umf) -> Value {
        self.send_text(&message.to_short_json());
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no reply to {}", message.mid);
            let frame = self.next_frame("a reply");
            if frame["rmid"] == message.mid.as_str() {
                return frame;
            }
        }
    }

    fn message(&self, to: &str, body: Value) -> Umf {
        Umf::new(to, format!("{}@client:/", self.id), body)
    }
}

impl Drop for NodeWsClient {
    fn drop(&mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Node hydra 1.9.3 service `name` that answers every message with
/// `sendReplyMessage(msg, {body: {echo: <its body>}})` (peer.js's echo mode).
fn node_responder(redis: &RedisServer, name: &str) -> NodePeer {
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {"serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": redis.url(0)}}});
    node.call("init", json!([config])).expect("Node hydra init");
    node.call("registerService", json!([])).expect("Node registerService");
    node.call("echo", json!([])).expect("echo mode");
    let instance = node.call("getInstanceID", json!([])).expect("getInstanceID");
    let instance = instance.as_str().expect("an instance ID");
    // Node's registerService resolves before its SUBSCRIBEs complete.
    wait_for_subscriber(redis, &format!("hydra:service:mc:{name}:{instance}"));
    node
}

#[test]
fn a_node_ws_client_reaches_rust_and_node_services_the_router_and_ping() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let _rust = responder(&redis, "ws-rust-echo");
    let _node = node_responder(&redis, "ws-node-echo");
    let _http = TestService::start(&redis, "ws-http");
    let url = format!("{}/v1/ws-http/echo", router.base_url());
    wait_until("the router to route to ws-http", WAIT, || get(&url).status == 200);

    let mut client = NodeWsClient::connect(router.port());

    // Request/reply to the Rust service.
    let request = client.message("ws-rust-echo:/", json!({"to": "rust"}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["echo"], json!({"to": "rust"}), "{reply}");

    // Request/reply to the Node service.
    let request = client.message("ws-node-echo:/", json!({"to": "node"}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["echo"], json!({"to": "node"}), "{reply}");

    // An HTTP-style call: the reply's body is the service's `result`.
    let request = client.message("ws-http:[get]/v1/ws-http/echo", json!({}));
    let reply = client.call(&request);
    assert_eq!(body(&reply)["method"], "GET", "{reply}");
    assert_eq!(body(&reply)["path"], "/v1/ws-http/echo", "{reply}");

    // The router's API.
    let request = client.message("hydra-router:[get]/v1/router/version", json!({}));
    let reply = client.call(&request);
    assert!(body(&reply)["version"].is_string(), "{reply}");

    // ping → pong.
    let mut ping = client.message("hydra-router:/", json!({}));
    ping.message_type = Some("ping".into());
    let pong = client.call(&ping);
    assert_eq!(pong["typ"], "pong", "{pong}");
}

#[test]
fn a_node_ws_client_gets_a_forward_from_a_rust_ws_client_through_the_router() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let mut first = NodeWsClient::connect(router.port());
    let mut second = NodeWsClient::connect(router.port());
    let mut message = second.message("hydra-router:/", json!({"hi": "node to node"}));
    message.forward = Some(format!("{}@client:/", first.id));
    second.send_text(&message.to_short_json());
    let got = first.next_frame("the forward");
    assert_eq!(body(&got)["hi"], "node to node", "{got}");
}
