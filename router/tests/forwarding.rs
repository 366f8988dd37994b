//! Forwarding through the real `hydra-router` binary (spec §1.3–1.7) to real
//! services: Rust services (in this process, and in a child process that can
//! be SIGKILLed) and Node `hydra-express` services, on a private Redis.
//!
//! Covered: every method with JSON, text and binary bodies (byte for byte),
//! query strings and headers (hop-by-hop ones dropped, `x-forwarded-for`
//! appended, `x-hydra-tracer` set); Node's envelope merge and status
//! pass-through; non-JSON pass-through; gzip; CORS and `OPTIONS`; the 404 and
//! 503 envelopes; failover on a killed and on a hanging instance; routes of a
//! dead service never shadowing a live one (Node issue #86); refresh by
//! broadcast and by `/v1/router/refresh`; pruning; Redis going away and
//! coming back; the service-prefix and Referer fallbacks.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{Answer, RouterProcess, TestService, get, send, wait_until};
use hydra_testkit::{ExpressPeer, RedisServer};
use serde_json::{Value, json};

/// Node's 404 body, byte for byte.
const NODE_404: &str = r#"{"statusCode":404,"statusMessage":"Not Found","statusDescription":"The requested resource was not found on the server","result":{}}"#;

/// Generous: the machine is shared with compilers.
const EVENT_DEADLINE: Duration = Duration::from_secs(20);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until `GET url` answers 200.
fn wait_routable(url: &str) {
    wait_until(&format!("GET {url} to answer 200"), EVENT_DEADLINE, || {
        get(url).status == 200
    });
}

fn redis_connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url(0))
        .expect("redis url")
        .get_connection()
        .expect("connect to redis")
}

fn routes_key(service: &str) -> String {
    format!("hydra:service:{service}:service:routes")
}

