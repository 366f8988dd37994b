//! The embedded HTTP/1.1 server for a service's routes (what hydra-express
//! gives a Node service).
//!
//! One acceptor thread (`hydra-http`) hands connections to a worker pool
//! (`hydra-http-N`) over a bounded queue; when the queue is full the acceptor
//! answers 503 itself and closes. Workers read whole requests under limits
//! (URL, headers, body → 414/431/413) and deadlines (per read and per request,
//! against slow clients), run the handler under `catch_unwind` (a panic → 500
//! envelope), and keep connections alive only while nobody else is waiting.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::handler::{HttpRequest, HttpResponse, HttpRoutes};
use crate::hydra::{BackgroundTask, Hydra};
use crate::pool::WorkerPool;
use crate::threads::OwnedThread;

/// Limits and sizes of the embedded server.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpSettings {
    /// Largest request body; larger → 413 (default 1 MiB).
    pub max_body_bytes: usize,
    /// Largest request line + headers; larger → 431 (default 16 KiB).
    pub max_head_bytes: usize,
    /// Longest request target (path + query); longer → 414 (default 8 KiB).
    pub max_url_bytes: usize,
    /// Longest wait for any single read (default 10 s).
    pub read_timeout: Duration,
    /// Longest time to receive one whole request, head and body (default 10 s):
    /// bounds how long a client trickling bytes can hold a worker.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept (default 5 s).
    pub keep_alive: Duration,
    /// Worker threads (default 16). A worker serves one connection at a time;
    /// connections that have sent nothing give their worker up as soon as
    /// another connection waits.
    pub workers: usize,
    /// Connections that may wait for a worker; beyond it → 503 (default 1024).
    pub queue_capacity: usize,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            max_body_bytes: 1024 * 1024,
            max_head_bytes: 16 * 1024,
            max_url_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            workers: 16,
            queue_capacity: 1024,
        }
    }
}

/// Counters of the embedded server (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HttpStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests refused as malformed or over a limit (4xx from the server itself).
    pub rejected: u64,
    /// Handlers that panicked (answered 500).
    pub panicked: u64,
    /// Connections refused with 503 because every worker was busy.
    pub overloaded: u64,
    /// Connections closed because the client was too slow.
    pub timed_out: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    rejected: AtomicU64,
    panicked: AtomicU64,
    overloaded: AtomicU64,
    timed_out: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> HttpStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStats {
            connections: get(&self.connections),
            requests: get(&self.requests),
            rejected: get(&self.rejected),
            panicked: get(&self.panicked),
            overloaded: get(&self.overloaded),
            timed_out: get(&self.timed_out),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything a worker needs to serve a connection.
struct Shared {
    stop: Arc<AtomicBool>,
    open: OpenConnections,
    routes: HttpRoutes,
    settings: HttpSettings,
    counters: Arc<Counters>,
    make_handle: Box<dyn Fn() -> Option<Hydra> + Send + Sync>,
    pool_backlog: Box<dyn Fn() -> usize + Send + Sync>,
}

/// Connections being served, so that stopping can cut idle keep-alive reads short.
#[derive(Default)]
struct OpenConnections {
    next_id: AtomicU64,
    streams: Mutex<HashMap<u64, TcpStream>>,
}

impl OpenConnections {
    fn add(&self, stream: &TcpStream) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clone = stream.try_clone().ok()?;
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(id, clone);
        Some(id)
    }

    fn remove(&self, id: Option<u64>) {
        if let Some(id) = id {
            self.streams.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }

    fn close_all(&self) {
        for stream in self.streams.lock().unwrap_or_else(|p| p.into_inner()).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Removes a connection from [`OpenConnections`] however serving it ends
/// (a panic included), so no file descriptor is kept.
struct OpenGuard<'a> {
    open: &'a OpenConnections,
    id: Option<u64>,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.open.remove(self.id);
    }
}

/// A running server: stopped by `Hydra::shutdown`.
pub(crate) struct HttpServer {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    address: SocketAddr,
    acceptor: OwnedThread,
    pool: WorkerPool,
}

impl HttpServer {
    pub(crate) fn start(
        listener: TcpListener,
        routes: HttpRoutes,
        settings: HttpSettings,
        counters: Arc<Counters>,
        make_handle: Box<dyn Fn() -> Option<Hydra> + Send + Sync>,
    ) -> io::Result<HttpServer> {
        let address = listener.local_addr()?;
        let pool = WorkerPool::start("http", settings.workers, settings.queue_capacity)?;
        let backlog = pool.backlog_probe();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            stop: stop.clone(),
            open: OpenConnections::default(),
            routes,
            settings,
            counters: counters.clone(),
            make_handle,
            pool_backlog: Box::new(backlog),
        });
        let acceptor = {
            let stop = stop.clone();
            let shared = shared.clone();
            let submit = pool.submitter();
            OwnedThread::spawn("hydra-http", move || {
                let mut accept_errors = AcceptErrors::default();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let stream = match stream {
                        Ok(stream) => stream,
                        Err(e) => {
                            // E.g. out of file descriptors: accept fails at once, again
                            // and again. Say so (rate-limited) and breathe, don't spin.
                            accept_errors.report(&e);
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    };
                    bump(&shared.counters.connections);
                    let job_shared = shared.clone();
                    let job_stream = match stream.try_clone() {
                        Ok(s) => s,
                        Err(_) => continue,
                    };
                    if submit(Box::new(move || serve_connection(job_stream, &job_shared))).is_err() {
                        bump(&shared.counters.overloaded);
                        refuse_overloaded(stream);
                    }
                }
            })?
        };
        Ok(HttpServer {
            stop,
            shared,
            address,
            acceptor,
            pool,
        })
    }
}

