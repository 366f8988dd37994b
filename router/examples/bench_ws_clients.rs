//! 10,000 concurrent WebSocket clients on one router process: the router's
//! RSS and threads with every client connected, and how long connecting
//! them all took.
//!
//! The router runs in a child process (this program re-run with `--serve`):
//! the in-process `Router` with the WebSocket gateway and a minimal frame
//! handler standing in for the routing layer (a welcome frame on `connected`,
//! `echo:` frames answered), so its RSS is the connection layer's alone. The
//! clients are blocking tungstenite clients with small buffers, connected by
//! a few threads; each counts as connected once its welcome frame arrived.
//!
//! `cargo run --release -p hydra-router --example bench_ws_clients`
//! (`HYDRA_BENCH_SMOKE=1`: 200 clients).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydra_router::config::RouterConfig;
use hydra_router::gateway::{Router, Shared};
use hydra_router::log_ring::LogRing;
use hydra_router::ws::connections::WsSettings;
use hydra_router::ws::{ClientInfo, ClientSockets, FrameHandler};
use hydra_testkit::RedisServer;
use hydra_testkit::bench::{self, Table};
use serde_json::json;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

const CONNECTING_THREADS: usize = 8;
const TARGET_RSS_MIB: f64 = 200.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(args.get(2).cloned().unwrap_or_default());
    }
    bench::exit_code("bench_ws_clients", run())
}

/// The welcome and echo a routing layer would give, nothing more.
struct WelcomeHandler {
    sockets: Arc<dyn ClientSockets>,
}

impl FrameHandler for WelcomeHandler {
    fn connected(&self, client: &ClientInfo) {
        self.sockets
            .send(&client.id, format!("{{\"welcome\":\"{}\"}}", client.id));
    }
    fn frame(&self, client_id: &str, text: String) {
        if let Some(echo) = text.strip_prefix("echo:") {
            self.sockets.send(client_id, echo.to_string());
        }
        if text == "broadcast" {
            for id in self.sockets.client_ids() {
                self.sockets.send(&id, "news".to_string());
            }
        }
    }
    fn disconnected(&self, _: &str) {}
}

/// The child: a router with the WebSocket gateway; prints its port, runs
/// until stdin closes.
fn serve(redis_url: String) -> ExitCode {
    let _ = rlimit::increase_nofile_limit(65_536);
    let config = match RouterConfig::from_document(
        json!({"hydra": {"serviceName": "hydra-router", "servicePort": 0, "serviceIP": "127.0.0.1",
                         "redis": {"url": redis_url}}}),
        &[],
    ) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let make = Box::new(|_: &hydra::Hydra, _: &Arc<Shared>, sockets: Arc<dyn ClientSockets>| {
        Arc::new(WelcomeHandler { sockets }) as Arc<dyn FrameHandler>
    });
    let router = match Router::start_with_ws(config, LogRing::new(), WsSettings::default(), Some(make)) {
        Ok(router) => router,
        Err(e) => {
            eprintln!("router: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("port {}", router.port());
    // Each line on stdin asks for the connected count; end of file stops.
    let mut line = String::new();
    while matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
        let connected = router.ws_counts().map_or(0, |counts| counts.connected);
        println!("connected {connected}");
        line.clear();
    }
    router.shutdown();
    ExitCode::SUCCESS
}

/// `VmRSS` (KiB) and `Threads` of a process.
fn rss_and_threads(pid: u32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or(format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("Threads:")?))
}

type Client = WebSocket<TcpStream>;

fn connect(port: u16) -> Result<(Client, String), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, _) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
        .map_err(|e| format!("handshake: {e}"))?;
    loop {
        match ws.read().map_err(|e| format!("welcome: {e}"))? {
            Message::Text(text) => return Ok((ws, text.as_str().to_owned())),
            Message::Ping(_) | Message::Pong(_) => {}
            other => return Err(format!("expected the welcome, got {other:?}")),
        }
    }
}

/// Connects `clients` clients from a few threads; each with its welcome.
fn connect_all(port: u16, clients: usize) -> Result<Vec<(Client, String)>, String> {
    let per_thread = clients / CONNECTING_THREADS;
    let workers: Vec<_> = (0..CONNECTING_THREADS)
        .map(|t| {
            let count = if t == 0 {
                clients - per_thread * (CONNECTING_THREADS - 1)
            } else {
                per_thread
            };
            std::thread::spawn(move || (0..count).map(|_| connect(port)).collect::<Result<Vec<_>, String>>())
        })
        .collect();
    let mut connected: Vec<(Client, String)> = Vec::with_capacity(clients);
    for worker in workers {
        connected.extend(worker.join().map_err(|_| "a connecting thread panicked")??);
    }
    Ok(connected)
}