/// The service names `/v1/router/list/routes` shows.
fn listed_services(router: &RouterProcess) -> Vec<String> {
    let answer = get(&format!("{}/v1/router/list/routes", router.base_url()));
    assert_eq!(
        answer.status,
        200,
        "list/routes: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["result"]
        .as_array()
        .expect("list/routes result is a list")
        .iter()
        .filter_map(|entry| entry["serviceName"].as_str().map(str::to_string))
        .collect()
}

fn refresh(router: &RouterProcess) {
    let answer = get(&format!("{}/v1/router/refresh", router.base_url()));
    assert_eq!(answer.status, 200, "refresh: {}", String::from_utf8_lossy(&answer.body));
}

/// Sends `request` as it is on a fresh connection (for headers an HTTP
/// client library would rewrite: `Host`, `Connection`, `TE`, a GET body) and
/// reads the whole answer; the request should say `Connection: close`.
fn raw(port: u16, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the router");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.write_all(request).expect("send the request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the answer");
    parse_answer(&bytes)
}

fn parse_answer(bytes: &[u8]) -> Answer {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &bytes[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Answer { status, headers, body }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn assert_header(answer: &Answer, name: &str, expected: &str) {
    assert_eq!(
        answer.header(name),
        Some(expected),
        "header {name} in {:?}",
        answer.headers
    );
}

// ---------------------------------------------------------------------------
// 1. Rust and Node services behind the router.
// ---------------------------------------------------------------------------

/// The `cors` block of the tests that check it is honoured (it replaces
/// Node's default headers).
fn custom_cors() -> Value {
    json!({ "access-control-allow-origin": "https://app.example", "x-fwd-cors": "on" })
}

fn assert_custom_cors(answer: &Answer) {
    assert_header(answer, "access-control-allow-origin", "https://app.example");
    assert_header(answer, "x-fwd-cors", "on");
    assert_eq!(
        answer.header("access-control-allow-methods"),
        None,
        "the configured cors replaces Node's defaults"
    );
    assert!(answer.header("x-hydra-tracer").is_some_and(|t| !t.is_empty()));
}

#[test]
fn every_method_body_query_and_header_reaches_a_rust_service() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({ "cors": custom_cors() }));
    let service = TestService::start(&redis, "fwd-rust");
    wait_routable(&format!("{}/v1/fwd-rust/echo", router.base_url()));

    let binary: Vec<u8> = (0..=255u8).chain([0, 13, 10, 0xff, 0xfe]).collect();
    let bodies: [(&str, &[u8]); 4] = [
        ("application/json", br#"{"a":1,"b":[true,null],"c":"\u00e9"}"#),
        ("text/plain; charset=utf-8", "h\u{e9}llo\r\nworld  \n".as_bytes()),
        ("application/octet-stream", &binary),
        ("", b""),
    ];
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        for (content_type, body) in bodies {
            let mut request = format!(
                "{method} /v1/fwd-rust/echo/42?q=a%20b&empty=&x=1&x=2 HTTP/1.1\r\n\
                 Host: api.example.test\r\n\
                 Authorization: Bearer s3cret\r\n\
                 X-Custom: Value-1\r\n\
                 X-Forwarded-For: 203.0.113.7\r\n\
                 Connection: close, x-drop-me\r\n\
                 X-Drop-Me: yes\r\n\
                 Keep-Alive: timeout=5\r\n\
                 TE: trailers\r\n\
                 Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
                 X-Hydra-Tracer: spoofed\r\n"
            );
            if !content_type.is_empty() {
                request.push_str(&format!("Content-Type: {content_type}\r\n"));
            }
            request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut bytes = request.into_bytes();
            bytes.extend_from_slice(body);
            let answer = raw(router.port(), &bytes);
            let what = format!("{method} with {content_type:?} body");
            assert_eq!(answer.status, 200, "{what}: {}", String::from_utf8_lossy(&answer.body));
            let reply = answer.json();
            assert_eq!(reply["statusCode"], 200, "{what}");
            assert_eq!(reply["statusMessage"], "OK", "{what}");
            let seen = &reply["result"];
            assert_eq!(seen["instance"], service.instance_id().as_str());
            assert_eq!(seen["method"], method, "{what}");
            assert_eq!(seen["path"], "/v1/fwd-rust/echo/42", "{what}");
            assert_eq!(seen["query"], "q=a%20b&empty=&x=1&x=2", "{what}");
            assert_eq!(seen["bodyHex"], hex(body).as_str(), "{what}: the body, byte for byte");
            let headers = &seen["headers"];
            assert_eq!(headers["host"], "api.example.test", "{what}");
            assert_eq!(headers["authorization"], "Bearer s3cret", "{what}");
            assert_eq!(headers["x-custom"], "Value-1", "{what}");
            assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1", "{what}");
            if !content_type.is_empty() {
                assert_eq!(headers["content-type"], content_type, "{what}");
            }
            let tracer = answer.header("x-hydra-tracer").expect("x-hydra-tracer on the answer");
            assert_ne!(tracer, "spoofed");
            assert_eq!(
                headers["x-hydra-tracer"], tracer,
                "{what}: the tracer sent is the one answered"
            );
            for hop_by_hop in ["x-drop-me", "keep-alive", "te", "proxy-authorization"] {
                assert!(
                    headers.get(hop_by_hop).is_none(),
                    "{what}: {hop_by_hop} was forwarded: {headers}"
                );
            }
            assert_ne!(headers["connection"], "close, x-drop-me", "{what}");
            assert_custom_cors(&answer);
        }
    }

    // Non-JSON answers pass through as they came: bytes and content type.
    let base = router.base_url();
    for (content_type, body) in [
        ("application/octet-stream", &binary[..]),
        ("text/plain; charset=utf-8", "just text\n".as_bytes()),
        // JSON that is not an object is not merged into the envelope.
        ("application/json", b"[1,2,3]"),
    ] {
        let answer = send(
            "POST",
            &format!("{base}/v1/fwd-rust/raw"),
            &[("content-type", content_type)],
            Some(body),
        );
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, body, "{content_type} passes through byte for byte");
        assert_header(&answer, "content-type", content_type);
        assert_custom_cors(&answer);
    }

    // The service's status is the status; a bare JSON object is merged into
    // Node's envelope.
    for (code, message) in [(201, "Created"), (404, "Not Found"), (500, "Server Error")] {
        let answer = get(&format!("{base}/v1/fwd-rust/status/{code}"));
        assert_eq!(answer.status, code);
        assert_eq!(
            answer.json(),
            json!({
                "statusCode": code,
                "statusMessage": message,
                "statusDescription": answer.json()["statusDescription"],
                "result": {},
                "code": code,
            })
        );
        assert!(
            answer.json()["statusDescription"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert_custom_cors(&answer);
    }

    // A large JSON answer is gzipped for a client that accepts it (and the
    // service never sees `accept-encoding`); not for one that does not.
    let big = vec![b'z'; 3000];
    let request = |accept: &str| {
        let mut bytes = format!(
            "POST /v1/fwd-rust/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{accept}\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&big);
        raw(router.port(), &bytes)
    };
    let zipped = request("Accept-Encoding: br, gzip\r\n");
    assert_eq!(zipped.status, 200);
    assert_header(&zipped, "content-encoding", "gzip");
    let reply: Value = serde_json::from_slice(&gunzip(&zipped.body)).expect("gzipped JSON");
    assert_eq!(reply["statusCode"], 200);
    assert_eq!(reply["result"]["bodyHex"], hex(&big).as_str());
    assert!(reply["result"]["headers"].get("accept-encoding").is_none());
    assert_custom_cors(&zipped);
    let plain = request("");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.json()["result"]["bodyHex"], hex(&big).as_str());

    // OPTIONS on any path: 204 with the CORS headers.
    for path in ["/v1/fwd-rust/echo", "/no/such/thing"] {
        let answer = send("OPTIONS", &format!("{base}{path}"), &[], None);
        assert_eq!(answer.status, 204, "OPTIONS {path}");
        assert!(answer.body.is_empty());
        assert_header(
            &answer,
            "access-control-expose-headers",
            "Content-Length, Content-Range",
        );
        assert_custom_cors(&answer);
    }
}

#[test]
fn a_node_express_service_behind_the_router() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let express = ExpressPeer::spawn(&redis.url(0), "fwd-express").expect("express peer");
    let base = router.base_url();
    wait_routable(&format!("{base}/v1/express/hello"));

    let answer = get(&format!("{base}/v1/express/hello?name=hydra&n=2"));
    assert_eq!(answer.status, 200);
    let reply = answer.json();
    assert_eq!(reply["statusCode"], 200);
    assert_eq!(reply["result"]["hello"], "from express");
    assert_eq!(reply["result"]["query"], json!({ "name": "hydra", "n": "2" }));
    // Node's default cors block.
    assert_header(&answer, "access-control-allow-origin", "*");
    assert!(answer.header("x-hydra-tracer").is_some());

    // A JSON body and the headers, as Express saw them.
    let sent = json!({ "k": "v", "n": [1, 2.5, null], "deep": { "é": true } });
    let answer = send(
        "POST",
        &format!("{base}/v1/express/echo"),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer node"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
        Some(sent.to_string().as_bytes()),
    );
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let reply = answer.json();
    assert_eq!(reply["result"]["body"], sent);
    let headers = &reply["result"]["headers"];
    assert_eq!(headers["authorization"], "Bearer node");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["host"], format!("127.0.0.1:{}", router.port()).as_str());
    assert_eq!(
        headers["x-hydra-tracer"],
        answer.header("x-hydra-tracer").expect("tracer")
    );

    // A form body passes as it is: Express parses it.
    let answer = send(
        "PUT",
        &format!("{base}/v1/express/echo"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"a=1&b=two%20words"),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"]["body"], json!({ "a": "1", "b": "two words" }));

    // The service's own error status and envelope.
    let answer = get(&format!("{base}/v1/express/fail"));
    assert_eq!(answer.status, 500);
    assert_eq!(answer.json()["statusMessage"], "Server Error");
    assert_eq!(answer.json()["result"]["reason"], "express route failed on purpose");

    // Text passes through.
    let answer = get(&format!("{base}/v1/express/text"));
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    assert_eq!(answer.body, b"plain text body");
    assert_header(&answer, "access-control-allow-origin", "*");

    // Matching ignores the method (Node's rule): a PATCH reaches Express,
    // which has no such route; its 404 is the status.
    let answer = send(
        "PATCH",
        &format!("{base}/v1/express/echo"),
        &[("content-type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(answer.status, 404, "{}", String::from_utf8_lossy(&answer.body));
    // Express's bare `{"code":404}`, merged into Node's envelope.
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        r#"{"statusCode":404,"statusMessage":"Not Found","statusDescription":"The requested resource was not found on the server","result":{},"code":404}"#
    );

    // Service-prefix fallback: `/<svc>/a/b` is forwarded as `/a/b`.
    let answer = get(&format!("{base}/{}/v1/express/hello?z=1", express.service_name()));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["result"]["query"], json!({ "z": "1" }));
}

/// An instance that answers every request with a canned answer chosen by
/// its path (for answers a real service would not send), then closes the
/// connection.
struct CannedInstance {
    port: u16,
}

impl CannedInstance {
    fn start(answer_for: fn(&str) -> Vec<u8>) -> CannedInstance {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split(' ').nth(1).unwrap_or("").to_string();
                let _ = stream.write_all(&answer_for(&path));
            }
        });
        CannedInstance { port }
    }
}

