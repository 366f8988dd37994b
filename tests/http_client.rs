//! `make_api_request` against raw HTTP servers on real sockets: the URL is
//! built from the chosen instance's address and the route's path, so no `to`
//! can send the request (and its `Authorization` header) to another host, and
//! a response over the size limit is an error, never a truncated body.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::{builder, init};
use hydra::{Error, Hydra, RequestOptions};
use hydra_testkit::RedisServer;
use serde_json::json;

/// What a [`RawServer`] answers every request with.
#[derive(Clone, Copy)]
enum Answer {
    /// `200` with a small JSON body.
    Ok,
    /// `200` with `n` bytes of body and a `content-length`.
    Sized(u64),
    /// `200` with `n` bytes of body in chunks, no length announced.
    Chunked(u64),
}

/// A plain HTTP/1.1 server on a loopback port that records each request head
/// (request line and headers) it is sent.
struct RawServer {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    _thread: JoinHandle<()>,
}

impl RawServer {
    fn start(answer: Answer) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let recorded = recorded.clone();
                std::thread::spawn(move || serve(stream, answer, &recorded));
            }
        });
        RawServer {
            port,
            heads,
            _thread: thread,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, answer: Answer, recorded: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
            }
        }
        recorded.lock().unwrap().push(head);
        let written = match answer {
            Answer::Ok => writer.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}",
            ),
            Answer::Sized(n) => writer
                .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").as_bytes())
                .and_then(|()| write_zeros(&mut writer, n)),
            Answer::Chunked(n) => writer
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .and_then(|()| {
                    let mut left = n;
                    while left > 0 {
                        let chunk = left.min(64 * 1024);
                        writer.write_all(format!("{chunk:x}\r\n").as_bytes())?;
                        write_zeros(&mut writer, chunk)?;
                        writer.write_all(b"\r\n")?;
                        left -= chunk;
                    }
                    writer.write_all(b"0\r\n\r\n")
                }),
        };
        if written.is_err() {
            return;
        }
    }
}

fn write_zeros(writer: &mut TcpStream, n: u64) -> std::io::Result<()> {
    let block = vec![b'0'; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let len = left.min(block.len() as u64) as usize;
        writer.write_all(&block[..len])?;
        left -= len as u64;
    }
    Ok(())
}

/// A registered instance of `name` whose presence names `port` on 127.0.0.1
/// (where a [`RawServer`] listens).
fn instance_at(server: &RedisServer, name: &str, port: u16) -> Hydra {
    let hydra = Hydra::init(builder(server, name).service_port(&port.to_string()).build().unwrap()).unwrap();
    hydra.register_service().unwrap();
    hydra
}

fn get(client: &Hydra, to: &str, options: RequestOptions) -> Result<hydra::ApiResponse, Error> {
    let mut msg = client.create_umf_message(to, json!({}));
    msg.authorization = Some("Bearer secret-token".into());
    client.make_api_request(&msg, options)
}

/// True when a connection to `listener` was made and is waiting to be
/// accepted. A refused `make_api_request` returns only after any connection
/// it made, so the backlog already holds it: no waiting needed.
fn was_connected_to(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn a_path_cannot_move_the_request_to_another_host() {
    let server = RedisServer::start();
    let real = RawServer::start(Answer::Ok);
    let _instance = instance_at(&server, "target", real.port);
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = elsewhere.local_addr().unwrap().port();
    let client = init(&server, "client");

    for to in [
        format!("target:[get]@127.0.0.1:{other_port}/x"),
        format!("target:[get]//127.0.0.1:{other_port}/x"),
        format!("target:[get]http://127.0.0.1:{other_port}/x"),
        format!("target:[get]x@127.0.0.1:{other_port}/x"),
        "target:[get]x".to_string(),
        "target:[get]/x y".to_string(),
        "target:[get]/x\r\nhost: evil".to_string(),
        "target:[get]/x\t".to_string(),
        "target:[get]/caf\u{e9}".to_string(),
        "target:[get]/x#fragment".to_string(),
    ] {
        let err = get(&client, &to, RequestOptions::default()).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{to:?}: {err:?}");
        assert!(err.to_string().contains("route path"), "{to:?}: {err}");
    }
    assert!(
        !was_connected_to(&elsewhere),
        "a request (with its Authorization header) reached another port"
    );
    assert!(real.heads().is_empty(), "refused paths were sent: {:?}", real.heads());

    // An `@` or `:` inside an origin-form path is only a path.
    let path = format!("/@127.0.0.1:{other_port}/x?q=a@b:1");
    let response = get(&client, &format!("target:[get]{path}"), RequestOptions::default()).unwrap();
    assert_eq!(response.status, 200);
    let heads = real.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with(&format!("GET {path} HTTP/1.1\r\n")), "{heads:?}");
    let host = format!("host: 127.0.0.1:{}\r\n", real.port);
    assert!(heads[0].to_ascii_lowercase().contains(&host), "{heads:?}");
    assert!(
        heads[0].contains("Bearer secret-token"),
        "the Authorization header goes to the instance: {heads:?}"
    );
    assert!(!was_connected_to(&elsewhere));
}

