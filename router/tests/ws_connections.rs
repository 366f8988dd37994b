//! The WebSocket connection layer on real sockets: a router started
//! in-process (so the layer's counters and the test process's RSS can be
//! read) on a private Redis, tungstenite clients in blocking mode, and a
//! small frame handler of the tests' own (welcome on connect, `echo:` frames
//! answered) standing in for the routing layer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use hydra_router::config::RouterConfig;
use hydra_router::gateway::{Router, Shared};
use hydra_router::log_ring::LogRing;
use hydra_router::ws::connections::WsSettings;
use hydra_router::ws::{ClientInfo, ClientSockets, Delivery, FrameHandler};
use hydra_testkit::RedisServer;
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connected(ClientInfo),
    Frame(String, String),
    Disconnected(String),
}

struct TestHandler {
    sockets: Arc<dyn ClientSockets>,
    seen: Sender<Seen>,
    /// `block` frames wait for the test to release them.
    gate: Receiver<()>,
}

impl FrameHandler for TestHandler {
    fn connected(&self, client: &ClientInfo) {
        let _ = self.seen.send(Seen::Connected(client.clone()));
        self.sockets.send(&client.id, format!("welcome {}", client.id));
    }
    fn frame(&self, client_id: &str, text: String) {
        if let Some(echo) = text.strip_prefix("echo:") {
            self.sockets.send(client_id, echo.to_string());
        }
        if text == "block" {
            let _ = self.seen.send(Seen::Frame(client_id.to_string(), "blocked".into()));
            self.gate.recv_timeout(PATIENCE).expect("released by the test");
        }
        let _ = self.seen.send(Seen::Frame(client_id.to_string(), text));
    }
    fn disconnected(&self, client_id: &str) {
        let _ = self.seen.send(Seen::Disconnected(client_id.to_string()));
    }
}

struct Harness {
    router: Option<Router>,
    sockets: Arc<dyn ClientSockets>,
    seen: Receiver<Seen>,
    release: Sender<()>,
    port: u16,
    _redis: RedisServer,
}

impl Harness {
    fn start(settings: WsSettings) -> Harness {
        let redis = RedisServer::start();
        let config = RouterConfig::from_document(
            json!({"hydra": {"serviceName": "hydra-router", "servicePort": 0, "serviceIP": "127.0.0.1",
                             "redis": {"url": redis.url(0)}}}),
            &[],
        )
        .expect("config");
        let (seen_tx, seen) = unbounded();
        let (release, gate) = unbounded();
        let slot = Arc::new(OnceLock::new());
        let handed = slot.clone();
        let make = Box::new(
            move |_: &hydra::Hydra, _: &Arc<Shared>, sockets: Arc<dyn ClientSockets>| {
                let _ = handed.set(sockets.clone());
                Arc::new(TestHandler {
                    sockets,
                    seen: seen_tx,
                    gate,
                }) as Arc<dyn FrameHandler>
            },
        );
        let router = Router::start_with_ws(config, LogRing::new(), settings, Some(make)).expect("router starts");
        Harness {
            port: router.port(),
            router: Some(router),
            sockets: slot.get().expect("the factory ran").clone(),
            seen,
            release,
            _redis: redis,
        }
    }

    fn router(&self) -> &Router {
        self.router.as_ref().expect("running")
    }

    fn next_seen(&self) -> Seen {
        self.seen
            .recv_timeout(PATIENCE)
            .expect("an event from the connection layer")
    }

    /// Connects a client and returns it with its id (read from the welcome).
    fn connect(&self, path: &str) -> (WebSocket<TcpStream>, String) {
        let mut ws = connect(self.port, path);
        let welcome = read_text(&mut ws);
        let id = welcome.strip_prefix("welcome ").expect("a welcome first").to_string();
        (ws, id)
    }

    /// Waits for the disconnected event of `id`, skipping others.
    fn wait_disconnected(&self, id: &str) {
        loop {
            if let Seen::Disconnected(gone) = self.next_seen()
                && gone == id
            {
                return;
            }
        }
    }

    fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "waited too long for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(router) = self.router.take() {
            router.shutdown();
        }
    }
}

fn quick_settings() -> WsSettings {
    WsSettings {
        max_message_bytes: 64 << 10,
        ..WsSettings::default()
    }
}

fn tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn connect(port: u16, path: &str) -> WebSocket<TcpStream> {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let (ws, response) = tungstenite::client::client(url.as_str(), tcp(port)).expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

fn read_text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("a frame") {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame; its code.
fn read_close(ws: &mut WebSocket<TcpStream>) -> CloseCode {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return frame.code,
            Ok(Message::Close(None)) => panic!("a close frame without a code"),
            Ok(_) => {}
            Err(e) => panic!("the socket ended without a close frame: {e}"),
        }
    }
}

/// A raw HTTP exchange: the answer's head and body.
fn raw_exchange(port: u16, request: &str) -> String {
    let mut stream = tcp(port);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn upgrade_request(headers: &str) -> String {
    format!("GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\n{headers}\r\n")
}

#[test]
fn handshakes_are_checked_and_the_http_api_shares_the_port() {
    let harness = Harness::start(quick_settings());
    let (mut ws, id) = harness.connect("/ws?room=1");
    let Seen::Connected(info) = harness.next_seen() else {
        panic!("connected first")
    };
    assert_eq!(
        (info.id.as_str(), info.url.as_str(), info.ip.as_str()),
        (id.as_str(), "/ws?room=1", "127.0.0.1")
    );
    assert!(harness.sockets.client_ids().contains(&id));

    let bad_key = raw_exchange(
        harness.port,
        &upgrade_request("upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: nope\r\n"),
    );
    assert!(bad_key.starts_with("HTTP/1.1 400 "), "{bad_key}");
    let old_version = raw_exchange(
        harness.port,
        &upgrade_request(
            "upgrade: websocket\r\nsec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        ),
    );
    assert!(old_version.starts_with("HTTP/1.1 426 "), "{old_version}");
    assert!(old_version.contains("sec-websocket-version: 13"), "{old_version}");
    let not_websocket = raw_exchange(
        harness.port,
        &upgrade_request(
            "upgrade: h2c\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        ),
    );
    assert!(not_websocket.starts_with("HTTP/1.1 400 "), "{not_websocket}");
    // A plain request (no upgrade) is the HTTP API's, on the same port.
    let version = raw_exchange(
        harness.port,
        "GET /v1/router/version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(version.starts_with("HTTP/1.1 200 "), "{version}");
    assert_eq!(harness.router().ws_counts().unwrap().refused_handshakes, 3);

    // A frame sent right behind the handshake request (before the 101) is
    // read too: a masked text frame, mask 0, written by hand.
    let mut early = tcp(harness.port);
    let mut bytes = upgrade_request(
        "upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .into_bytes();
    let payload = b"echo:early bird";
    bytes.extend_from_slice(&[0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0]);
    bytes.extend_from_slice(payload);
    early.write_all(&bytes).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&received).contains("early bird") {
        let n = early.read(&mut chunk).expect("the echo of the early frame");
        assert!(n > 0, "closed before the echo: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 101 "));

    // The accepted client still works, and x-forwarded-for names a client.
    ws.send(Message::text("echo:still here")).unwrap();
    assert_eq!(read_text(&mut ws), "still here");
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://127.0.0.1:{}/other", harness.port).as_str(),
    )
    .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
    let (_proxied, _) = tungstenite::client::client(request, tcp(harness.port)).expect("handshake");
    loop {
        if let Seen::Connected(info) = harness.next_seen()
            && info.url == "/other"
        {
            assert_eq!(info.ip, "203.0.113.9");
            break;
        }
    }
}

#[test]
fn frames_reach_the_handler_in_order_and_sends_reach_the_client() {
    let harness = Harness::start(quick_settings());
    let (mut ws, id) = harness.connect("/");
    match harness.next_seen() {
        Seen::Connected(info) => assert_eq!((info.id.as_str(), info.url.as_str()), (id.as_str(), "/")),
        other => panic!("connected first, not {other:?}"),
    }
    for n in 0..500 {
        ws.write(Message::text(format!("frame {n}"))).unwrap();
    }
    ws.flush().unwrap();
    for n in 0..500 {
        assert_eq!(harness.next_seen(), Seen::Frame(id.clone(), format!("frame {n}")));
    }
    for n in 0..50 {
        assert_eq!(harness.sockets.send(&id, format!("down {n}")), Delivery::Queued);
    }
    for n in 0..50 {
        assert_eq!(read_text(&mut ws), format!("down {n}"));
    }
    assert_eq!(harness.sockets.send("nobody", "x".into()), Delivery::NotConnected);
    // A large message (sent in fragments) arrives whole, in its place.
    let large: String = (0..40_000).map(|n| format!("{n:>6}é")).collect();
    harness.sockets.send(&id, "before".into());
    harness.sockets.send(&id, large.clone());
    harness.sockets.send(&id, "after".into());
    assert_eq!(read_text(&mut ws), "before");
    assert!(read_text(&mut ws) == large, "the large message arrived changed");
    assert_eq!(read_text(&mut ws), "after");

    // A reconnect takes over an old id.
    assert!(harness.sockets.rename(&id, "old-id"));
    assert!(!harness.sockets.rename("nobody", "other"));
    assert_eq!(harness.sockets.send(&id, "x".into()), Delivery::NotConnected);
    harness.sockets.send("old-id", "renamed".into());
    assert_eq!(read_text(&mut ws), "renamed");
    ws.send(Message::text("after rename")).unwrap();
    assert_eq!(harness.next_seen(), Seen::Frame("old-id".into(), "after rename".into()));

    // The client closes: disconnected comes after its last frame.
    ws.send(Message::text("last")).unwrap();
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    assert_eq!(harness.next_seen(), Seen::Frame("old-id".into(), "last".into()));
    assert_eq!(harness.next_seen(), Seen::Disconnected("old-id".into()));
    assert!(harness.sockets.client_ids().is_empty());

    // The routing layer closes a client: a close frame with its reason.
    let (mut closed, closed_id) = harness.connect("/");
    harness.sockets.close(&closed_id, "bye now");
    match closed.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::Normal, "bye now"));
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    harness.wait_disconnected(&closed_id);
    assert_eq!(harness.sockets.send(&closed_id, "x".into()), Delivery::NotConnected);
}

#[test]
fn binary_and_oversized_frames_close_the_client_with_their_codes() {
    let harness = Harness::start(quick_settings());
    let (mut binary, _) = harness.connect("/");
    binary.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(read_close(&mut binary), CloseCode::Unsupported);

    let (mut big, _) = harness.connect("/");
    big.send(Message::text("x".repeat(100 << 10))).unwrap_or(());
    assert_eq!(read_close(&mut big), CloseCode::Size);

    // A message over the limit in small fragments is refused too.
    let (mut fragmented, _) = harness.connect("/");
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let chunk = vec![b'y'; 16 << 10];
    let mut first = Frame::message(chunk.clone(), OpCode::Data(Data::Text), false);
    first.header_mut().is_final = false;
    fragmented.write(Message::Frame(first)).unwrap();
    for _ in 0..6 {
        let mut more = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), false);
        more.header_mut().is_final = false;
        if fragmented.write(Message::Frame(more)).is_err() {
            break;
        }
    }
    let _ = fragmented.flush();
    assert_eq!(read_close(&mut fragmented), CloseCode::Size);

    let counts = harness.router().ws_counts().unwrap();
    assert_eq!((counts.binary_frames, counts.oversized_frames), (1, 2));
    harness.wait_until("the three clients to be gone", || {
        harness.router().ws_counts().unwrap().connected == 0
    });
}