fn canned_answer(path: &str) -> Vec<u8> {
    let (head, body): (&str, Vec<u8>) = match path {
        "/v1/fwd-canned/hop" => (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close, x-secret-hop\r\n\
             X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
             Cache-Control: no-store\r\nX-Kept: yes\r\n",
            b"hello".to_vec(),
        ),
        // Node would answer with the body's status; the real one wins.
        "/v1/fwd-canned/status" => (
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close\r\n",
            br#"{"statusCode":500,"x":1}"#.to_vec(),
        ),
        // JSON the service compressed itself: passed through, not merged.
        "/v1/fwd-canned/gzipped" => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(br#"{"already":"gzipped"}"#).expect("gzip");
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nConnection: close\r\n",
                encoder.finish().expect("gzip"),
            )
        }
        _ => ("HTTP/1.1 404 Not Found\r\nConnection: close\r\n", Vec::new()),
    };
    let mut answer = format!("{head}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[test]
fn answers_lose_hop_by_hop_headers_keep_the_real_status_and_their_encoding() {
    let redis = RedisServer::start();
    let canned = CannedInstance::start(canned_answer);
    write_instance(&redis, "fwd-canned", canned.port, SystemTime::now(), true);
    redis::cmd("SADD")
        .arg(routes_key("fwd-canned"))
        .arg("[get]/v1/fwd-canned/:what")
        .query::<()>(&mut redis_connection(&redis))
        .expect("SADD");
    let router = RouterProcess::start(&redis, json!({}));
    let base = router.base_url();

    let answer = get(&format!("{base}/v1/fwd-canned/hop"));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.body, b"hello");
    assert_header(&answer, "x-kept", "yes");
    assert_header(&answer, "cache-control", "no-store");
    for hop_by_hop in ["x-secret-hop", "keep-alive", "proxy-authenticate"] {
        assert_eq!(answer.header(hop_by_hop), None, "{hop_by_hop} in {:?}", answer.headers);
    }

    let answer = get(&format!("{base}/v1/fwd-canned/status"));
    assert_eq!(answer.status, 201);
    let reply = answer.json();
    assert_eq!(reply["statusCode"], 201);
    assert_eq!(reply["statusMessage"], "Created");
    assert_eq!(reply["bodyStatusCode"], 500);
    assert_eq!(reply["x"], 1);

    let answer = raw(
        router.port(),
        b"GET /v1/fwd-canned/gzipped HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.status, 200);
    assert_header(&answer, "content-encoding", "gzip");
    assert_eq!(gunzip(&answer.body), br#"{"already":"gzipped"}"#);
}

// ---------------------------------------------------------------------------
// 2. 404 and 503.
// ---------------------------------------------------------------------------

#[test]
fn unknown_paths_get_nodes_404_and_a_service_without_instances_gets_503() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let base = router.base_url();

    let answer = get(&format!("{base}/no/such/path?x=1"));
    assert_eq!(answer.status, 404);
    assert_eq!(String::from_utf8_lossy(&answer.body), NODE_404);
    assert_header(&answer, "access-control-allow-origin", "*");
    assert!(answer.header("x-hydra-tracer").is_some());

    let service = TestService::start(&redis, "fwd-gone");
    let url = format!("{base}/v1/fwd-gone/echo");
    wait_routable(&url);
    drop(service); // deregisters; its routes stay in Redis
    assert!(
        redis::cmd("SCARD")
            .arg(routes_key("fwd-gone"))
            .query::<usize>(&mut redis_connection(&redis))
            .expect("SCARD")
            > 0
    );
    // Right after the shutdown the router may still hold the instance in its
    // presence cache (then the reason is "An instance of … is unavailable").
    wait_until("the no-instance 503", EVENT_DEADLINE, || {
        let answer = get(&url);
        answer.status == 503 && answer.json()["result"]["reason"] == "Unavailable fwd-gone instances"
    });
    let answer = get(&url);
    assert_eq!(answer.status, 503);
    let tracer = answer.header("x-hydra-tracer").expect("tracer").to_string();
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        format!(
            r#"{{"statusCode":503,"statusMessage":"Service Unavailable","statusDescription":"The server is currently unable to handle the request due to a temporary overloading or maintenance of the server","result":{{"reason":"Unavailable fwd-gone instances"}},"tracer":"{tracer}"}}"#
        )
    );
    assert_header(&answer, "access-control-allow-origin", "*");
}

