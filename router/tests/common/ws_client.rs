//! WebSocket clients of the router for the integration tests, one copy for
//! every test file: a blocking tungstenite client whose socket has a short
//! read timeout, so every wait has a deadline ([`WAIT`]) and a stuck router
//! fails a test instead of hanging it; and the Rust service most WebSocket
//! tests talk to ([`responder`]).

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hydra::{Config, Hydra, Umf};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

use super::WAIT;
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, client::IntoClientRequest};

/// How long one socket read blocks before the deadline is looked at again.
const READ_SLICE: Duration = Duration::from_millis(200);

/// What a read brought.
#[derive(Debug)]
pub enum Event {
    /// A text frame, parsed as JSON (a frame that is not JSON fails the test).
    Frame(Value),
    /// The socket is closed (close frame, reset or EOF).
    Closed,
}

/// A blocking tungstenite client of the router.
pub struct WsClient {
    socket: WebSocket<TcpStream>,
    /// The id the router gave it in its welcome (empty for a raw client).
    pub id: String,
    /// The welcome frame (`Null` for a raw client).
    pub welcome: Value,
}

impl WsClient {
    /// Connects to the router on `port` and reads its welcome.
    pub fn connect(port: u16) -> WsClient {
        WsClient::connect_with(port, &[])
    }

    /// As [`connect`](WsClient::connect), with extra upgrade request headers.
    pub fn connect_with(port: u16, headers: &[(&str, &str)]) -> WsClient {
        let mut client = WsClient::open(port, headers);
        let welcome = client.next_frame("the welcome");
        assert_eq!(
            welcome["typ"], "connection",
            "the first frame is the welcome: {welcome}"
        );
        client.id = welcome["bdy"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without bdy.id: {welcome}"))
            .to_string();
        assert_eq!(welcome["to"], client.route(), "{welcome}");
        client.welcome = welcome;
        client
    }

    /// Opens the WebSocket without reading anything.
    pub fn open(port: u16, headers: &[(&str, &str)]) -> WsClient {
        WsClient::try_open(port, headers).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens the WebSocket; `Err` when the handshake is refused.
    pub fn try_open(port: u16, headers: &[(&str, &str)]) -> Result<WsClient, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the router");
        stream.set_read_timeout(Some(READ_SLICE)).expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        let mut request = format!("ws://127.0.0.1:{port}/")
            .into_client_request()
            .expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        let (socket, response) = tungstenite::client(request, stream).map_err(|e| format!("handshake: {e}"))?;
        assert_eq!(response.status(), 101);
        Ok(WsClient {
            socket,
            id: String::new(),
            welcome: Value::Null,
        })
    }

    /// `<id>@client:/`: how this client names itself.
    pub fn route(&self) -> String {
        format!("{}@client:/", self.id)
    }

    /// Sends a text frame (false when the socket is already gone).
    pub fn send_text(&mut self, text: &str) -> bool {
        self.socket.send(Message::text(text)).is_ok()
    }

    /// Sends a UMF message in short form.
    pub fn send(&mut self, message: &Umf) {
        assert!(
            self.send_text(&message.to_short_json()),
            "send failed: the socket is closed"
        );
    }

    /// Sends a JSON value as it is (for frames a `Umf` cannot express).
    pub fn send_json(&mut self, frame: &Value) {
        assert!(self.send_text(&frame.to_string()), "send failed: the socket is closed");
    }

    /// The next frame or the close, within `wait`; `None` when nothing came.
    pub fn next_event_within(&mut self, wait: Duration) -> Option<Event> {
        let deadline = Instant::now() + wait;
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    let value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("a frame that is not JSON ({e}): {}", text.as_str()));
                    return Some(Event::Frame(value));
                }
                Ok(Message::Binary(bytes)) => panic!("unexpected binary frame of {} bytes", bytes.len()),
                Ok(Message::Close(_)) => return Some(Event::Closed),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(_) => return Some(Event::Closed),
            }
        }
    }

    /// The next event within [`WAIT`] (panics with `what` when none).
    pub fn next_event(&mut self, what: &str) -> Event {
        self.next_event_within(WAIT)
            .unwrap_or_else(|| panic!("nothing came within {WAIT:?} (waiting for {what})"))
    }

    /// The next frame (panics on a close or a timeout).
    pub fn next_frame(&mut self, what: &str) -> Value {
        match self.next_event(what) {
            Event::Frame(frame) => frame,
            Event::Closed => panic!("the socket closed (waiting for {what})"),
        }
    }

    /// Reads frames until one has `rmid` = `mid` (others are skipped).
    pub fn reply_to(&mut self, mid: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event_within(left) {
                Some(Event::Frame(frame)) if frame["rmid"] == mid => return frame,
                Some(Event::Frame(_)) => {}
                Some(Event::Closed) => panic!("the socket closed (waiting for the reply to {mid})"),
                None => panic!("no reply to {mid} within {WAIT:?}"),
            }
        }
    }

    /// Sends `message` and waits for its reply.
    pub fn call(&mut self, message: &Umf) -> Value {
        self.send(message);
        self.reply_to(&message.mid)
    }

    /// A message from this client to `to`.
    pub fn message(&self, to: &str, body: Value) -> Umf {
        Umf::new(to, self.route(), body)
    }

    /// A message of type `typ` from this client to the router
    /// (`hydra-router:/`): `ping`, `reconnect`, `wsdir.loc`, …
    pub fn router_message(&self, typ: &str, body: Value) -> Umf {
        let mut message = self.message("hydra-router:/", body);
        message.message_type = Some(typ.into());
        message
    }

    /// A client-to-client message: to the router, `forward` = `to`
    /// (`<clientID>@client:/`).
    pub fn forward_message(&self, to: &str, body: Value) -> Umf {
        let mut message = self.message("hydra-router:/", body);
        message.forward = Some(to.into());
        message
    }

    /// Sends a `ping` and returns the router's answer (a `pong`).
    pub fn ping(&mut self) -> Value {
        let ping = self.router_message("ping", json!({}));
        self.call(&ping)
    }

    /// Reads until the router closes the socket; returns the frames before.
    pub fn frames_until_closed(&mut self, what: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            match self.next_event(what) {
                Event::Frame(frame) => frames.push(frame),
                Event::Closed => return frames,
            }
        }
    }

    /// Closes the socket cleanly (close frame, then waits for the router's).
    pub fn close(mut self) {
        let _ = self.socket.close(None);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.socket.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
        panic!("the router did not answer a close within {WAIT:?}");
    }
}

/// `bdy` of a short-form frame, or `body` of a long-form one.
pub fn body(frame: &Value) -> &Value {
    if frame.get("bdy").is_some() {
        &frame["bdy"]
    } else {
        &frame["body"]
    }
}

/// A Hydra handle for service `name` on db 0 of `redis` (not registered).
pub fn hydra_on(redis: &RedisServer, name: &str) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(&redis.url(0))
        .build()
        .expect("config");
    Hydra::init(config).expect("init")
}

/// A registered Rust service `name` on `redis` that answers every message
/// with `{"echo": <its body>, "by": <name>}` through `reply` (to `via`).
pub fn responder(redis: &RedisServer, name: &str) -> Hydra {
    let hydra = hydra_on(redis, name);
    hydra.register_service().expect("register");
    let by = name.to_string();
    hydra
        .on_message(move |h, message| {
            h.reply(&message, json!({"echo": message.body, "by": by}))?;
            Ok(())
        })
        .expect("on_message");
    hydra
}
