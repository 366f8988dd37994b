//! The running router: a Hydra service named `hydra-router` whose embedded
//! HTTP server sends every request through [`handle`], and the thread that
//! keeps the route table fresh.
//!
//! The library's server does the HTTP work (strict RFC 9112 framing, limits,
//! deadlines, a readiness loop that holds slow clients without a thread each,
//! complete requests handed to a pool of workers); the router adds one
//! fallback handler for every path and advertises Node's router routes in
//! Redis. A forward holds its worker until the service answers or the
//! per-attempt timeout fires, so the pool is sized for that (`workers`).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use hydra::{Error, HttpRequest, HttpResponse, HttpRoutes, HttpSettings, Hydra, RequestOptions, ServiceRequest};
use serde_json::json;

use crate::access::{self, Access, OwnPath};
use crate::api;
use crate::config::RouterConfig;
use crate::dashboard;
use crate::external::{ExternalClient, ExternalTarget, parse_base_url};
use crate::forward::{self, AnswerHeaders};
use crate::log_ring::LogRing;
use crate::messages::Inbox;
use crate::route_book::RouteBook;
use crate::short_id::short_id;
use crate::stats::Stats;
use crate::ws::connections::{WsCounters, WsCounts, WsGateway, WsSettings};
use crate::ws::directory::Directory;
use crate::ws::routing::Routing;
use crate::ws::{ClientSockets, FrameHandler};

/// What every request handler shares.
pub struct Shared {
    /// The configuration.
    pub config: RouterConfig,
    /// The route table.
    pub book: RouteBook,
    /// Per-service counters.
    pub stats: Stats,
    /// The router's recent log lines.
    pub log: LogRing,
    /// When the router started.
    pub started: Instant,
    /// Where WebSocket clients are connected, across routers.
    pub ws_directory: Directory,
    /// The WebSocket gateway's counters, once it runs.
    ws_counters: OnceLock<WsCounters>,
    external: ExternalClient,
    external_targets: Vec<(String, ExternalTarget)>,
}

impl Shared {
    /// The WebSocket gateway's counters now (`None` before it started).
    pub fn ws_counts(&self) -> Option<WsCounts> {
        self.ws_counters.get().map(WsCounters::counts)
    }
}

/// A running router; [`shutdown`](Router::shutdown) stops it.
pub struct Router {
    hydra: Hydra,
    shared: Arc<Shared>,
    port: u16,
    stop: Arc<AtomicBool>,
    refresh_tx: Sender<()>,
    refresher: Option<std::thread::JoinHandle<()>>,
    ws_routing: Arc<Routing>,
    ws: Option<WsGateway>,
    inbox: Option<Inbox>,
}

/// Builds the WebSocket gateway's routing layer from the router's Hydra
/// handle, what the HTTP handlers share (routes, stats), and the connection
/// layer's sockets.
pub type FrameHandlerFactory =
    Box<dyn FnOnce(&Hydra, &Arc<Shared>, Arc<dyn ClientSockets>) -> Arc<dyn FrameHandler> + Send>;

impl Router {
    /// Connects to Redis, registers `hydra-router`, reads the routes, and
    /// serves on the configured port, WebSocket clients included (the
    /// routing layer, [`Routing`], with the default [`WsSettings`]).
    pub fn start(config: RouterConfig, log: LogRing) -> hydra::Result<Router> {
        Router::start_with_ws(config, log, None)
    }

