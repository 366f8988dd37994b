//! `make_api_request`: HTTP calls to service instances found in the registry,
//! with round-robin or random balancing and failover (spec §6).
//!
//! Differences from Node, all without changing what goes over the wire: the
//! default balance is round-robin (Node: random); a failed instance is skipped
//! for this call only (Node empties its shared 3 s cache, §6.4); a `statusCode`
//! in a JSON body does not override the real HTTP status (§15.12); DELETE
//! carries its body when the body is not `{}` (Node drops DELETE bodies).
//!
//! The URL is built from parts (the chosen instance's address and port, and
//! the route's path), never by pasting strings: Node's
//! `http://${ip}:${port}${apiRoute}` lets a `to` such as
//! `svc:[get]@evil:80/x` move the authority, and the request, with its
//! `Authorization` header, to another host. Paths must be origin-form
//! (RFC 9112 §3.2.1: `/path?query`). A response larger than the limit is an
//! error, never a truncated body.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::envelope::merge_json_body;
use crate::records::Instance;
use crate::registry::Registry;
use crate::umf::Umf;

/// Node's `REQUEST_TIMEOUT`: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for a timeout taken from a message.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest response body read into memory by default (64 MiB); a larger one
/// fails the call (see [`RequestOptions::max_response_bytes`]).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// How `make_api_request` picks among present instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each call goes to the next instance (per service), in a stable order.
    #[default]
    RoundRobin,
    /// A random instance per call, as Node does.
    Random,
}

/// Per-call options of `make_api_request`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Timeout of one attempt when the message has no `timeout` (default 30 s).
    /// Like Node's socket timeout it bounds each wait (connecting, sending,
    /// each read of the response), not the whole exchange. (An overall ureq
    /// deadline would also resolve the host on a new thread per call.)
    pub timeout: Option<Duration>,
    /// Instance choice (default round-robin).
    pub balance: Option<Balance>,
    /// Largest response body accepted (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`]); a larger one fails the call with
    /// [`Error::Malformed`] instead of being cut short.
    pub max_response_bytes: Option<u64>,
}

impl RequestOptions {
    /// Options with this per-attempt timeout.
    pub fn timeout(timeout: Duration) -> RequestOptions {
        RequestOptions {
            timeout: Some(timeout),
            ..RequestOptions::default()
        }
    }

    /// Sets the balance.
    pub fn with_balance(mut self, balance: Balance) -> RequestOptions {
        self.balance = Some(balance);
        self
    }

    /// Sets the largest response body accepted.
    pub fn with_max_response_bytes(mut self, bytes: u64) -> RequestOptions {
        self.max_response_bytes = Some(bytes);
        self
    }
}

/// An HTTP request to one of a service's instances, sent as it is: method,
/// origin-form path (with its query), headers and body bytes. What a gateway
/// forwards; see [`Hydra::call_service`](crate::Hydra::call_service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRequest {
    /// The service to call.
    pub service: String,
    /// An instance to try first (then the others, as for `make_api_request`).
    pub instance: Option<String>,
    /// The HTTP method (`GET`, `PATCH`, …).
    pub method: String,
    /// Origin-form request target: `/path?query`.
    pub path: String,
    /// Headers, sent in this order. `content-length` is the client's own; hop-by-hop
    /// headers (`connection`, `transfer-encoding`, …) are the caller's to remove.
    pub headers: Vec<(String, String)>,
    /// The body, sent byte for byte (with POST, PUT and PATCH also when empty).
    pub body: Vec<u8>,
}

/// A service's HTTP answer (any status: HTTP errors are results, not `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// Response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// Which instance answered.
    pub instance_id: String,
}

impl ApiResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the content type mentions `json` (Node's test).
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|t| t.contains("json"))
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Malformed(format!("response body of {} is not JSON: {e}", self.instance_id)))
    }

    /// Node's response object: for a JSON body, the Hydra envelope with the
    /// body's keys merged in (the real status wins); otherwise the bare envelope
    /// for the status.
    pub fn envelope(&self) -> Value {
        match self.json().ok().filter(|_| self.is_json()) {
            Some(body) => merge_json_body(self.status, body),
            None => merge_json_body(self.status, Value::Object(Default::default())),
        }
    }

    /// `result` of a Hydra envelope body, if the body is one.
    pub fn result(&self) -> Option<Value> {
        self.json().ok()?.get("result").cloned()
    }
}

/// The HTTP side of a `Hydra` handle: one keep-alive agent and the
/// round-robin positions.
pub(crate) struct HttpClient {
    agent: ureq::Agent,
    next: Mutex<HashMap<String, usize>>,
}

