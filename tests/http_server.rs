//! The embedded HTTP server against hostile and unusual clients, on raw
//! sockets: RFC 9112 framing (no request smuggling), slow clients that must
//! not starve the workers, bounded trailers, bodiless statuses, the overload
//! 503, draining on shutdown, and `serve_http_with` failing cleanly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{raw, register};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use hydra::{HttpResponse, HttpRoutes, HttpSettings, Hydra};
use hydra_testkit::RedisServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn routes(name: &str) -> HttpRoutes {
    HttpRoutes::new()
        .get(&format!("/v1/{name}/hello/:who"), |_, req| {
            HttpResponse::send_response(200, json!({"hello": req.param("who")}))
        })
        .post(&format!("/v1/{name}/echo"), |_, req| {
            HttpResponse::send_response(200, json!({"bytes": req.body.len()}))
        })
}

fn small_settings() -> HttpSettings {
    let mut s = HttpSettings::default();
    s.max_body_bytes = 1024;
    s.max_head_bytes = 2048;
    s.max_url_bytes = 512;
    s.read_timeout = Duration::from_secs(2);
    s.workers = 4;
    s
}

fn serve(server: &RedisServer, name: &str, routes: HttpRoutes, settings: HttpSettings) -> (Hydra, u16) {
    let svc = register(server, name);
    let port = svc.serve_http_with(routes, settings).unwrap();
    (svc, port)
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// One parsed response: status, lowercased headers, body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads until the server closes (or WAIT), then splits what came into
/// responses, framed by their content-length (none: no body). Bytes that do
/// not start with a status line end the list and are returned apart.
fn read_responses(stream: &mut TcpStream) -> (Vec<Response>, Vec<u8>) {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut responses = Vec::new();
    let mut rest = &bytes[..];
    while rest.starts_with(b"HTTP/1.1 ") {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body_end = (end + 4 + length).min(rest.len());
        responses.push(Response {
            status,
            headers,
            body: rest[end + 4..body_end].to_vec(),
        });
        rest = &rest[body_end..];
    }
    (responses, rest.to_vec())
}

/// A request that must not be answered if the one before it is refused.
const SMUGGLED: &str = "GET /v1/tough/hello/smuggled HTTP/1.1\r\nhost: x\r\n\r\n";

#[test]
fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    let server = RedisServer::start();
    let (svc, port) = serve(&server, "tough", routes("tough"), small_settings());
    let post = |headers: &str, body: &str| format!("POST /v1/tough/echo HTTP/1.1\r\nhost: x\r\n{headers}\r\n{body}");
    let cases: Vec<(String, u16)> = vec![
        (
            post("content-length: 5\r\ntransfer-encoding: chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            post("transfer-encoding: chunked\r\ncontent-length: 5\r\n", "0\r\n\r\n"),
            400,
        ),
        (post("content-length: 3\r\ncontent-length: 3\r\n", "abc"), 400),
        (post("content-length: 3\r\ncontent-length: 60\r\n", "abc"), 400),
        (post("content-length: 3, 3\r\n", "abc"), 400),
        (post("content-length: +3\r\n", "abc"), 400),
        (post("content-length: -3\r\n", "abc"), 400),
        (post("content-length: 3a\r\n", "abc"), 400),
        (
            post("transfer-encoding: chunked, identity\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            400,
        ),
        (post("transfer-encoding: identity\r\n", "3\r\nabc\r\n0\r\n\r\n"), 400),
        (
            post(
                "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (post("transfer-encoding: xchunked\r\n", "0\r\n\r\n"), 400),
        (post("transfer-encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501),
        (post("transfer-encoding: chunked\r\n", "3\r\nabcXY0\r\n\r\n"), 400),
        (post("transfer-encoding: chunked\r\n", "+3\r\nabc\r\n0\r\n\r\n"), 400),
        (post("transfer-encoding: chunked\r\n", "0x3\r\nabc\r\n0\r\n\r\n"), 400),
        (post("transfer-encoding: chunked\r\n", "3 3\r\nabc\r\n0\r\n\r\n"), 400),
        (post("transfer-encoding: chunked\r\n", "z\r\nabc\r\n0\r\n\r\n"), 400),
        (post("transfer-encoding: chunked\r\n", "3\nabc\r\n0\r\n\r\n"), 400),
        (
            "POST /v1/tough/echo HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            400,
        ),
        ("GET /v1/tough/hello/x HTTP/1.1\nhost: x\n\n".into(), 400),
        ("GET /v1/tough/hello/x HTTP/1.1\r\nhost: x\nx-a: 1\r\n\r\n".into(), 400),
    ];
    for (request, status) in &cases {
        let mut stream = connect(port);
        stream.write_all(format!("{request}{SMUGGLED}").as_bytes()).unwrap();
        let (responses, rest) = read_responses(&mut stream);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [*status], "{request:?} answered {statuses:?} (then {rest:?})");
        assert!(rest.is_empty(), "{request:?}: trailing bytes {rest:?}");
        assert_eq!(responses[0].header("connection"), Some("close"), "{request:?}");
    }
    let stats = svc.http_stats();
    assert_eq!(stats.rejected_framing, cases.len() as u64, "{stats:?}");

    // The same framing, unambiguous, is served; keep-alive and pipelining work.
    let mut stream = connect(port);
    let pipelined = post("transfer-encoding: Chunked\r\n", "3;x=y\r\nabc\r\n0\r\nx-t: 1\r\n\r\n")
        + &post("content-length: 2\r\n", "ab")
        + "GET /v1/tough/hello/last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    stream.write_all(pipelined.as_bytes()).unwrap();
    let (responses, rest) = read_responses(&mut stream);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200], "{rest:?}");
    let bodies: Vec<serde_json::Value> = responses
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies[0]["result"]["bytes"], 3);
    assert_eq!(bodies[1]["result"]["bytes"], 2);
    assert_eq!(bodies[2]["result"]["hello"], "last");
}

#[test]
fn chunk_trailers_are_bounded() {
    let server = RedisServer::start();
    let (svc, port) = serve(&server, "tough", routes("tough"), small_settings());
    let trailers = "x-trailer: 0123456789012345678901234567890123456789\r\n".repeat(60);
    let mut stream = connect(port);
    let request =
        format!("POST /v1/tough/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n{trailers}\r\n");
    let _ = stream.write_all(request.as_bytes());
    let (responses, _) = read_responses(&mut stream);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 431);
    // Trailers within the limit are read and ignored.
    let mut stream = connect(port);
    let request = "POST /v1/tough/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nab\r\n0\r\nx-a: 1\r\nx-b: 2\r\n\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    let (responses, _) = read_responses(&mut stream);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
    assert_eq!(svc.http_stats().rejected, 1);
}

/// Raises this process's soft open-file limit (client and server sockets
/// live in this one process).
fn raise_open_file_limit(wanted: u64) {
    let got = rlimit::increase_nofile_limit(wanted).unwrap_or(0);
    assert!(got >= wanted, "this test needs {wanted} open files; the limit is {got}");
}

#[test]
fn a_thousand_slow_connections_do_not_delay_a_normal_request() {
    const SLOW: usize = 1000;
    raise_open_file_limit(2 * SLOW as u64 + 200);
    let server = RedisServer::start();
    let (svc, port) = serve(&server, "lean", routes("lean"), HttpSettings::default());
    let baseline = svc.http_stats().connections;
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(b"GET ").unwrap();
            stream
        })
        .collect();
    // Wait until the server has accepted every one of them.
    let deadline = Instant::now() + WAIT;
    while svc.http_stats().connections < baseline + SLOW as u64 {
        assert!(Instant::now() < deadline, "{:?}", svc.http_stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let mut stream = connect(port);
        stream
            .write_all(b"GET /v1/lean/hello/quick HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let _ = tx.send(read_responses(&mut stream).0);
    });
    let responses = rx
        .recv_timeout(Duration::from_secs(1))
        .expect("a normal request waited more than a second behind slow clients");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
    assert_eq!(svc.http_stats().overloaded, 0);
    drop(slow);
}

