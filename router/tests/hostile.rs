//! Hostile clients on raw TCP sockets against a real `hydra-router`, with a
//! Rust echo service behind it: requests over the limits and malformed or
//! ambiguous ones are answered once each and never reach the service (no
//! request smuggling), and a thousand idle connections or a slowloris crowd
//! do not keep a normal client waiting.
//!
//! The library's HTTP server does this work for the router; these tests show
//! it holds for the router binary as shipped (its settings and limits).

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{RouterProcess, TestService, get, raw_exchange, wait_until};
use crossbeam_channel::bounded;
use hydra_testkit::RedisServer;
use serde_json::json;

/// Generous deadline for background events.
const WAIT: Duration = Duration::from_secs(20);
/// How long a normal client may wait while the router is under attack:
/// "answered", not a latency figure.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);
/// The router's `maxBodyBytes` in these tests.
const MAX_BODY: usize = 1024;
/// A request that must never be answered or forwarded when the one before it
/// on the same connection is refused.
const SMUGGLED: &str = "GET /v1/tough/echo/smuggled HTTP/1.1\r\nhost: x\r\n\r\n";

/// A router with a small body limit and the echo service `tough` behind it,
/// routes known.
fn router_and_service(redis: &RedisServer) -> (RouterProcess, TestService) {
    let router = RouterProcess::start(redis, json!({ "maxBodyBytes": MAX_BODY }));
    let service = TestService::start(redis, "tough");
    let url = format!("{}/v1/tough/echo", router.base_url());
    wait_until("the router to route to tough", WAIT, || get(&url).status == 200);
    (router, service)
}

/// A normal client's call through the router, answered within
/// [`ANSWERED_WITHIN`] (on its own thread, so a stuck router fails the test
/// instead of hanging it).
fn normal_call_is_answered(router: &RouterProcess, what: &str) {
    let slug: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let url = format!("{}/v1/tough/echo/normal?during={slug}", router.base_url());
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let answer = get(&url);
        let _ = tx.send((answer.status, answer.json()));
    });
    let (status, body) = rx
        .recv_timeout(ANSWERED_WITHIN)
        .unwrap_or_else(|_| panic!("a normal client was not answered during {what}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["path"], "/v1/tough/echo/normal");
}

/// One value of the router's own metrics (no labels).
fn router_metric(router: &RouterProcess, name: &str) -> u64 {
    let answer = get(&format!("{}/v1/router/metrics", router.base_url()));
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body).expect("UTF-8");
    let prefix = format!("{name} ");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}"));
    value.trim().parse().expect("a whole number")
}

#[test]
fn oversized_and_malformed_requests_are_answered_once_and_never_reach_the_service() {
    let redis = RedisServer::start();
    let (router, service) = router_and_service(&redis);
    let served_before = service.hydra.http_stats().requests;

    let post = |headers: &str, body: &str| format!("POST /v1/tough/echo HTTP/1.1\r\nhost: x\r\n{headers}\r\n{body}");
    let big_body = "x".repeat(MAX_BODY + 1);
    let big_chunk = format!("{:x}\r\n{big_body}\r\n0\r\n\r\n", big_body.len());
    let long_path = format!("/v1/tough/echo/{}", "a".repeat(9 * 1024));
    let big_header = format!("x-filler: {}\r\n", "b".repeat(20 * 1024));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "body over maxBodyBytes",
            post(&format!("content-length: {}\r\n", big_body.len()), &big_body),
            413,
        ),
        (
            "chunked body over maxBodyBytes",
            post("transfer-encoding: chunked\r\n", &big_chunk),
            413,
        ),
        (
            "head over the limit",
            format!("GET /v1/tough/echo HTTP/1.1\r\nhost: x\r\n{big_header}\r\n"),
            431,
        ),
        (
            "URL over the limit",
            format!("GET {long_path} HTTP/1.1\r\nhost: x\r\n\r\n"),
            414,
        ),
        (
            "content-length and transfer-encoding",
            post("content-length: 5\r\ntransfer-encoding: chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "transfer-encoding and content-length",
            post("transfer-encoding: chunked\r\ncontent-length: 5\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "two different content-lengths",
            post("content-length: 3\r\ncontent-length: 60\r\n", "abc"),
            400,
        ),
        ("content-length list", post("content-length: 3, 3\r\n", "abc"), 400),
        ("signed content-length", post("content-length: +3\r\n", "abc"), 400),
        (
            "transfer-encoding not ending in chunked",
            post("transfer-encoding: chunked, identity\r\n", "3\r\nabc\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size with junk",
            post("transfer-encoding: chunked\r\n", "3 3\r\nabc\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk without its CRLF",
            post("transfer-encoding: chunked\r\n", "3\r\nabcXY0\r\n\r\n"),
            400,
        ),
        (
            "bare LF line ends",
            "GET /v1/tough/echo HTTP/1.1\nhost: x\n\n".to_string(),
            400,
        ),
        (
            "one bare LF among CRLFs",
            "GET /v1/tough/echo HTTP/1.1\r\nhost: x\nx-a: 1\r\n\r\n".to_string(),
            400,
        ),
        (
            "invalid method",
            "G(T /v1/tough/echo HTTP/1.1\r\nhost: x\r\n\r\n".to_string(),
            400,
        ),
        (
            "header without a colon",
            "GET /v1/tough/echo HTTP/1.1\r\nhost: x\r\nnocolon\r\n\r\n".to_string(),
            400,
        ),
        (
            "space before the colon",
            "GET /v1/tough/echo HTTP/1.1\r\nhost : x\r\n\r\n".to_string(),
            400,
        ),
        (
            "chunked on HTTP/1.0",
            "POST /v1/tough/echo HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            400,
        ),
    ];
    for (what, request, status) in &cases {
        let (answers, rest) = raw_exchange(router.port(), format!("{request}{SMUGGLED}").as_bytes());
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses,
            [*status],
            "{what}: answered {statuses:?} (then {:?})",
            String::from_utf8_lossy(&rest)
        );
        assert!(rest.is_empty(), "{what}: trailing bytes {rest:?}");
        assert_eq!(answers[0].header("connection"), Some("close"), "{what}");
    }

    // Legitimate requests, one of them right at the body limit, are forwarded;
    // only they reach the service.
    let at_limit = "y".repeat(MAX_BODY);
    let pipelined = post("content-length: 3\r\n", "abc")
        + &post(&format!("content-length: {MAX_BODY}\r\n"), &at_limit)
        + &post("transfer-encoding: chunked\r\n", "2\r\nok\r\n0\r\n\r\n")
        + "GET /v1/tough/echo/last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let (answers, rest) = raw_exchange(router.port(), pipelined.as_bytes());
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200], "{rest:?}");
    let bodies: Vec<serde_json::Value> = answers.iter().map(common::Answer::json).collect();
    assert_eq!(bodies[0]["result"]["bodyHex"], "616263");
    assert_eq!(
        bodies[1]["result"]["bodyHex"].as_str().map(str::len),
        Some(2 * MAX_BODY)
    );
    assert_eq!(bodies[2]["result"]["bodyHex"], "6f6b");
    assert_eq!(bodies[3]["result"]["path"], "/v1/tough/echo/last");
    assert_eq!(
        service.hydra.http_stats().requests - served_before,
        4,
        "the service saw requests it should not have"
    );
    assert!(router_metric(&router, "hydra_router_server_rejected_total") >= cases.len() as u64);
    normal_call_is_answered(&router, "the hostile requests' aftermath");
}