    /// As [`start`](Router::start); with `Some`, upgrade requests are served
    /// by the connection layer with those settings, calling the frame
    /// handler the factory builds instead of the routing layer (which then
    /// has no sockets until [`Routing::attach`]: for tests of either layer).
    pub fn start_with_ws(
        config: RouterConfig,
        log: LogRing,
        ws: Option<(WsSettings, FrameHandlerFactory)>,
    ) -> hydra::Result<Router> {
        let hydra = Hydra::init(config.hydra.clone())?;
        let started = (|| -> hydra::Result<Router> {
            hydra.register_service()?;
            let external_targets = config
                .external_routes
                .iter()
                .filter_map(|(url, _)| Some((url.clone(), parse_base_url(url).ok()?)))
                .collect();
            let shared = Arc::new(Shared {
                book: RouteBook::new(config.external_routes.clone(), config.route_prune_after),
                stats: Stats::new(),
                log,
                started: Instant::now(),
                ws_directory: Directory::new(hydra.get_instance_id()),
                ws_counters: OnceLock::new(),
                external: ExternalClient::new(config.request_timeout, hydra::http::DEFAULT_MAX_RESPONSE_BYTES),
                external_targets,
                config,
            });
            if let Err(e) = shared.book.rebuild(&hydra) {
                log::warn!(
                    "cannot read the routes yet ({e}); retrying every {:?}",
                    shared.config.route_refresh_interval
                );
            }
            let (refresh_tx, refresh_rx) = bounded::<()>(1);
            let on_refresh = refresh_tx.clone();
            let ws_routing = Arc::new(Routing::new(hydra.clone(), shared.clone())?);
            // Refreshes, and messages for WebSocket clients in order per client.
            let inbox = Inbox::start(&hydra, ws_routing.clone(), on_refresh)
                .map_err(|e| Error::InvalidState(format!("cannot start the message inbox: {e}")))?;
            let routes = api::OWN_ROUTES
                .iter()
                .fold(HttpRoutes::new(), |routes, route| routes.advertise(route));
            let handler_shared = shared.clone();
            let routes = routes.fallback(move |hydra, request| handle(&handler_shared, hydra, request));
            let gateway = match ws {
                Some((settings, make_handler)) => {
                    WsGateway::start_with(settings, |sockets| make_handler(&hydra, &shared, sockets))
                }
                None => WsGateway::start_with(WsSettings::default(), |sockets| {
                    ws_routing.attach(sockets);
                    ws_routing.clone()
                }),
            };
            let ws = gateway
                .map(|(gateway, _)| gateway)
                .map_err(|e| Error::InvalidState(format!("cannot start the WebSocket gateway: {e}")))?;
            let _ = shared.ws_counters.set(ws.counters());
            let routes = routes.on_upgrade(ws.upgrade_handler());
            let mut settings = HttpSettings::default();
            settings.workers = shared.config.workers;
            settings.max_body_bytes = shared.config.max_body_bytes;
            let port = hydra.serve_http_with(routes, settings)?;
            // The table read above predates the router's own routes.
            let _ = refresh_tx.try_send(());
            ws_routing.announce_start();
            let stop = Arc::new(AtomicBool::new(false));
            let refresher = {
                let (hydra, shared, stop) = (hydra.clone(), shared.clone(), stop.clone());
                std::thread::Builder::new()
                    .name("hydra-router-refresh".into())
                    .spawn(move || keep_fresh(&hydra, &shared, &refresh_rx, &stop))
                    .map_err(|e| Error::InvalidState(format!("cannot start the route refresher: {e}")))?
            };
            log::info!(
                "hydra-router {} ({}) serves on port {port}",
                env!("CARGO_PKG_VERSION"),
                hydra.get_instance_id()
            );
            Ok(Router {
                hydra: hydra.clone(),
                shared,
                port,
                stop,
                refresh_tx,
                refresher: Some(refresher),
                ws_routing,
                ws: Some(ws),
                inbox: Some(inbox),
            })
        })();
        if started.is_err() {
            let _ = hydra.shutdown();
        }
        started
    }

    /// The port the router serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The router's Hydra handle.
    pub fn hydra(&self) -> &Hydra {
        &self.hydra
    }

    /// What the request handlers share (stats, routes, log).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The WebSocket gateway's routing layer (the connection layer's
    /// [`FrameHandler`] unless [`start_with_ws`](Router::start_with_ws) was
    /// given another).
    pub fn ws_routing(&self) -> &Arc<Routing> {
        &self.ws_routing
    }

    /// The WebSocket connection layer's counters (when it runs).
    pub fn ws_counts(&self) -> Option<WsCounts> {
        self.ws.as_ref().map(WsGateway::counts)
    }

