//! The readiness loop of the embedded HTTP server (thread `hydra-http`).
//!
//! It owns the listener and every connection that is not with a worker, on
//! one `mio::Poll`: it accepts (beyond `max_connections`: a 503 and close),
//! reads request heads and bodies without blocking, under the size limits and
//! deadlines of [`HttpSettings`], and hands only complete requests to the
//! workers over a bounded queue (full: a 503). A worker takes the connection's
//! socket with the request, runs the handler, writes what the socket takes at
//! once and gives the socket back with the rest; the loop finishes the write,
//! then keeps the connection for its next (possibly already pipelined)
//! request or closes it. A connection therefore ties up a worker only while
//! its handler runs, never while its client is slow.
//!
//! Deadlines are checked by a sweep every [`SWEEP`] (so they hold to within
//! that), which keeps the bookkeeping to one timestamp per connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::http::framing::{
    BodyDecoder, BodyFraming, HeadScanner, Limits, Rejection, RequestHead, encode_response, parse_head,
};
use crate::http::handler::{HttpRequest, HttpResponse};
use crate::http::server::{Counters, HttpSettings, bump, process_id};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens start after the listener's and the waker's.
const FIRST_CONNECTION: usize = 2;
/// How often deadlines are checked.
pub(crate) const SWEEP: Duration = Duration::from_millis(100);
/// After an error answer, how long the client's remaining bytes are read and
/// dropped (so that it sees the answer rather than a reset), and how many.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// A complete request for a worker, with its connection's socket.
pub(crate) struct WorkItem {
    pub id: usize,
    pub stream: TcpStream,
    pub request: HttpRequest,
    pub keep_alive: bool,
    /// An upgrade request the routes take over (`HttpRoutes::on_upgrade`),
    /// with the bytes that came after it: the connection leaves the loop.
    pub upgrade: Option<Vec<u8>>,
}

/// A socket given back by a worker: the encoded response and how much of it
/// was written (`None`: the write failed, close). No socket: the worker
/// handed the connection over (an upgrade), the loop forgets it.
pub(crate) struct Returned {
    pub id: usize,
    pub stream: Option<TcpStream>,
    pub output: Vec<u8>,
    pub written: Option<usize>,
    pub close: bool,
}

/// True for an HTTP/1.1 upgrade request (RFC 9110 §7.8): `Upgrade` named in
/// `Connection`, an `Upgrade` header, a GET with no body.
fn is_upgrade(head: &RequestHead) -> bool {
    let has = |name: &str| head.headers.iter().any(|(n, _)| n == name);
    let connection_names_upgrade = head
        .headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    head.method == "GET"
        && has("upgrade")
        && connection_names_upgrade
        && matches!(head.body, BodyFraming::None | BodyFraming::Length(0))
}

/// Writes as much of `bytes` as the socket takes without blocking: the count,
/// or `None` when the connection failed.
pub(crate) fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> Option<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return None,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return None,
        }
    }
    Some(written)
}

enum Phase {
    /// Waiting for a request head, or reading one. `started`: when the
    /// request started (`None`: no byte of it yet, the connection is idle).
    Head {
        scanner: HeadScanner,
        started: Option<Instant>,
    },
    /// Reading the body of `head`.
    Body {
        head: RequestHead,
        decoder: BodyDecoder,
        body: Vec<u8>,
        started: Instant,
    },
    /// A worker has the socket.
    Busy,
    /// Writing a response; then close, or wait for the next request.
    /// `refused`: an error answer to a request that may still be arriving,
    /// so the close always lingers.
    Writing {
        output: Vec<u8>,
        written: usize,
        close: bool,
        refused: bool,
    },
    /// Answered and closing: our side is shut; the client's remaining bytes
    /// are read and dropped until it closes or `until`.
    Lingering { until: Instant, drained: usize },
}

