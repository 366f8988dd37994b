//! HTTP: calling service routes with load balancing and failover
//! (`make_api_request`), route registration (`register_routes`, `match_route`),
//! and an embedded server for a service's own routes (the hydra-express part).

mod client;
mod envelope;
mod event_loop;
mod framing;
mod handler;
mod pattern;
mod server;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;

pub use client::{
    ApiResponse, Balance, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, RequestOptions, ServiceRequest,
};
pub use envelope::{envelope, error_envelope, status_text};
pub use handler::{HttpHandler, HttpRequest, HttpResponse, HttpRoutes, UpgradeHandler, Upgraded};
pub use pattern::RoutePattern;
pub use server::{HttpSettings, HttpStats};

use crate::config::PortSpec;
use crate::error::{Error, Result};
use crate::host;
use crate::hydra::Hydra;
use crate::keys;
use crate::umf::Umf;

/// The service Node's `registerRoutes` tells about new routes.
const ROUTER_SERVICE: &str = "hydra-router";

/// HTTP state of one `Hydra` handle.
pub(crate) struct HttpState {
    client: client::HttpClient,
    server_counters: Arc<server::Counters>,
    own_routes: Mutex<Vec<RoutePattern>>,
}

impl HttpState {
    pub(crate) fn new() -> HttpState {
        HttpState {
            client: client::HttpClient::new(),
            server_counters: Arc::new(server::Counters::default()),
            own_routes: Mutex::new(Vec::new()),
        }
    }
}

