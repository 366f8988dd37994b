//! The router's own endpoints under `/v1/router/` (spec §1.8), answered in
//! Hydra's envelope as Node's router answers them, plus `metrics` (ours).
//! Access rules are in [`access`](crate::access).

use std::time::{Duration, Instant};

use hydra::{Error, HttpRequest, HttpResponse, Hydra, RequestOptions, Route, Umf};
use serde_json::{Map, Value, json};

use crate::access::OwnPath;
use crate::gateway::Shared;

/// `nodes` entries older than this are removed by `/v1/router/clear` (Node: 5 s).
pub const CLEAR_OLDER_THAN: Duration = Duration::from_secs(5);

/// The routes the router registers in Redis under its own name, as Node's
/// does (its font files aside), so tools see it as a router.
pub const OWN_ROUTES: &[&str] = &[
    "[get]/",
    "[get]/index.css",
    "[get]/index.js",
    "[get]/v1/router/health",
    "[get]/v1/router/list/:thing",
    "[get]/v1/router/version",
    "[get]/v1/router/clear",
    "[get]/v1/router/refresh",
    "[get]/v1/router/refresh/:service",
    "[get]/v1/router/log",
    "[get]/v1/router/stats",
    "[get]/v1/router/metrics",
    "[post]/v1/router/message",
    "[post]/v1/router/send",
    "[post]/v1/router/queue",
    "[post]/v1/router/stream/:name",
];

/// Which of the router's own paths `path` is, if any.
pub fn own_path(path: &str) -> Option<OwnPath> {
    match path {
        "/" | "/index.html" | "/index.js" | "/index.css" => Some(OwnPath::Dashboard),
        "/v1/router/health" => Some(OwnPath::Health),
        "/v1/router/metrics" => Some(OwnPath::Metrics),
        p if p.starts_with("/v1/router/") => Some(OwnPath::Api),
        _ => None,
    }
}

/// Answers a router API request (access already granted).
pub fn answer(shared: &Shared, hydra: &Hydra, request: &HttpRequest) -> HttpResponse {
    let endpoint = request.path.trim_start_matches("/v1/router/");
    let mut parts = endpoint.splitn(2, '/');
    let (first, rest) = (parts.next().unwrap_or(""), parts.next());
    match (first, rest) {
        ("health", None) => ok(hydra.get_health()),
        ("version", None) => ok(json!({ "version": env!("CARGO_PKG_VERSION") })),
        ("list", Some(thing)) => list(shared, hydra, thing),
        ("clear", None) => clear(hydra, request),
        ("refresh", _) => match shared.book.rebuild(hydra) {
            Ok(()) => ok(json!({})),
            Err(e) => failed(&e),
        },
        ("log", None) => ok(json!({ "logs": shared.log.entries() })),
        // Written as text: a `Value` of 3600 numbers per service is slow to build.
        ("stats", None) => {
            // Node's three sets, and this router's WebSocket counters (ours).
            let ws = shared.ws_counts().map(|counts| json!(counts)).unwrap_or(Value::Null);
            let text = shared.stats.node_envelope_text_with(&[("wsClients", ws)]);
            HttpResponse::bytes(200, "application/json", text.into_bytes())
        }
        ("metrics", None) => metrics(shared, hydra),
        ("message", None) => message(hydra, shared, request),
        ("send", None) => counted_message(shared, request, |umf| {
            hydra.send_message(&umf)?;
            Ok(json!({ "mid": umf.mid }))
        }),
        ("queue", None) => counted_message(shared, request, |umf| {
            hydra.queue_message(&umf)?;
            Ok(json!({ "mid": umf.mid }))
        }),
        ("stream", Some(name)) if !name.is_empty() && !name.contains('/') => with_message(request, |umf| {
            let id = hydra.stream_message(name, &umf)?;
            Ok(json!({ "id": id }))
        }),
        _ => not_found(),
    }
}

fn ok(result: Value) -> HttpResponse {
    HttpResponse::send_response(200, result)
}

fn not_found() -> HttpResponse {
    HttpResponse::send_response(404, json!({}))
}

fn unavailable(reason: &str) -> HttpResponse {
    HttpResponse::error(503, reason)
}

/// The HTTP answer for a library error.
pub fn error_status(error: &Error) -> u16 {
    match error {
        Error::BadRequest(_) | Error::Malformed(_) | Error::InvalidConfig { .. } => 400,
        Error::NotFound(_) => 404,
        Error::ServiceUnavailable(_) | Error::Redis(_) | Error::Timeout(_) => 503,
        _ => 500,
    }
}

/// The answer for a failed call. A Redis error names the Redis server,
/// which is nobody's business outside: it is logged, the client is told
/// that Redis is unavailable.
fn failed(error: &Error) -> HttpResponse {
    match error {
        Error::Redis(_) => {
            log::warn!("router API: {error}");
            unavailable("Redis is unavailable")
        }
        _ => HttpResponse::error(error_status(error), &error.to_string()),
    }
}

