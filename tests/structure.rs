//! Structural claims of the README, checked deterministically (what Redis
//! sees and what the process holds, never timings):
//!
//! - a presence lookup is one command and never scans the keyspace;
//! - no hot path (send, request, reply, HTTP calls, queue take/mark and
//!   workers, the heartbeat, discovery) sends `SCAN` or `KEYS`;
//! - a request–reply with a warm routing cache costs exactly two Redis
//!   commands, the two `PUBLISH`es;
//! - an idle registered service has 3 threads and 2 Redis connections;
//! - the documented defaults (1 MiB messages, 1 MiB HTTP bodies, 30 s
//!   visibility timeout, 5 deliveries) are what the code does.
//!
//! Commands are watched with Redis's `MONITOR`, which lists every command
//! (also those a Lua script runs) with the connection that sent it; a window
//! is delimited by `ECHO` markers sent on a connection of the test's own.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{builder, init, raw, register, wait_for};
use hydra::{HttpResponse, HttpRoutes, HttpSettings, Hydra, QueueOptions, QueuedMessage, RequestOptions};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// What a heartbeat sends about its own instance's keys.
const HEARTBEAT_WRITES: [&str; 8] = ["set", "setex", "hset", "expire", "sadd", "del", "lpush", "ltrim"];

/// What opening a connection sends before any work.
const CONNECTION_SETUP: [&str; 4] = ["select", "auth", "hello", "client"];

/// Commands that read the whole keyspace: never on a hot path.
const KEYSPACE_SCANS: [&str; 2] = ["scan", "keys"];

/// One command as `MONITOR` printed it.
#[derive(Debug, Clone)]
struct Seen {
    /// `127.0.0.1:<port>` of the connection, or `lua` for a script's commands.
    client: String,
    /// Command name (lowercase) and arguments.
    args: Vec<String>,
}

impl Seen {
    fn name(&self) -> &str {
        &self.args[0]
    }

    fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }

    fn run_by_a_script(&self) -> bool {
        self.client == "lua"
    }
}

/// A `MONITOR` connection whose reader thread keeps every command it sees.
struct Monitor {
    seen: Arc<Mutex<Vec<Seen>>>,
    marker: redis::Connection,
    marks: u32,
}

impl Monitor {
    fn start(server: &RedisServer) -> Monitor {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).unwrap();
        assert_eq!(ok, "+OK\r\n");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(command) = parse_monitor_line(&line) {
                    sink.lock().unwrap().push(command);
                }
            }
        });
        Monitor {
            seen,
            marker: raw(server),
            marks: 0,
        }
    }

    /// Sends a marker and waits until the monitor has seen it: every command
    /// Redis ran before it has then been seen too. Returns its position.
    fn mark(&mut self) -> usize {
        self.marks += 1;
        let text = format!("structure-mark-{}", self.marks);
        let _: String = redis::cmd("ECHO").arg(&text).query(&mut self.marker).unwrap();
        wait_for(WAIT, || {
            let seen = self.seen.lock().unwrap();
            seen.iter().position(|c| c.name() == "echo" && c.arg(1) == text)
        })
        .expect("the monitor saw the marker")
    }

    /// The commands between two marks (markers excluded).
    fn between(&self, from: usize, to: usize) -> Vec<Seen> {
        self.seen.lock().unwrap()[from + 1..to].to_vec()
    }

    /// Runs `f` between two marks; the commands Redis ran meanwhile.
    fn during(&mut self, f: impl FnOnce()) -> Vec<Seen> {
        let from = self.mark();
        f();
        let to = self.mark();
        self.between(from, to)
    }
}

