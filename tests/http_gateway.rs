//! What the library gives a gateway such as hydra-router (which uses only the
//! public API): `call_service` sends a request byte for byte, a server can
//! take every path with `fallback` and still advertise its routes in Redis,
//! handlers see the client's address, presence is answered from the short
//! cache, and UMF messages can be appended to a Redis stream.

mod common;

use std::time::Duration;

use common::{raw, register};
use hydra::{Error, HttpRequest, HttpResponse, HttpRoutes, RequestOptions, ServiceRequest, Umf};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

/// A service whose every path answers with what it received (method, path,
/// query, headers, body as hex, client address).
fn mirror(request: &HttpRequest) -> HttpResponse {
    let hex: String = request.body.iter().map(|b| format!("{b:02x}")).collect();
    HttpResponse::json(
        200,
        &json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "bodyHex": hex,
            "remote": request.remote_addr.map(|a| a.ip().to_string()),
        }),
    )
}

#[test]
fn call_service_sends_method_path_headers_and_body_bytes_as_given() {
    let server = RedisServer::start();
    let service = register(&server, "mirror-svc");
    service
        .serve_http(HttpRoutes::new().fallback(|_, r| mirror(r)))
        .expect("serve");
    let client = register(&server, "gateway");
    let body: Vec<u8> = vec![0, 159, 146, 150, 255, b'{', b'\n'];
    for method in ["PATCH", "DELETE", "POST", "PUT", "GET"] {
        let call = ServiceRequest {
            service: "mirror-svc".into(),
            instance: None,
            method: method.into(),
            path: "/any/where?x=1&y=%20".into(),
            headers: vec![
                ("content-type".into(), "application/octet-stream".into()),
                ("x-first".into(), "1".into()),
                ("authorization".into(), "Bearer abc".into()),
            ],
            body: if method == "GET" { Vec::new() } else { body.clone() },
        };
        let answer = client
            .call_service(&call, RequestOptions::timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(answer.status, 200);
        let seen: Value = answer.json().unwrap();
        assert_eq!(seen["method"], method);
        assert_eq!(seen["path"], "/any/where");
        assert_eq!(seen["query"], "x=1&y=%20");
        let expected: String = if method == "GET" {
            String::new()
        } else {
            body.iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(seen["bodyHex"], expected, "{method} body");
        let headers = seen["headers"].as_array().unwrap();
        let has = |name: &str, value: &str| headers.iter().any(|h| h[0] == name && h[1] == value);
        assert!(has("x-first", "1") && has("authorization", "Bearer abc"), "{headers:?}");
        assert!(has("content-type", "application/octet-stream"), "{headers:?}");
        assert_eq!(seen["remote"], "127.0.0.1");
        assert_eq!(answer.instance_id, service.get_instance_id());
    }
}

#[test]
fn call_service_refuses_what_it_cannot_send_and_reports_absent_services() {
    let server = RedisServer::start();
    let client = register(&server, "gateway");
    let call = |service: &str, method: &str, path: &str| ServiceRequest {
        service: service.into(),
        method: method.into(),
        path: path.into(),
        ..ServiceRequest::default()
    };
    let options = RequestOptions::timeout(Duration::from_secs(2));
    assert!(matches!(
        client.call_service(&call("nobody", "GET", "/x"), options),
        Err(Error::ServiceUnavailable(reason)) if reason == "Unavailable nobody instances"
    ));
    for (method, path) in [("GET", "@evil:80/x"), ("GET", "//evil/x"), ("GE T", "/x"), ("", "/x")] {
        assert!(
            matches!(
                client.call_service(&call("nobody", method, path), options),
                Err(Error::BadRequest(_))
            ),
            "{method:?} {path:?}"
        );
    }
}

#[test]
fn fallback_takes_every_path_and_method_while_advertised_routes_are_registered() {
    let server = RedisServer::start();
    let service = register(&server, "gate");
    let routes = HttpRoutes::new()
        .get("/own", |_, _| HttpResponse::json(200, &json!({"own": true})))
        .advertise("[get]/v1/gate/health")
        .advertise("[post]/v1/gate/send")
        .fallback(|_, r| HttpResponse::json(203, &json!({"fallback": r.path, "method": r.method})));
    let port = service.serve_http(routes).expect("serve");
    let mut conn = raw(&server);
    let mut stored: Vec<String> = redis::cmd("SMEMBERS")
        .arg("hydra:service:gate:service:routes")
        .query(&mut conn)
        .unwrap();
    stored.sort();
    assert_eq!(
        stored,
        [
            "[get]/gate",
            "[get]/gate/",
            "[get]/gate/:rest",
            "[get]/own",
            "[get]/v1/gate/health",
            "[post]/v1/gate/send"
        ]
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let base = format!("http://127.0.0.1:{port}");
    let own: Value = serde_json::from_str(
        &agent
            .get(format!("{base}/own"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(own, json!({"own": true}));
    // A known path with another method, and unknown paths, reach the fallback
    // instead of the 405 / 404 envelopes.
    let mut answer = agent.post(format!("{base}/own")).send("x").unwrap();
    assert_eq!(answer.status(), 203);
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body_mut().read_to_string().unwrap()).unwrap()["method"],
        "POST"
    );
    let mut answer = agent.delete(format!("{base}/v1/gate/health")).call().unwrap();
    assert_eq!(answer.status(), 203);
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body_mut().read_to_string().unwrap()).unwrap()["fallback"],
        "/v1/gate/health"
    );
}

#[test]
fn cached_presence_finds_live_instances_and_streams_take_umf_messages() {
    let server = RedisServer::start();
    let service = register(&server, "present-svc");
    let client = register(&server, "gateway");
    let found = client.get_service_presence_cached("present-svc").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, service.get_instance_id());
    assert!(client.get_service_presence_cached("absent-svc").unwrap().is_empty());

    let message = Umf::new("present-svc:/", "gateway:/", json!({"n": 1}));
    let id = client.stream_message("orders", &message).expect("xadd");
    let mut conn = raw(&server);
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("hydra:stream:orders")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id);
    assert_eq!(entries[0].1[0].0, "message");
    let stored: Value = serde_json::from_str(&entries[0].1[0].1).unwrap();
    assert_eq!(stored["frm"], "gateway:/", "short form: {stored}");
    assert_eq!(stored["bdy"], json!({"n": 1}));
    assert_eq!(stored["mid"], message.mid.as_str());
    for bad in ["", "has space", "ctl\u{1}"] {
        assert!(
            matches!(client.stream_message(bad, &message), Err(Error::BadRequest(_))),
            "{bad:?}"
        );
    }
}