/// Asks the router (the child) for its connected count until it is 0 (or a
/// minute passed); what is left.
fn wait_all_gone(stdin: &mut impl std::io::Write, stdout: &mut impl BufRead) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    loop {
        writeln!(stdin, "count").map_err(|e| e.to_string())?;
        line.clear();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let left: u64 = line
            .trim()
            .strip_prefix("connected ")
            .and_then(|n| n.parse().ok())
            .ok_or(format!("unexpected answer {line:?}"))?;
        if left == 0 || Instant::now() >= deadline {
            return Ok(left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run() -> Result<bool, String> {
    let clients: usize = bench::scaled(10_000, 200);
    let wanted = clients as u64 + 1_000;
    let limit = rlimit::increase_nofile_limit(wanted).map_err(|e| e.to_string())?;
    if limit < wanted {
        return Err(format!(
            "{clients} clients need {wanted} open files; the limit is {limit}"
        ));
    }
    let redis = RedisServer::start();
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--serve", &redis.url(0)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the router: {e}"))?;
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    let port: u16 = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or(format!("the router did not say its port: {line:?}"))?;
    let (idle_rss, idle_threads) = rss_and_threads(pid)?;

    let started = Instant::now();
    let mut connected = connect_all(port, clients)?;
    let connect_time = started.elapsed();
    let welcomed = connected
        .iter()
        .filter(|(_, welcome)| welcome.starts_with("{\"welcome\":"))
        .count();
    let (full_rss, full_threads) = rss_and_threads(pid)?;

    // One round trip per client, all connected.
    let started = Instant::now();
    let mut echoed = 0;
    for (n, (ws, _)) in connected.iter_mut().enumerate() {
        ws.send(Message::text(format!("echo:{n}"))).map_err(|e| e.to_string())?;
        loop {
            match ws.read().map_err(|e| e.to_string())? {
                Message::Text(text) if text.as_str() == n.to_string() => {
                    echoed += 1;
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => return Err(format!("unexpected answer {other:?}")),
            }
        }
    }
    let echo_time = started.elapsed();

    // One frame pushed to every client (the loop writes 10,000 sockets).
    let started = Instant::now();
    connected[0]
        .0
        .send(Message::text("broadcast"))
        .map_err(|e| e.to_string())?;
    let mut reached = 0;
    for (ws, _) in &mut connected {
        loop {
            match ws.read().map_err(|e| e.to_string())? {
                Message::Text(text) if text.as_str() == "news" => {
                    reached += 1;
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => return Err(format!("unexpected frame {other:?}")),
            }
        }
    }
    let broadcast_time = started.elapsed();

    // Every client leaves (half with a close handshake, half dropping the
    // socket); the router's count returns to 0.
    let started = Instant::now();
    for (n, (mut ws, _)) in connected.into_iter().enumerate() {
        if n % 2 == 0 {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let left = wait_all_gone(&mut stdin, &mut stdout)?;
    let leave_time = started.elapsed();
    let (after_rss, after_threads) = rss_and_threads(pid)?;
    // A second round: memory freed by the first is reused, not added to.
    drop(connect_all(port, clients)?);
    let left_again = wait_all_gone(&mut stdin, &mut stdout)?;
    let (again_rss, _) = rss_and_threads(pid)?;
    drop(stdin);
    let _ = child.wait();

    let mib = |kib: u64| kib as f64 / 1024.0;
    let rss_met = mib(full_rss) <= TARGET_RSS_MIB;
    let mut table = Table::new(&[
        "clients",
        "welcomed",
        "time to connect all",
        "router RSS idle",
        "router RSS all connected",
        "per client",
        "target ≤ 200 MB",
        "router threads idle / connected",
        "one echo each, sequential",
    ]);
    table.row([
        clients.to_string(),
        welcomed.to_string(),
        format!("{:.2} s", connect_time.as_secs_f64()),
        format!("{:.1} MiB", mib(idle_rss)),
        format!("{:.1} MiB", mib(full_rss)),
        format!("{:.1} KiB", (full_rss.saturating_sub(idle_rss)) as f64 / clients as f64),
        bench::verdict(rss_met).to_string(),
        format!("{idle_threads} / {full_threads}"),
        format!(
            "{:.2} s ({:.0} µs each)",
            echo_time.as_secs_f64(),
            echo_time.as_micros() as f64 / clients as f64
        ),
    ]);
    table.print();
    let mut after = Table::new(&[
        "clients",
        "one frame to every client",
        "all gone (router count 0)",
        "router RSS after",
        "router threads after",
        "router RSS after a 2nd round",
    ]);
    after.row([
        clients.to_string(),
        format!("{:.0} ms ({reached} reached)", broadcast_time.as_secs_f64() * 1e3),
        format!("{:.2} s ({left} left)", leave_time.as_secs_f64()),
        format!("{:.1} MiB", mib(after_rss)),
        after_threads.to_string(),
        format!("{:.1} MiB ({left_again} left)", mib(again_rss)),
    ]);
    after.print();
    Ok(welcomed == clients && echoed == clients && reached == clients && left == 0 && left_again == 0)
}