/// `<time> [<db> <client>] "cmd" "arg" …` with Redis's escapes
/// (`\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b`, `\xHH`).
fn parse_monitor_line(line: &str) -> Option<Seen> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let client = line[open + 1..close].split(' ').nth(1)?.to_string();
    let mut args = Vec::new();
    let bytes = &line.as_bytes()[close + 1..];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                i += 1;
                match bytes[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' if i + 2 < bytes.len() => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                        arg.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    other => arg.push(other),
                }
            } else {
                arg.push(bytes[i]);
            }
            i += 1;
        }
        i += 1;
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    if args.is_empty() {
        return None;
    }
    args[0] = args[0].to_ascii_lowercase();
    Some(Seen { client, args })
}

/// Counts by command name, e.g. `{"evalsha": 1}`.
fn tally(commands: &[Seen]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in commands {
        *counts.entry(c.name().to_string()).or_insert(0) += 1;
    }
    counts
}

fn assert_no_keyspace_scan(commands: &[Seen], what: &str) {
    let scans: Vec<_> = commands.iter().filter(|c| KEYSPACE_SCANS.contains(&c.name())).collect();
    assert!(scans.is_empty(), "{what} scanned the keyspace: {scans:?}");
}

/// Writes an instance the way Node does (a `nodes` entry and a presence key)
/// without a process behind it, so that nothing but the test talks to Redis.
fn write_instance(conn: &mut redis::Connection, service: &str, id: &str, port: u16) {
    let node = json!({
        "serviceName": service, "serviceDescription": "", "version": "1.0.0", "instanceID": id,
        "updatedOn": "2026-01-01T00:00:00.000Z", "processID": 1, "ip": "127.0.0.1",
        "port": port.to_string(), "hostName": "h",
    });
    redis::pipe()
        .hset(hydra::keys::NODES, id, node.to_string())
        .ignore()
        .set_ex(hydra::keys::presence(service, id), id, 600)
        .ignore()
        .query::<()>(conn)
        .unwrap();
}

#[test]
fn a_presence_lookup_is_one_command_and_never_scans() {
    let server = RedisServer::start();
    let mut conn = raw(&server);
    // 10 services × 10 instances, plus unrelated keys a scan would walk.
    for s in 0..10 {
        for i in 0..10 {
            write_instance(&mut conn, &format!("svc{s}"), &format!("{s:02}{i:030}"), 3000 + i);
        }
    }
    for k in 0..1000 {
        let _: () = redis::cmd("SET")
            .arg(format!("unrelated:{k}"))
            .arg(k)
            .query(&mut conn)
            .unwrap();
    }
    let reader = init(&server, "reader");
    // The first lookup may load the script; the claim is about every other.
    assert_eq!(reader.get_service_presence("svc3").unwrap().len(), 10);
    let mut monitor = Monitor::start(&server);
    let mut found = Vec::new();
    let commands = monitor.during(|| found = reader.get_service_presence("svc3").unwrap());
    assert_eq!(found.len(), 10);
    assert_no_keyspace_scan(&commands, "get_service_presence");
    let sent: Vec<_> = commands.iter().filter(|c| !c.run_by_a_script()).collect();
    assert_eq!(
        sent.len(),
        1,
        "a presence lookup is one command (one round trip), not {:?}",
        tally(&commands)
    );
    // Also when asked whether a service is present, and always fresh: a
    // second lookup is another command, not a cached answer.
    let commands = monitor.during(|| assert!(reader.has_service_presence("svc7").unwrap()));
    assert_no_keyspace_scan(&commands, "has_service_presence");
    assert_eq!(
        commands.iter().filter(|c| !c.run_by_a_script()).count(),
        1,
        "{:?}",
        tally(&commands)
    );
}