#[test]
fn server_pings_arrive_and_a_silent_client_is_closed() {
    let harness = Harness::start(WsSettings {
        ping_interval: Duration::from_millis(200),
        dead_peer_timeout: Duration::from_millis(1500),
        ..quick_settings()
    });
    // A client that reads answers the pings (tungstenite does) and stays.
    let (mut alive, alive_id) = harness.connect("/");
    loop {
        if let Message::Ping(_) = alive.read().expect("a frame") {
            break;
        }
    }
    let keep_reading = std::thread::spawn(move || {
        // Reading answers the pings; ends when the server closes at shutdown.
        while alive.read().is_ok() {}
    });
    // A raw client that completed the handshake and never answers.
    let mut silent = tcp(harness.port);
    silent
        .write_all(
            upgrade_request(
                "upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            )
            .as_bytes(),
        )
        .unwrap();
    let silent_id = loop {
        if let Seen::Connected(info) = harness.next_seen()
            && info.id != alive_id
        {
            break info.id;
        }
    };
    harness.wait_disconnected(&silent_id);
    let counts = harness.router().ws_counts().unwrap();
    assert_eq!(counts.closed_timeout, 1);
    assert_eq!(harness.sockets.client_ids(), vec![alive_id.clone()]);
    // What the silent client got: the 101, its welcome, pings (0x89), then a close (0x88) with 1001.
    let mut received = Vec::new();
    let _ = silent.read_to_end(&mut received);
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").expect("a 101") + 4;
    assert!(received.starts_with(b"HTTP/1.1 101 "));
    // Server frames are unmasked and short here: opcode byte, length byte, payload.
    let mut frames = &received[head_end..];
    let mut opcodes = Vec::new();
    let mut close_payload = Vec::new();
    while frames.len() >= 2 {
        let (opcode, length) = (frames[0], frames[1] as usize);
        opcodes.push(opcode);
        if opcode == 0x88 {
            close_payload = frames[2..2 + length].to_vec();
        }
        frames = &frames[2 + length..];
    }
    // The welcome (text), pings, then the close.
    assert_eq!(opcodes[0], 0x81, "the welcome first: {opcodes:x?}");
    assert!(
        opcodes[1..opcodes.len() - 1].iter().all(|&op| op == 0x89),
        "pings: {opcodes:x?}"
    );
    assert!(opcodes.len() >= 3, "at least one ping: {opcodes:x?}");
    assert_eq!(opcodes.last(), Some(&0x88), "a close last: {opcodes:x?}");
    assert_eq!(&close_payload[..2], &1001u16.to_be_bytes());
    drop(harness);
    keep_reading.join().unwrap();
}

#[test]
fn a_client_that_never_reads_is_closed_and_the_others_keep_flowing() {
    let harness = Harness::start(WsSettings {
        send_queue_frames: 64,
        send_queue_bytes: 4 << 20,
        ..quick_settings()
    });
    let (stuck, stuck_id) = harness.connect("/");
    let (mut fast, _) = harness.connect("/");
    let sockets = harness.sockets.clone();
    let stuck_for_flood = stuck_id.clone();
    let flood = std::thread::spawn(move || {
        let frame = "z".repeat(64 << 10);
        for sent in 0..100_000u64 {
            match sockets.send(&stuck_for_flood, frame.clone()) {
                Delivery::Queued => {}
                Delivery::Overflowed => return Some(sent),
                Delivery::NotConnected => return None,
            }
            if sent % 64 == 63 {
                std::thread::yield_now();
            }
        }
        None
    });
    let mut slowest = Duration::ZERO;
    for n in 0..300 {
        let started = Instant::now();
        fast.send(Message::text(format!("echo:{n}"))).unwrap();
        assert_eq!(read_text(&mut fast), n.to_string());
        slowest = slowest.max(started.elapsed());
    }
    let sent = flood.join().unwrap().expect("the stuck client's queue overflowed");
    harness.wait_disconnected(&stuck_id);
    let counts = harness.router().ws_counts().unwrap();
    assert_eq!(counts.closed_overflow, 1);
    println!(
        "stuck client overflowed after {sent} frames of 64 KiB; slowest round trip of the other client: {slowest:?}"
    );
    // The other client is untouched.
    fast.send(Message::text("echo:still")).unwrap();
    assert_eq!(read_text(&mut fast), "still");
    drop(stuck);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    let harness = Harness::start(quick_settings());
    let port = harness.port;
    let cycles = |count: usize| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for n in 0..count / 4 {
                        let mut ws = connect(port, "/");
                        assert!(read_text(&mut ws).starts_with("welcome "));
                        if n % 2 == 0 {
                            // A clean close handshake …
                            ws.close(None).unwrap();
                            while ws.read().is_ok() {}
                        }
                        // … or the socket simply dropped.
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    };
    let drained = || {
        harness.wait_until("every client to be gone", || {
            harness.router().ws_counts().unwrap().connected == 0 && harness.sockets.client_ids().is_empty()
        })
    };
    cycles(200);
    drained();
    let before = rss_kib();
    cycles(1000);
    drained();
    let after = rss_kib();
    let counts = harness.router().ws_counts().unwrap();
    assert_eq!(counts.accepted, 1200);
    println!("RSS of the test process: {before} KiB after 200 warm-up cycles, {after} KiB after 1,000 more");
    assert!(after < before + 16 * 1024, "RSS grew from {before} KiB to {after} KiB");
    // Every client got connected and disconnected once.
    // (`disconnected` is called on a dispatcher, after the count dropped.)
    let (mut connected, mut disconnected) = (0, 0);
    while disconnected < 1200 {
        match harness.next_seen() {
            Seen::Connected(_) => connected += 1,
            Seen::Disconnected(_) => disconnected += 1,
            Seen::Frame(..) => {}
        }
    }
    assert_eq!((connected, disconnected), (1200, 1200));
}

#[test]
fn shutdown_closes_every_client_with_a_close_frame() {
    let mut harness = Harness::start(quick_settings());
    let mut clients: Vec<_> = (0..5).map(|_| harness.connect("/").0).collect();
    let router = harness.router.take().unwrap();
    let stopping = std::thread::spawn(move || router.shutdown());
    for client in &mut clients {
        assert_eq!(read_close(client), CloseCode::Away);
        // The close handshake completes: the server then ends the socket.
        while client.read().is_ok() {}
    }
    stopping.join().unwrap();
    let disconnected = harness
        .seen
        .try_iter()
        .filter(|seen| matches!(seen, Seen::Disconnected(_)))
        .count();
    assert_eq!(disconnected, 5);
}

#[test]
fn a_client_whose_frames_block_holds_one_dispatcher_only() {
    let harness = Harness::start(WsSettings {
        dispatchers: 2,
        ..quick_settings()
    });
    let (mut blocking, blocking_id) = harness.connect("/");
    let (mut other, _) = harness.connect("/");
    // Three frames whose handling blocks until released: handled one at a
    // time, so they hold one dispatcher, and the other client is served by
    // the second one meanwhile.
    for _ in 0..3 {
        blocking.send(Message::text("block")).unwrap();
    }
    loop {
        if harness.next_seen() == Seen::Frame(blocking_id.clone(), "blocked".into()) {
            break;
        }
    }
    for n in 0..20 {
        other.send(Message::text(format!("echo:{n}"))).unwrap();
        assert_eq!(read_text(&mut other), n.to_string());
    }
    // Only the first of the three has started.
    let started = harness
        .seen
        .try_iter()
        .filter(|seen| *seen == Seen::Frame(blocking_id.clone(), "blocked".into()))
        .count();
    assert_eq!(started, 0, "the blocked client's frames ran in parallel");
    for _ in 0..3 {
        harness.release.send(()).unwrap();
    }
    let mut handled = 0;
    while handled < 3 {
        if harness.next_seen() == Seen::Frame(blocking_id.clone(), "block".into()) {
            handled += 1;
        }
    }
    blocking.send(Message::text("echo:free")).unwrap();
    assert_eq!(read_text(&mut blocking), "free");
}