    /// Closes every WebSocket client, stops serving (requests in flight are
    /// answered, see the library's drain), tells the other routers this one
    /// is gone, deregisters, and joins the refresher.
    pub fn shutdown(mut self) {
        if let Some(ws) = self.ws.take() {
            ws.shutdown();
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.refresh_tx.try_send(());
        self.ws_routing.announce_stop();
        if let Err(e) = self.hydra.shutdown() {
            log::warn!("hydra-router shutdown: {e}");
        }
        if let Some(inbox) = self.inbox.take() {
            inbox.join();
        }
        if let Some(refresher) = self.refresher.take() {
            let _ = refresher.join();
        }
    }
}

/// Rebuilds the table when asked (refresh broadcasts, folded) and every
/// `routeRefreshInterval`.
fn keep_fresh(hydra: &Hydra, shared: &Shared, asked: &Receiver<()>, stop: &AtomicBool) {
    let interval = shared.config.route_refresh_interval;
    let mut failing = false;
    while !stop.load(Ordering::SeqCst) {
        match asked.recv_timeout(interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match shared.book.rebuild(hydra) {
            Ok(()) if failing => {
                failing = false;
                log::info!("route table read from Redis again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                log::warn!("cannot refresh the route table ({e}); keeping the last one");
            }
            Err(_) => {}
        }
    }
}

/// Every request the router receives.
pub fn handle(shared: &Shared, hydra: &Hydra, request: &HttpRequest) -> HttpResponse {
    let started = Instant::now();
    let tracer = short_id();
    let extra = AnswerHeaders {
        tracer: &tracer,
        cors: &shared.config.cors,
        accepts_gzip: forward::accepts_gzip(request),
    };
    if request.method == "OPTIONS" {
        return preflight(&extra);
    }
    if let Some(kind) = api::own_path(&request.path) {
        return own(shared, hydra, request, kind, &extra);
    }
    let table = shared.book.table();
    let referer = request.header("referer");
    // A service whose presence cannot be read counts as live, so it is the
    // one resolved; the 503 is answered at once (the call would read
    // presence again and wait as long again, e.g. for a frozen Redis).
    let presence_error: Cell<Option<Error>> = Cell::new(None);
    let is_live = |service: &str| {
        shared.external_targets.iter().any(|(url, _)| url == service)
            || match hydra.get_service_presence_cached(service) {
                Ok(found) => !found.is_empty(),
                Err(e) => {
                    presence_error.set(Some(e));
                    true
                }
            }
    };
    let request_target = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let Some(resolved) = table.resolve(&request_target, referer, is_live) else {
        return extra.apply(HttpResponse::send_response(404, json!({})));
    };
    if resolved.service == hydra.get_service_name() {
        // The router's own automatic routes (`/hydra-router/...`).
        return extra.apply(HttpResponse::send_response(404, json!({})));
    }
    let target = resolved.path_to_forward.clone();
    let headers = forward::request_headers(request, &tracer);
    let external = shared.external_targets.iter().find(|(url, _)| url == resolved.service);
    let outcome = match (presence_error.take(), external) {
        (Some(e), _) => Err((forward_error_status(&e), public_reason(&tracer, &e))),
        (None, Some((_, external))) => shared
            .external
            .call(external, &request.method, &target, &headers, &request.body)
            .map_err(|reason| (502, reason)),
        (None, None) => {
            let call = ServiceRequest {
                service: resolved.service.to_string(),
                instance: None,
                method: request.method.clone(),
                path: target.clone(),
                headers,
                body: request.body.clone(),
            };
            hydra
                .call_service(&call, RequestOptions::timeout(shared.config.request_timeout))
                .map_err(|e| (forward_error_status(&e), public_reason(&tracer, &e)))
        }
    };
    let response = match outcome {
        Ok(answer) => forward::shape_answer(answer, &extra),
        Err((status, reason)) => {
            log::warn!(
                "HR: [{tracer}] {} {target} -> {}: {status} {reason}",
                request.method,
                resolved.service
            );
            extra.error(status, &reason)
        }
    };
    let latency = started.elapsed();
    shared.stats.record_http(resolved.service, response.status, latency);
    let line = || {
        format!(
            "HR: [{tracer}] {} {target} -> {} {} in {:.1} ms",
            request.method,
            resolved.service,
            response.status,
            latency.as_secs_f64() * 1000.0
        )
    };
    if shared.config.debug_logging {
        log::info!("{}", line());
    } else {
        log::debug!("{}", line());
    }
    response
}

/// The status for a failed forward: 503 for no instance or Redis trouble (Node's
/// reasons), 400 for a request the library refuses to send, 502 for an answer
/// the router cannot take.
fn forward_error_status(error: &Error) -> u16 {
    match error {
        Error::BadRequest(_) => 400,
        Error::Malformed(_) => 502,
        _ => 503,
    }
}

/// The reason a client is told. Redis errors name the Redis server (its
/// address), which is nobody's business outside: they are logged, and the
/// client gets a reason that only says Redis is unavailable.
fn public_reason(tracer: &str, error: &Error) -> String {
    match error {
        Error::Redis(_) => {
            log::warn!("HR: [{tracer}] {error}");
            "Redis is unavailable".to_string()
        }
        _ => error.to_string(),
    }
}

/// `OPTIONS` on any path: 204 with the CORS headers (spec §1.3 step 1).
fn preflight(extra: &AnswerHeaders) -> HttpResponse {
    let response = HttpResponse::bytes(204, "text/plain; charset=utf-8", Vec::new())
        .with_header("access-control-expose-headers", "Content-Length, Content-Range");
    extra.apply(response)
}

/// The router's own paths: dashboard files and the API.
fn own(shared: &Shared, hydra: &Hydra, request: &HttpRequest, kind: OwnPath, extra: &AnswerHeaders) -> HttpResponse {
    if access::check(&shared.config, kind, &request.query) == Access::Refused {
        return extra.apply(HttpResponse::send_response(404, json!({})));
    }
    let response = match kind {
        OwnPath::Dashboard => match dashboard::asset(&request.path) {
            Some(asset) if asset.not_modified(request.header("if-none-match")) => with_headers(
                HttpResponse::bytes(304, asset.content_type, Vec::new()),
                asset.headers(),
            ),
            Some(asset) => with_headers(
                HttpResponse::bytes(200, asset.content_type, asset.body.to_vec()),
                asset.headers(),
            ),
            None => HttpResponse::send_response(404, json!({})),
        },
        _ => api::answer(shared, hydra, request),
    };
    extra.apply(response)
}

fn with_headers(mut response: HttpResponse, headers: Vec<(&'static str, String)>) -> HttpResponse {
    response.headers.clear();
    for (name, value) in headers {
        response.headers.push((name.to_ascii_lowercase(), value));
    }
    response
}