impl Hydra {
    /// Calls a service route over HTTP (`makeAPIRequest`). `to` is
    /// `svc:[method]/path?query` or `id@svc:[method]/path`; the body is sent as
    /// JSON for POST, PUT and PATCH (and DELETE unless it is `{}`); `headers`
    /// become HTTP headers and `authorization` the `Authorization` header.
    ///
    /// Instances are taken in round-robin order (or at random, see
    /// [`RequestOptions`]); an instance named in `to` is tried first. A
    /// transport failure (refused, reset, timeout) moves on to the next
    /// instance; an HTTP error status is returned as the response, never
    /// retried. Errors: [`Error::BadRequest`] with Node's reasons for a bad `to`,
    /// [`Error::ServiceUnavailable`] `Unavailable <svc> instances` when none is
    /// present and `An instance of <svc> is unavailable` when all failed.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use hydra::{Config, Hydra, RequestOptions};
    /// use serde_json::json;
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let hydra = Hydra::init(Config::new("billing")?)?;
    /// // The method in brackets, the path after it; any instance of `invoices` may answer.
    /// let call = hydra.create_umf_message("invoices:[get]/v1/invoices/7", json!({}));
    /// let response = hydra.make_api_request(&call, RequestOptions::timeout(Duration::from_secs(2)))?;
    /// println!("{} from {}: {}", response.status, response.instance_id, response.json()?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn make_api_request(&self, message: &Umf, options: RequestOptions) -> Result<ApiResponse> {
        self.http().client.make_api_request(self.registry(), message, options)
    }

    /// Sends `request` to one of its service's instances, byte for byte (no
    /// UMF, no JSON re-encoding): what a gateway such as hydra-router forwards.
    /// Balance, failover, the per-attempt timeout ([`RequestOptions::timeout`],
    /// default 30 s), the response limit and the errors are those of
    /// [`make_api_request`](Hydra::make_api_request).
    pub fn call_service(&self, request: &ServiceRequest, options: RequestOptions) -> Result<ApiResponse> {
        self.http().client.call_service(self.registry(), request, options)
    }

    /// Stores this service's HTTP routes (`registerRoutes`): replaces the set
    /// `hydra:service:<svc>:service:routes` with `routes` plus Node's three
    /// automatic ones, and tells `hydra-router` to refresh (quietly nothing
    /// when no router is present). Routes look like `[get]/v1/hello/:name`.
    pub fn register_routes(&self, routes: &[String]) -> Result<()> {
        self.store_routes(routes)?;
        self.tell_router_to_refresh()
    }

    /// The write half of [`register_routes`](Hydra::register_routes): one
    /// atomic transaction, so a failure leaves the stored routes as they were.
    fn store_routes(&self, routes: &[String]) -> Result<()> {
        let svc = self.get_service_name().to_string();
        let mut all: Vec<String> = routes.to_vec();
        for automatic in [
            format!("[get]/{svc}"),
            format!("[get]/{svc}/"),
            format!("[get]/{svc}/:rest"),
        ] {
            if !all.contains(&automatic) {
                all.push(automatic);
            }
        }
        let key = keys::routes(&svc);
        self.store().run(|c| {
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key).ignore();
            pipe.sadd(&key, &all).ignore();
            pipe.query::<()>(c)
        })?;
        self.remember_routes(&all);
        *self.http().own_routes.lock().unwrap_or_else(|p| p.into_inner()) =
            all.iter().map(|r| RoutePattern::new(r)).collect();
        Ok(())
    }

    /// Tells `hydra-router` (when present) that this service's routes changed.
    fn tell_router_to_refresh(&self) -> Result<()> {
        let svc = self.get_service_name().to_string();
        if svc != ROUTER_SERVICE {
            let refresh = Umf::new(
                format!("{ROUTER_SERVICE}:/refresh"),
                format!("{svc}:/"),
                json!({"action": "refresh", "serviceName": svc}),
            );
            self.send_broadcast_message(&refresh)?;
        }
        Ok(())
    }

    /// Every service's routes, `{service: [routes]}` (`getAllServiceRoutes`),
    /// found through the registry rather than a keyspace scan.
    pub fn get_all_service_routes(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let names = self.registry().service_names()?;
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sets: Vec<Vec<String>> = self.store().run(|c| {
            let mut pipe = redis::pipe();
            for name in &names {
                pipe.smembers(keys::routes(name));
            }
            pipe.query(c)
        })?;
        Ok(names
            .into_iter()
            .zip(sets)
            .filter(|(_, routes)| !routes.is_empty())
            .map(|(name, mut routes)| {
                routes.sort();
                (name, routes)
            })
            .collect())
    }

    /// True if `route` (with its method prefix, e.g. `[get]/v1/x/7`) matches one
    /// of the routes this handle registered (`matchRoute`).
    pub fn match_route(&self, route: &str) -> bool {
        let path = route.split('?').next().unwrap_or(route);
        self.http()
            .own_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|pattern| pattern.matches(path).is_some())
    }

    /// Serves `routes` over HTTP/1.1 on the service port with default
    /// [`HttpSettings`]; see [`serve_http_with`](Hydra::serve_http_with).
    ///
    /// ```no_run
    /// use hydra::{Config, HttpResponse, HttpRoutes, Hydra};
    /// use serde_json::json;
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let hydra = Hydra::init(Config::new("invoices")?)?;
    /// hydra.register_service()?;
    /// let routes = HttpRoutes::new()
    ///     .get("/v1/invoices/:id", |_, req| {
    ///         HttpResponse::send_response(200, json!({"invoice": req.param("id")}))
    ///     })
    ///     .post("/v1/invoices", |_, req| match req.json() {
    ///         Ok(body) => HttpResponse::send_response(201, body),
    ///         Err(e) => HttpResponse::error(400, &e.to_string()),
    ///     });
    /// // Routes are registered in Redis, so hydra-router and Node's
    /// // makeAPIRequest find them (`invoices:[get]/v1/invoices/7`).
    /// let port = hydra.serve_http(routes)?;
    /// println!("serving on port {port}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve_http(&self, routes: HttpRoutes) -> Result<u16> {
        self.serve_http_with(routes, HttpSettings::default())
    }

    /// Serves `routes` over HTTP/1.1 on the service port (all interfaces) and
    /// registers them in Redis in hydra-express's format. Returns the port,
    /// which is the one published in presence: when a chosen (not fixed) port
    /// has been taken since `init`, another free one is used and published.
    /// Unknown paths get a 404 envelope, known paths with another method a 405.
    /// The server stops (draining, see [`HttpSettings::drain_timeout`]) on
    /// `shutdown`.
    ///
    /// Either it succeeds, or it fails with nothing left behind: no listener,
    /// no thread, no routes written (telling `hydra-router` to refresh is
    /// best effort and only logged when it fails).
    pub fn serve_http_with(&self, routes: HttpRoutes, settings: HttpSettings) -> Result<u16> {
        if self.is_shut_down() {
            return Err(Error::InvalidState("this Hydra instance has been shut down".into()));
        }
        let wanted = self.service_info().service_port;
        let listener = match TcpListener::bind(("0.0.0.0", wanted)) {
            Ok(listener) => listener,
            Err(e) if matches!(self.config().service_port(), PortSpec::Fixed(_)) => {
                return Err(Error::InvalidState(format!(
                    "cannot listen on servicePort {wanted}: {e}"
                )));
            }
            Err(_) => {
                let port = host::choose_port(self.config().service_port())?;
                TcpListener::bind(("0.0.0.0", port))
                    .map_err(|e| Error::InvalidState(format!("cannot listen on port {port}: {e}")))?
            }
        };
        let port = listener
            .local_addr()
            .map_err(|e| Error::InvalidState(format!("listener has no address: {e}")))?
            .port();
        let route_strings = routes.route_strings();
        let weak = self.downgrade();
        // Starting the server is the step that can fail on its own; it
        // cleans up after itself, and the listener closes with it.
        let server = server::HttpServer::start(
            listener,
            routes,
            settings,
            self.http().server_counters.clone(),
            Box::new(move || weak.upgrade()),
        )
        .map_err(|e| Error::InvalidState(format!("cannot start the HTTP server: {e}")))?;
        let server: Box<dyn crate::hydra::BackgroundTask> = Box::new(server);
        if let Err(e) = self.store_routes(&route_strings) {
            server.stop();
            return Err(e);
        }
        // Refused (and the server stopped) if the handle was shut down meanwhile.
        self.add_task(server)?;
        if port != wanted {
            self.set_service_port(port);
        }
        if let Err(e) = self.tell_router_to_refresh() {
            log::warn!(
                "could not tell hydra-router about the routes of {} ({e})",
                self.get_service_name()
            );
        }
        log::info!("{} serves HTTP on port {port}", self.get_service_name());
        Ok(port)
    }

    /// Counters of the embedded HTTP server.
    pub fn http_stats(&self) -> HttpStats {
        self.http().server_counters.snapshot()
    }
}
