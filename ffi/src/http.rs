//! HTTP: `make_api_request`, serving routes with a C callback (and writing its
//! response), route registration, counters.

use std::ffi::{CString, c_char, c_void};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hydra_rs::{ApiResponse, Balance, HttpRequest, HttpResponse, HttpRoutes, HttpSettings, RequestOptions, Umf};
use serde_json::{Map, Value, json};

use crate::args::{self, millis, owned_json};
use crate::callbacks::{UserData, hydra_free_callback, run_callback};
use crate::handles::Table;
use crate::service::{handle, hydra};
use crate::status::{FfiError, FfiResult, HYDRA_NULL_ARGUMENT, call};

/// The response of one HTTP request being served, written by the route
/// callback with `hydra_http_response_send` or `hydra_http_response_set`
/// (and `hydra_http_response_add_header`). Valid only during the callback
/// that received it: afterwards every call with it fails with
/// `HYDRA_INVALID_HANDLE`. Use it from the callback's thread.
pub struct hydra_http_response {
    _opaque: [u8; 0],
}

/// Serves one HTTP request, on one of the server's worker threads (`workers`,
/// default 16), possibly on several at once.
///
/// `hydra` is the handle that serves the routes. `request_json` (valid only
/// during the call) is `{"route": "[get]/v1/items/:id", "method": "GET",
/// "path": "/v1/items/7", "query": "a=1", "params": {"id": "7"}, "headers":
/// {"host": "..."}, "body": "<the body as text>"}` (header names lowercased;
/// repeated headers joined with ", "). A body that is not valid UTF-8 (an
/// image, protobuf, gzip) is also given exactly, as `"bodyBase64":
/// "<standard base64 of the bytes>"` after `body`, whose text then has each
/// invalid sequence replaced with U+FFFD; a UTF-8 body has no `bodyBase64`.
///
/// Write the answer into `response`, then return `HYDRA_OK`. Any other
/// return value, or returning without a response, answers 500 with
/// Hydra's error envelope; its `result.reason` is `the route handler failed
/// (<STATUS>): <message>`, the message being the one the callback set with
/// `hydra_set_last_error_message` (or that of a library call that failed in
/// it). That text goes to the HTTP client: keep secrets out of it. The
/// callback may call any function of the library.
pub type hydra_http_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        hydra: *mut hydra,
        request_json: *const c_char,
        response: *mut hydra_http_response,
    ) -> i32,
>;

static RESPONSES: Table<Mutex<Option<HttpResponse>>> = Table::new("hydra_http_response");

/// `[get]/v1/items/:id` → (`GET`, `/v1/items/:id`).
fn split_route(route: &str) -> FfiResult<(String, String)> {
    let bad = || {
        FfiError::bad_request(format!(
            "route {route:?} is not in Hydra's form [method]/path, e.g. [get]/v1/items/:id"
        ))
    };
    let rest = route.strip_prefix('[').ok_or_else(bad)?;
    let (method, path) = rest.split_once(']').ok_or_else(bad)?;
    if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) || !path.starts_with('/') {
        return Err(bad());
    }
    Ok((method.to_ascii_uppercase(), path.to_string()))
}

fn string_list(value: Value, name: &str) -> FfiResult<Vec<String>> {
    let bad = || FfiError::bad_request(format!("argument {name} must be a JSON array of strings"));
    let Value::Array(items) = value else {
        return Err(bad());
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(bad()),
        })
        .collect()
}

fn headers_object(headers: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match map.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name, Value::String(value.clone()));
            }
        }
    }
    map
}

fn request_json(route: &str, request: &HttpRequest) -> String {
    let params: Map<String, Value> = request
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut value = json!({
        "route": route,
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "params": params,
        "headers": headers_object(&request.headers),
    });
    set_body(&mut value, &request.body);
    value.to_string()
}

fn response_json(response: &ApiResponse) -> Value {
    let mut value = json!({
        "statusCode": response.status,
        "instanceID": response.instance_id,
        "headers": headers_object(&response.headers),
    });
    let json = if response.is_json() { response.json().ok() } else { None };
    match json {
        Some(body) => value["body"] = body,
        None => set_body(&mut value, &response.body),
    }
    value
}

/// Sets `"body"` of the JSON object `value`: the body as text. When the bytes
/// are not UTF-8 that text is lossy (U+FFFD for each invalid sequence), so
/// `"bodyBase64"` follows with the exact bytes (standard alphabet, padded);
/// a UTF-8 body gets no copy.
fn set_body(value: &mut Value, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => value["body"] = text.into(),
        Err(_) => {
            value["body"] = String::from_utf8_lossy(body).into();
            value["bodyBase64"] = BASE64.encode(body).into();
        }
    }
}