impl BackgroundTask for HttpServer {
    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor out of accept().
        let wake = match self.address {
            SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
            other => other,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        self.acceptor.join(Duration::from_secs(3));
        // Idle keep-alive connections would hold their workers for seconds.
        self.shared.open.close_all();
        self.pool.shutdown(Duration::from_secs(5));
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

fn refuse_overloaded(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let response = HttpResponse::error(503, "server is overloaded; try again");
    let _ = write_response(&mut stream, &response, false, false);
    let _ = stream.shutdown(Shutdown::Both);
}

/// A connection plus bytes read past the current request.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

enum ReadError {
    /// The peer closed cleanly between requests.
    Closed,
    /// Too slow: no byte within the read timeout, or over the request deadline.
    TimedOut,
    /// Answer with this status and close.
    Reject(u16, String),
    Io,
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let settings = &shared.settings;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(settings.read_timeout));
    let mut conn = Connection {
        stream,
        buffer: Vec::with_capacity(4096),
    };
    let _registered = OpenGuard {
        open: &shared.open,
        id: shared.open.add(&conn.stream),
    };
    let held_since = Instant::now();
    let mut first = true;
    while !shared.stop.load(Ordering::SeqCst) {
        let idle_limit = if first {
            settings.read_timeout
        } else {
            settings.keep_alive
        };
        first = false;
        let give_way = || shared.stop.load(Ordering::SeqCst) || (shared.pool_backlog)() > 0;
        match read_request(&mut conn, settings, idle_limit, &give_way) {
            Ok((request, keep_alive)) => {
                // HEAD is GET without the body (content-length is that of the body).
                let head_only = request.method == "HEAD";
                let response = dispatch(shared, request);
                bump(&shared.counters.requests);
                // While other connections wait, a busy connection keeps its
                // worker for one time slice, then closes after its current
                // answer: fair to the waiting ones without reconnecting on
                // every request.
                let fair = held_since.elapsed() < WORKER_SLICE || (shared.pool_backlog)() == 0;
                let keep = keep_alive && fair;
                if write_response(&mut conn.stream, &response, keep, head_only).is_err() || !keep {
                    break;
                }
            }
            Err(ReadError::Reject(status, reason)) => {
                bump(&shared.counters.rejected);
                bump(&shared.counters.requests);
                let _ = write_response(&mut conn.stream, &HttpResponse::error(status, &reason), false, false);
                linger(&mut conn.stream);
                break;
            }
            Err(ReadError::TimedOut) => {
                bump(&shared.counters.timed_out);
                break;
            }
            Err(ReadError::Closed) | Err(ReadError::Io) => break,
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// Closes our side, then reads and discards what the client is still sending
/// (briefly), so that it sees our error response instead of a reset.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < 256 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Reads one request. `idle_limit` bounds the wait for its first byte.
fn read_request(
    conn: &mut Connection,
    settings: &HttpSettings,
    idle_limit: Duration,
    give_way: &dyn Fn() -> bool,
) -> Result<(HttpRequest, bool), ReadError> {
    let mut started = Instant::now();
    // Head: until the blank line.
    let head_end = loop {
        if let Some(end) = find_head_end(&conn.buffer) {
            break end;
        }
        if conn.buffer.len() > settings.max_head_bytes {
            return Err(head_too_large(&conn.buffer, settings));
        }
        let got = if conn.buffer.is_empty() {
            let got = wait_for_first_byte(conn, idle_limit, give_way)?;
            started = Instant::now(); // the request deadline runs from its first byte
            got
        } else {
            read_more(conn, started, settings.read_timeout, settings)?
        };
        if got == 0 {
            return Err(if conn.buffer.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Reject(400, "incomplete request head".into())
            });
        }
    };
    if head_end > settings.max_head_bytes {
        return Err(head_too_large(&conn.buffer, settings));
    }
    let mut header_slots = [httparse::EMPTY_HEADER; 100];
    let mut parsed = httparse::Request::new(&mut header_slots);
    match parsed.parse(&conn.buffer[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Reject(400, "incomplete request head".into())),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Reject(431, "too many request headers".into()));
        }
        Err(e) => return Err(ReadError::Reject(400, format!("malformed request: {e}"))),
    }
    let method = parsed.method.unwrap_or("").to_ascii_uppercase();
    let target = parsed.path.unwrap_or("");
    if target.len() > settings.max_url_bytes {
        return Err(ReadError::Reject(
            414,
            format!("request URL is longer than {} bytes", settings.max_url_bytes),
        ));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Reject(400, "request target must be a path".into()));
    }
    let version = parsed.version.unwrap_or(1);
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| ReadError::Reject(400, format!("header {} is not UTF-8", header.name)))?;
        headers.push((header.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if version == 0 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked = header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = match header("content-length") {
        Some(text) if !chunked => Some(
            text.parse::<usize>()
                .map_err(|_| ReadError::Reject(400, format!("bad content-length {text:?}")))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > settings.max_body_bytes) {
        return Err(ReadError::Reject(
            413,
            format!("request body is larger than {} bytes", settings.max_body_bytes),
        ));
    }
    let expects_continue = header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    conn.buffer.drain(..head_end);
    if expects_continue && (length.unwrap_or(0) > 0 || chunked) {
        conn.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Io)?;
    }
    let body = if chunked {
        read_chunked(conn, started, settings)?
    } else {
        let length = length.unwrap_or(0);
        while conn.buffer.len() < length {
            if read_more(conn, started, settings.read_timeout, settings)? == 0 {
                return Err(ReadError::Reject(400, "request body ended early".into()));
            }
        }
        conn.buffer.drain(..length).collect()
    };
    Ok((
        HttpRequest {
            method,
            path,
            query,
            params: Default::default(),
            headers,
            body,
        },
        keep_alive,
    ))
}

fn head_too_large(buffer: &[u8], settings: &HttpSettings) -> ReadError {
    // A request line alone over the URL limit is a long URL, not big headers.
    let line_end = buffer.windows(2).position(|w| w == b"\r\n").unwrap_or(buffer.len());
    if line_end > settings.max_url_bytes {
        ReadError::Reject(
            414,
            format!("request URL is longer than {} bytes", settings.max_url_bytes),
        )
    } else {
        ReadError::Reject(
            431,
            format!("request headers are larger than {} bytes", settings.max_head_bytes),
        )
    }
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// How long a connection may keep its worker while other connections wait.
const WORKER_SLICE: Duration = Duration::from_millis(100);

/// How often a connection that has sent nothing yet checks whether it should
/// give its worker to a waiting connection.
const IDLE_SLICE: Duration = Duration::from_millis(50);

/// Waits for the first byte of a request in short slices, up to `limit`. A
/// connection that has sent nothing yet gives its worker up (is closed) as soon
/// as `give_way` says another connection is waiting or the server stops, so
/// idle keep-alive connections and clients that connect and stay silent cannot
/// starve the pool.
fn wait_for_first_byte(
    conn: &mut Connection,
    limit: Duration,
    give_way: &dyn Fn() -> bool,
) -> Result<usize, ReadError> {
    let started = Instant::now();
    loop {
        let remaining = limit.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(ReadError::TimedOut);
        }
        if let Some(n) = read_once(conn, remaining.min(IDLE_SLICE))? {
            return Ok(n);
        }
        if give_way() {
            return Err(ReadError::Closed);
        }
    }
}

/// Reads what is available, within both the per-read limit and the request deadline.
fn read_more(
    conn: &mut Connection,
    started: Instant,
    limit: Duration,
    settings: &HttpSettings,
) -> Result<usize, ReadError> {
    let wait = limit.min(settings.request_timeout.saturating_sub(started.elapsed()));
    if wait.is_zero() {
        return Err(ReadError::TimedOut);
    }
    read_once(conn, wait)?.ok_or(ReadError::TimedOut)
}

/// One read into the connection's buffer, waiting at most `wait`: the number
/// of bytes (0 = the peer closed), or `None` when nothing came in time.
fn read_once(conn: &mut Connection, wait: Duration) -> Result<Option<usize>, ReadError> {
    conn.stream.set_read_timeout(Some(wait)).map_err(|_| ReadError::Io)?;
    let mut chunk = [0u8; 8192];
    loop {
        match conn.stream.read(&mut chunk) {
            Ok(n) => {
                conn.buffer.extend_from_slice(&chunk[..n]);
                return Ok(Some(n));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
            Err(_) => return Err(ReadError::Io),
        }
    }
}

/// Decodes a chunked body (extensions and trailers ignored), within the limit.
fn read_chunked(conn: &mut Connection, started: Instant, settings: &HttpSettings) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = conn.buffer.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if conn.buffer.len() > 1024 {
                return Err(ReadError::Reject(400, "malformed chunk size".into()));
            }
            if read_more(conn, started, settings.read_timeout, settings)? == 0 {
                return Err(ReadError::Reject(400, "chunked body ended early".into()));
            }
        };
        let size_text = String::from_utf8_lossy(&conn.buffer[..line_end]).to_string();
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Reject(400, format!("malformed chunk size {size_text:?}")))?;
        conn.buffer.drain(..line_end + 2);
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                if let Some(p) = conn.buffer.windows(2).position(|w| w == b"\r\n") {
                    let empty = p == 0;
                    conn.buffer.drain(..p + 2);
                    if empty {
                        return Ok(body);
                    }
                    continue;
                }
                if read_more(conn, started, settings.read_timeout, settings)? == 0 {
                    return Ok(body);
                }
            }
        }
        // The size is the client's word: compare without overflowing.
        if size > settings.max_body_bytes.saturating_sub(body.len()) {
            return Err(ReadError::Reject(
                413,
                format!("request body is larger than {} bytes", settings.max_body_bytes),
            ));
        }
        while conn.buffer.len() < size + 2 {
            if read_more(conn, started, settings.read_timeout, settings)? == 0 {
                return Err(ReadError::Reject(400, "chunked body ended early".into()));
            }
        }
        body.extend(conn.buffer.drain(..size));
        conn.buffer.drain(..2);
    }
}