#[test]
fn bodiless_statuses_carry_no_body_and_invalid_statuses_are_refused() {
    let server = RedisServer::start();
    let routes = routes("web")
        .get("/v1/web/nothing", |_, _| {
            HttpResponse::bytes(204, "text/plain", b"must not be sent".to_vec())
                .with_header("content-length", "16")
                .with_header("transfer-encoding", "chunked")
        })
        .get("/v1/web/same", |_, _| {
            HttpResponse::send_response(304, json!({"must": "not be sent"})).with_header("etag", "\"v1\"")
        })
        .get("/v1/web/lying", |_, _| {
            HttpResponse::bytes(200, "text/plain", b"12345".to_vec()).with_header("content-length", "2")
        })
        .get("/v1/web/weird", |_, _| {
            HttpResponse::bytes(700, "text/plain", b"x".to_vec())
        });
    let (svc, port) = serve(&server, "web", routes, small_settings());
    let mut stream = connect(port);
    stream
        .write_all(
            b"GET /v1/web/nothing HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /v1/web/same HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /v1/web/lying HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /v1/web/weird HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /v1/web/hello/end HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    let (responses, rest) = read_responses(&mut stream);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [204, 304, 200, 500, 200], "then {rest:?}");
    assert!(rest.is_empty(), "{rest:?}");
    for bodiless in &responses[..2] {
        assert_eq!(bodiless.header("content-length"), None, "{bodiless:?}");
        assert_eq!(bodiless.header("transfer-encoding"), None, "{bodiless:?}");
        assert!(bodiless.body.is_empty());
    }
    assert_eq!(responses[1].header("etag"), Some("\"v1\""));
    assert_eq!(responses[2].header("content-length"), Some("5"));
    assert_eq!(responses[2].body, b"12345");
    let weird: serde_json::Value = serde_json::from_slice(&responses[3].body).unwrap();
    assert!(
        weird["result"]["reason"].as_str().unwrap().contains("status 700"),
        "{weird}"
    );
    assert_eq!(svc.http_stats().panicked, 1);
    assert_eq!(
        HttpResponse::bytes(600, "a/b", vec![])
            .check_status()
            .unwrap_err()
            .to_string(),
        "bad request: status 600 is not an HTTP status (100-599)"
    );
    assert!(HttpResponse::bytes(599, "a/b", vec![]).check_status().is_ok());
}

#[test]
fn over_the_connection_cap_a_client_gets_503() {
    let server = RedisServer::start();
    let mut settings = small_settings();
    settings.max_connections = 2;
    let (svc, port) = serve(&server, "capped", routes("capped"), settings);
    let _held: Vec<TcpStream> = (0..2).map(|_| connect(port)).collect();
    let deadline = Instant::now() + WAIT;
    while svc.http_stats().connections < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stream = connect(port);
    let _ = stream.write_all(b"GET /v1/capped/hello/x HTTP/1.1\r\nhost: x\r\n\r\n");
    let (responses, _) = read_responses(&mut stream);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 503);
    let body: serde_json::Value = serde_json::from_slice(&responses[0].body).unwrap();
    assert_eq!(body["statusMessage"], "Service Unavailable");
    assert_eq!(svc.http_stats().overloaded, 1);
}