fn number(options: &Map<String, Value>, key: &str, name: &str) -> FfiResult<Option<u64>> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| FfiError::bad_request(format!("{name}.{key} must be a non-negative integer, got {v}"))),
    }
}

fn reject_unknown(options: &Map<String, Value>, known: &[&str], name: &str) -> FfiResult {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(FfiError::bad_request(format!(
            "{name} has an unknown key {key:?} (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn request_options(options: &Map<String, Value>) -> FfiResult<RequestOptions> {
    reject_unknown(options, &["timeoutMs", "balance", "maxResponseBytes"], "options_json")?;
    let mut result = RequestOptions::default();
    if let Some(ms) = number(options, "timeoutMs", "options_json")? {
        result = RequestOptions::timeout(millis(ms));
    }
    if let Some(bytes) = number(options, "maxResponseBytes", "options_json")? {
        result = result.with_max_response_bytes(bytes);
    }
    match options.get("balance") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "roundRobin" => result = result.with_balance(Balance::RoundRobin),
        Some(Value::String(s)) if s == "random" => result = result.with_balance(Balance::Random),
        Some(other) => {
            return Err(FfiError::bad_request(format!(
                "options_json.balance must be \"roundRobin\" or \"random\", got {other}"
            )));
        }
    }
    Ok(result)
}

fn http_settings(options: &Map<String, Value>) -> FfiResult<HttpSettings> {
    const KEYS: [&str; 11] = [
        "maxBodyBytes",
        "maxHeadBytes",
        "maxUrlBytes",
        "readTimeoutMs",
        "headTimeoutMs",
        "requestTimeoutMs",
        "keepAliveMs",
        "workers",
        "queueCapacity",
        "maxConnections",
        "drainTimeoutMs",
    ];
    reject_unknown(options, &KEYS, "settings_json")?;
    let mut settings = HttpSettings::default();
    let get = |key: &str| number(options, key, "settings_json");
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(n) = get("maxBodyBytes")? {
        settings.max_body_bytes = size(n);
    }
    if let Some(n) = get("maxHeadBytes")? {
        settings.max_head_bytes = size(n);
    }
    if let Some(n) = get("maxUrlBytes")? {
        settings.max_url_bytes = size(n);
    }
    if let Some(ms) = get("readTimeoutMs")? {
        settings.read_timeout = millis(ms);
    }
    if let Some(ms) = get("headTimeoutMs")? {
        settings.head_timeout = millis(ms);
    }
    if let Some(ms) = get("requestTimeoutMs")? {
        settings.request_timeout = millis(ms);
    }
    if let Some(ms) = get("keepAliveMs")? {
        settings.keep_alive = millis(ms);
    }
    if let Some(n) = get("workers")? {
        settings.workers = size(n);
    }
    if let Some(n) = get("queueCapacity")? {
        settings.queue_capacity = size(n);
    }
    if let Some(n) = get("maxConnections")? {
        settings.max_connections = size(n);
    }
    if let Some(ms) = get("drainTimeoutMs")? {
        settings.drain_timeout = millis(ms);
    }
    Ok(settings)
}

/// Calls a service's HTTP route (Node's `makeAPIRequest`). `message_json` is
/// a UMF message whose `to` is `service:[method]/path?query` or
/// `instanceID@service:[method]/path`; its `body` is sent as JSON for POST,
/// PUT and PATCH, `headers` become HTTP headers. `options_json` may be NULL or
/// `{"timeoutMs": 5000, "balance": "roundRobin" | "random", "maxResponseBytes":
/// 67108864}`; a response body over `maxResponseBytes` (default 64 MiB) fails
/// the call with `HYDRA_MALFORMED` instead of being cut short.
///
/// `*out_response_json` = `{"statusCode": 200, "instanceID": "...",
/// "headers": {...}, "body": <the JSON body, or the body as a string>}`. A
/// body that is neither JSON nor valid UTF-8 (an image, protobuf, gzip) is
/// also given exactly, as `"bodyBase64": "<standard base64 of the bytes>"`
/// after `body`, whose text then has each invalid sequence replaced with
/// U+FFFD; other bodies have no `bodyBase64`. Any HTTP status is a response,
/// not an error; transport failures move on to the next instance;
/// `HYDRA_SERVICE_UNAVAILABLE` when none answered.
///
/// # Safety
/// `message_json` and `options_json` are NULL or NUL-terminated strings;
/// `out_response_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_make_api_request(
    hydra: *mut hydra,
    message_json: *const c_char,
    options_json: *const c_char,
    out_response_json: *mut *mut c_char,
) -> i32 {
    call("hydra_make_api_request", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_response_json, "out_response_json", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let message = unsafe { args::json(message_json, "message_json") }?;
        // SAFETY: the caller's contract.
        let options = request_options(&unsafe { args::optional_object(options_json, "options_json") }?)?;
        let object = handle(hydra)?;
        let h = object.live()?;
        let mut umf = Umf::from_value(message)?;
        if umf.from.is_empty() {
            umf.from = format!("{}:/", h.get_service_name());
        }
        let response = h.make_api_request(&umf, options)?;
        *out = owned_json(&response_json(&response))?;
        Ok(())
    })
}

