//! Shared by the router's integration tests: a `hydra-router` process on a
//! private Redis, and Rust services behind it that show what reached them.
#![allow(dead_code)]

pub mod ws_client;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hydra::{Config, HttpRequest, HttpResponse, HttpRoutes, Hydra};
use hydra_testkit::RedisServer;
use serde_json::{Value, json};

/// Generous deadline for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(15);

/// A `hydra-router` process; killed (and its log kept for failures) on drop.
pub struct RouterProcess {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl RouterProcess {
    /// Starts the router with `config` (Node's config.json format) written to
    /// a file; `hydra.redis.url` and `hydra.servicePort` (0) are filled in
    /// when missing. Waits until it listens.
    pub fn start(redis: &RedisServer, config: Value) -> RouterProcess {
        RouterProcess::start_with_env(redis, config, &[])
    }

    /// As [`start`](RouterProcess::start), with extra environment variables.
    pub fn start_with_env(redis: &RedisServer, mut config: Value, env: &[(&str, &str)]) -> RouterProcess {
        let hydra = config
            .as_object_mut()
            .expect("config is an object")
            .entry("hydra")
            .or_insert_with(|| json!({}));
        let hydra = hydra.as_object_mut().expect("hydra is an object");
        hydra.entry("servicePort").or_insert(json!(0));
        hydra.entry("serviceIP").or_insert(json!("127.0.0.1"));
        hydra.entry("redis").or_insert_with(|| json!({ "url": redis.url(0) }));
        let dir = TempDir::new();
        let path = dir.path.join("config.json");
        std::fs::write(&path, config.to_string()).expect("write config");
        let path = path.to_string_lossy().into_owned();
        RouterProcess::spawn(&["--config", &path], env, dir)
    }

    /// Starts the router binary with `args` and `env` as given (no config
    /// file is written; `HYDRA_REDIS_URL` and `HYDRA_ROUTER_*` variables of
    /// the test's own environment are removed first). Waits until it listens.
    pub fn start_with_args(args: &[&str], env: &[(&str, &str)]) -> RouterProcess {
        RouterProcess::spawn(args, env, TempDir::new())
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], dir: TempDir) -> RouterProcess {
        let mut command = Command::new(router_binary());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        remove_router_env(&mut command);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn hydra-router");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let stderr_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = stderr_log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (port_tx, port_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("hydra-router listening on port ") {
                    let _ = port_tx.send(port.trim().parse::<u16>().ok());
                    break;
                }
            }
            for _ in lines {}
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hydra-router did not start; its log:\n{}", log.lock().unwrap());
            }
        };
        RouterProcess {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status (at most 20 s).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "hydra-router did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- hydra-router log ---\n{}", self.log());
        }
    }
}

/// The `hydra-router` binary Cargo built for these tests.
pub fn router_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hydra-router"))
}

/// Keeps the test's own `HYDRA_REDIS_URL` and `HYDRA_ROUTER_*` variables
/// from reaching a router (each test says what it runs with).
fn remove_router_env(command: &mut Command) {
    command.env_remove("HYDRA_REDIS_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HYDRA_ROUTER_") {
            command.env_remove(name);
        }
    }
}

/// Runs the router binary to its end (for configurations it must refuse):
/// exit code and stderr. Killed after 20 s.
pub fn run_router(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(router_binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    remove_router_env(&mut command);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn hydra-router");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap_or_default())
}

/// A Rust service behind the router that shows what reached it. Routes
/// (registered in Redis in hydra-express's form):
/// - `[get|post|put|patch|delete]/v1/<name>/echo` and `/v1/<name>/echo/:id`:
///   200, JSON `{"result": {"method","path","query","headers":{..},"bodyHex","instance"}}`
///   (so the router merges it into the envelope);
/// - `[post]/v1/<name>/raw`: 200, the body's bytes back with the request's
///   `content-type` (pass-through);
/// - `[get]/v1/<name>/slow`: answers after `?ms=` milliseconds;
/// - `[get]/v1/<name>/status/:code`: that status, JSON `{"code": n}`.
pub struct TestService {
    /// Its handle (shut down on drop).
    pub hydra: Hydra,
    /// Its HTTP port.
    pub port: u16,
}

impl TestService {
    /// Registers service `name` on db 0 of `redis` and serves its routes.
    pub fn start(redis: &RedisServer, name: &str) -> TestService {
        TestService::start_on(&redis.url(0), name)
    }

    /// As [`start`](TestService::start), on the Redis at `redis_url` (for a
    /// service run in a child process).
    pub fn start_on(redis_url: &str, name: &str) -> TestService {
        let config = Config::builder()
            .service_name(name)
            .service_ip("127.0.0.1")
            .redis_url(redis_url)
            .connect_timeout(Duration::from_secs(2))
            .command_timeout(Duration::from_secs(2))
            .build()
            .expect("config");
        let hydra = Hydra::init(config).expect("init");
        hydra.register_service().expect("register");
        let echo = format!("/v1/{name}/echo");
        let echo_id = format!("/v1/{name}/echo/:id");
        let mut routes = HttpRoutes::new();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            routes = routes
                .route(method, &echo, echo_request)
                .route(method, &echo_id, echo_request);
        }
        let routes = routes
            .post(&format!("/v1/{name}/raw"), |_, r: &HttpRequest| {
                let kind = r.header("content-type").unwrap_or("application/octet-stream");
                HttpResponse::bytes(200, kind, r.body.clone())
            })
            .get(&format!("/v1/{name}/slow"), |_, r: &HttpRequest| {
                let ms = r.query_param("ms").and_then(|m| m.parse().ok()).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                HttpResponse::json(200, &json!({ "result": { "slept": ms } }))
            })
            .get(&format!("/v1/{name}/status/:code"), |_, r: &HttpRequest| {
                let code = r.param("code").and_then(|c| c.parse().ok()).unwrap_or(500);
                HttpResponse::json(code, &json!({ "code": code }))
            });
        let port = hydra.serve_http(routes).expect("serve");
        TestService { hydra, port }
    }

    /// Its instance ID.
    pub fn instance_id(&self) -> String {
        self.hydra.get_instance_id().to_string()
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = self.hydra.shutdown();
    }
}