// ---------------------------------------------------------------------------
// 3. Failover.
// ---------------------------------------------------------------------------

/// Not a test: the body of a Rust service run as a child process (this test
/// binary, started again by [`ChildService::start`]). Without its
/// environment it returns at once.
#[test]
#[ignore = "started as a child process by the failover tests"]
fn child_service_process() {
    let (Ok(url), Ok(name)) = (std::env::var("FWD_CHILD_REDIS_URL"), std::env::var("FWD_CHILD_SERVICE")) else {
        return;
    };
    let service = TestService::start_on(&url, &name);
    println!("child-ready {}", service.instance_id());
    // Until the parent closes stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A [`TestService`] in a child process; killed on drop.
struct ChildService {
    child: Child,
    instance_id: String,
}

impl ChildService {
    fn start(redis: &RedisServer, name: &str) -> ChildService {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "child_service_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FWD_CHILD_REDIS_URL", redis.url(0))
            .env("FWD_CHILD_SERVICE", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest prints `test child_service_process ... ` first.
                if let Some((_, id)) = line.split_once("child-ready ") {
                    let _ = tx.send(id.trim().to_string());
                }
            }
        });
        let instance_id = match rx.recv_timeout(EVENT_DEADLINE) {
            Ok(id) => id,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child service did not start");
            }
        };
        ChildService { child, instance_id }
    }

    /// SIGKILL: no deregistration, its presence lingers until it expires.
    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("wait for the child");
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `url` `n` times; every call must answer 200. Returns the answers.
fn all_ok(url: &str, n: usize) -> Vec<Answer> {
    (0..n)
        .map(|i| {
            let answer = get(url);
            assert_eq!(
                answer.status,
                200,
                "call {i} of {n} failed: {}",
                String::from_utf8_lossy(&answer.body)
            );
            answer
        })
        .collect()
}

