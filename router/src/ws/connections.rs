//! The connection layer of the WebSocket gateway: every client socket in one
//! readiness loop, frames handed to a few dispatcher threads.
//!
//! - The HTTP worker that got the upgrade ([`WsGateway::upgrade_handler`])
//!   checks and answers the handshake, then posts the socket to the loop and
//!   returns.
//! - ONE thread (`hydra-router-ws`) owns every socket (tungstenite over
//!   non-blocking mio sockets): it reads frames, writes queued frames when a
//!   socket is writable, sends a ping every `ping_interval`, closes a client
//!   silent for `dead_peer_timeout`, and closes with 1009 / 1003 / 1007 / 1002
//!   on oversized, binary, non-UTF-8 or malformed frames. It never blocks, so
//!   one slow client never delays the others.
//! - Events of a client (`connected`, its frames, `disconnected`) go to a
//!   per-client inbound queue; a client with events is scheduled on the
//!   dispatchers (`hydra-router-ws-N`), which call the [`FrameHandler`] one
//!   event at a time and put the client back at the end of the line while it
//!   has more, so one busy client cannot starve the others. A full inbound
//!   queue stops reading that client (TCP backpressure).
//! - [`ClientSockets::send`] appends to the client's bounded send queue and
//!   wakes the loop; a full queue closes that client (counted).

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use hydra::Hydra;
use hydra::http::Upgraded;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::Bytes;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::handshake;
use super::{ClientInfo, ClientSockets, Delivery, FrameHandler};
use crate::short_id::short_id;

const WAKER: Token = Token(0);

/// Larger outgoing messages go out in fragments of this size: tungstenite's
/// write buffer keeps the capacity of the largest frame it held for the life
/// of the socket, so whole 1 MiB frames would leave 1 MiB behind per client.
const FRAGMENT_BYTES: usize = 16 << 10;

/// The connection layer's limits and timers.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// A ping to every client this often.
    pub ping_interval: Duration,
    /// A client heard from (any frame, pongs included) less recently than
    /// this is closed.
    pub dead_peer_timeout: Duration,
    /// Largest frame and message a client may send (larger: closed, 1009).
    pub max_message_bytes: usize,
    /// Read buffer per client (allocated for every socket: keep it small).
    pub read_buffer_bytes: usize,
    /// Frames waiting to be written to one client, at most.
    pub send_queue_frames: usize,
    /// Bytes waiting to be written to one client, at most.
    pub send_queue_bytes: usize,
    /// Frames of one client waiting for a dispatcher, at most (then the
    /// client is not read until they are handled).
    pub inbound_queue_frames: usize,
    /// Dispatcher threads calling the [`FrameHandler`].
    pub dispatchers: usize,
    /// How long a closing socket may take to finish the close handshake.
    pub close_grace: Duration,
}

impl Default for WsSettings {
    fn default() -> WsSettings {
        WsSettings {
            ping_interval: Duration::from_secs(20),
            dead_peer_timeout: Duration::from_secs(60),
            max_message_bytes: 1 << 20,
            read_buffer_bytes: 4 << 10,
            send_queue_frames: 256,
            send_queue_bytes: 1 << 20,
            inbound_queue_frames: 16,
            dispatchers: 4,
            close_grace: Duration::from_secs(2),
        }
    }
}

/// The connection layer's counters (for stats, metrics and the dashboard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsCounts {
    /// Clients connected now.
    pub connected: u64,
    /// Handshakes accepted since start.
    pub accepted: u64,
    /// Clients gone since start, whatever the reason (each accepted client
    /// counts once, when it leaves the directory).
    pub closed: u64,
    /// Upgrade requests refused (bad handshake, or shutting down).
    pub refused_handshakes: u64,
    /// Clients closed because their send queue was full.
    pub closed_overflow: u64,
    /// Clients closed because they were silent past the dead-peer timeout.
    pub closed_timeout: u64,
    /// Frames or messages over the size limit (their clients closed, 1009).
    pub oversized_frames: u64,
    /// Binary frames refused (their clients closed, 1003).
    pub binary_frames: u64,
}