#[test]
fn no_hot_path_scans_the_keyspace() {
    let server = RedisServer::start();
    let mut monitor = Monitor::start(&server);
    let start = monitor.mark();

    let responder = register(&server, "responder");
    common::echo(&responder);
    let routes = HttpRoutes::new().get("/v1/responder/hello", |_, _| {
        HttpResponse::send_response(200, json!("hi"))
    });
    responder.serve_http(routes).unwrap();
    let caller = register(&server, "caller");
    for n in 0..3 {
        caller
            .send_message(&caller.create_umf_message("responder:/", json!({"n": n})))
            .unwrap();
        let reply = caller
            .request(&caller.create_umf_message("responder:/", json!({"n": n})), WAIT)
            .unwrap();
        assert_eq!(reply.body, json!({"echo": {"n": n}}));
        let response = caller
            .make_api_request(
                &caller.create_umf_message("responder:[get]/v1/responder/hello", json!({})),
                RequestOptions::default(),
            )
            .unwrap();
        assert_eq!(response.status, 200);
    }
    caller
        .send_broadcast_message(&caller.create_umf_message("responder:/", json!({"all": true})))
        .unwrap();
    // Discovery reads.
    caller.get_services().unwrap();
    caller.get_service_nodes().unwrap();
    caller.get_all_service_routes().unwrap();
    caller.get_service_health_all().unwrap();
    // Queues: take and mark, and a worker.
    for n in 0..3 {
        caller
            .queue_message(&caller.create_umf_message("jobs:/", json!({"n": n})))
            .unwrap();
    }
    let taken = caller.get_queued_message("jobs").unwrap().expect("a queued message");
    assert!(caller.mark_queue_message(&taken, true, None).unwrap());
    let done = Arc::new(AtomicU32::new(0));
    let counter = done.clone();
    let worker = responder
        .queue_worker("jobs", 2, move |_m: &QueuedMessage| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    wait_for(WAIT, || (worker.stats().completed == 2).then_some(())).expect("the worker completed both");
    // At least one heartbeat beyond registration: presence written again.
    let presence = hydra::keys::presence("caller", caller.get_instance_id());
    let first_write = monitor.mark();
    wait_for(WAIT, || {
        let seen = monitor.seen.lock().unwrap();
        seen[first_write..]
            .iter()
            .any(|c| c.arg(1) == presence && c.name() == "set")
            .then_some(())
    })
    .expect("a heartbeat");
    worker.stop();
    caller.shutdown().unwrap();
    responder.shutdown().unwrap();
    let end = monitor.mark();

    let commands = monitor.between(start, end);
    assert!(
        commands.iter().any(|c| c.name() == "publish"),
        "the window saw the traffic"
    );
    assert_no_keyspace_scan(&commands, "a hot path");
}

#[test]
fn a_warm_request_costs_exactly_two_publishes() {
    const REQUESTS: usize = 20;
    let server = RedisServer::start();
    let responder = register(&server, "responder");
    common::echo(&responder);
    let caller = register(&server, "caller");
    let ask = |n: usize| {
        let reply = caller
            .request(&caller.create_umf_message("responder:/", json!({"n": n})), WAIT)
            .unwrap();
        assert_eq!(reply.body, json!({"echo": {"n": n}}));
    };
    ask(0); // warms the routing cache
    let mut monitor = Monitor::start(&server);
    let commands = monitor.during(|| (1..=REQUESTS).for_each(ask));

    // The heartbeats of both instances run meanwhile: their writes of their
    // own registration keys (`nodes`, the service index, and the keys of the
    // two services: records, presence, health, routes; channels are
    // `hydra:service:mc:…`, not among them), the subscriptions' PINGs and the
    // MULTI/EXEC around a write are set aside, and so is the set-up of a
    // pooled connection opened when a heartbeat and a request needed one at
    // the same moment. Everything else counts.
    let own_prefixes = [
        format!("{}:responder:", hydra::keys::PREFIX),
        format!("{}:caller:", hydra::keys::PREFIX),
    ];
    let registration_key = |key: &str| {
        key == hydra::keys::NODES
            || key == hydra::keys::SERVICE_INDEX
            || own_prefixes.iter().any(|prefix| key.starts_with(prefix.as_str()))
    };
    let heartbeat = |c: &Seen| {
        ["ping", "multi", "exec"].contains(&c.name())
            || CONNECTION_SETUP.contains(&c.name())
            || (HEARTBEAT_WRITES.contains(&c.name()) && registration_key(c.arg(1)))
    };
    let per_request: Vec<Seen> = commands.iter().filter(|c| !heartbeat(c)).cloned().collect();
    let counts = tally(&per_request);
    assert_eq!(
        counts,
        BTreeMap::from([("publish".to_string(), 2 * REQUESTS)]),
        "each request costs exactly two commands, its PUBLISH and the reply's; the first others: {:?}",
        per_request
            .iter()
            .filter(|c| c.name() != "publish")
            .take(6)
            .collect::<Vec<_>>()
    );
    let to_responder = per_request
        .iter()
        .filter(|c| c.arg(1).starts_with(&hydra::keys::service_channel("responder")))
        .count();
    let to_caller = per_request
        .iter()
        .filter(|c| c.arg(1) == hydra::keys::instance_channel("caller", caller.get_instance_id()))
        .count();
    assert_eq!((to_responder, to_caller), (REQUESTS, REQUESTS));
}

/// `target/<profile>/examples/idle_service`, (re)built first so that it is
/// the code under test (a no-op when it is up to date, as after the suite's
/// `cargo test`, which builds every example).
fn idle_service_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "hydra-redis", "--example", "idle_service"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "cannot build the idle_service example");
    profile_dir.join("examples").join("idle_service")
}