fn list(shared: &Shared, hydra: &Hydra, thing: &str) -> HttpResponse {
    match thing {
        "routes" => ok(shared.book.table().list_routes()),
        "services" => match hydra.get_service_health_all() {
            Ok(all) => ok(Value::Array(all.iter().flat_map(services_entry).collect())),
            Err(e @ Error::Redis(_)) => failed(&e),
            Err(e) => HttpResponse::error(500, &e.to_string()),
        },
        "nodes" => match hydra.get_service_nodes() {
            Ok(nodes) => {
                let mut body = hydra::http::envelope(200, serde_json::to_value(nodes).unwrap_or(Value::Null));
                body["instanceID"] = json!(hydra.get_instance_id());
                body["hostname"] = hydra.get_health().get("hostName").cloned().unwrap_or(Value::Null);
                body["version"] = json!(env!("CARGO_PKG_VERSION"));
                HttpResponse::json(200, &body)
            }
            Err(e) => failed(&e),
        },
        "wsdir" => ok(shared.ws_directory.to_json()),
        _ => not_found(),
    }
}

/// One object per live instance of a service: its `nodes` fields, its
/// latest health fields, and up to three flight-recorder entries.
fn services_entry(service: &hydra::ServiceHealth) -> Vec<Value> {
    service
        .presence
        .iter()
        .map(|instance| {
            let mut merged = match serde_json::to_value(instance) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let health = service
                .health
                .iter()
                .find(|h| h.get("instanceID").and_then(Value::as_str) == Some(instance.instance_id.as_str()));
            if let Some(Value::Object(fields)) = health {
                for (key, value) in fields {
                    merged.insert(key.clone(), value.clone());
                }
            }
            let log: Vec<Value> = service
                .log
                .iter()
                .take(3)
                .filter_map(|entry| serde_json::to_value(entry).ok())
                .collect();
            merged.insert("log".into(), Value::Array(log));
            Value::Object(merged)
        })
        .collect()
}

fn clear(hydra: &Hydra, request: &HttpRequest) -> HttpResponse {
    if let Err(e) = hydra.clear_stale_nodes(CLEAR_OLDER_THAN) {
        return failed(&e);
    }
    // Back to the dashboard, keeping its token.
    let location = match request.query_param("token") {
        Some(token) => format!("/?token={}", percent_encode(&token)),
        None => "/".to_string(),
    };
    HttpResponse::bytes(302, "text/plain; charset=utf-8", b"Found".to_vec()).with_header("location", &location)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn metrics(shared: &Shared, hydra: &Hydra) -> HttpResponse {
    let mut extra = crate::stats::server_metrics(&hydra.http_stats(), shared.started.elapsed());
    if let Some(counts) = shared.ws_counts() {
        extra.extend(crate::stats::ws_metrics(&counts));
    }
    let text = shared.stats.prometheus(&extra);
    HttpResponse::bytes(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
}

/// Parses the body as a UMF message and runs `act` on it.
fn with_message(request: &HttpRequest, act: impl FnOnce(Umf) -> hydra::Result<Value>) -> HttpResponse {
    let umf = match parse_message(request) {
        Ok(umf) => umf,
        Err(response) => return response,
    };
    match act(umf) {
        Ok(result) => ok(result),
        Err(e) => failed(&e),
    }
}

/// `/send` and `/queue`: as [`with_message`], and counted in the stats
/// under the message's target service, as Node's router counts them.
fn counted_message(
    shared: &Shared,
    request: &HttpRequest,
    act: impl FnOnce(Umf) -> hydra::Result<Value>,
) -> HttpResponse {
    let started = Instant::now();
    let umf = match parse_message(request) {
        Ok(umf) => umf,
        Err(response) => return response,
    };
    let target = Route::parse(&umf.to).ok().map(|route| route.service_name);
    let response = match act(umf) {
        Ok(result) => ok(result),
        Err(e) => failed(&e),
    };
    if let Some(service) = target.filter(|service| !service.is_empty()) {
        shared.stats.record_http(&service, response.status, started.elapsed());
    }
    response
}

fn parse_message(request: &HttpRequest) -> Result<Umf, HttpResponse> {
    let text = std::str::from_utf8(&request.body)
        .map_err(|_| HttpResponse::error(400, "the body is not UTF-8 text (a UMF message in JSON is expected)"))?;
    Umf::parse(text).map_err(|e| HttpResponse::error(400, &format!("the body is not a UMF message: {e}")))
}

/// `POST /v1/router/message`: a UMF message whose `forward` names an HTTP
/// route (`svc:[post]/path`); the router makes that call with the message's
/// body and answers with the service's status and `{result}`.
fn message(hydra: &Hydra, shared: &Shared, request: &HttpRequest) -> HttpResponse {
    let umf = match parse_message(request) {
        Ok(umf) => umf,
        Err(response) => return response,
    };
    let Some(forward) = umf.forward.clone().filter(|f| f.contains('[')) else {
        return HttpResponse::error(
            400,
            "the message needs `forward` naming an HTTP route such as svc:[post]/v1/x",
        );
    };
    let mut call = Umf::new(
        forward,
        format!("{}@{}:/", hydra.get_instance_id(), hydra.get_service_name()),
        umf.body,
    );
    call.headers = umf.headers;
    call.authorization = umf.authorization;
    match hydra.make_api_request(&call, RequestOptions::timeout(shared.config.request_timeout)) {
        Ok(answer) => {
            let result = answer
                .result()
                .or_else(|| answer.json().ok().filter(|_| answer.is_json()))
                .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&answer.body).into_owned()));
            HttpResponse::send_response(answer.status, result)
        }
        Err(e) => failed(&e),
    }
}