/// Reads a gateway's [`WsCounts`] (cheap to clone).
#[derive(Clone)]
pub struct WsCounters(Arc<Shared>);

impl WsCounters {
    /// The counters now.
    pub fn counts(&self) -> WsCounts {
        self.0.counts()
    }
}

impl std::fmt::Debug for WsCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WsCounters").field(&self.counts()).finish()
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    accepted: AtomicU64,
    closed: AtomicU64,
    refused_handshakes: AtomicU64,
    closed_overflow: AtomicU64,
    closed_timeout: AtomicU64,
    oversized_frames: AtomicU64,
    binary_frames: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A client as the senders, the loop and the dispatchers share it.
struct Client {
    token: Token,
    id: Mutex<String>,
    outbox: Mutex<Outbox>,
    inbound: Mutex<Inbound>,
}

struct Outbox {
    frames: VecDeque<String>,
    bytes: usize,
    /// False once the client is closing: sends are refused.
    open: bool,
    /// The loop has been told to write (cleared when the queue is drained).
    flagged: bool,
}

struct Inbound {
    events: VecDeque<Event>,
    frames: usize,
    /// Waiting in (or being served by) the dispatchers.
    scheduled: bool,
    /// The loop stopped reading because the queue was full.
    paused: bool,
}

enum Event {
    Connected(ClientInfo),
    Frame(String),
    Disconnected,
}

/// A handed-over socket waiting for the loop.
struct NewSocket {
    stream: std::net::TcpStream,
    leftover: Vec<u8>,
    info: ClientInfo,
}

#[derive(Default)]
struct Mailbox {
    new: Vec<NewSocket>,
    write: Vec<Token>,
    resume: Vec<Token>,
    close: Vec<(Token, CloseCode, String)>,
}

struct Shared {
    settings: WsSettings,
    counters: Counters,
    clients: RwLock<HashMap<String, Arc<Client>>>,
    waker: Waker,
    mailbox: Mutex<Mailbox>,
    ready_tx: Sender<Arc<Client>>,
    /// Clients scheduled on the dispatchers.
    scheduled: AtomicUsize,
    stopping: AtomicBool,
    loop_done: AtomicBool,
}

/// Locks, and goes on with the data when another thread panicked holding
/// the lock (the data are queues whose every state is valid).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn post(&self, put: impl FnOnce(&mut Mailbox)) {
        put(&mut lock(&self.mailbox));
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the WebSocket loop: {e}");
        }
    }

    fn find(&self, id: &str) -> Option<Arc<Client>> {
        self.clients.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Queues an event for the dispatchers.
    fn dispatch(&self, client: &Arc<Client>, event: Event) {
        let mut inbound = lock(&client.inbound);
        if matches!(event, Event::Frame(_)) {
            inbound.frames += 1;
        }
        inbound.events.push_back(event);
        if !inbound.scheduled {
            inbound.scheduled = true;
            self.scheduled.fetch_add(1, Ordering::SeqCst);
            let _ = self.ready_tx.send(client.clone());
        }
    }

    fn counts(&self) -> WsCounts {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WsCounts {
            connected: get(&c.connected),
            accepted: get(&c.accepted),
            closed: get(&c.closed),
            refused_handshakes: get(&c.refused_handshakes),
            closed_overflow: get(&c.closed_overflow),
            closed_timeout: get(&c.closed_timeout),
            oversized_frames: get(&c.oversized_frames),
            binary_frames: get(&c.binary_frames),
        }
    }
}