struct Connection {
    /// `None` while a worker has it.
    stream: Option<TcpStream>,
    /// Bytes read and not yet used (the start of the next request, pipelined).
    buffer: Vec<u8>,
    phase: Phase,
    /// Accepted, or the previous response written: when idling started.
    idle_since: Instant,
    first_request: bool,
    /// The last byte read or written.
    last_io: Instant,
    /// Counted against `max_connections` (refused connections are not).
    counted: bool,
    /// The socket may hold bytes not read yet although no readiness event
    /// will say so (edge-triggered): the last read filled the buffer, or an
    /// event came while a worker had the socket.
    unread: bool,
    /// The client's address.
    peer: std::net::SocketAddr,
}

/// What reading the buffer of a connection led to.
enum Step {
    /// More bytes are needed.
    NeedBytes,
    /// The phase moved on; look at the buffer again.
    Again,
    Reject(Rejection),
    Dispatch(RequestHead, Vec<u8>),
}

/// The loop and everything it owns.
pub(crate) struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    waker: Arc<Waker>,
    connections: HashMap<usize, Connection>,
    next_id: usize,
    /// Open connections counted against the cap, and refused ones lingering.
    open: usize,
    refusing: usize,
    settings: HttpSettings,
    limits: Limits,
    counters: Arc<Counters>,
    jobs: Sender<WorkItem>,
    returns: Receiver<Returned>,
    stop: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    drain_deadline: Option<Instant>,
    accept_errors: AcceptErrors,
    /// Accepting failed (e.g. out of file descriptors): try again at the next
    /// sweep, as no new readiness event may come.
    accept_retry: bool,
    scratch: Vec<u8>,
    /// The routes take upgrade requests over (`HttpRoutes::on_upgrade`).
    upgrades: bool,
}

