//! Forwarding one HTTP request to a service and shaping its answer
//! (spec §1.4–1.6).
//!
//! Kept from Node: all request headers go along (`host` and `authorization`
//! included) plus `x-hydra-tracer` and `x-forwarded-for`; a JSON object answer
//! is merged into Hydra's envelope (`{statusCode, statusMessage,
//! statusDescription, result, …body}`); other answers pass through as they
//! are; the router's `cors` headers and the tracer are added to every answer;
//! a 503 envelope with Node's reasons when no instance answers.
//!
//! Fixed: **every request body passes byte for byte** whatever its method and
//! type (Node drops PATCH and DELETE bodies and turns a non-JSON body into
//! `{}`), and the service's status is the status (Node lets a `statusCode` in
//! the body override it). Hop-by-hop headers (RFC 9110 §7.6.1) are not
//! forwarded in either direction. `accept-encoding` is not forwarded either,
//! as in Node: the router compresses JSON answers itself, which it could not
//! merge if the service had compressed them.

use std::io::Write;

use hydra::{ApiResponse, HttpRequest, HttpResponse};
use serde_json::{Value, json};

/// JSON answers at least this long are gzipped for a client that accepts it
/// (smaller ones gain nothing from it).
pub const GZIP_MIN_BYTES: usize = 1024;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1),
/// plus the framing headers the HTTP layers set themselves.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// True for a header that must not cross the router: a hop-by-hop one, or
/// one the `connection` header names.
fn is_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection_tokens.iter().any(|t| name.eq_ignore_ascii_case(t))
}

fn connection_tokens(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect()
}

/// The headers sent to the service: the client's, minus hop-by-hop ones and
/// `accept-encoding`, with `x-forwarded-for` extended by the client's address
/// and `x-hydra-tracer` set.
pub fn request_headers(request: &HttpRequest, tracer: &str) -> Vec<(String, String)> {
    let tokens = connection_tokens(&request.headers);
    let mut forwarded_for: Option<String> = None;
    let mut headers: Vec<(String, String)> = Vec::with_capacity(request.headers.len() + 2);
    for (name, value) in &request.headers {
        if is_hop_by_hop(name, &tokens)
            || name.eq_ignore_ascii_case("accept-encoding")
            || name.eq_ignore_ascii_case("x-hydra-tracer")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = Some(match forwarded_for {
                Some(before) => format!("{before}, {value}"),
                None => value.clone(),
            });
            continue;
        }
        headers.push((name.to_ascii_lowercase(), value.clone()));
    }
    let client = request.remote_addr.map(|a| a.ip().to_string());
    let forwarded_for = match (forwarded_for, client) {
        (Some(before), Some(ip)) => Some(format!("{before}, {ip}")),
        (Some(before), None) => Some(before),
        (None, ip) => ip,
    };
    if let Some(value) = forwarded_for {
        headers.push(("x-forwarded-for".into(), value));
    }
    headers.push(("x-hydra-tracer".into(), tracer.to_string()));
    headers
}

/// What the router adds to every answer it sends.
pub struct AnswerHeaders<'a> {
    /// The request's tracer id.
    pub tracer: &'a str,
    /// The configured CORS headers.
    pub cors: &'a [(String, String)],
    /// The client sent `accept-encoding` with gzip.
    pub accepts_gzip: bool,
}

impl AnswerHeaders<'_> {
    /// Adds the tracer and CORS headers, replacing any of the same name.
    pub fn apply(&self, mut response: HttpResponse) -> HttpResponse {
        let mut set = |name: &str, value: &str| {
            response.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            response.headers.push((name.to_string(), value.to_string()));
        };
        set("x-hydra-tracer", self.tracer);
        for (name, value) in self.cors {
            set(name, value);
        }
        response
    }

    /// Hydra's error envelope with `result.reason` and Node's top-level `tracer`.
    pub fn error(&self, status: u16, reason: &str) -> HttpResponse {
        let mut body = hydra::http::error_envelope(status, reason);
        body["tracer"] = json!(self.tracer);
        self.apply(HttpResponse::json(status, &body))
    }
}

/// True when the client accepts a gzip-encoded answer.
pub fn accepts_gzip(request: &HttpRequest) -> bool {
    request.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("accept-encoding")
            && v.split(',').any(|coding| {
                let mut parts = coding.split(';');
                let name = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
            })
    })
}