fn client_list(conn: &mut redis::Connection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(conn).unwrap();
    list.lines().map(str::to_string).collect()
}

#[test]
fn an_idle_registered_service_has_three_threads_and_two_connections() {
    let server = RedisServer::start();
    let mut conn = raw(&server);
    assert_eq!(client_list(&mut conn).len(), 1, "only the test's connection");
    let mut child = Command::new(idle_service_binary())
        .env("HYDRA_REDIS_URL", server.url(15))
        .env_remove("HYDRA_SERVICE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a ready line").unwrap();
    let id = ready.strip_prefix("ready ").expect("ready <id>").to_string();
    // Idle: a heartbeat after registration has rewritten the nodes entry.
    let first: String = redis::cmd("HGET")
        .arg(hydra::keys::NODES)
        .arg(&id)
        .query(&mut conn)
        .unwrap();
    wait_for(WAIT, || {
        let now: String = redis::cmd("HGET")
            .arg(hydra::keys::NODES)
            .arg(&id)
            .query(&mut conn)
            .ok()?;
        (now != first).then_some(())
    })
    .expect("a heartbeat");

    let clients = client_list(&mut conn);
    let theirs: Vec<&String> = clients.iter().filter(|c| !c.contains(" cmd=client|list ")).collect();
    assert_eq!(theirs.len(), 2, "two Redis connections: {clients:#?}");
    assert_eq!(
        theirs.iter().filter(|c| c.contains(" sub=2 ")).count(),
        1,
        "one of them subscribed to the service and instance channels: {theirs:#?}"
    );

    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .map(|task| {
            std::fs::read_to_string(task.unwrap().path().join("comm"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    threads.sort();
    assert_eq!(
        threads,
        ["hydra-heartbeat", "hydra-msg-0", "idle_service"],
        "main, the heartbeat and the message reader"
    );

    drop(child.stdin.take());
    let stopped = lines.next().expect("a stopped line").unwrap();
    assert_eq!(stopped, "stopped");
    assert!(child.wait().unwrap().success());
}

#[test]
fn documented_defaults_are_the_codes() {
    // The constants the README quotes.
    assert_eq!(hydra::DEFAULT_MAX_MESSAGE_BYTES, 1024 * 1024);
    assert_eq!(HttpSettings::default().max_body_bytes, 1024 * 1024);
    assert_eq!(QueueOptions::DEFAULT_VISIBILITY_TIMEOUT, Duration::from_secs(30));
    assert_eq!(QueueOptions::DEFAULT_MAX_DELIVERIES, 5);
    assert_eq!(QueueOptions::default(), QueueOptions::new());
    assert_eq!(QueueOptions::new().visibility_timeout, Duration::from_secs(30));
    assert_eq!(QueueOptions::new().max_deliveries, 5);
}

#[test]
fn a_message_of_the_default_limit_arrives_and_one_byte_more_does_not() {
    let server = RedisServer::start();
    let target = register(&server, "target");
    let inbox = common::collect(&target);
    let mut conn = raw(&server);
    let channel = hydra::keys::instance_channel("target", target.get_instance_id());
    let sized = |len: usize, tag: &str| {
        let skeleton = json!({"to": "target:/", "frm": "x:/", "mid": tag, "bdy": {"pad": ""}}).to_string();
        let pad = "p".repeat(len - skeleton.len());
        let payload = json!({"to": "target:/", "frm": "x:/", "mid": tag, "bdy": {"pad": pad}}).to_string();
        assert_eq!(payload.len(), len);
        payload
    };
    let limit = hydra::DEFAULT_MAX_MESSAGE_BYTES;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(sized(limit + 1, "over"))
        .query(&mut conn)
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(sized(limit, "at"))
        .query(&mut conn)
        .unwrap();
    let got = inbox.recv_timeout(WAIT).expect("the message of exactly the limit");
    assert_eq!(got.mid, "at");
    // Read in order: the oversized one was read (and refused) first.
    let stats = target.message_stats();
    assert_eq!((stats.received, stats.invalid), (2, 1), "{stats:?}");
}

#[test]
fn an_http_body_of_the_default_limit_is_taken_and_one_byte_more_is_413() {
    let server = RedisServer::start();
    let web = Hydra::init(builder(&server, "web").service_port("0").build().unwrap()).unwrap();
    web.register_service().unwrap();
    let routes = HttpRoutes::new().post("/v1/web/size", |_, req| {
        HttpResponse::send_response(200, json!(req.body.len()))
    });
    let port = web.serve_http(routes).unwrap();
    let limit = HttpSettings::default().max_body_bytes;
    let post = |len: usize| -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let head = format!(
            "POST /v1/web/size HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer 413 before the body is all sent.
        let _ = stream.write_all(&vec![b'x'; len]);
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status).unwrap();
        status
    };
    assert!(post(limit).starts_with("HTTP/1.1 200"), "{}", post(limit));
    assert!(post(limit + 1).starts_with("HTTP/1.1 413"));
}

#[test]
fn queue_defaults_are_a_30_s_lease_and_5_deliveries() {
    let server = RedisServer::start();
    let hydra = init(&server, "jobs");
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let (tx, rx) = crossbeam_channel::unbounded();
    let worker = hydra
        .queue_worker("jobs", 1, move |_m: &QueuedMessage| {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
            Err("always fails".into())
        })
        .unwrap();
    hydra
        .queue_message(&hydra.create_umf_message("jobs:/", json!({})))
        .unwrap();
    rx.recv_timeout(WAIT).expect("the handler ran");
    // While it is held, the worker's lease ends about a visibility timeout
    // after its last renewal (renewed every eighth of it): on Redis's clock.
    let mut conn = raw(&server);
    let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(hydra::keys::queue_consumers("jobs"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .unwrap();
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let now_ms = seconds as f64 * 1000.0 + micros as f64 / 1000.0;
    assert!(!leases.is_empty());
    for (slot, expires_ms) in &leases {
        let left = (expires_ms - now_ms) / 1000.0;
        assert!(
            left > 30.0 - 30.0 / 8.0 - 1.0 && left <= 30.5,
            "lease of {slot} ends in {left} s, not within a visibility timeout of 30 s"
        );
    }
    wait_for(WAIT, || (worker.stats().dead_lettered == 1).then_some(())).expect("a dead letter");
    assert_eq!(calls.load(Ordering::SeqCst), 5, "5 deliveries, then a dead letter");
    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg(hydra::keys::queue_incomplete("jobs"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(dead.len(), 1);
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(dead["bdy"]["reason"], "always fails", "{dead}");
}