impl EventLoop {
    pub(crate) fn new(
        listener: std::net::TcpListener,
        settings: HttpSettings,
        counters: Arc<Counters>,
        jobs: Sender<WorkItem>,
        returns: Receiver<Returned>,
        stop: Arc<AtomicBool>,
        draining: Arc<AtomicBool>,
    ) -> io::Result<EventLoop> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            waker,
            connections: HashMap::new(),
            next_id: FIRST_CONNECTION,
            open: 0,
            refusing: 0,
            limits: Limits {
                max_head_bytes: settings.max_head_bytes,
                max_url_bytes: settings.max_url_bytes,
                max_body_bytes: settings.max_body_bytes,
            },
            settings,
            counters,
            jobs,
            returns,
            stop,
            draining,
            drain_deadline: None,
            accept_errors: AcceptErrors::default(),
            accept_retry: false,
            scratch: vec![0; READ_CHUNK],
            upgrades: false,
        })
    }

    /// Upgrade requests go to the workers with their connection's remaining
    /// bytes, to be handed over (`HttpRoutes::on_upgrade`).
    pub(crate) fn hand_over_upgrades(&mut self) {
        self.upgrades = true;
    }

    /// A handle on the poll's registry, for workers that take a socket out
    /// of the loop (an upgrade) and must deregister it first.
    pub(crate) fn registry(&self) -> io::Result<mio::Registry> {
        self.poll.registry().try_clone()
    }

    /// Wakes the loop (workers giving sockets back, `stop`).
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs until stopped and drained.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let timeout = if self.connections.is_empty() && !self.accept_retry {
                Duration::from_secs(1)
            } else {
                next_sweep.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("the HTTP server's poll failed ({e}); it stops serving");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(id) => self.on_ready(id),
                }
            }
            self.take_returns();
            if self.stop.load(Ordering::SeqCst) && self.drain_deadline.is_none() {
                self.begin_drain();
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                if self.accept_retry {
                    self.accept();
                }
                next_sweep = now + SWEEP;
            }
            if let Some(deadline) = self.drain_deadline {
                if self.connections.is_empty() {
                    return;
                }
                if now >= deadline {
                    log::warn!(
                        "HTTP shutdown: {} connection(s) still busy after {:?}; closing them",
                        self.connections.len(),
                        self.settings.drain_timeout
                    );
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_retry = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of file descriptors: say so (rate-limited) and
                    // try again at the next sweep rather than spin.
                    self.accept_errors.report(&e);
                    self.accept_retry = true;
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: std::net::SocketAddr) {
        bump(&self.counters.connections);
        let over = self.open >= self.settings.max_connections;
        if over && self.refusing >= self.settings.max_connections {
            // Refusing politely is bounded too: beyond that, just close.
            bump(&self.counters.overloaded);
            return;
        }
        let _ = stream.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id), Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("cannot watch an HTTP connection: {e}");
            return;
        }
        let now = Instant::now();
        self.connections.insert(
            id,
            Connection {
                stream: Some(stream),
                buffer: Vec::new(),
                phase: Phase::Head {
                    scanner: HeadScanner::default(),
                    started: None,
                },
                idle_since: now,
                first_request: true,
                last_io: now,
                counted: !over,
                unread: false,
                peer,
            },
        );
        if over {
            self.refusing += 1;
            bump(&self.counters.overloaded);
            self.answer_and_close(id, &HttpResponse::error(503, "server is overloaded; try again"));
        } else {
            self.open += 1;
            self.read_requests(id);
        }
    }

    fn on_ready(&mut self, id: usize) {
        let Some(connection) = self.connections.get(&id) else {
            return;
        };
        match connection.phase {
            Phase::Head { .. } | Phase::Body { .. } => self.read_requests(id),
            Phase::Writing { .. } => self.flush(id),
            Phase::Lingering { .. } => self.linger(id),
            // Readiness while a worker has the socket is looked at when it
            // comes back (writes are tried then, reads when this says so).
            Phase::Busy => {
                if let Some(connection) = self.connections.get_mut(&id) {
                    connection.unread = true;
                }
            }
        }
    }

    /// Reads and parses until a request is complete (handed to a worker),
    /// the socket has nothing more, or the connection ends.
    fn read_requests(&mut self, id: usize) {
        loop {
            let step = match self.connections.get_mut(&id) {
                Some(connection) => step(connection, &self.limits),
                None => return,
            };
            match step {
                Step::Again => continue,
                Step::Reject(rejection) => return self.reject(id, rejection),
                Step::Dispatch(head, body) => return self.dispatch(id, head, body),
                Step::NeedBytes => {}
            }
            let Some(connection) = self.connections.get_mut(&id) else {
                return;
            };
            let Some(stream) = connection.stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => return self.on_eof(id),
                Ok(n) => {
                    connection.buffer.extend_from_slice(&self.scratch[..n]);
                    connection.last_io = Instant::now();
                    // A short read emptied the socket's receive queue.
                    connection.unread = n == self.scratch.len();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    connection.unread = false;
                    return;
                }
                Err(_) => return self.close(id),
            }
        }
    }

    fn on_eof(&mut self, id: usize) {
        let idle = matches!(
            self.connections.get(&id).map(|c| &c.phase),
            Some(Phase::Head { started: None, .. })
        );
        if idle {
            self.close(id);
        } else {
            // Half a request, then the client closed its side.
            self.reject(
                id,
                Rejection {
                    status: 400,
                    reason: "the request ended early".into(),
                    framing: false,
                },
            );
        }
    }

    fn reject(&mut self, id: usize, rejection: Rejection) {
        bump(&self.counters.rejected);
        bump(&self.counters.requests);
        if rejection.framing {
            bump(&self.counters.rejected_framing);
        }
        self.answer_and_close(id, &HttpResponse::error(rejection.status, &rejection.reason));
    }

    fn dispatch(&mut self, id: usize, head: RequestHead, body: Vec<u8>) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        let Some(stream) = connection.stream.take() else {
            return;
        };
        connection.phase = Phase::Busy;
        let upgrade = (self.upgrades && is_upgrade(&head)).then(|| std::mem::take(&mut connection.buffer));
        let item = WorkItem {
            id,
            stream,
            upgrade,
            keep_alive: head.keep_alive,
            request: HttpRequest {
                method: head.method,
                path: head.path,
                query: head.query,
                params: Default::default(),
                headers: head.headers,
                body,
                remote_addr: Some(connection.peer),
            },
        };
        match self.jobs.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                connection.stream = Some(item.stream);
                bump(&self.counters.overloaded);
                self.answer_and_close(id, &HttpResponse::error(503, "server is overloaded; try again"));
            }
        }
    }

    /// Sends `response` with `connection: close`, then closes.
    fn answer_and_close(&mut self, id: usize, response: &HttpResponse) {
        let (output, _) = encode_response(response, false, false, process_id());
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        connection.buffer = Vec::new();
        connection.phase = Phase::Writing {
            output,
            written: 0,
            close: true,
            refused: true,
        };
        self.flush(id);
    }

    /// Writes what the socket takes of the response being written.
    fn flush(&mut self, id: usize) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        let (Some(stream), Phase::Writing { output, written, .. }) =
            (connection.stream.as_mut(), &mut connection.phase)
        else {
            return;
        };
        match write_some(stream, &output[*written..]) {
            None => return self.close(id),
            Some(0) => {}
            Some(n) => {
                *written += n;
                connection.last_io = Instant::now();
            }
        }
        if *written == output.len() {
            self.finish_response(id);
        }
    }

    /// The response is out: close, or wait for the next request.
    fn finish_response(&mut self, id: usize) {
        let draining = self.drain_deadline.is_some();
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        let (close, refused) = match connection.phase {
            Phase::Writing { close, refused, .. } => (close, refused),
            _ => (true, true),
        };
        let now = Instant::now();
        if !(close || draining) {
            connection.phase = Phase::Head {
                scanner: HeadScanner::default(),
                started: None,
            };
            connection.first_request = false;
            connection.idle_since = now;
            // A pipelined request may be waiting in the buffer or the socket.
            if !connection.buffer.is_empty() || connection.unread {
                self.read_requests(id);
            }
            return;
        }
        // Closing while the client still sends would reset the connection,
        // and a reset can destroy the answer before the client reads it: after
        // an error answer, or when bytes are waiting, shut our side and read
        // and drop the rest for a moment (lingering close, RFC 9112 §9.6).
        let waiting = match connection.stream.as_mut().map(|s| s.read(&mut self.scratch)) {
            Some(Ok(n)) => n > 0,
            Some(Err(e)) => e.kind() == io::ErrorKind::Interrupted,
            None => false,
        };
        let linger = refused || waiting;
        if !linger {
            return self.close(id);
        }
        if let Some(stream) = &connection.stream {
            let _ = stream.shutdown(Shutdown::Write);
        }
        connection.buffer = Vec::new();
        connection.phase = Phase::Lingering {
            until: now + LINGER,
            drained: 0,
        };
        self.linger(id);
    }

    /// Reads and drops what a closing connection's client still sends.
    fn linger(&mut self, id: usize) {
        loop {
            let Some(connection) = self.connections.get_mut(&id) else {
                return;
            };
            let (Some(stream), Phase::Lingering { drained, .. }) = (connection.stream.as_mut(), &mut connection.phase)
            else {
                return self.close(id);
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => return self.close(id),
                Ok(n) => {
                    *drained += n;
                    if *drained > LINGER_BYTES {
                        return self.close(id);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.close(id),
            }
        }
    }

    /// Sockets that workers give back after writing (part of) a response.
    fn take_returns(&mut self) {
        while let Ok(returned) = self.returns.try_recv() {
            let Some(stream) = returned.stream else {
                // Handed over (an upgrade): no longer the loop's, nor counted.
                self.close(returned.id);
                continue;
            };
            let Some(connection) = self.connections.get_mut(&returned.id) else {
                continue;
            };
            connection.stream = Some(stream);
            connection.last_io = Instant::now();
            match returned.written {
                None => self.close(returned.id),
                Some(written) => {
                    connection.phase = Phase::Writing {
                        output: returned.output,
                        written,
                        close: returned.close,
                        refused: false,
                    };
                    // Also when the worker wrote it all: a writable event
                    // that came while it had the socket is not lost this way.
                    self.flush(returned.id);
                }
            }
        }
    }

    fn close(&mut self, id: usize) {
        let Some(connection) = self.connections.remove(&id) else {
            return;
        };
        if connection.counted {
            self.open -= 1;
        } else {
            self.refusing -= 1;
        }
        // Dropping the socket closes it, which also takes it out of the poll
        // (it is never duplicated), without a system call more.
        drop(connection);
    }

    /// Closes connections past their deadline.
    fn sweep(&mut self, now: Instant) {
        let s = &self.settings;
        let head_limit = s.head_timeout.min(s.request_timeout);
        let mut expired = Vec::new();
        for (&id, c) in &self.connections {
            let silent = now >= c.last_io + s.read_timeout;
            let (late, counts) = match &c.phase {
                Phase::Head { started: None, .. } if c.first_request => (now >= c.idle_since + head_limit, true),
                // An idle keep-alive connection running out is normal.
                Phase::Head { started: None, .. } => (now >= c.idle_since + s.keep_alive, false),
                Phase::Head {
                    started: Some(started), ..
                } => (silent || now >= *started + head_limit, true),
                Phase::Body { started, .. } => (silent || now >= *started + s.request_timeout, true),
                Phase::Busy => (false, false),
                Phase::Writing { .. } => (silent, true),
                Phase::Lingering { until, .. } => (now >= *until, false),
            };
            if late {
                expired.push((id, counts));
            }
        }
        for (id, counts) in expired {
            if counts {
                bump(&self.counters.timed_out);
            }
            self.close(id);
        }
    }

    /// Stops accepting (the listener is closed), closes idle connections and
    /// lets the others finish until the drain deadline.
    fn begin_drain(&mut self) {
        self.draining.store(true, Ordering::SeqCst);
        self.drain_deadline = Some(Instant::now() + self.settings.drain_timeout);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let idle: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Head { started: None, .. }))
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.close(id);
        }
    }
}