#[test]
fn an_instance_with_a_hostile_address_is_not_called() {
    // Presence comes from Redis, where any writer (a Node service, a script)
    // can put user information in an address (`127.0.0.2@127.0.0.1`): a URL
    // pasted together would call the host after the `@`. An address that is
    // neither an IP address nor a host name is not called at all. Our config refuses such an address, so it is written by hand, as
    // Node writes an instance (a `nodes` entry and a presence key).
    let server = RedisServer::start();
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = elsewhere.local_addr().unwrap().port();
    let record = json!({
        "serviceName": "target", "serviceDescription": "", "version": "1.0.0",
        "instanceID": "0123456789abcdef0123456789abcdef", "updatedOn": "2026-01-01T00:00:00.000Z",
        "processID": 1, "ip": "127.0.0.2@127.0.0.1", "port": other_port.to_string(),
        "hostName": "h",
    });
    let mut conn = common::raw(&server);
    redis::cmd("HSET")
        .arg("hydra:service:nodes")
        .arg("0123456789abcdef0123456789abcdef")
        .arg(record.to_string())
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("SET")
        .arg("hydra:service:target:0123456789abcdef0123456789abcdef:presence")
        .arg("0123456789abcdef0123456789abcdef")
        .arg("EX")
        .arg(60)
        .query::<()>(&mut conn)
        .unwrap();
    let client = init(&server, "client");
    assert_eq!(client.get_service_presence("target").unwrap().len(), 1);
    let err = get(&client, "target:[get]/x", RequestOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable(_)), "{err:?}");
    assert!(
        !was_connected_to(&elsewhere),
        "the host after the address's `@` was called"
    );
}

#[test]
fn an_oversized_response_is_an_error_not_a_truncated_body() {
    let server = RedisServer::start();
    let client = init(&server, "client");
    let limit = 100_000;
    let options = RequestOptions::default().with_max_response_bytes(limit);

    for (name, answer, fits) in [
        ("sized-fits", Answer::Sized(limit), true),
        ("sized-over", Answer::Sized(limit + 1), false),
        ("chunked-fits", Answer::Chunked(limit), true),
        ("chunked-over", Answer::Chunked(limit + 1), false),
    ] {
        let raw = RawServer::start(answer);
        let instance = instance_at(&server, name, raw.port);
        let outcome = get(&client, &format!("{name}:[get]/big"), options);
        if fits {
            assert_eq!(outcome.unwrap().body.len() as u64, limit, "{name}");
        } else {
            let err = outcome.unwrap_err();
            assert!(matches!(err, Error::Malformed(_)), "{name}: {err:?}");
            let text = err.to_string();
            assert!(
                text.contains("larger than 100000 bytes") && text.contains(instance.get_instance_id()),
                "{name}: {text}"
            );
        }
        // Answered once: an oversized answer is not retried elsewhere.
        assert_eq!(raw.heads().len(), 1, "{name}");
    }
}

#[test]
fn the_default_response_limit_is_64_mib() {
    assert_eq!(hydra::http::DEFAULT_MAX_RESPONSE_BYTES, 64 * 1024 * 1024);
    let server = RedisServer::start();
    let client = init(&server, "client");
    let raw = RawServer::start(Answer::Chunked(hydra::http::DEFAULT_MAX_RESPONSE_BYTES + 1));
    let _instance = instance_at(&server, "huge", raw.port);
    let err = get(&client, "huge:[get]/big", RequestOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("larger than 67108864 bytes"), "{err}");
}