/// Serves HTTP routes on the service port (all interfaces) with one callback
/// for all of them, and registers them in Redis as hydra-express does, so Node
/// `makeAPIRequest` and hydra-router find them. `routes_json` is a JSON array
/// of routes in Hydra's form, `["[get]/v1/items/:id", "[post]/v1/items"]`
/// (route-parser paths: `:param`, `*splat`, `(optional)`). Unknown paths get a
/// 404 envelope, known paths with another method a 405. `settings_json` may
/// be NULL or `{"maxBodyBytes", "maxHeadBytes", "maxUrlBytes",
/// "readTimeoutMs", "headTimeoutMs", "requestTimeoutMs", "keepAliveMs",
/// "workers", "queueCapacity", "maxConnections", "drainTimeoutMs"}` (defaults:
/// 1 MiB, 16 KiB, 8 KiB, 10 s, 10 s, 30 s, 5 s, 16, 1024, 4096, 10 s).
/// `*out_port` (may be NULL) receives the port, the one published in
/// presence. The server stops on `hydra_shutdown`, letting requests already
/// running finish for up to `drainTimeoutMs`.
///
/// On success the library owns `user_data` and calls `free_user_data` once
/// when the server has stopped. On failure it never calls `free_user_data`
/// (nor the callback): nothing is left running and the caller still owns
/// `user_data`.
///
/// # Safety
/// `routes_json` and `settings_json` are NULL or NUL-terminated strings;
/// `callback` and `free_user_data` must be callable from any thread with
/// `user_data`; `out_port` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_serve_http(
    hydra: *mut hydra,
    routes_json: *const c_char,
    settings_json: *const c_char,
    callback: hydra_http_callback,
    user_data: *mut c_void,
    free_user_data: hydra_free_callback,
    out_port: *mut u16,
) -> i32 {
    call("hydra_serve_http", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::optional_out(out_port, 0) };
        // SAFETY: the caller's contract.
        let routes = string_list(unsafe { args::json(routes_json, "routes_json") }?, "routes_json")?;
        // SAFETY: the caller's contract.
        let settings = http_settings(&unsafe { args::optional_object(settings_json, "settings_json") }?)?;
        let Some(callback) = callback else {
            return Err(FfiError::new(HYDRA_NULL_ARGUMENT, "argument callback is NULL"));
        };
        let object = handle(hydra)?;
        let h = object.live()?;
        let id = hydra as usize;
        let parsed = routes
            .into_iter()
            .map(|route| split_route(&route).map(|(method, path)| (method, path, route)))
            .collect::<FfiResult<Vec<_>>>()?;
        // From here on the routes hold `user_data`: whatever fails, disarm it
        // before the last reference goes, so the caller keeps ownership.
        let data = Arc::new(UserData::new(user_data, free_user_data));
        let mut table = HttpRoutes::new();
        for (method, path, route) in parsed {
            let data = data.clone();
            table = table.route(&method, &path, move |_, request| {
                serve(callback, &data, id, &route, request)
            });
        }
        let result = h.serve_http_with(table, settings);
        if result.is_err() {
            data.disarm();
        }
        let port = result?;
        if let Some(out) = out {
            *out = port;
        }
        Ok(())
    })
}