/// The client's answer from a service's answer: a JSON object merged into
/// the envelope (and gzipped when accepted and worth it), anything else passed
/// through as it came.
pub fn shape_answer(answer: ApiResponse, extra: &AnswerHeaders) -> HttpResponse {
    let tokens = connection_tokens(&answer.headers);
    let headers: Vec<(String, String)> = answer
        .headers
        .iter()
        // The router's server adds its own `x-process-id`.
        .filter(|(n, _)| !is_hop_by_hop(n, &tokens) && !n.eq_ignore_ascii_case("x-process-id"))
        .cloned()
        .collect();
    let already_encoded = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-encoding"));
    let merged = (answer.is_json() && !already_encoded && is_json_object(&answer.body)).then(|| {
        let mut envelope = answer.envelope();
        // Node deletes `headers` from the object before sending it.
        if let Value::Object(map) = &mut envelope {
            map.remove("headers");
        }
        envelope
    });
    let mut response = HttpResponse {
        status: answer.status,
        headers,
        body: answer.body,
    };
    if let Some(envelope) = merged {
        response.body = envelope.to_string().into_bytes();
        let compressed = (extra.accepts_gzip && response.body.len() >= GZIP_MIN_BYTES)
            .then(|| gzip(&response.body))
            .flatten();
        if let Some(compressed) = compressed {
            response.body = compressed;
            response.headers.push(("content-encoding".into(), "gzip".into()));
            response.headers.push(("vary".into(), "accept-encoding".into()));
        }
    }
    extra.apply(response)
}

/// True when `body` is one well-formed JSON object. Checked without building
/// the value, since the envelope merge parses the body anyway (a second
/// parse into a `Value` cost ~3% of the router's CPU per forward).
fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/v1/x".into(),
            query: String::new(),
            params: Default::default(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: vec![],
            remote_addr: Some("10.1.2.3:5555".parse().unwrap()),
        }
    }

    #[test]
    fn request_headers_drop_hop_by_hop_and_add_tracer_and_forwarded_for() {
        let r = request(&[
            ("host", "api.example"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("accept-encoding", "gzip"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-hydra-tracer", "spoofed"),
        ]);
        let headers = request_headers(&r, "abc123");
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["host", "authorization", "x-forwarded-for", "x-hydra-tracer"]);
        assert_eq!(headers[2].1, "1.1.1.1, 10.1.2.3");
        assert_eq!(headers[3].1, "abc123");
    }

    fn answer(content_type: &str, body: &[u8]) -> ApiResponse {
        ApiResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("content-length".into(), body.len().to_string()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: body.to_vec(),
            instance_id: "i1".into(),
        }
    }

    fn extra(accepts_gzip: bool) -> AnswerHeaders<'static> {
        static CORS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        AnswerHeaders {
            tracer: "t1",
            cors: CORS.get_or_init(|| vec![("access-control-allow-origin".into(), "*".into())]),
            accepts_gzip,
        }
    }

    #[test]
    fn json_objects_are_merged_into_the_envelope() {
        let out = shape_answer(
            answer("application/json; charset=utf-8", br#"{"a":1,"headers":{"x":1}}"#),
            &extra(false),
        );
        assert_eq!(out.status, 201);
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["statusMessage"], "Created");
        assert_eq!(body["a"], 1);
        assert_eq!(body["result"], json!({}));
        assert!(body.get("headers").is_none());
        assert!(out.headers.contains(&("cache-control".into(), "no-store".into())));
        assert!(out.headers.contains(&("x-hydra-tracer".into(), "t1".into())));
        assert!(
            out.headers
                .contains(&("access-control-allow-origin".into(), "*".into()))
        );
        assert!(!out.headers.iter().any(|(n, _)| n == "content-length"));
    }

    #[test]
    fn other_answers_pass_through_byte_for_byte() {
        let bytes = [0u8, 159, 146, 150, 255, b'{'];
        let out = shape_answer(answer("application/octet-stream", &bytes), &extra(true));
        assert_eq!(out.body, bytes);
        // Declared JSON that is not an object (or not JSON) passes through too.
        let out = shape_answer(answer("application/json", b"[1,2]"), &extra(false));
        assert_eq!(out.body, b"[1,2]");
        let out = shape_answer(answer("application/json", b"not json"), &extra(false));
        assert_eq!(out.body, b"not json");
        let out = shape_answer(answer("application/json", br#"{"a": 1} trailing"#), &extra(false));
        assert_eq!(out.body, br#"{"a": 1} trailing"#);
    }

    #[test]
    fn large_json_answers_are_gzipped_when_accepted() {
        let big = format!(r#"{{"result":{{"text":"{}"}}}}"#, "x".repeat(4000));
        let out = shape_answer(answer("application/json", big.as_bytes()), &extra(true));
        assert!(out.headers.contains(&("content-encoding".into(), "gzip".into())));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out.body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["result"]["text"]
                .as_str()
                .unwrap()
                .len(),
            4000
        );
        let out = shape_answer(answer("application/json", big.as_bytes()), &extra(false));
        assert!(!out.headers.iter().any(|(n, _)| n == "content-encoding"));
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(&request(&[("accept-encoding", "br, gzip;q=0.8")])));
        assert!(!accepts_gzip(&request(&[("accept-encoding", "gzip;q=0, br")])));
        assert!(!accepts_gzip(&request(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&request(&[])));
    }
}
