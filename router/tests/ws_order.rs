//! Pushes from a service to one WebSocket client arrive in the order the
//! router received them: a Rust service answers one request from the client
//! with 500 numbered messages sent as fast as it can, alternately as replies
//! (`via` `<routerID>-<clientID>@hydra-router:/`) and as pushes (`forward`
//! `<clientID>@client:/` to the router's instance); the client must read
//! 0..499 in order. Several rounds, each with a new burst. And for a client
//! that is away: the 500 go to its offline queue (one Redis write each, on
//! the router's delivery threads), and are replayed 0..499 when it
//! reconnects.
//!
//! Real router (in-process `Router::start`), real Rust service, private
//! redis-server, a tungstenite client on a real socket.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use hydra::{Config, Hydra, Umf};
use hydra_router::config::RouterConfig;
use hydra_router::gateway::Router;
use hydra_router::log_ring::LogRing;
use hydra_testkit::RedisServer;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(20);
const BURST: u64 = 500;
const ROUNDS: u64 = 4;

fn start_router(redis: &RedisServer) -> Router {
    let config = RouterConfig::from_document(
        json!({"hydra": {"serviceName": "hydra-router", "servicePort": 0, "serviceIP": "127.0.0.1",
                         "redis": {"url": redis.url(0)}}}),
        &[],
    )
    .expect("config");
    Router::start(config, LogRing::new()).expect("router starts")
}

/// The pushing service: on `{"burst": k}` it sends `BURST` messages numbered
/// `k*BURST ..`, even ones as replies through `via`, odd ones as `forward`
/// pushes to the router instance that sent the request.
fn pusher(redis: &RedisServer) -> Hydra {
    let config = Config::builder()
        .service_name("order-pusher")
        .service_ip("127.0.0.1")
        .redis_url(&redis.url(0))
        .build()
        .expect("config");
    let hydra = Hydra::init(config).expect("init");
    hydra.register_service().expect("register");
    hydra
        .on_message(|hydra, request| {
            let Some(round) = request.body.get("burst").and_then(Value::as_u64) else {
                return Ok(());
            };
            let via = request.via.clone().unwrap_or_default();
            // `<routerID>-<clientID>@hydra-router:/`
            let (router_and_client, _) = via.split_once('@').unwrap_or((&via, ""));
            let (router_id, asking) = router_and_client.split_once('-').unwrap_or(("", ""));
            // `{"for": id}`: every message pushed to that client instead.
            let target = request.body.get("for").and_then(Value::as_str);
            let client_id = target.unwrap_or(asking);
            for n in round * BURST..(round + 1) * BURST {
                if n % 2 == 0 && target.is_none() {
                    hydra.reply(&request, json!({ "n": n }))?;
                } else {
                    let mut push = Umf::new(
                        format!("{router_id}@hydra-router:/"),
                        "order-pusher:/".to_string(),
                        json!({ "n": n }),
                    );
                    push.forward = Some(format!("{client_id}@client:/"));
                    hydra.send_message(&push)?;
                }
            }
            Ok(())
        })
        .expect("handler");
    hydra
}

struct Client {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    id: String,
}

impl Client {
    fn connect(port: u16) -> Client {
        let (socket, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/")).expect("WebSocket handshake");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        }
        let mut client = Client {
            socket,
            id: String::new(),
        };
        let welcome = client.recv();
        assert_eq!(welcome["typ"], "connection", "{welcome}");
        client.id = welcome["bdy"]["id"].as_str().expect("an id").to_string();
        client
    }

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

#[test]
fn pushes_to_one_client_arrive_in_the_order_sent() {
    let redis = RedisServer::start();
    let router = start_router(&redis);
    let service = pusher(&redis);
    let mut client = Client::connect(router.port());
    for round in 0..ROUNDS {
        let request = json!({"to": "order-pusher:/", "frm": format!("{}@client:/", client.id),
                             "mid": format!("burst-{round}"), "bdy": {"burst": round}});
        client.socket.send(Message::text(request.to_string())).expect("send");
        let received: Vec<u64> = (0..BURST)
            .map(|_| {
                let frame = client.recv();
                frame["bdy"]["n"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("a numbered push, got {frame}"))
            })
            .collect();
        let expected: Vec<u64> = (round * BURST..(round + 1) * BURST).collect();
        let first_swap = received.windows(2).position(|pair| pair[0] > pair[1]);
        assert!(
            received == expected,
            "round {round}: {} of {BURST} out of place; first overtaken at index {first_swap:?}: {:?}",
            received.iter().zip(&expected).filter(|(a, b)| a != b).count(),
            first_swap.map(|i| &received[i.saturating_sub(2)..(i + 3).min(received.len())])
        );
    }
    let _ = service.shutdown();
    router.shutdown();
}

#[test]
fn pushes_to_a_client_that_is_away_are_replayed_in_the_order_sent() {
    let redis = RedisServer::start();
    let router = start_router(&redis);
    let service = pusher(&redis);
    let mailboxes = service.mailboxes(0).expect("mailboxes");
    let mut asker = Client::connect(router.port());
    let mut away = Client::connect(router.port());
    let id = away.id.clone();
    away.socket.close(None).expect("close");
    while away.socket.read().is_ok() {}
    let deadline = Instant::now() + WAIT;
    while router.ws_counts().map_or(0, |c| c.connected) != 1 {
        assert!(
            Instant::now() < deadline,
            "the router still counts the client that left"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let request = json!({"to": "order-pusher:/", "frm": format!("{}@client:/", asker.id),
                         "mid": "burst-away", "bdy": {"burst": 0, "for": id}});
    asker.socket.send(Message::text(request.to_string())).expect("send");
    let deadline = Instant::now() + WAIT;
    while mailboxes.len(&id).expect("LLEN") < BURST as usize {
        assert!(
            Instant::now() < deadline,
            "the {BURST} pushes were not all queued for {id}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut back = Client::connect(router.port());
    let reconnect = json!({"to": "hydra-router:/", "frm": format!("{}@client:/", back.id),
                           "mid": "again", "typ": "reconnect", "bdy": {"id": id}});
    back.socket.send(Message::text(reconnect.to_string())).expect("send");
    let mut received = Vec::new();
    while received.len() < BURST as usize {
        let frame = back.recv();
        match frame["bdy"]["n"].as_u64() {
            Some(n) => received.push(n),
            None => assert_eq!(frame["typ"], "connection", "{frame}"),
        }
    }
    let first_swap = received.windows(2).position(|pair| pair[0] > pair[1]);
    assert!(
        received.iter().copied().eq(0..BURST),
        "replayed out of order; first overtaken at index {first_swap:?}"
    );
    let _ = service.shutdown();
    router.shutdown();
}
