//! The embedded HTTP/1.1 server for a service's routes (what hydra-express
//! gives a Node service).
//!
//! One readiness-loop thread (`hydra-http`, see [`event_loop`](super::event_loop))
//! accepts connections and reads requests without blocking, under limits
//! (URL, head, trailers, body → 414/431/413), deadlines and RFC 9112 framing
//! rules (ambiguous framing → 400/501, see [`framing`](super::framing)). Only
//! complete requests go to the worker pool (`hydra-http-N`) over a bounded
//! queue, so a slow client holds a connection slot, never a worker. Workers run
//! the handler under `catch_unwind` (a panic → 500 envelope) and write the
//! response without blocking; what the socket does not take at once goes back
//! to the loop to finish. Over the connection cap, or with the queue full, the
//! loop answers 503 itself.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::http::event_loop::{EventLoop, Returned, WorkItem};
use crate::http::framing::encode_response;
use crate::http::handler::{HttpRequest, HttpResponse, HttpRoutes, Upgraded};
use crate::hydra::{BackgroundTask, Hydra};
use crate::threads::OwnedThread;

/// Limits and sizes of the embedded server.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpSettings {
    /// Largest request body; larger → 413 (default 1 MiB).
    pub max_body_bytes: usize,
    /// Largest request line + headers, and separately largest chunked-body
    /// trailers; larger → 431 (default 16 KiB).
    pub max_head_bytes: usize,
    /// Longest request target (path + query); longer → 414 (default 8 KiB).
    pub max_url_bytes: usize,
    /// Longest silence while a request arrives or a response leaves
    /// (default 10 s); then the connection is closed.
    pub read_timeout: Duration,
    /// Longest time for a request head to arrive whole (default 10 s), from
    /// the connection's accept (first request) or the request's first byte
    /// (later requests on a kept-alive connection).
    pub head_timeout: Duration,
    /// Longest time for one whole request, head and body (default 30 s),
    /// from the same start as `head_timeout`: bounds how long a client
    /// trickling bytes keeps its connection.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept (default 5 s).
    pub keep_alive: Duration,
    /// Worker threads that run handlers (default 16). Workers only ever see
    /// complete requests.
    pub workers: usize,
    /// Complete requests that may wait for a worker; beyond it → 503
    /// (default 1024).
    pub queue_capacity: usize,
    /// Open connections; a connection beyond it is answered 503 and closed
    /// (default 4096). Keep it under the process's open-file limit.
    pub max_connections: usize,
    /// On shutdown, how long requests already running or arriving may take to
    /// be answered (default 10 s); idle connections are closed at once.
    pub drain_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            max_body_bytes: 1024 * 1024,
            max_head_bytes: 16 * 1024,
            max_url_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            workers: 16,
            queue_capacity: 1024,
            max_connections: 4096,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of the embedded server (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HttpStats {
    /// Connections accepted (those refused over the cap included).
    pub connections: u64,
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests refused as malformed or over a limit (4xx/501 from the server itself).
    pub rejected: u64,
    /// Of `rejected`, those refused for ambiguous or malformed framing
    /// (content-length/transfer-encoding conflicts, bad chunks, bare LF).
    pub rejected_framing: u64,
    /// Handlers that panicked or returned an invalid status (answered 500).
    pub panicked: u64,
    /// Connections or requests refused with 503: over the connection cap, or
    /// the worker queue full.
    pub overloaded: u64,
    /// Connections closed because the client was too slow.
    pub timed_out: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) rejected_framing: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    pub(crate) timed_out: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> HttpStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStats {
            connections: get(&self.connections),
            requests: get(&self.requests),
            rejected: get(&self.rejected),
            rejected_framing: get(&self.rejected_framing),
            panicked: get(&self.panicked),
            overloaded: get(&self.overloaded),
            timed_out: get(&self.timed_out),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the workers share.
struct WorkerShared {
    routes: HttpRoutes,
    /// Takes upgraded sockets out of the loop's poll.
    registry: mio::Registry,
    counters: Arc<Counters>,
    make_handle: Box<dyn Fn() -> Option<Hydra> + Send + Sync>,
    draining: Arc<AtomicBool>,
}

/// A running server: stopped by `Hydra::shutdown`.
pub(crate) struct HttpServer {
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    event_loop: OwnedThread,
    workers: Vec<OwnedThread>,
    drain_timeout: Duration,
}

impl HttpServer {
    /// Starts the loop and the workers on `listener`. On error nothing is left
    /// running (threads already started are stopped and joined).
    pub(crate) fn start(
        listener: TcpListener,
        routes: HttpRoutes,
        settings: HttpSettings,
        counters: Arc<Counters>,
        make_handle: Box<dyn Fn() -> Option<Hydra> + Send + Sync>,
    ) -> std::io::Result<HttpServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicBool::new(false));
        let (jobs_tx, jobs_rx): (Sender<WorkItem>, Receiver<WorkItem>) = bounded(settings.queue_capacity.max(1));
        let (returns_tx, returns_rx) = unbounded::<Returned>();
        let mut event_loop = EventLoop::new(
            listener,
            settings,
            counters.clone(),
            jobs_tx,
            returns_rx,
            stop.clone(),
            draining.clone(),
        )?;
        if routes.upgrade.is_some() {
            event_loop.hand_over_upgrades();
        }
        let waker = event_loop.waker();
        let shared = Arc::new(WorkerShared {
            registry: event_loop.registry()?,
            routes,
            counters,
            make_handle,
            draining,
        });
        let mut workers = Vec::new();
        for n in 0..settings.workers.max(1) {
            let jobs = jobs_rx.clone();
            let returns = returns_tx.clone();
            let shared = shared.clone();
            let waker = waker.clone();
            match OwnedThread::spawn(&format!("hydra-http-{n}"), move || {
                work(&jobs, &returns, &shared, &waker)
            }) {
                Ok(thread) => workers.push(thread),
                Err(e) => {
                    drop(event_loop); // closes the job queue: the workers end
                    drop(jobs_rx);
                    workers
                        .into_iter()
                        .for_each(|w: OwnedThread| w.join(Duration::from_secs(2)));
                    return Err(e);
                }
            }
        }
        drop(jobs_rx);
        let event_loop = match OwnedThread::spawn("hydra-http", move || event_loop.run()) {
            Ok(thread) => thread,
            Err(e) => {
                // The loop (and with it the job queue's sender) was dropped
                // with the closure: the workers end.
                workers.into_iter().for_each(|w| w.join(Duration::from_secs(2)));
                return Err(e);
            }
        };
        Ok(HttpServer {
            stop,
            waker,
            event_loop,
            workers,
            drain_timeout: settings.drain_timeout,
        })
    }
}