/// One request through the C callback.
fn serve(
    callback: unsafe extern "C" fn(*mut c_void, *mut hydra, *const c_char, *mut hydra_http_response) -> i32,
    data: &UserData,
    id: usize,
    route: &str,
    request: &HttpRequest,
) -> HttpResponse {
    let Ok(text) = CString::new(request_json(route, request)) else {
        return HttpResponse::error(500, "request cannot be passed as a C string");
    };
    let slot = Arc::new(Mutex::new(None));
    let response_id = RESPONSES.insert(slot.clone());
    // SAFETY: the callback and user_data the caller registered; the response
    // handle is a table key, checked on every use.
    let outcome = run_callback(|| unsafe {
        callback(
            data.ptr(),
            crate::service::as_ptr(id),
            text.as_ptr(),
            response_id as *mut hydra_http_response,
        )
    });
    RESPONSES.remove(response_id as *const hydra_http_response);
    let written = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (outcome, written) {
        (Ok(()), Some(response)) if response.status != 0 => response,
        (Ok(()), _) => {
            log::warn!("HTTP route {route}: the callback returned without a response");
            HttpResponse::error(500, "the route handler sent no response")
        }
        (Err(failure), _) => {
            log::warn!("HTTP route {route}: the callback returned {failure}");
            let mut reason = format!("the route handler failed ({})", failure.status_text());
            if !failure.detail.is_empty() {
                reason.push_str(": ");
                reason.push_str(&failure.detail);
            }
            HttpResponse::error(500, &reason)
        }
    }
}

fn with_response(
    response: *mut hydra_http_response,
    f: impl FnOnce(&mut Option<HttpResponse>) -> FfiResult,
) -> FfiResult {
    let slot = RESPONSES.get(response, "response")?;
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// An HTTP status the server can send: 100-599 (1xx, 204 and 304 go out
/// without a body).
fn http_status(status: u16) -> FfiResult<u16> {
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(FfiError::bad_request(format!(
            "status {status} is not an HTTP status (100-599)"
        )))
    }
}

/// Answers with Hydra's envelope (hydra-express's `sendResponse`):
/// `{"statusCode": status, "statusMessage", "statusDescription", "result":
/// <result_json>}`, `content-type: application/json`. Replaces any response
/// written before (headers added so far are kept). `status` must be 100-599
/// (else `HYDRA_BAD_REQUEST`); 1xx, 204 and 304 are sent without a body.
///
/// # Safety
/// `result_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_http_response_send(
    response: *mut hydra_http_response,
    status: u16,
    result_json: *const c_char,
) -> i32 {
    call("hydra_http_response_send", || {
        // SAFETY: the caller's contract.
        let result = unsafe { args::json(result_json, "result_json") }?;
        let status = http_status(status)?;
        with_response(response, |slot| {
            let extra = slot.take().map(|r| r.headers).unwrap_or_default();
            let mut written = HttpResponse::send_response(status, result);
            merge_headers(&mut written, extra);
            *slot = Some(written);
            Ok(())
        })
    })
}

/// Answers with raw bytes: `status`, a `content_type` (NULL:
/// `application/octet-stream`) and `body_len` bytes at `body` (may be NULL
/// when `body_len` is 0). Replaces any response written before (headers added
/// so far are kept). `status` must be 100-599 (else `HYDRA_BAD_REQUEST`);
/// 1xx, 204 and 304 are sent without a body.
///
/// # Safety
/// `content_type` is NULL or a NUL-terminated string; `body` is NULL or valid
/// for reads of `body_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_http_response_set(
    response: *mut hydra_http_response,
    status: u16,
    content_type: *const c_char,
    body: *const u8,
    body_len: usize,
) -> i32 {
    call("hydra_http_response_set", || {
        // SAFETY: the caller's contract.
        let content_type = unsafe { args::optional_text(content_type, "content_type") }?;
        let bytes = if body_len == 0 {
            Vec::new()
        } else if body.is_null() {
            return Err(FfiError::new(HYDRA_NULL_ARGUMENT, "argument body is NULL"));
        } else {
            // SAFETY: non-NULL and readable for body_len bytes by the caller's contract.
            unsafe { std::slice::from_raw_parts(body, body_len) }.to_vec()
        };
        let status = http_status(status)?;
        with_response(response, |slot| {
            let extra = slot.take().map(|r| r.headers).unwrap_or_default();
            let mut written = HttpResponse::bytes(status, content_type.unwrap_or("application/octet-stream"), bytes);
            merge_headers(&mut written, extra);
            *slot = Some(written);
            Ok(())
        })
    })
}

/// Adds a response header (before or after the body is set).
///
/// # Safety
/// `name` and `value` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_http_response_add_header(
    response: *mut hydra_http_response,
    name: *const c_char,
    value: *const c_char,
) -> i32 {
    call("hydra_http_response_add_header", || {
        // SAFETY: the caller's contract.
        let name = unsafe { args::text(name, "name") }?;
        // SAFETY: the caller's contract.
        let value = unsafe { args::text(value, "value") }?;
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name || value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(FfiError::bad_request(format!("invalid header {name:?}: {value:?}")));
        }
        with_response(response, |slot| {
            let current = slot.take().unwrap_or(HttpResponse {
                status: 0,
                headers: Vec::new(),
                body: Vec::new(),
            });
            *slot = Some(current.with_header(name, value));
            Ok(())
        })
    })
}