#[test]
fn no_call_fails_when_a_rust_instance_is_killed() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let survivor = TestService::start(&redis, "fwd-fo");
    let mut victim = ChildService::start(&redis, "fwd-fo");
    let url = format!("{}/v1/fwd-fo/echo", router.base_url());
    let mut seen = HashSet::new();
    wait_until("calls to reach both instances", EVENT_DEADLINE, || {
        let answer = get(&url);
        if answer.status == 200 {
            seen.insert(answer.json()["result"]["instance"].as_str().unwrap_or("").to_string());
        }
        seen.contains(&victim.instance_id) && seen.contains(&survivor.instance_id())
    });
    victim.sigkill();
    // Its presence key outlives it by up to 3 s: the router still picks it.
    for answer in all_ok(&url, 20) {
        assert_eq!(answer.json()["result"]["instance"], survivor.instance_id().as_str());
    }
    // The killed instance was tried (and the call went on to the other).
    wait_until("the failover in the router's log", EVENT_DEADLINE, || {
        router.log().contains("trying the next instance")
    });
}

#[test]
fn no_call_fails_when_a_node_instance_is_killed() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let _survivor = ExpressPeer::spawn(&redis.url(0), "fwd-node-fo").expect("express peer");
    let mut victim = ExpressPeer::spawn(&redis.url(0), "fwd-node-fo").expect("express peer");
    let url = format!("{}/v1/express/hello", router.base_url());
    wait_routable(&url);
    victim.kill();
    for answer in all_ok(&url, 20) {
        assert_eq!(answer.json()["result"]["hello"], "from express");
    }
    // The killed instance was tried (and the call went on to the other).
    wait_until("the failover in the router's log", EVENT_DEADLINE, || {
        router.log().contains("trying the next instance")
    });
}

/// A listener that accepts connections and reads requests but never
/// answers; counts the connections.
struct HangingInstance {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl HangingInstance {
    fn start() -> HangingInstance {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                count.fetch_add(1, Ordering::SeqCst);
                // Read (and hold the connection open) until the peer leaves.
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        HangingInstance { port, accepted }
    }

