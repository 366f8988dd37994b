//! The WebSocket gateway end to end: real WebSocket clients (tungstenite)
//! connected to the `hydra-router` binary, a Rust service behind it, and a
//! private redis-server. Request/reply to a service, HTTP-style calls, the
//! router API, ping, client-to-client forward, and the offline queue
//! replayed in order on reconnect.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{RouterProcess, TestService};
use hydra::{Config, Hydra};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(15);

/// A WebSocket client of the router.
struct Client {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The id the router's welcome gave it.
    id: String,
}

impl Client {
    /// Connects and reads the welcome.
    fn connect(router: &RouterProcess) -> Client {
        let url = format!("ws://127.0.0.1:{}/", router.port());
        let (socket, _) = tungstenite::connect(url).expect("WebSocket handshake");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(WAIT)).unwrap();
        }
        let mut client = Client {
            socket,
            id: String::new(),
        };
        let welcome = client.recv();
        assert_eq!(welcome["typ"], "connection", "{welcome}");
        client.id = welcome["bdy"]["id"].as_str().expect("an id").to_string();
        assert_eq!(welcome["to"], format!("{}@client:/", client.id));
        client
    }

    fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).expect("send");
    }

    /// The next text frame, parsed (fails after `WAIT`).
    fn recv(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no frame within {WAIT:?}");
            match self.socket.read().expect("a frame") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON frame"),
                Message::Close(frame) => panic!("closed by the router: {frame:?}"),
                _ => {}
            }
        }
    }
}

fn rust_service(redis: &RedisServer, name: &str) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(&redis.url(0))
        .build()
        .expect("config");
    let hydra = Hydra::init(config).expect("init");
    hydra.register_service().expect("register");
    hydra
        .on_message(|hydra, message| {
            hydra.reply(&message, json!({ "echo": message.body }))?;
            Ok(())
        })
        .expect("handler");
    hydra
}

#[test]
fn clients_reach_services_the_router_and_each_other() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let service = rust_service(&redis, "ws-echo");
    let http = TestService::start(&redis, "ws-http");
    let mut a = Client::connect(&router);
    let mut b = Client::connect(&router);
    assert_ne!(a.id, b.id);

    // Request/reply to a Rust service, through `via`.
    a.send(json!({"to": "ws-echo:/", "frm": format!("{}@client:/", a.id), "mid": "m1", "bdy": {"n": 1}}));
    let answer = a.recv();
    assert_eq!(answer["rmid"], "m1");
    assert_eq!(answer["bdy"]["echo"], json!({"n": 1}));

    // An HTTP-style call: the service's `result`.
    a.send(json!({"to": "ws-http:[get]/v1/ws-http/echo?q=1", "frm": "client:/", "mid": "h1", "bdy": {}}));
    let answer = a.recv();
    assert_eq!(answer["rmid"], "h1");
    assert_eq!(answer["bdy"]["path"], "/v1/ws-http/echo");
    assert_eq!(answer["bdy"]["query"], "q=1");

    // The router API.
    a.send(json!({"to": "hydra-router:[get]/v1/router/list/wsdir", "frm": "client:/", "mid": "d1", "bdy": {}}));
    let answer = a.recv();
    assert_eq!(answer["rmid"], "d1");
    let directory = answer["bdy"].as_object().expect("a directory");
    let ours = directory.values().next().expect("this router's entry");
    assert_eq!(ours.get(&a.id), Some(&json!(1)));
    assert_eq!(ours.get(&b.id), Some(&json!(1)));

    // ping → pong.
    a.send(json!({"to": "hydra-router:/", "frm": "client:/", "mid": "p1", "typ": "ping", "bdy": {}}));
    let pong = a.recv();
    assert_eq!(
        (pong["typ"].as_str(), pong["rmid"].as_str()),
        (Some("pong"), Some("p1"))
    );

    // Client to client.
    a.send(json!({"to": "hydra-router:/", "frm": format!("{}@client:/", a.id), "fwd": format!("{}@client:/", b.id), "bdy": {"hi": "b"}}));
    let got = b.recv();
    assert_eq!(got["bdy"], json!({"hi": "b"}));
    assert_eq!(got["to"], format!("{}@client:/", b.id));
    drop(http);
    service.shutdown().unwrap();
}

#[test]
fn the_offline_queue_is_replayed_in_order_on_reconnect() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let mut a = Client::connect(&router);
    let b = Client::connect(&router);
    let b_id = b.id.clone();
    drop(b);
    // Until the router notices b is gone its frames may still be queued for
    // the socket; messages sent after that go to the offline queue. Ask the
    // directory (the router API) until b has left it.
    let deadline = Instant::now() + WAIT;
    loop {
        a.send(json!({"to": "hydra-router:/", "frm": "client:/", "mid": "loc", "typ": "wsdir.loc", "bdy": {"clientID": b_id}}));
        if a.recv()["bdy"]["routerID"] == "" {
            break;
        }
        assert!(Instant::now() < deadline, "the router did not notice the closed client");
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in 1..=5 {
        a.send(json!({"to": "hydra-router:/", "frm": format!("{}@client:/", a.id), "fwd": format!("{b_id}@client:/"), "bdy": {"n": n}}));
    }
    // A frame after the five: when its answer comes, the five were handled.
    a.send(json!({"to": "hydra-router:/", "frm": "client:/", "mid": "sync", "typ": "ping", "bdy": {}}));
    assert_eq!(a.recv()["rmid"], "sync");

    let mut again = Client::connect(&router);
    again.send(json!({"to": "hydra-router:/", "frm": "client:/", "typ": "reconnect", "bdy": {"id": b_id}}));
    let welcome = again.recv();
    assert_eq!(welcome["typ"], "connection");
    assert_eq!(welcome["bdy"]["id"], b_id.as_str());
    let order: Vec<Value> = (0..5).map(|_| again.recv()["bdy"]["n"].clone()).collect();
    assert_eq!(order, vec![json!(1), json!(2), json!(3), json!(4), json!(5)]);
}