impl ClientSockets for Shared {
    fn send(&self, client_id: &str, frame: String) -> Delivery {
        let Some(client) = self.find(client_id) else {
            return Delivery::NotConnected;
        };
        let mut outbox = lock(&client.outbox);
        if !outbox.open {
            return Delivery::NotConnected;
        }
        let full = outbox.frames.len() >= self.settings.send_queue_frames
            || (!outbox.frames.is_empty() && outbox.bytes + frame.len() > self.settings.send_queue_bytes);
        if full {
            outbox.open = false;
            outbox.frames.clear();
            outbox.bytes = 0;
            drop(outbox);
            bump(&self.counters.closed_overflow);
            self.post(|mail| {
                mail.close
                    .push((client.token, CloseCode::Policy, "send queue full".into()))
            });
            return Delivery::Overflowed;
        }
        outbox.bytes += frame.len();
        outbox.frames.push_back(frame);
        if !outbox.flagged {
            outbox.flagged = true;
            drop(outbox);
            self.post(|mail| mail.write.push(client.token));
        }
        Delivery::Queued
    }

    fn close(&self, client_id: &str, reason: &str) {
        if let Some(client) = self.find(client_id) {
            // A close reason is at most 123 bytes (RFC 6455 §5.5).
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let reason = reason[..end].to_string();
            self.post(|mail| mail.close.push((client.token, CloseCode::Normal, reason)));
        }
    }

    fn rename(&self, from: &str, to: &str) -> bool {
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        if from == to {
            return clients.contains_key(from);
        }
        if clients.contains_key(to) {
            return false;
        }
        let Some(client) = clients.remove(from) else {
            return false;
        };
        *lock(&client.id) = to.to_string();
        clients.insert(to.to_string(), client);
        true
    }

    fn client_ids(&self) -> Vec<String> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// The WebSocket connection layer: the readiness loop and the dispatchers.
/// [`shutdown`](WsGateway::shutdown) closes every client.
pub struct WsGateway {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl WsGateway {
    /// Starts the loop and the dispatchers calling `handler`.
    pub fn start(
        handler: Arc<dyn FrameHandler>,
        settings: WsSettings,
    ) -> std::io::Result<(WsGateway, Arc<dyn ClientSockets>)> {
        WsGateway::start_with(settings, |_| handler)
    }

    /// Starts the loop and the dispatchers calling the handler that
    /// `make_handler` builds from the gateway's [`ClientSockets`] (the
    /// routing layer needs them to answer).
    pub fn start_with(
        settings: WsSettings,
        make_handler: impl FnOnce(Arc<dyn ClientSockets>) -> Arc<dyn FrameHandler>,
    ) -> std::io::Result<(WsGateway, Arc<dyn ClientSockets>)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (ready_tx, ready_rx) = unbounded();
        let shared = Arc::new(Shared {
            settings,
            counters: Counters::default(),
            clients: RwLock::new(HashMap::new()),
            waker,
            mailbox: Mutex::new(Mailbox::default()),
            ready_tx,
            scheduled: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            loop_done: AtomicBool::new(false),
        });
        let sockets: Arc<dyn ClientSockets> = shared.clone();
        let handler = make_handler(sockets.clone());
        let mut gateway = WsGateway {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let started = (|| {
            for n in 0..shared.settings.dispatchers.max(1) {
                let (shared, handler, ready_rx) = (shared.clone(), handler.clone(), ready_rx.clone());
                gateway.threads.push(
                    std::thread::Builder::new()
                        .name(format!("hydra-router-ws-{n}"))
                        .spawn(move || dispatch_loop(&shared, &*handler, &ready_rx))?,
                );
            }
            let loop_shared = shared.clone();
            gateway.threads.push(
                std::thread::Builder::new()
                    .name("hydra-router-ws".into())
                    .spawn(move || ReadinessLoop::new(loop_shared, poll).run())?,
            );
            Ok(())
        })();
        match started {
            Ok(()) => Ok((gateway, sockets)),
            Err(e) => {
                gateway.stop();
                Err(e)
            }
        }
    }

    /// What `HttpRoutes::on_upgrade` takes: answers the handshake on the
    /// HTTP worker and hands the socket to the loop.
    pub fn upgrade_handler(&self) -> impl Fn(&Hydra, Upgraded) + Send + Sync + 'static {
        let shared = self.shared.clone();
        move |_, upgraded| take_over(&shared, upgraded)
    }