    /// Registers it as an instance of `service` that does not expire.
    fn register(&self, redis: &RedisServer, service: &str) -> String {
        write_instance(redis, service, self.port, SystemTime::now(), true)
    }
}

/// Writes an instance of `service` at `port` as Hydra does: a `nodes`
/// entry with `updated_on` and, when `present`, a presence key (that does
/// not expire). Returns its instance ID.
fn write_instance(redis: &RedisServer, service: &str, port: u16, updated_on: SystemTime, present: bool) -> String {
    let instance_id = format!("{:032x}", fastrand::u128(..));
    let node = json!({
        "serviceName": service,
        "serviceDescription": "written by the test",
        "version": "0.0.0",
        "instanceID": instance_id,
        "updatedOn": humantime::format_rfc3339_millis(updated_on).to_string(),
        "processID": std::process::id(),
        "ip": "127.0.0.1",
        "port": port,
        "hostName": "test",
    });
    let mut redis = redis_connection(redis);
    redis::cmd("HSET")
        .arg("hydra:service:nodes")
        .arg(&instance_id)
        .arg(node.to_string())
        .query::<()>(&mut redis)
        .expect("HSET nodes");
    if present {
        redis::cmd("SET")
            .arg(format!("hydra:service:{service}:{instance_id}:presence"))
            .arg(&instance_id)
            .query::<()>(&mut redis)
            .expect("SET presence");
    }
    instance_id
}

#[test]
fn a_hanging_instance_times_out_and_the_other_answers() {
    let redis = RedisServer::start();
    let timeout = Duration::from_secs(1);
    let router = RouterProcess::start(&redis, json!({ "requestTimeout": timeout.as_secs() }));
    let live = TestService::start(&redis, "fwd-hang");
    let url = format!("{}/v1/fwd-hang/echo", router.base_url());
    wait_routable(&url);
    let hanging = HangingInstance::start();
    hanging.register(&redis, "fwd-hang");
    // The router caches presence for up to 3 s: wait until it tries the new one.
    wait_until("the router to try the hanging instance", EVENT_DEADLINE, || {
        assert_eq!(get(&url).status, 200);
        hanging.accepted.load(Ordering::SeqCst) > 0
    });
    let before = hanging.accepted.load(Ordering::SeqCst);
    let mut slow = 0;
    for _ in 0..4 {
        let started = Instant::now();
        let answer = get(&url);
        let took = started.elapsed();
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.json()["result"]["instance"], live.instance_id().as_str());
        if took >= timeout {
            slow += 1;
        }
        // The per-attempt timeout is honoured (the library's default is 30 s);
        // ten times the timeout leaves room for a loaded machine.
        assert!(
            took < timeout * 10,
            "a call took {took:?} with requestTimeout {timeout:?}"
        );
    }
    let tried_hanging = hanging.accepted.load(Ordering::SeqCst) - before;
    assert!(tried_hanging >= 1, "the hanging instance was not tried again");
    // Every call that went to the hanging instance first waited for the
    // timeout, then got its answer from the live one.
    assert!(
        slow >= tried_hanging,
        "{tried_hanging} calls tried the hanging instance but only {slow} waited {timeout:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. Route table: dead routes, refresh, pruning.
// ---------------------------------------------------------------------------

#[test]
fn a_dead_services_route_never_shadows_a_live_one() {
    let redis = RedisServer::start();
    // A service that died (SIGKILL: no deregistration) left its `nodes`
    // entry and its routes, with the same patterns as the live one's, and
    // sorts before it.
    let died = SystemTime::now() - Duration::from_secs(20);
    write_instance(&redis, "aaa-dead", 9, died, false);
    redis::cmd("SADD")
        .arg(routes_key("aaa-dead"))
        .arg("[get]/v1/zzz-live/echo")
        .arg("[post]/v1/zzz-live/echo")
        .query::<()>(&mut redis_connection(&redis))
        .expect("SADD");
    let router = RouterProcess::start(&redis, json!({}));
    let url = format!("{}/v1/zzz-live/echo", router.base_url());
    // Alone, the dead route matches (Node's answer).
    let answer = get(&url);
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["result"]["reason"], "Unavailable aaa-dead instances");

    let live = TestService::start(&redis, "zzz-live");
    wait_routable(&url);
    let listed = listed_services(&router);
    assert!(listed.contains(&"aaa-dead".to_string()) && listed.contains(&"zzz-live".to_string()));
    for answer in all_ok(&url, 10) {
        assert_eq!(answer.json()["result"]["instance"], live.instance_id().as_str());
    }
    let answer = send(
        "POST",
        &url,
        &[("content-type", "application/json")],
        Some(br#"{"x":1}"#),
    );
    assert_eq!(answer.status, 200);
}

#[test]
fn refresh_broadcasts_the_refresh_endpoint_and_pruning() {
    let redis = RedisServer::start();
    // No periodic refresh during the test: only broadcasts and the endpoint.
    // A prune window far shorter than the heartbeat period (1 s): a live
    // service must stay in the table all the same.
    let router = RouterProcess::start(&redis, json!({ "routeRefreshInterval": 3600, "routePruneAfter": 0.01 }));
    // The rebuild the router does right after it starts has happened once
    // its own routes are in the table.
    wait_until("the router's own routes", EVENT_DEADLINE, || {
        listed_services(&router).contains(&"hydra-router".to_string())
    });

    // A service registering after the router: its `refresh` broadcast.
    let late = TestService::start(&redis, "fwd-late");
    let url = format!("{}/v1/fwd-late/echo", router.base_url());
    wait_routable(&url);

    // `/v1/router/refresh` re-reads Redis: a route set that changed there
    // replaces the service's routes.
    let mut conn = redis_connection(&redis);
    let echo_id: Vec<String> = redis::cmd("SMEMBERS")
        .arg(routes_key("fwd-late"))
        .query::<Vec<String>>(&mut conn)
        .expect("SMEMBERS")
        .into_iter()
        .filter(|r| r.ends_with("/v1/fwd-late/echo/:id"))
        .collect();
    assert!(!echo_id.is_empty());
    let url_id = format!("{}/v1/fwd-late/echo/5", router.base_url());
    assert_eq!(get(&url_id).status, 200);
    redis::cmd("SREM")
        .arg(routes_key("fwd-late"))
        .arg(&echo_id)
        .query::<()>(&mut conn)
        .expect("SREM");
    assert_eq!(get(&url_id).status, 200, "the table changed without a refresh");
    refresh(&router);
    let answer = get(&url_id);
    assert_eq!(answer.status, 404);
    assert_eq!(String::from_utf8_lossy(&answer.body), NODE_404);
    redis::cmd("SADD")
        .arg(routes_key("fwd-late"))
        .arg(&echo_id)
        .query::<()>(&mut conn)
        .expect("SADD");
    assert_eq!(get(&url_id).status, 404, "the table changed without a refresh");
    let answer = get(&format!("{}/v1/router/refresh/fwd-late", router.base_url()));
    assert_eq!(answer.status, 200);
    assert_eq!(get(&url_id).status, 200);
    // A route set gone from Redis (a Redis that lost its data) leaves a live
    // service its routes, as in Node's table.
    redis::cmd("DEL")
        .arg(routes_key("fwd-late"))
        .query::<()>(&mut conn)
        .expect("DEL");
    refresh(&router);
    assert_eq!(get(&url_id).status, 200);
    assert_eq!(get(&url).status, 200);

    // A live service stays, however short `routePruneAfter` is next to its
    // heartbeat period.
    for _ in 0..50 {
        refresh(&router);
        let listed = listed_services(&router);
        assert!(
            listed.contains(&"fwd-late".to_string()),
            "a live service was pruned: {listed:?}"
        );
    }

    // A service gone for good leaves the table after `routePruneAfter` (its
    // routes stay in Redis), and so does a live service's route set the
    // table kept once the service is gone.
    let gone = TestService::start(&redis, "fwd-prune");
    wait_routable(&format!("{}/v1/fwd-prune/echo", router.base_url()));
    assert!(listed_services(&router).contains(&"fwd-prune".to_string()));
    drop(gone);
    wait_until("fwd-prune to leave the table", EVENT_DEADLINE, || {
        refresh(&router);
        let listed = listed_services(&router);
        assert!(
            listed.contains(&"fwd-late".to_string()),
            "a live service was pruned: {listed:?}"
        );
        !listed.contains(&"fwd-prune".to_string())
    });
    let left: usize = redis::cmd("SCARD")
        .arg(routes_key("fwd-prune"))
        .query(&mut conn)
        .expect("SCARD");
    assert!(left > 0, "its routes stay in Redis");
    let answer = get(&format!("{}/v1/fwd-prune/echo", router.base_url()));
    assert_eq!(answer.status, 404);
    assert_eq!(get(&url).status, 200);
    drop(late);
    wait_until("fwd-late to leave the table", EVENT_DEADLINE, || {
        refresh(&router);
        !listed_services(&router).contains(&"fwd-late".to_string())
    });
    assert_eq!(get(&url).status, 404);
}

// ---------------------------------------------------------------------------
// 5. Redis down.
// ---------------------------------------------------------------------------

#[test]
fn redis_down_gives_a_503_and_the_router_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let mut router = RouterProcess::start(&redis, json!({ "requestTimeout": 2, "routeRefreshInterval": 3600 }));
    let base = router.base_url();
    let service = TestService::start(&redis, "fwd-redis");
    let url = format!("{base}/v1/fwd-redis/echo");
    wait_routable(&url);

    redis.stop();
    // The presence cache answers for up to 3 s; then the call needs Redis.
    wait_until("a 503 that names Redis", EVENT_DEADLINE, || {
        let started = Instant::now();
        let answer = get(&url);
        // Bounded (no hang on the dead connection): generous for a loaded machine.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a call took {:?}",
            started.elapsed()
        );
        answer.status == 503
            && answer.json()["result"]["reason"]
                .as_str()
                .is_some_and(|r| r.to_ascii_lowercase().contains("redis"))
    });
    let answer = get(&url);
    assert_eq!(answer.status, 503);
    let tracer = answer.header("x-hydra-tracer").expect("tracer");
    assert_eq!(answer.json()["tracer"], tracer);
    // The client is not told where Redis is (the log is).
    let reason = answer.json()["result"]["reason"].as_str().unwrap_or("").to_string();
    assert!(!reason.contains(&redis.port().to_string()), "{reason}");
    wait_until("the Redis error in the router's log", EVENT_DEADLINE, || {
        router.log().contains(&format!("HR: [{tracer}] redis:"))
    });
    let health = get(&format!("{base}/v1/router/health"));
    assert_eq!(health.status, 200, "{}", String::from_utf8_lossy(&health.body));
    assert!(router.is_running());