/// Headers added before the body keep their place after the body's own.
fn merge_headers(response: &mut HttpResponse, extra: Vec<(String, String)>) {
    for (name, value) in extra {
        if name == "content-type" {
            continue;
        }
        response.headers.push((name, value));
    }
}

/// Counters of the embedded HTTP server, a JSON object: `connections`,
/// `requests`, `rejected`, `rejected_framing`, `panicked`, `overloaded`,
/// `timed_out` (works after shutdown).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_http_stats(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    call("hydra_http_stats", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        *out = owned_json(&handle(hydra)?.hydra.http_stats())?;
        Ok(())
    })
}

/// Stores this service's routes in Redis without serving them (Node's
/// `registerRoutes`; `hydra_serve_http` does it for the routes it serves).
/// `routes_json` is a JSON array of `[method]/path` strings.
///
/// # Safety
/// `routes_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_register_routes(hydra: *mut hydra, routes_json: *const c_char) -> i32 {
    call("hydra_register_routes", || {
        // SAFETY: the caller's contract.
        let routes = string_list(unsafe { args::json(routes_json, "routes_json") }?, "routes_json")?;
        for route in &routes {
            split_route(route)?;
        }
        handle(hydra)?.live()?.register_routes(&routes)?;
        Ok(())
    })
}

/// Every service's routes, `{"service": ["[get]/...", ...]}` (Node's
/// `getAllServiceRoutes`).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_all_service_routes(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    call("hydra_get_all_service_routes", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        *out = owned_json(&handle(hydra)?.live()?.get_all_service_routes()?)?;
        Ok(())
    })
}

/// `*out_matched` = true if `route` (`[get]/v1/items/7`) matches a route this
/// handle registered (Node's `matchRoute`).
///
/// # Safety
/// `route` is NULL or a NUL-terminated string; `out_matched` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_match_route(hydra: *mut hydra, route: *const c_char, out_matched: *mut bool) -> i32 {
    call("hydra_match_route", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_matched, "out_matched", false) }?;
        // SAFETY: the caller's contract.
        let route = unsafe { args::text(route, "route") }?;
        *out = handle(hydra)?.hydra.match_route(route);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8]) -> Value {
        let request = HttpRequest {
            method: "POST".into(),
            path: "/v1/up".into(),
            query: String::new(),
            params: Default::default(),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: body.to_vec(),
            remote_addr: None,
        };
        serde_json::from_str(&request_json("[post]/v1/up", &request)).unwrap()
    }

    fn response(content_type: &str, body: &[u8]) -> Value {
        response_json(&ApiResponse {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_vec(),
            instance_id: "i".into(),
        })
    }

    #[test]
    fn a_binary_request_body_comes_exactly_in_body_base64() {
        let bytes: Vec<u8> = (0..=255).chain([0xff, 0xfe, 0x00]).collect();
        let json = request(&bytes);
        assert_eq!(BASE64.decode(json["bodyBase64"].as_str().unwrap()).unwrap(), bytes);
        assert_eq!(
            json["body"],
            String::from_utf8_lossy(&bytes).as_ref(),
            "the lossy text stays"
        );
        assert_eq!(request(b"\xff")["bodyBase64"], "/w==");
    }

    #[test]
    fn a_text_request_body_has_no_base64() {
        for text in ["", "plain ✓", "nul \0 inside"] {
            let json = request(text.as_bytes());
            assert_eq!(json["body"], text);
            assert!(json.get("bodyBase64").is_none(), "{json}");
        }
    }

    #[test]
    fn response_bodies_json_text_and_binary() {
        let json = response("application/json", br#"{"a": 1}"#);
        assert_eq!(json["body"], json!({"a": 1}));
        assert!(json.get("bodyBase64").is_none(), "{json}");
        let text = response("text/plain", "caf\u{e9}".as_bytes());
        assert_eq!(text["body"], "caf\u{e9}");
        assert!(text.get("bodyBase64").is_none(), "{text}");
        for content_type in ["application/octet-stream", "application/json"] {
            let binary = response(content_type, b"\x89PNG\r\n\x1a\n\xff\x00");
            assert_eq!(binary["bodyBase64"], "iVBORw0KGgr/AA==", "{content_type}");
            assert_eq!(binary["body"], "\u{fffd}PNG\r\n\u{1a}\n\u{fffd}\0", "{content_type}");
        }
    }
}