impl HttpClient {
    pub(crate) fn new() -> HttpClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("hydra-rs/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(DEFAULT_REQUEST_TIMEOUT))
            .timeout_per_read(Some(DEFAULT_REQUEST_TIMEOUT))
            .timeout_per_write(Some(DEFAULT_REQUEST_TIMEOUT))
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .build()
            .new_agent();
        HttpClient {
            agent,
            next: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn make_api_request(
        &self,
        registry: &Registry,
        message: &Umf,
        options: RequestOptions,
    ) -> Result<ApiResponse> {
        message.validate()?;
        let route = message.to_route()?;
        let method = route
            .http_method
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| Error::BadRequest("HTTP method not specified in `to` field".into()))?
            .to_ascii_uppercase();
        if route.api_route.is_empty() {
            return Err(Error::BadRequest(
                "message `to` field does not specify a valid route".into(),
            ));
        }
        let timeout = message
            .timeout
            .as_ref()
            .and_then(|n| n.as_f64())
            .filter(|s| *s > 0.0)
            // The message's word: no panic on huge or infinite values.
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(|d| d.min(MAX_REQUEST_TIMEOUT))
            .or(options.timeout)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let request = PreparedRequest::from_message(&method, &route.api_route, message);
        let service = route.service_name.to_lowercase();
        self.call(registry, &service, &route.instance, &request, timeout, options)
    }

    pub(crate) fn call_service(
        &self,
        registry: &Registry,
        request: &ServiceRequest,
        options: RequestOptions,
    ) -> Result<ApiResponse> {
        if request.service.is_empty() {
            return Err(Error::BadRequest("the request names no service".into()));
        }
        if request.method.is_empty() || !request.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::BadRequest(format!("{:?} is not an HTTP method", request.method)));
        }
        let prepared = PreparedRequest::from_service_request(request);
        let timeout = options.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let pinned = request.instance.as_deref().unwrap_or("");
        self.call(registry, &request.service, pinned, &prepared, timeout, options)
    }

    /// Tries the service's present instances in balance order until one
    /// answers.
    fn call(
        &self,
        registry: &Registry,
        service: &str,
        pinned: &str,
        request: &PreparedRequest,
        timeout: Duration,
        options: RequestOptions,
    ) -> Result<ApiResponse> {
        check_origin_form(&request.path)?;
        let mut instances = registry.cached_presence(service)?;
        if instances.is_empty() {
            registry.forget_presence(service);
            instances = registry.cached_presence(service)?;
        }
        if instances.is_empty() {
            return Err(Error::ServiceUnavailable(format!("Unavailable {service} instances")));
        }
        let order = self.order(service, instances, pinned, options.balance.unwrap_or_default());
        let limit = options.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        let mut failed = false;
        for instance in &order {
            match self.attempt(instance, request, timeout, limit) {
                Ok(response) => {
                    if failed {
                        registry.forget_presence(service);
                    }
                    return Ok(response);
                }
                // The instance answered: trying another would run the request
                // twice.
                Err(Attempt::Answered(e)) => return Err(e),
                Err(Attempt::Failed(e)) => {
                    failed = true;
                    log::warn!(
                        "{} {} to {service} instance {} at {}:{} failed: {e}; trying the next instance",
                        request.method,
                        request.path,
                        instance.instance_id,
                        instance.ip,
                        instance.port
                    );
                }
            }
        }
        registry.forget_presence(service);
        Err(Error::ServiceUnavailable(format!(
            "An instance of {service} is unavailable"
        )))
    }

    /// The order to try instances in: a pinned instance first, then the
    /// balance's choice.
    fn order(&self, service: &str, mut instances: Vec<Instance>, pinned: &str, balance: Balance) -> Vec<Instance> {
        match balance {
            Balance::Random => fastrand::shuffle(&mut instances),
            Balance::RoundRobin => {
                instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                let position = next.entry(service.to_string()).or_insert(0);
                let start = *position % instances.len();
                *position = position.wrapping_add(1);
                instances.rotate_left(start);
            }
        }
        if let Some(index) = instances
            .iter()
            .position(|i| !pinned.is_empty() && i.instance_id == pinned)
        {
            let chosen = instances.remove(index);
            instances.insert(0, chosen);
        }
        instances
    }

    fn attempt(
        &self,
        instance: &Instance,
        request: &PreparedRequest,
        timeout: Duration,
        limit: u64,
    ) -> std::result::Result<ApiResponse, Attempt> {
        let uri = instance_uri(instance, &request.path).map_err(Attempt::Failed)?;
        let send = || -> std::result::Result<ureq::http::Response<ureq::Body>, String> {
            let mut builder = ureq::http::Request::builder()
                .method(request.method.as_str())
                .uri(uri.clone());
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            let result = match &request.body {
                Some(body) => builder
                    .body(body.clone())
                    .map_err(|e| format!("invalid request: {e}"))
                    .map(|req| self.run(req, timeout))?,
                None => builder
                    .body(())
                    .map_err(|e| format!("invalid request: {e}"))
                    .map(|req| self.run(req, timeout))?,
            };
            result.map_err(|e| {
                if closed_before_answer(&e) {
                    format!("{STALE_CONNECTION}{e}")
                } else {
                    e.to_string()
                }
            })
        };
        // A kept-alive connection the server closed while idle fails before the
        // request was read; that one is retried once on a fresh connection.
        let mut response = match send() {
            Err(e) if e.starts_with(STALE_CONNECTION) => send(),
            other => other,
        }
        .map_err(|e| Attempt::Failed(e.trim_start_matches(STALE_CONNECTION).to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let too_large = || {
            Attempt::Answered(Error::Malformed(format!(
                "the response of instance {} at {}:{} is larger than {limit} bytes (the limit of make_api_request)",
                instance.instance_id, instance.ip, instance.port
            )))
        };
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if announced.is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        // One byte more than the limit tells a body of exactly `limit` bytes
        // from a larger one.
        response
            .body_mut()
            .as_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| Attempt::Failed(format!("reading the response failed: {e}")))?;
        if body.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(ApiResponse {
            status,
            headers,
            body,
            instance_id: instance.instance_id.clone(),
        })
    }
}