    redis.restart();
    // The service re-registers itself on its next heartbeat; the router's
    // table (kept through the outage) and presence lookups recover.
    wait_routable(&url);
    assert_eq!(get(&url).json()["result"]["instance"], service.instance_id().as_str());
    // And refresh broadcasts reach the router again.
    let _later = TestService::start(&redis, "fwd-after");
    wait_routable(&format!("{base}/v1/fwd-after/echo"));
    assert!(router.is_running());
}

#[test]
fn a_frozen_redis_gives_a_503_in_bounded_time() {
    let redis = RedisServer::start();
    // A frozen Redis accepts connections and never answers: every lookup
    // waits for these timeouts (milliseconds).
    let router = RouterProcess::start(
        &redis,
        json!({ "hydra": { "redis": { "url": redis.url(0), "connectTimeout": 500, "commandTimeout": 500 } } }),
    );
    let _service = TestService::start(&redis, "fwd-frozen");
    let url = format!("{}/v1/fwd-frozen/echo", router.base_url());
    wait_routable(&url);
    redis.freeze();
    wait_until("a 503 while Redis is frozen", EVENT_DEADLINE, || {
        let started = Instant::now();
        let answer = get(&url);
        // Bounded by the Redis timeouts, not a hang: generous for a loaded machine.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a call took {:?}",
            started.elapsed()
        );
        answer.status == 503 && answer.json()["result"]["reason"] == "Redis is unavailable"
    });
    assert_eq!(get(&format!("{}/v1/router/health", router.base_url())).status, 200);
    redis.resume();
    wait_routable(&url);
}

