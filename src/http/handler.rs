//! What a service's HTTP routes see and return: [`HttpRequest`],
//! [`HttpResponse`] (with Hydra's envelope helper) and the [`HttpRoutes`] table.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::envelope::envelope;
use crate::http::pattern::RoutePattern;
use crate::hydra::Hydra;

/// A route handler: runs on the HTTP worker pool with a handle to Hydra.
pub type HttpHandler = dyn Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync;

/// One HTTP request, read whole (body limit applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, uppercase (`GET`).
    pub method: String,
    /// Path without the query string (`/v1/hello/ann`).
    pub path: String,
    /// Raw query string without `?` (empty when none).
    pub query: String,
    /// Values of the route's `:params` and `*splats`.
    pub params: HashMap<String, String>,
    /// Headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The client's address (the TCP peer: a proxy's, behind one).
    pub remote_addr: Option<std::net::SocketAddr>,
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A route parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Query parameters, percent-decoded (`+` is a space), in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }

    /// The first query parameter named `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The body parsed as JSON; `Value::Null` for an empty body.
    pub fn json(&self) -> Result<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| Error::BadRequest(format!("request body is not JSON: {e}")))
    }
}

/// A response: status, headers and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, 100-599 (see [`check_status`](HttpResponse::check_status));
    /// the server answers 500 for a handler's response with any other.
    /// 1xx, 204 and 304 are sent without a body (a 1xx as the final answer
    /// also closes the connection).
    pub status: u16,
    /// Headers. `content-length`, `transfer-encoding` and `connection` are the
    /// server's: a handler's own are dropped, so they cannot contradict the
    /// body that is sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Hydra's envelope, as hydra-express's `sendResponse(status, res, {result})`:
    /// `{"statusCode","statusMessage","statusDescription","result"}`, JSON.
    pub fn send_response(status: u16, result: Value) -> HttpResponse {
        HttpResponse::json(status, &envelope(status, result))
    }

    /// The envelope with `result: {"reason": reason}`, as Hydra reports errors.
    pub fn error(status: u16, reason: &str) -> HttpResponse {
        HttpResponse::send_response(status, serde_json::json!({ "reason": reason }))
    }

    /// Any JSON value, `content-type: application/json`.
    pub fn json(status: u16, value: &Value) -> HttpResponse {
        HttpResponse::bytes(status, "application/json", value.to_string().into_bytes())
    }

    /// Raw bytes with a content type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    /// [`Error::BadRequest`] unless the status is an HTTP status (100-599).
    pub fn check_status(&self) -> Result<()> {
        if (100..=599).contains(&self.status) {
            Ok(())
        } else {
            Err(Error::BadRequest(format!(
                "status {} is not an HTTP status (100-599)",
                self.status
            )))
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
}

/// A service's routes: method + route-parser path → handler. Registered in
/// Redis in hydra-express's format (`[get]/v1/hello/:name`) when served.
#[derive(Clone, Default)]
pub struct HttpRoutes {
    pub(crate) entries: Vec<RouteEntry>,
    /// Route strings registered in Redis without a handler of their own
    /// (served by the fallback).
    pub(crate) advertised: Vec<String>,
    /// Runs for requests no route matches (any method).
    pub(crate) fallback: Option<Arc<HttpHandler>>,
    /// Takes upgrade requests (WebSocket) over.
    pub(crate) upgrade: Option<Arc<UpgradeHandler>>,
}

/// An upgrade handler: gets the connection of an HTTP/1.1 upgrade request.
pub type UpgradeHandler = dyn Fn(&Hydra, Upgraded) + Send + Sync;

/// A connection handed over after an HTTP/1.1 upgrade request (a GET with
/// `Connection: upgrade` and an `Upgrade` header, e.g. a WebSocket
/// handshake): the request, the socket (blocking, out of the server's hands:
/// no timeouts, limits or counts apply any more), and any bytes the client
/// sent after the request. The handler answers it itself (`101 Switching
/// Protocols`, or an error status) and owns the socket from then on.
#[derive(Debug)]
pub struct Upgraded {
    /// The upgrade request (its body is empty).
    pub request: HttpRequest,
    /// The client's socket.
    pub stream: std::net::TcpStream,
    /// Bytes that arrived after the request's head (a client that did not
    /// wait for the 101); usually empty.
    pub leftover: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct RouteEntry {
    pub method: String,
    pub pattern: RoutePattern,
    pub handler: Arc<HttpHandler>,
}

impl HttpRoutes {
    /// An empty table.
    pub fn new() -> HttpRoutes {
        HttpRoutes::default()
    }

    /// Adds a route for `method` (any case) and a route-parser `path`
    /// (`/v1/users/:id`, `/files/*path`, `/items(/:id)`).
    pub fn route<F>(mut self, method: &str, path: &str, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.entries.push(RouteEntry {
            method: method.to_ascii_uppercase(),
            pattern: RoutePattern::new(path),
            handler: Arc::new(handler),
        });
        self
    }

    /// `GET path`.
    pub fn get<F>(self, path: &str, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.route("GET", path, handler)
    }

    /// `POST path`.
    pub fn post<F>(self, path: &str, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.route("POST", path, handler)
    }

    /// `PUT path`.
    pub fn put<F>(self, path: &str, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.route("PUT", path, handler)
    }

    /// `PATCH path`.
    pub fn patch<F>(self, path: &str, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.route("PATCH", path, handler)
    }

    /// `DELETE path`.
    pub fn delete<F>(self, path: &str, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.route("DELETE", path, handler)
    }

    /// Registers `route` (hydra-express's form, `[get]/v1/x/:id`) in Redis
    /// with the others, without a handler of its own: requests for it reach
    /// the [`fallback`](HttpRoutes::fallback). For a server that routes by
    /// itself, such as a gateway that must still be seen with its routes.
    pub fn advertise(mut self, route: &str) -> HttpRoutes {
        self.advertised.push(route.to_string());
        self
    }

    /// Handles every request that no route matches, whatever its method,
    /// instead of the 404 / 405 envelopes. Not registered in Redis.
    pub fn fallback<F>(mut self, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Takes over the connections of upgrade requests (any path): the
    /// handler gets the socket as an [`Upgraded`] and answers the handshake
    /// itself. It runs on an HTTP worker: hand the socket to a thread of
    /// your own (or a readiness loop) and return. Without one, upgrade
    /// requests are ordinary requests for the routes.
    pub fn on_upgrade<F>(mut self, handler: F) -> HttpRoutes
    where
        F: Fn(&Hydra, Upgraded) + Send + Sync + 'static,
    {
        self.upgrade = Some(Arc::new(handler));
        self
    }

    /// The routes as hydra-express registers them: `[get]/v1/hello/:name`
    /// (advertised ones included).
    pub fn route_strings(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| format!("[{}]{}", e.method.to_ascii_lowercase(), e.pattern.as_str()))
            .chain(self.advertised.iter().cloned())
            .collect()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_decoded() {
        let req = HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            query: "a=1&b=x+y&c=%C3%BC%2F&d&e=%zz&f=%4".into(),
            params: HashMap::new(),
            headers: vec![("x-a".into(), "1".into())],
            body: vec![],
            remote_addr: None,
        };
        let pairs = req.query_pairs();
        assert_eq!(pairs[0], ("a".into(), "1".into()));
        assert_eq!(pairs[1], ("b".into(), "x y".into()));
        assert_eq!(pairs[2], ("c".into(), "ü/".into()));
        assert_eq!(pairs[3], ("d".into(), "".into()));
        assert_eq!(pairs[4], ("e".into(), "%zz".into()));
        assert_eq!(pairs[5], ("f".into(), "%4".into()));
        assert_eq!(req.header("X-A"), Some("1"));
        assert_eq!(req.json().unwrap(), Value::Null);
    }
}