fn echo_request(hydra: &Hydra, request: &HttpRequest) -> HttpResponse {
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), json!(v)))
        .collect();
    let hex: String = request.body.iter().map(|b| format!("{b:02x}")).collect();
    HttpResponse::json(
        200,
        &json!({ "result": {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": headers,
            "bodyHex": hex,
            "instance": hydra.get_instance_id(),
        }}),
    )
}

/// A temporary directory, removed on drop.
pub struct TempDir {
    /// Its path.
    pub path: PathBuf,
}

impl TempDir {
    /// A new empty directory under the system's temp dir.
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "hydra-router-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Waits until `check` holds (polling every 20 ms), or panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking HTTP client that never treats a status as an error.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// A response read whole: status, headers (lowercase names), body.
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends a request with `ureq` and reads the whole answer.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let agent = client();
    let response = match body {
        Some(body) => agent.run(builder.body(body.to_vec()).expect("request")),
        None => agent.run(builder.body(()).expect("request")),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut bytes)
        .expect("read body");
    Answer {
        status,
        headers,
        body: bytes,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Answer {
    send("GET", url, &[], None)
}

/// A plain Redis connection to db 0 of `redis` (where the tests' services
/// and routers live), for looking at keys directly.
pub fn raw_redis(redis: &RedisServer) -> redis::Connection {
    let client = redis::Client::open(redis.url(0)).expect("redis client");
    let connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect to redis");
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    connection
}

/// Waits until someone listens on the pub/sub `channel` of db 0 of `redis`
/// (Node's `registerService` resolves before its SUBSCRIBEs complete, so a
/// message sent at once can reach nobody).
pub fn wait_for_subscriber(redis: &RedisServer, channel: &str) {
    let mut connection = raw_redis(redis);
    wait_until(&format!("a subscriber on {channel}"), WAIT, || {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut connection)
            .unwrap_or_default();
        counts.first().is_some_and(|(_, n)| *n >= 1)
    });
}

/// Writes `request` (raw bytes) on a new connection to `port`, then reads
/// until the server closes it (or 10 s pass) and splits what came into
/// responses framed by their `content-length` (no length: no body). Bytes
/// that do not start a response are returned apart, so a test sees
/// everything the server sent.
pub fn raw_exchange(port: u16, request: &[u8]) -> (Vec<Answer>, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    // The server may close before reading everything (e.g. after a 413).
    let _ = std::io::Write::write_all(&mut stream, request);
    read_raw_answers(&mut stream)
}

/// Reads until the peer closes (or the stream's read timeout), then splits
/// the bytes into responses as [`raw_exchange`] does.
pub fn read_raw_answers(stream: &mut std::net::TcpStream) -> (Vec<Answer>, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
    split_answers(&bytes)
}

/// Splits raw response bytes into answers (see [`raw_exchange`]).
pub fn split_answers(bytes: &[u8]) -> (Vec<Answer>, Vec<u8>) {
    let mut answers = Vec::new();
    let mut rest = bytes;
    while rest.starts_with(b"HTTP/1.1 ") && rest.len() >= 12 {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        let mut lines = head.split("\r\n");
        let Some(status) = lines.next().and_then(|l| l.get(9..12)).and_then(|s| s.parse().ok()) else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_end = (end + 4 + length).min(rest.len());
        answers.push(Answer {
            status,
            headers,
            body: rest[end + 4..body_end].to_vec(),
        });
        rest = &rest[body_end..];
    }
    (answers, rest.to_vec())
}