/// A route whose handler says it started, then waits to be released.
fn gated(name: &str) -> (HttpRoutes, Receiver<()>, Sender<()>) {
    let (started_tx, started) = unbounded();
    let (release, release_rx) = unbounded::<()>();
    let routes = routes(name).post(&format!("/v1/{name}/slow"), move |_, _| {
        let _ = started_tx.send(());
        let released = release_rx.recv_timeout(WAIT).is_ok();
        HttpResponse::send_response(200, json!({"finished": released}))
    });
    (routes, started, release)
}

fn post_slow(port: u16, name: &str) -> Receiver<Vec<Response>> {
    let (tx, rx) = bounded(1);
    let request = format!("POST /v1/{name}/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}");
    std::thread::spawn(move || {
        let mut stream = connect(port);
        stream.write_all(request.as_bytes()).unwrap();
        let _ = tx.send(read_responses(&mut stream).0);
    });
    rx
}

#[test]
fn a_full_worker_queue_answers_503() {
    let server = RedisServer::start();
    let (routes, started, release) = gated("busy");
    let mut settings = small_settings();
    settings.workers = 1;
    settings.queue_capacity = 1;
    let (svc, port) = serve(&server, "busy", routes, settings);
    let running = post_slow(port, "busy");
    started.recv_timeout(WAIT).expect("the first request runs");
    // One more request fits in the queue; the others are refused at once.
    let waiting: Vec<_> = (0..4).map(|_| post_slow(port, "busy")).collect();
    let deadline = Instant::now() + WAIT;
    while svc.http_stats().overloaded < 3 {
        assert!(Instant::now() < deadline, "{:?}", svc.http_stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..2 {
        release.send(()).unwrap();
    }
    let mut statuses: Vec<u16> = waiting
        .into_iter()
        .chain([running])
        .map(|rx| rx.recv_timeout(WAIT).unwrap()[0].status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
}

#[test]
fn shutdown_lets_a_running_request_finish() {
    let server = RedisServer::start();
    let (routes, started, release) = gated("drain");
    let (svc, port) = serve(&server, "drain", routes, small_settings());
    // An idle keep-alive connection, which drain closes at once.
    let mut idle = connect(port);
    idle.write_all(b"GET /v1/drain/hello/x HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    let answer = post_slow(port, "drain");
    started.recv_timeout(WAIT).expect("the handler runs");
    let stopper = {
        let svc = svc.clone();
        std::thread::spawn(move || svc.shutdown())
    };
    // Draining has begun once nothing accepts any more.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown began");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    release.send(()).unwrap();
    let responses = answer.recv_timeout(WAIT).expect("the client got an answer");
    assert_eq!(responses.len(), 1, "the running request was cut off");
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].header("connection"), Some("close"));
    let body: serde_json::Value = serde_json::from_slice(&responses[0].body).unwrap();
    assert_eq!(body["result"]["finished"], true);
    stopper.join().unwrap().unwrap();
}

#[test]
fn serve_http_with_fails_with_nothing_left_running() {
    let server = RedisServer::start();
    let svc = register(&server, "denied");
    let mut conn = raw(&server);
    // The routes cannot be written: SADD is denied to this user.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-sadd"])
        .query(&mut conn)
        .unwrap();
    let port = svc.service_info().service_port;
    let err = svc.serve_http(routes("denied")).unwrap_err();
    assert!(err.to_string().contains("sadd"), "{err}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after serve_http failed"
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg("hydra:service:denied:service:routes")
        .query(&mut conn)
        .unwrap();
    assert!(!exists, "routes were written");
    assert_eq!(svc.http_stats().connections, 0);
    // Once allowed, serving works on the same handle.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "+sadd"])
        .query(&mut conn)
        .unwrap();
    let port = svc.serve_http(routes("denied")).unwrap();
    let mut stream = connect(port);
    stream
        .write_all(b"GET /v1/denied/hello/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_responses(&mut stream).0[0].status, 200);
}

/// The defaults the README and the C and Python docs state.
#[test]
fn the_documented_defaults() {
    let s = HttpSettings::default();
    assert_eq!(
        (s.max_body_bytes, s.max_head_bytes, s.max_url_bytes),
        (1024 * 1024, 16 * 1024, 8 * 1024)
    );
    assert_eq!(
        (
            s.read_timeout,
            s.head_timeout,
            s.request_timeout,
            s.keep_alive,
            s.drain_timeout
        ),
        (
            Duration::from_secs(10),
            Duration::from_secs(10),
            Duration::from_secs(30),
            Duration::from_secs(5),
            Duration::from_secs(10)
        )
    );
    assert_eq!((s.workers, s.queue_capacity, s.max_connections), (16, 1024, 4096));
}

/// Many pipelined requests in one write (more than one read's worth): every
/// one answered, in order, on the one connection.
#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let server = RedisServer::start();
    let (svc, port) = serve(&server, "pipe", routes("pipe"), small_settings());
    let mut batch = String::new();
    for n in 0..60 {
        let body = "x".repeat(900 + n);
        batch.push_str(&format!(
            "POST /v1/pipe/echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    batch.push_str("GET /v1/pipe/hello/end HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let mut stream = connect(port);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(batch.as_bytes()))
    };
    let (responses, rest) = read_responses(&mut stream);
    writer.join().unwrap().unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(responses.len(), 61);
    for (n, response) in responses[..60].iter().enumerate() {
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["result"]["bytes"], 900 + n, "response {n}");
    }
    assert_eq!(responses[60].status, 200);
    assert_eq!(svc.http_stats().connections, 1);
}