#[test]
fn a_thousand_idle_connections_do_not_keep_a_client_waiting() {
    const IDLE: usize = 1000;
    // Client and router sockets: the router inherits this process's limit.
    let wanted = 2 * IDLE as u64 + 300;
    let got = rlimit::increase_nofile_limit(wanted).unwrap_or(0);
    assert!(got >= wanted, "this test needs {wanted} open files; the limit is {got}");
    let redis = RedisServer::start();
    let (router, _service) = router_and_service(&redis);
    let accepted_before = router_metric(&router, "hydra_router_server_connections_total");
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(("127.0.0.1", router.port())).expect("connect"))
        .collect();
    wait_until("the router to accept every idle connection", WAIT, || {
        router_metric(&router, "hydra_router_server_connections_total") >= accepted_before + IDLE as u64
    });
    normal_call_is_answered(&router, "1,000 idle connections");
    // None of them had been cut off yet: the call was made while all were open.
    assert_eq!(router_metric(&router, "hydra_router_server_timed_out_total"), 0);
    drop(idle);
}

/// True when the router has answered or closed `stream` (a non-blocking
/// peek: an answer or the end of the stream).
fn closed_by_router(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

#[test]
fn slowloris_clients_do_not_keep_a_client_waiting_and_are_cut_off() {
    const SLOW: usize = 300;
    let wanted = 2 * SLOW as u64 + 300;
    let got = rlimit::increase_nofile_limit(wanted).unwrap_or(0);
    assert!(got >= wanted, "this test needs {wanted} open files; the limit is {got}");
    let redis = RedisServer::start();
    let (router, _service) = router_and_service(&redis);
    let timed_out_before = router_metric(&router, "hydra_router_server_timed_out_total");
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", router.port())).expect("connect");
            stream
                .write_all(b"GET /v1/tough/echo/slow HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .expect("write");
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();

    // Each second, one more header byte on every connection the router still holds.
    let stop = Arc::new(AtomicBool::new(false));
    let (round_tx, round_rx) = bounded::<usize>(64);
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) && round < 60 {
                let mut open = 0;
                for stream in &mut slow {
                    if !closed_by_router(stream) && stream.write_all(b"z").is_ok() {
                        open += 1;
                    }
                }
                round += 1;
                if round_tx.send(open).is_err() || open == 0 {
                    break;
                }
                // The attack's pace, not a synchronisation.
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    for round in 0..3 {
        let open = round_rx.recv_timeout(WAIT).expect("a trickle round");
        assert_eq!(open, SLOW, "round {round}: the router dropped trickling clients early");
        normal_call_is_answered(&router, "a slowloris attack");
    }
    // The router cuts them off once their head is late (its head timeout).
    let mut open = SLOW;
    while open > 0 {
        open = round_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{open} slowloris connections still held"));
    }
    stop.store(true, Ordering::SeqCst);
    trickler.join().expect("trickler");
    assert!(router_metric(&router, "hydra_router_server_timed_out_total") >= timed_out_before + SLOW as u64);
    normal_call_is_answered(&router, "the slowloris aftermath");
}
