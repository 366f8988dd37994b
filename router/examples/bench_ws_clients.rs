//! 10,000 concurrent WebSocket clients on one `hydra-router` process, through
//! the real gateway: each client gets the router's `connection` welcome, then
//! sends a `ping` (answered by the router) and a message to a Rust echo
//! service (answered by the service through `via`, back through the router's
//! Redis channel); both answers must arrive and be right. Reported: the
//! router's memory (VmRSS and its peak VmHWM, from `/proc`) idle, with every
//! client connected, after the replies, and after every client left; its
//! threads; the time to connect all; the time until every reply arrived.
//!
//! ```text
//! cargo build --release -p hydra-router --bins --example bench_ws_clients
//! target/release/examples/bench_ws_clients
//! ```
//!
//! Target (hydra-router issue 11): ≤ 200 MB router RSS with 10,000 clients.
//! The program is a report: it exits 0 whether or not the target is met, and
//! non-zero only when a client was not welcomed or an answer was missing or
//! wrong. `HYDRA_BENCH_SMOKE=1`: 200 clients.
//!
//! Processes, as in production:
//!
//! - **echo**: this program started again as `bench_ws_clients --serve-echo
//!   <redis-url>`, a Hydra service `ws-echo` on a private `redis-server`
//!   answering every message with `reply(msg, {"echo": <its body>})` (to
//!   `via`). It stops when its stdin closes.
//! - **router**: the `hydra-router` binary next to this program's `examples/`
//!   directory (the same profile), with a config naming the same Redis and
//!   its default settings; its connected count is read from
//!   `/v1/router/metrics` (`hydra_router_ws_clients`).
//! - **clients** (this process): tungstenite clients on blocking sockets,
//!   held by 8 threads (1,250 each). A thread connects its clients one after
//!   another (handshake, then the welcome read); then, all threads together,
//!   it sends every client's two frames, then reads each client's two
//!   answers (those of the other clients wait in their socket buffers
//!   meanwhile). Half the clients leave with a close handshake, half drop
//!   the socket.
//!
//! The open-file limit is raised for this process (10,000 sockets), and the
//! router inherits it.

#[path = "support/process.rs"]
mod support;

use std::error::Error;
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Table, verdict};
use serde_json::{Value, json};
use support::{RouterChild, child_mode, serve_message_echo, start_echo_child, start_router};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// The echo service's name.
const ECHO_SERVICE: &str = "ws-echo";
/// The child mode that serves the echo.
const SERVE_ECHO_FLAG: &str = "--serve-echo";
/// Threads holding the clients.
const CLIENT_THREADS: usize = 8;
/// Target: router RSS with every client connected.
const TARGET_RSS_MB: f64 = 200.0;
/// Deadline of one socket read or write, and of the router's count to fall.
const WAIT: Duration = Duration::from_secs(60);

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> ExitCode {
    if let Some(code) = child_mode(SERVE_ECHO_FLAG, |url| serve_message_echo(url, ECHO_SERVICE)) {
        return code;
    }
    bench::exit_code("bench_ws_clients", run())
}

/// A process's memory and threads, from `/proc/<pid>/status`.
#[derive(Clone, Copy)]
struct Memory {
    rss_kb: u64,
    peak_kb: u64,
    threads: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kb: field("VmRSS"),
        peak_kb: field("VmHWM"),
        threads: field("Threads"),
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// A connected client and the id its welcome gave it.
struct Client {
    socket: WebSocket<TcpStream>,
    id: String,
}

/// The next text frame, parsed (pings are answered by tungstenite).
fn read_frame(socket: &mut WebSocket<TcpStream>) -> BoxResult<Value> {
    loop {
        match socket.read()? {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Message::Close(frame) => return Err(format!("closed by the router: {frame:?}").into()),
            _ => {}
        }
    }
}

/// Connects, and checks the router's welcome: `{to: "<id>@client:/",
/// typ: "connection", bdy: {id, ip}}`.
fn connect(port: u16) -> BoxResult<Client> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut socket, _) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    let welcome = read_frame(&mut socket)?;
    let id = welcome["bdy"]["id"].as_str().unwrap_or_default().to_string();
    if welcome["typ"] != "connection" || id.is_empty() || welcome["to"] != format!("{id}@client:/") {
        return Err(format!("not the router's welcome: {welcome}").into());
    }
    Ok(Client { socket, id })
}