impl HttpClient {
    fn run<B: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<B>,
        timeout: Duration,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        use ureq::RequestExt;
        if timeout == DEFAULT_REQUEST_TIMEOUT {
            // The agent's own settings: no per-request configuration to build.
            return self.agent.run(request);
        }
        request
            .with_agent(&self.agent)
            .configure()
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .run()
    }
}

/// Why one attempt on one instance did not give a response.
enum Attempt {
    /// Transport trouble (refused, reset, timeout): the next instance may
    /// answer.
    Failed(String),
    /// The instance answered, but the answer cannot be taken: the call fails.
    Answered(Error),
}

/// Refuses a path that is not origin-form (`/path?query`, RFC 9112 §3.2.1):
/// one without its leading `/` (`@host:port/x` would name another authority
/// in a pasted URL), a `//` prefix (read as an authority by URL parsers), a
/// scheme, a fragment, whitespace, control or non-ASCII characters (which must
/// be percent-encoded).
fn check_origin_form(path: &str) -> Result<()> {
    let refuse = |why: &str| Err(Error::BadRequest(format!("route path {path:?} {why}")));
    if !path.starts_with('/') {
        return refuse("must start with `/` (origin-form: /path?query)");
    }
    if path.starts_with("//") {
        return refuse("must not start with `//`");
    }
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return refuse(&format!(
            "contains {c:?}: whitespace, control and non-ASCII characters must be percent-encoded"
        ));
    }
    if path.contains('#') {
        return refuse("must not contain a fragment (`#`)");
    }
    Ok(())
}

/// `http://<instance address>:<port><path>`, put together from parts so that
/// nothing in `path` can change the authority. An instance whose address is
/// not an IP address or a host name cannot be called.
fn instance_uri(instance: &Instance, path: &str) -> std::result::Result<ureq::http::Uri, String> {
    let ip = instance.ip.trim_start_matches('[').trim_end_matches(']');
    let host = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) if is_host_name(ip) => ip.to_string(),
        Err(_) => {
            return Err(format!(
                "instance address {:?} is not an IP address or host name",
                instance.ip
            ));
        }
    };
    let authority = ureq::http::uri::Authority::try_from(format!("{host}:{}", instance.port))
        .map_err(|e| format!("instance address {host}:{} is invalid: {e}", instance.port))?;
    ureq::http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("invalid request path {path:?}: {e}"))
}

/// Letters, digits, `-` and `.`: a DNS name, nothing that could carry
/// user information or a port.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Marks an error as "the connection was closed under us" inside `attempt`.
const STALE_CONNECTION: &str = "stale connection: ";

/// True for the failures a server's closing of an idle keep-alive connection
/// causes (reset, broken pipe, end of stream), as opposed to a refused
/// connection or a timeout, which mean the instance itself is in trouble.
fn closed_before_answer(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Method, path, headers and body, built once per call (spec §6.2).
struct PreparedRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl PreparedRequest {
    /// The request exactly as given: headers in order, the body's bytes.
    fn from_service_request(request: &ServiceRequest) -> PreparedRequest {
        let method = request.method.to_ascii_uppercase();
        let with_body = !request.body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH");
        PreparedRequest {
            method,
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: with_body.then(|| request.body.clone()),
        }
    }

    fn from_message(method: &str, path: &str, message: &Umf) -> PreparedRequest {
        let empty_object = message.body.as_object().is_some_and(|o| o.is_empty());
        let with_body = matches!(method, "POST" | "PUT" | "PATCH") || (method == "DELETE" && !empty_object);
        let mut headers = Vec::new();
        if with_body {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        if let Some(Value::Object(extra)) = &message.headers {
            for (name, value) in extra {
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                headers.push((name.to_ascii_lowercase(), value));
            }
        }
        if let Some(authorization) = &message.authorization {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
            headers.push(("authorization".to_string(), authorization.clone()));
        }
        PreparedRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: with_body.then(|| message.body.to_string().into_bytes()),
        }
    }
}