/// Sends a raw request head on a new connection and returns the socket.
fn raw_request(port: u16, head: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    socket
}

/// Reads until `needle` has arrived (or the read times out).
fn read_until(socket: &mut std::net::TcpStream, needle: &str) -> String {
    use std::io::Read;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn upgrade_requests_hand_the_connection_over_and_others_are_served_as_usual() {
    use std::io::{Read, Write};
    let server = RedisServer::start();
    let service = register(&server, "upgrading");
    let routes = HttpRoutes::new()
        .get("/plain", |_, _| HttpResponse::json(200, &json!({"plain": true})))
        .on_upgrade(|_, upgraded| {
            // What a WebSocket gateway does: answer the handshake, then own
            // the socket on a thread of its own.
            std::thread::spawn(move || {
                let hydra::http::Upgraded {
                    request,
                    mut stream,
                    leftover,
                } = upgraded;
                let protocol = request.header("upgrade").unwrap_or("").to_string();
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: {protocol}\r\nconnection: upgrade\r\nx-path: {}\r\nx-leftover: {}\r\n\r\n",
                    request.path,
                    String::from_utf8_lossy(&leftover)
                );
                stream.write_all(head.as_bytes()).unwrap();
                let mut byte = [0u8; 1];
                while let Ok(1) = stream.read(&mut byte) {
                    stream.write_all(&[byte[0].to_ascii_uppercase()]).unwrap();
                }
            });
        });
    let port = service.serve_http(routes).expect("serve");
    let upgrade =
        "GET /chat?room=1 HTTP/1.1\r\nhost: x\r\nconnection: keep-alive, Upgrade\r\nupgrade: echo-caps\r\n\r\n";
    let mut socket = raw_request(port, upgrade);
    let answer = read_until(&mut socket, "\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    assert!(answer.contains("x-path: /chat"), "{answer}");
    // The socket is the handler's now: the server's idle and request
    // timeouts no longer apply, bytes go to the handler.
    socket.write_all(b"hello").unwrap();
    assert_eq!(read_until(&mut socket, "HELLO"), "HELLO");
    // Bytes sent right behind the request are handed over too.
    let mut early = raw_request(port, &format!("{upgrade}early"));
    assert!(read_until(&mut early, "\r\n\r\n").contains("x-leftover: early"));
    // Ordinary requests, and an upgrade header on a POST with a body, are
    // served by the routes as before.
    let mut plain = raw_request(port, "GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert!(read_until(&mut plain, "}").contains("\"plain\":true"));
    let mut post = raw_request(
        port,
        "POST /plain HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo-caps\r\ncontent-length: 2\r\n\r\nhi",
    );
    assert!(read_until(&mut post, "\r\n\r\n").starts_with("HTTP/1.1 405"));
}

#[test]
fn without_an_upgrade_handler_upgrade_requests_are_ordinary_requests() {
    let server = RedisServer::start();
    let service = register(&server, "plain-only");
    let port = service
        .serve_http(HttpRoutes::new().get("/chat", |_, _| HttpResponse::json(200, &json!({"routes": true}))))
        .expect("serve");
    let mut socket = raw_request(
        port,
        "GET /chat HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    );
    let answer = read_until(&mut socket, "}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"routes\":true"), "{answer}");
}