/// What one thread's clients got in the reply round.
#[derive(Default)]
struct Replies {
    pongs: usize,
    echoes: usize,
    wrong: Vec<String>,
}

/// Sends every client's `ping` and echo request, then reads each client's
/// two answers.
fn ask_and_read(clients: &mut [Client], first: usize) -> Replies {
    let mut replies = Replies::default();
    let mut asked = Vec::with_capacity(clients.len());
    for (n, client) in clients.iter_mut().enumerate() {
        let from = format!("{}@client:/", client.id);
        let ping =
            json!({"to": "hydra-router:/", "frm": from, "mid": format!("p{}", first + n), "typ": "ping", "bdy": {}});
        let body = json!({ "n": first + n });
        let call =
            json!({"to": format!("{ECHO_SERVICE}:/"), "frm": from, "mid": format!("e{}", first + n), "bdy": body});
        let sent = client
            .socket
            .send(Message::text(ping.to_string()))
            .and_then(|()| client.socket.send(Message::text(call.to_string())));
        match sent {
            Ok(()) => asked.push(true),
            Err(e) => {
                replies.wrong.push(format!("client {}: send: {e}", client.id));
                asked.push(false);
            }
        }
    }
    for (n, client) in clients.iter_mut().enumerate() {
        if !asked[n] {
            continue;
        }
        let (ping_mid, echo_mid) = (format!("p{}", first + n), format!("e{}", first + n));
        let (mut pong, mut echo) = (false, false);
        while !(pong && echo) {
            let frame = match read_frame(&mut client.socket) {
                Ok(frame) => frame,
                Err(e) => {
                    replies.wrong.push(format!("client {}: {e}", client.id));
                    break;
                }
            };
            let rmid = frame["rmid"].as_str().unwrap_or_default();
            if rmid == ping_mid && frame["typ"] == "pong" && !pong {
                pong = true;
                replies.pongs += 1;
            } else if rmid == echo_mid && frame["bdy"]["echo"]["n"] == json!(first + n) && !echo {
                echo = true;
                replies.echoes += 1;
            } else {
                replies
                    .wrong
                    .push(format!("client {}: unexpected frame {frame}", client.id));
                break;
            }
        }
    }
    replies
}

/// The router's `hydra_router_ws_clients` gauge.
fn connected_count(port: u16) -> BoxResult<u64> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/v1/router/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?;
    text.lines()
        .find_map(|line| line.strip_prefix("hydra_router_ws_clients "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| "no hydra_router_ws_clients in /v1/router/metrics".into())
}

/// Waits until the router counts `wanted` clients (or `WAIT` passed); the
/// last count.
fn wait_for_count(port: u16, wanted: u64) -> BoxResult<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = connected_count(port)?;
        if count == wanted || Instant::now() >= deadline {
            return Ok(count);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// What the client threads measured.
struct Round {
    welcomed: usize,
    connect_time: Duration,
    connected: Memory,
    pongs: usize,
    echoes: usize,
    reply_time: Duration,
    replied: Memory,
    wrong: Vec<String>,
}

/// Connects `clients` clients on `CLIENT_THREADS` threads, reads the
/// router's memory, runs the reply round, reads it again; the clients are
/// returned so that they stay connected until the caller drops them.
fn connect_and_ask(port: u16, router_pid: u32, clients: usize) -> BoxResult<(Round, Vec<Vec<Client>>)> {
    let connected_all = Barrier::new(CLIENT_THREADS + 1);
    let measured = Barrier::new(CLIENT_THREADS + 1);
    let replied_all = Barrier::new(CLIENT_THREADS + 1);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| {
                let first = clients * t / CLIENT_THREADS;
                let count = clients * (t + 1) / CLIENT_THREADS - first;
                let (connected_all, measured, replied_all) = (&connected_all, &measured, &replied_all);
                scope.spawn(move || {
                    let mut held = Vec::with_capacity(count);
                    let mut failed = Vec::new();
                    for _ in 0..count {
                        match connect(port) {
                            Ok(client) => held.push(client),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    connected_all.wait();
                    measured.wait();
                    let replies = ask_and_read(&mut held, first);
                    replied_all.wait();
                    (held, failed, replies)
                })
            })
            .collect();
        let started = Instant::now();
        connected_all.wait();
        let connect_time = started.elapsed();
        let connected = memory(router_pid);
        let started = Instant::now();
        measured.wait();
        replied_all.wait();
        let reply_time = started.elapsed();
        let replied = memory(router_pid);
        let mut round = Round {
            welcomed: 0,
            connect_time,
            connected,
            pongs: 0,
            echoes: 0,
            reply_time,
            replied,
            wrong: Vec::new(),
        };
        let mut all = Vec::new();
        for worker in workers {
            let (held, failed, replies) = worker.join().map_err(|_| "a client thread panicked")?;
            round.welcomed += held.len();
            round.wrong.extend(failed);
            round.pongs += replies.pongs;
            round.echoes += replies.echoes;
            round.wrong.extend(replies.wrong);
            all.push(held);
        }
        Ok((round, all))
    })
}