/// Looks at a connection's buffered bytes in its current phase.
fn step(connection: &mut Connection, limits: &Limits) -> Step {
    match &mut connection.phase {
        Phase::Head { scanner, started } => {
            if started.is_none() {
                // Empty lines before a request are ignored (RFC 9112 §2.2).
                let blank = connection
                    .buffer
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                let blank = blank - blank % 2;
                if blank > 0 && connection.buffer[..blank].chunks(2).all(|pair| pair == b"\r\n") {
                    connection.buffer.drain(..blank);
                }
                if connection.buffer.is_empty() {
                    return Step::NeedBytes;
                }
                // The first request's deadline runs from the accept.
                *started = Some(if connection.first_request {
                    connection.idle_since
                } else {
                    Instant::now()
                });
            }
            let end = match scanner.scan(&connection.buffer, limits) {
                Err(rejection) => return Step::Reject(rejection),
                Ok(None) => return Step::NeedBytes,
                Ok(Some(end)) => end,
            };
            let parsed = parse_head(&connection.buffer[..end], limits);
            connection.buffer.drain(..end);
            let head = match parsed {
                Ok(head) => head,
                Err(rejection) => return Step::Reject(rejection),
            };
            let started = started.unwrap_or_else(Instant::now);
            if head.body == BodyFraming::None {
                return Step::Dispatch(head, Vec::new());
            }
            if head.expects_continue
                && let Some(stream) = connection.stream.as_mut()
            {
                // Best effort: a client that does not get it sends the body anyway.
                let _ = write_some(stream, b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            connection.phase = Phase::Body {
                decoder: BodyDecoder::new(head.body),
                head,
                body: Vec::new(),
                started,
            };
            Step::Again
        }
        Phase::Body { decoder, body, .. } => {
            if connection.buffer.is_empty() {
                return Step::NeedBytes;
            }
            match decoder.decode(&connection.buffer, body, limits) {
                Err(rejection) => Step::Reject(rejection),
                Ok((used, done)) => {
                    connection.buffer.drain(..used);
                    if !done {
                        return Step::NeedBytes;
                    }
                    let Phase::Body { head, body, .. } = std::mem::replace(&mut connection.phase, Phase::Busy) else {
                        return Step::NeedBytes;
                    };
                    Step::Dispatch(head, body)
                }
            }
        }
        _ => Step::NeedBytes,
    }
}

/// Logs failing `accept` calls at most once a second, with a count.
#[derive(Default)]
struct AcceptErrors {
    last_report: Option<Instant>,
    since_report: u64,
}

impl AcceptErrors {
    fn report(&mut self, error: &io::Error) {
        self.since_report += 1;
        if self.last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            log::warn!("HTTP accept failed {} time(s): {error}", self.since_report);
            self.last_report = Some(Instant::now());
            self.since_report = 0;
        }
    }
}