/// Finds the route and runs its handler; 404 / 405 envelopes otherwise.
fn dispatch(shared: &Shared, mut request: HttpRequest) -> HttpResponse {
    let mut path_matched = false;
    let mut found = None;
    let method = if request.method == "HEAD" {
        "GET"
    } else {
        request.method.as_str()
    };
    for entry in &shared.routes.entries {
        if let Some(params) = entry.pattern.matches(&request.path) {
            path_matched = true;
            if entry.method == method {
                found = Some((entry.handler.clone(), params));
                break;
            }
        }
    }
    let Some((handler, params)) = found else {
        return if path_matched {
            HttpResponse::error(
                405,
                &format!("method {} is not allowed on {}", request.method, request.path),
            )
        } else {
            HttpResponse::error(404, &format!("no route for {} {}", request.method, request.path))
        };
    };
    request.params = params;
    let Some(hydra) = (shared.make_handle)() else {
        return HttpResponse::error(503, "service is shutting down");
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&hydra, &request))) {
        Ok(response) => response,
        Err(_) => {
            bump(&shared.counters.panicked);
            log::error!(
                "HTTP handler for {} {} panicked; answered 500",
                request.method,
                request.path
            );
            HttpResponse::error(500, "the request handler failed")
        }
    }
}

/// The process ID, read once (it is written into every response).
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn write_response(
    stream: &mut TcpStream,
    response: &HttpResponse,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let (reason, _) = crate::http::envelope::status_text(response.status);
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason);
    for (name, value) in &response.headers {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        // Header values must not break the framing.
        if value.contains(['\r', '\n']) || name.contains(['\r', '\n', ':']) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("x-process-id: {}\r\n", process_id()));
    head.push_str(&format!("content-length: {}\r\n", response.body.len()));
    head.push_str(if keep_alive {
        "connection: keep-alive\r\n\r\n"
    } else {
        "connection: close\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}