#[test]
fn a_node_service_keeps_its_routes_when_redis_restarts_without_them() {
    let mut redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({ "routeRefreshInterval": 3600 }));
    // Node services give up after a long Redis outage; a quick restart they
    // survive.
    let _express = ExpressPeer::spawn(&redis.url(0), "fwd-node-redis").expect("express peer");
    let url = format!("{}/v1/express/hello", router.base_url());
    wait_routable(&url);
    redis.restart();
    // Node's heartbeat brings back its presence, not its routes (it
    // registers them once, at start).
    wait_until("the Node service's presence to come back", EVENT_DEADLINE, || {
        let answer = get(&url);
        answer.status == 200
    });
    let mut conn = redis_connection(&redis);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(routes_key("fwd-node-redis"))
            .query::<u32>(&mut conn)
            .expect("EXISTS"),
        0
    );
    // A rebuild from that Redis keeps the routes the table had.
    refresh(&router);
    let answer = get(&url);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["result"]["hello"], "from express");
}

// ---------------------------------------------------------------------------
// 6. Fallbacks.
// ---------------------------------------------------------------------------

#[test]
fn service_prefix_and_referer_fallbacks() {
    let redis = RedisServer::start();
    let router = RouterProcess::start(&redis, json!({}));
    let base = router.base_url();
    let _site = TestService::start(&redis, "fwd-site");
    wait_routable(&format!("{base}/v1/fwd-site/echo"));

    // `/<svc>/a/b` is forwarded as `/a/b`, query included.
    let answer = get(&format!("{base}/fwd-site/v1/fwd-site/echo/5?x=1"));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["result"]["path"], "/v1/fwd-site/echo/5");
    assert_eq!(answer.json()["result"]["query"], "x=1");

    // A path the service serves but no route announces: 404, unless the
    // Referer names the service (a page it hosts loading a relative asset).
    let mut conn = redis_connection(&redis);
    let hidden: Vec<String> = redis::cmd("SMEMBERS")
        .arg(routes_key("fwd-site"))
        .query::<Vec<String>>(&mut conn)
        .expect("SMEMBERS")
        .into_iter()
        .filter(|r| r.ends_with("/v1/fwd-site/echo/:id"))
        .collect();
    assert!(!hidden.is_empty());
    redis::cmd("SREM")
        .arg(routes_key("fwd-site"))
        .arg(&hidden)
        .query::<()>(&mut conn)
        .expect("SREM");
    refresh(&router);
    let url = format!("{base}/v1/fwd-site/echo/9");
    let answer = get(&url);
    assert_eq!(answer.status, 404);
    assert_eq!(String::from_utf8_lossy(&answer.body), NODE_404);
    let answer = send(
        "GET",
        &url,
        &[("referer", "http://example.test/fwd-site/index.html")],
        None,
    );
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["result"]["path"], "/v1/fwd-site/echo/9");
    let answer = send(
        "GET",
        &url,
        &[("referer", "http://example.test/other/index.html")],
        None,
    );
    assert_eq!(answer.status, 404);
}