    /// The counters now.
    pub fn counts(&self) -> WsCounts {
        self.shared.counts()
    }

    /// A handle that reads the counters (for the router API), usable after
    /// the gateway is gone (then the counts stop moving).
    pub fn counters(&self) -> WsCounters {
        WsCounters(self.shared.clone())
    }

    /// Sends a close frame (1001) to every client, closes the sockets (a
    /// client that does not finish the close handshake within
    /// `close_grace` is dropped), calls `disconnected` for each, and stops
    /// the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.shared.waker.wake();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for WsGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The upgrade handler's work (on an HTTP worker).
fn take_over(shared: &Shared, upgraded: Upgraded) {
    let Upgraded {
        request,
        mut stream,
        leftover,
    } = upgraded;
    let accept_key = match handshake::check(&request) {
        Ok(key) if !shared.stopping.load(Ordering::SeqCst) => key,
        Ok(_) => {
            bump(&shared.counters.refused_handshakes);
            let refusal = handshake::Refusal {
                status: "503 Service Unavailable",
                reason: "the router is shutting down",
            };
            return handshake::refuse(stream, &refusal);
        }
        Err(refusal) => {
            bump(&shared.counters.refused_handshakes);
            return handshake::refuse(stream, &refusal);
        }
    };
    let ready = handshake::accept(&mut stream, &accept_key).and_then(|()| stream.set_nonblocking(true));
    if let Err(e) = ready {
        log::debug!("WebSocket handshake not completed: {e}");
        return;
    }
    let info = handshake::client_info(&request);
    shared.post(|mail| mail.new.push(NewSocket { stream, leftover, info }));
}

/// A dispatcher: serves scheduled clients one event at a time.
fn dispatch_loop(shared: &Shared, handler: &dyn FrameHandler, ready: &Receiver<Arc<Client>>) {
    loop {
        let client = match ready.recv_timeout(Duration::from_millis(100)) {
            Ok(client) => client,
            Err(RecvTimeoutError::Timeout) => {
                if shared.loop_done.load(Ordering::SeqCst) && shared.scheduled.load(Ordering::SeqCst) == 0 {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let event = {
            let mut inbound = lock(&client.inbound);
            let event = inbound.events.pop_front();
            if matches!(event, Some(Event::Frame(_))) {
                inbound.frames -= 1;
                if inbound.paused && inbound.frames < shared.settings.inbound_queue_frames {
                    inbound.paused = false;
                    shared.post(|mail| mail.resume.push(client.token));
                }
            }
            event
        };
        let id = lock(&client.id).clone();
        let served = catch_unwind(AssertUnwindSafe(|| match event {
            Some(Event::Connected(mut info)) => {
                info.id = id.clone();
                handler.connected(&info);
            }
            Some(Event::Frame(text)) => handler.frame(&id, text),
            Some(Event::Disconnected) => handler.disconnected(&id),
            None => {}
        }));
        if served.is_err() {
            log::error!("the WebSocket frame handler panicked on an event of client {id}");
        }
        let mut inbound = lock(&client.inbound);
        if inbound.events.is_empty() {
            inbound.scheduled = false;
            shared.scheduled.fetch_sub(1, Ordering::SeqCst);
        } else {
            // To the end of the line: the others get their turn first.
            let _ = shared.ready_tx.send(client.clone());
        }
    }
}

/// A socket the loop owns.
struct Connection {
    client: Arc<Client>,
    ws: WebSocket<TcpStream>,
    last_heard: Instant,
    last_ping: Instant,
    /// A message larger than [`FRAGMENT_BYTES`] being sent: its bytes and
    /// how far it went.
    sending: Option<(Bytes, usize)>,
    /// Set once the close began: the client is out of the directory and
    /// `disconnected` is queued.
    closing: Option<Closing>,
}

struct Closing {
    deadline: Instant,
    /// Our side is shut down: only the client's EOF is awaited.
    write_shut: bool,
}

/// What the loop does with a connection after handling it.
enum After {
    Keep,
    Drop,
}

struct ReadinessLoop {
    shared: Arc<Shared>,
    poll: Poll,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    config: WebSocketConfig,
    tick: Duration,
}

impl ReadinessLoop {
    fn new(shared: Arc<Shared>, poll: Poll) -> ReadinessLoop {
        let settings = &shared.settings;
        let config = WebSocketConfig::default()
            .read_buffer_size(settings.read_buffer_bytes)
            .write_buffer_size(0)
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        let tick = (settings.ping_interval.min(settings.dead_peer_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        ReadinessLoop {
            shared,
            poll,
            connections: HashMap::new(),
            next_token: 1,
            config,
            tick,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + self.tick;
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wait = next_tick.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("WebSocket loop: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                }
                if event.is_writable() {
                    self.handle(token, Self::on_writable);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.handle(token, Self::on_readable);
                }
            }
            self.read_mailbox();
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + self.tick;
                self.on_tick(now);
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                let deadline = *stop_deadline.get_or_insert_with(|| {
                    self.close_all();
                    Instant::now() + self.shared.settings.close_grace
                });
                if self.connections.is_empty() || Instant::now() >= deadline {
                    break;
                }
                next_tick = next_tick.min(Instant::now() + Duration::from_millis(10));
            }
        }
        let tokens: Vec<Token> = self.connections.keys().copied().collect();
        for token in tokens {
            self.drop_connection(token);
        }
        self.shared.loop_done.store(true, Ordering::SeqCst);
    }

    /// Runs `work` on a connection, dropping it when asked.
    fn handle(&mut self, token: Token, work: impl FnOnce(&mut ReadinessLoop, &mut Connection) -> After) {
        let Some(mut connection) = self.connections.remove(&token) else {
            return;
        };
        match work(self, &mut connection) {
            After::Keep => {
                self.connections.insert(token, connection);
            }
            After::Drop => {
                self.connections.insert(token, connection);
                self.drop_connection(token);
            }
        }
    }

    fn read_mailbox(&mut self) {
        let mail = std::mem::take(&mut *lock(&self.shared.mailbox));
        for socket in mail.new {
            self.register(socket);
        }
        for (token, code, reason) in mail.close {
            self.handle(token, |this, connection| {
                let overflowed = !lock(&connection.client.outbox).open && code == CloseCode::Policy;
                let after = this.start_close(connection, code, &reason);
                // A client whose queue overflowed does not read: no grace.
                if overflowed { After::Drop } else { after }
            });
        }
        for token in mail.write {
            self.handle(token, Self::on_writable);
        }
        for token in mail.resume {
            self.handle(token, Self::on_readable);
        }
    }

    fn register(&mut self, socket: NewSocket) {
        let NewSocket {
            stream,
            leftover,
            mut info,
        } = socket;
        if self.shared.stopping.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        let mut stream = TcpStream::from_std(stream);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("cannot watch a WebSocket client: {e}");
            return;
        }
        let mut clients = self.shared.clients.write().unwrap_or_else(|p| p.into_inner());
        let mut id = short_id();
        while clients.contains_key(&id) {
            id = short_id();
        }
        let client = Arc::new(Client {
            token,
            id: Mutex::new(id.clone()),
            outbox: Mutex::new(Outbox {
                frames: VecDeque::new(),
                bytes: 0,
                open: true,
                flagged: false,
            }),
            inbound: Mutex::new(Inbound {
                events: VecDeque::new(),
                frames: 0,
                scheduled: false,
                paused: false,
            }),
        });
        clients.insert(id.clone(), client.clone());
        drop(clients);
        bump(&self.shared.counters.accepted);
        self.shared.counters.connected.fetch_add(1, Ordering::Relaxed);
        info.id = id;
        self.shared.dispatch(&client, Event::Connected(info));
        let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(self.config));
        let now = Instant::now();
        self.connections.insert(
            token,
            Connection {
                client,
                ws,
                last_heard: now,
                last_ping: now,
                sending: None,
                closing: None,
            },
        );
        // Bytes that came with the handshake are read now: no event would
        // announce them.
        self.handle(token, Self::on_readable);
    }

    fn on_readable(&mut self, connection: &mut Connection) -> After {
        if connection.closing.is_some() {
            return self.drain_closing(connection);
        }
        let limit = self.shared.settings.inbound_queue_frames;
        loop {
            {
                let mut inbound = lock(&connection.client.inbound);
                if inbound.frames >= limit {
                    inbound.paused = true;
                    return After::Keep;
                }
            }
            match connection.ws.read() {
                Ok(message) => {
                    connection.last_heard = Instant::now();
                    match message {
                        Message::Text(text) => {
                            self.shared
                                .dispatch(&connection.client, Event::Frame(text.as_str().to_owned()));
                        }
                        Message::Binary(_) => {
                            bump(&self.shared.counters.binary_frames);
                            return self.start_close(
                                connection,
                                CloseCode::Unsupported,
                                "binary frames are not accepted",
                            );
                        }
                        Message::Close(_) => {
                            // tungstenite queued the answering close frame.
                            self.detach(connection);
                            return self.finish_close(connection);
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return After::Keep,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::Interrupted => {}
                Err(tungstenite::Error::Capacity(_)) => {
                    bump(&self.shared.counters.oversized_frames);
                    return self.start_close(connection, CloseCode::Size, "frame too large");
                }
                Err(tungstenite::Error::Utf8(_)) => {
                    return self.start_close(connection, CloseCode::Invalid, "text frame is not UTF-8");
                }
                Err(tungstenite::Error::Protocol(e)) => {
                    log::debug!("WebSocket client protocol error: {e}");
                    return self.start_close(connection, CloseCode::Protocol, "protocol error");
                }
                Err(_) => return After::Drop,
            }
        }
    }

    fn on_writable(&mut self, connection: &mut Connection) -> After {
        if connection.closing.is_some() {
            return self.finish_close(connection);
        }
        loop {
            let message = match connection.sending.take() {
                Some((message, offset)) => {
                    let end = (offset + FRAGMENT_BYTES).min(message.len());
                    let opcode = if offset == 0 { Data::Text } else { Data::Continue };
                    let fragment =
                        Frame::message(message.slice(offset..end), OpCode::Data(opcode), end == message.len());
                    if end < message.len() {
                        connection.sending = Some((message, end));
                    }
                    Message::Frame(fragment)
                }
                None => {
                    let mut outbox = lock(&connection.client.outbox);
                    match outbox.frames.pop_front() {
                        Some(frame) => {
                            outbox.bytes -= frame.len();
                            if frame.len() > FRAGMENT_BYTES {
                                connection.sending = Some((Bytes::from(frame.into_bytes()), 0));
                                continue;
                            }
                            Message::text(frame)
                        }
                        None => {
                            outbox.flagged = false;
                            break;
                        }
                    }
                }
            };
            match connection.ws.write(message) {
                Ok(()) => {}
                // The frame is in tungstenite's buffer: the rest waits for
                // the next writable event.
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return After::Keep,
                Err(_) => return After::Drop,
            }
        }
        match connection.ws.flush() {
            Ok(()) => After::Keep,
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => After::Keep,
            Err(_) => After::Drop,
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let settings = &self.shared.settings;
        let (ping_interval, dead_after) = (settings.ping_interval, settings.dead_peer_timeout);
        let mut due = Vec::new();
        for (token, connection) in &self.connections {
            let late = match &connection.closing {
                Some(closing) => now >= closing.deadline,
                None => {
                    now.duration_since(connection.last_heard) > dead_after
                        || now.duration_since(connection.last_ping) >= ping_interval
                }
            };
            if late {
                due.push(*token);
            }
        }
        for token in due {
            self.handle(token, |this, connection| {
                let now = Instant::now();
                if connection.closing.is_some() {
                    return After::Drop;
                }
                if now.duration_since(connection.last_heard) > this.shared.settings.dead_peer_timeout {
                    bump(&this.shared.counters.closed_timeout);
                    return this.start_close(connection, CloseCode::Away, "no answer to pings");
                }
                connection.last_ping = now;
                match connection.ws.write(Message::Ping(Default::default())) {
                    Ok(()) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return After::Drop,
                }
                match connection.ws.flush() {
                    Ok(()) => After::Keep,
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => After::Keep,
                    Err(_) => After::Drop,
                }
            });
        }
    }

    fn close_all(&mut self) {
        let tokens: Vec<Token> = self.connections.keys().copied().collect();
        for token in tokens {
            self.handle(token, |this, connection| {
                if connection.closing.is_some() {
                    return After::Keep;
                }
                this.start_close(connection, CloseCode::Away, "router shutting down")
            });
        }
    }

    /// Takes the client out of the directory and queues `disconnected`
    /// (once).
    fn detach(&self, connection: &mut Connection) {
        if connection.closing.is_some() {
            return;
        }
        connection.closing = Some(Closing {
            deadline: Instant::now() + self.shared.settings.close_grace,
            write_shut: false,
        });
        let client = &connection.client;
        {
            let mut outbox = lock(&client.outbox);
            outbox.open = false;
            outbox.frames.clear();
            outbox.bytes = 0;
        }
        let id = lock(&client.id).clone();
        {
            let mut clients = self.shared.clients.write().unwrap_or_else(|p| p.into_inner());
            if clients.get(&id).is_some_and(|found| Arc::ptr_eq(found, client)) {
                clients.remove(&id);
            }
        }
        self.shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
        bump(&self.shared.counters.closed);
        self.shared.dispatch(client, Event::Disconnected);
    }

    /// Sends a close frame and begins the close.
    fn start_close(&mut self, connection: &mut Connection, code: CloseCode, reason: &str) -> After {
        if connection.closing.is_some() {
            return After::Keep;
        }
        // Frames queued before the close (Node's error frame before it
        // closes a client) go out first; an overflowed queue is already empty.
        let queued: Vec<String> = {
            let mut outbox = lock(&connection.client.outbox);
            outbox.bytes = 0;
            outbox.frames.drain(..).collect()
        };
        for frame in queued {
            match connection.ws.write(Message::text(frame)) {
                Ok(()) => {}
                // In tungstenite's buffer: written before the close frame.
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return After::Drop,
            }
        }
        self.detach(connection);
        let frame = CloseFrame {
            code,
            reason: reason.to_string().into(),
        };
        match connection.ws.close(Some(frame)) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return After::Keep,
            Err(_) => return After::Drop,
        }
        self.finish_close(connection)
    }

    /// Writes what is left (the close frame), then shuts our side down and
    /// waits for the client's end of file.
    fn finish_close(&mut self, connection: &mut Connection) -> After {
        let Some(closing) = connection.closing.as_mut() else {
            return After::Keep;
        };
        if !closing.write_shut {
            match connection.ws.flush() {
                Ok(()) | Err(tungstenite::Error::ConnectionClosed) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return After::Keep,
                Err(_) => return After::Drop,
            }
            closing.write_shut = true;
            if connection.ws.get_ref().shutdown(Shutdown::Write).is_err() {
                return After::Drop;
            }
        }
        self.drain_closing(connection)
    }

    /// Reads and discards what a closing client still sends, until its end
    /// of file (closing a socket with unread bytes would reset it, and the
    /// client could lose our close frame).
    fn drain_closing(&mut self, connection: &mut Connection) -> After {
        if !connection.closing.as_ref().is_some_and(|c| c.write_shut) {
            return self.finish_close(connection);
        }
        let mut scratch = [0u8; 4096];
        loop {
            match connection.ws.get_mut().read(&mut scratch) {
                Ok(0) => return After::Drop,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return After::Keep,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return After::Drop,
            }
        }
    }

    fn drop_connection(&mut self, token: Token) {
        let Some(mut connection) = self.connections.remove(&token) else {
            return;
        };
        self.detach(&mut connection);
        let _ = self.poll.registry().deregister(connection.ws.get_mut());
    }
}