impl BackgroundTask for HttpServer {
    /// Drains: the loop stops accepting (the listener is closed), closes idle
    /// connections, and answers requests already running or arriving (with
    /// `connection: close`) for up to `drain_timeout`; then it closes the rest
    /// and the workers are joined.
    fn stop(self: Box<Self>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the HTTP loop to stop it: {e}");
        }
        self.event_loop.join(self.drain_timeout + Duration::from_secs(2));
        // The loop has closed the job queue: idle workers end at once; one
        // still in a handler past the drain deadline is waited for briefly,
        // then left detached (and logged).
        let until = std::time::Instant::now() + Duration::from_secs(2);
        for worker in self.workers {
            worker.join(until.saturating_duration_since(std::time::Instant::now()));
        }
    }
}

/// A worker: runs handlers for complete requests and writes their responses.
fn work(jobs: &Receiver<WorkItem>, returns: &Sender<Returned>, shared: &WorkerShared, waker: &mio::Waker) {
    for item in jobs.iter() {
        let WorkItem {
            id,
            mut stream,
            request,
            keep_alive,
            upgrade,
        } = item;
        if let Some(leftover) = upgrade {
            hand_over(shared, stream, request, leftover);
            bump(&shared.counters.requests);
            // The loop forgets the connection.
            let gone = Returned {
                id,
                stream: None,
                output: Vec::new(),
                written: None,
                close: true,
            };
            if returns.send(gone).is_ok() {
                let _ = waker.wake();
            }
            continue;
        }
        // HEAD is GET without the body (content-length is that of the body).
        let head_only = request.method == "HEAD";
        let response = dispatch(shared, request);
        bump(&shared.counters.requests);
        let keep = keep_alive && !shared.draining.load(Ordering::SeqCst);
        let (bytes, close) = encode_response(&response, keep, head_only, process_id());
        let written = crate::http::event_loop::write_some(&mut stream, &bytes);
        let returned = Returned {
            id,
            stream: Some(stream),
            output: bytes,
            written,
            close,
        };
        // The loop is gone when the server stops: the stream closes here.
        if returns.send(returned).is_ok() {
            let _ = waker.wake();
        }
    }
}

/// Gives an upgrade request's connection to the routes' upgrade handler, as
/// a blocking `std` socket out of the loop's poll.
fn hand_over(shared: &WorkerShared, mut stream: mio::net::TcpStream, request: HttpRequest, leftover: Vec<u8>) {
    let Some(handler) = shared.routes.upgrade.clone() else {
        return;
    };
    if let Err(e) = shared.registry.deregister(&mut stream) {
        log::warn!("cannot take an upgraded connection out of the HTTP loop ({e}); closing it");
        return;
    }
    let stream = std::net::TcpStream::from(stream);
    if let Err(e) = stream.set_nonblocking(false) {
        log::warn!("cannot make an upgraded connection blocking ({e}); closing it");
        return;
    }
    let Some(hydra) = (shared.make_handle)() else {
        return;
    };
    let path = request.path.clone();
    let upgraded = Upgraded {
        request,
        stream,
        leftover,
    };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&hydra, upgraded))).is_err() {
        bump(&shared.counters.panicked);
        log::error!("HTTP upgrade handler for {path} panicked; the connection is closed");
    }
}

/// Finds the route and runs its handler; 404 / 405 envelopes otherwise.
fn dispatch(shared: &WorkerShared, mut request: HttpRequest) -> HttpResponse {
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
    let found = found.or_else(|| {
        // A fallback takes what no route took, 405 cases included.
        let fallback = shared.routes.fallback.clone()?;
        Some((fallback, Default::default()))
    });
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
        Ok(response) => match response.check_status() {
            Ok(()) => response,
            Err(e) => {
                bump(&shared.counters.panicked);
                log::error!(
                    "HTTP handler for {} {} returned an invalid response ({e}); answered 500",
                    request.method,
                    request.path
                );
                HttpResponse::error(500, &format!("the request handler failed: {e}"))
            }
        },
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
pub(crate) fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}