/// Half the clients close with a close handshake, half drop the socket.
fn leave(all: Vec<Vec<Client>>) {
    for (n, mut client) in all.into_iter().flatten().enumerate() {
        if n % 2 == 0 {
            let _ = client.socket.close(None);
            let _ = client.socket.flush();
        }
    }
}

fn run() -> BoxResult<bool> {
    let clients: usize = bench::scaled(10_000, 200);
    let wanted = clients as u64 + 1_000;
    let limit = rlimit::increase_nofile_limit(wanted)?;
    if limit < wanted {
        return Err(format!("{clients} clients need {wanted} open files; the limit is {limit}").into());
    }
    let redis_server = RedisServer::start();
    let redis_url = redis_server.url(0);
    let (mut echo, _) = start_echo_child(SERVE_ECHO_FLAG, &redis_url)?;
    let RouterChild {
        process: mut router,
        port,
        binary: router_binary,
        ..
    } = start_router(&redis_url)?;
    println!(
        "bench_ws_clients: redis-server on 127.0.0.1:{}; echo `{ECHO_SERVICE}` (pid {}); {} (pid {}) on port {port}; \
         {clients} clients on {CLIENT_THREADS} threads; {} CPUs",
        redis_server.port(),
        echo.pid(),
        router_binary.display(),
        router.pid(),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let idle = memory(router.pid());
    let (round, all) = connect_and_ask(port, router.pid(), clients)?;
    let counted = connected_count(port)?;
    let started = Instant::now();
    leave(all);
    let left = wait_for_count(port, 0)?;
    let leave_time = started.elapsed();
    let after = memory(router.pid());

    let peak_mb = mb(round.connected.peak_kb.max(round.replied.peak_kb));
    let mut table = Table::new(&[
        "clients",
        "welcomed (`connection`)",
        "time to connect all",
        "ping → pong",
        "echo service → reply (via)",
        "time until all replies",
        "router RSS, all connected",
        "target ≤ 200 MB",
    ]);
    table.row([
        clients.to_string(),
        round.welcomed.to_string(),
        format!("{:.2} s", round.connect_time.as_secs_f64()),
        round.pongs.to_string(),
        round.echoes.to_string(),
        format!("{:.2} s", round.reply_time.as_secs_f64()),
        format!("{:.1} MB (peak {peak_mb:.1} MB)", mb(round.replied.rss_kb)),
        verdict(peak_mb <= TARGET_RSS_MB).to_string(),
    ]);
    table.print();

    let mut memory_table = Table::new(&["router", "VmRSS", "VmHWM (peak)", "threads", "clients (router's count)"]);
    let phases = [
        ("idle, before", idle, "0".to_string()),
        ("all connected", round.connected, counted.to_string()),
        ("after the replies", round.replied, counted.to_string()),
        (
            "all gone",
            after,
            format!("{left} (after {:.2} s)", leave_time.as_secs_f64()),
        ),
    ];
    for (phase, memory, count) in phases {
        memory_table.row([
            phase.to_string(),
            format!("{:.1} MB", mb(memory.rss_kb)),
            format!("{:.1} MB", mb(memory.peak_kb)),
            memory.threads.to_string(),
            count,
        ]);
    }
    memory_table.print();
    println!("(MB = MiB; VmHWM is the router's peak RSS since it started.)");

    for wrong in round.wrong.iter().take(5) {
        eprintln!("bench_ws_clients: {wrong}");
    }
    let all_right = round.welcomed == clients
        && round.pongs == clients
        && round.echoes == clients
        && round.wrong.is_empty()
        && counted == clients as u64
        && left == 0;
    if !all_right {
        eprintln!("bench_ws_clients: router stderr:\n{}", router.stderr_tail());
    }
    router.stop(true);
    echo.stop(false);
    Ok(all_right)
}
