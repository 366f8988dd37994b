//! The dashboard in a real browser: headless Chromium renders `/` of a running
//! `hydra-router` binary, in front of a private Redis with a Rust service, a
//! Node hydra-express service, and a Node service whose process was killed
//! (its heartbeat stopped, so it is late). The rendered DOM (`--dump-dom`)
//! must show every service, the late instance marked late and the live ones
//! live; with a `routerToken`, the page renders with the right `?token=` and
//! says the API refused it without one or with a wrong one.
//!
//! Needs Debian's `chromium` (`scripts/test` installs it with
//! `ensure_chromium`); without it these tests fail, saying so. They also need
//! `redis-server` and `interop/node_modules` (`npm ci --prefix interop`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hydra::{Config, HttpRequest, HttpResponse, HttpRoutes, Hydra};
use hydra_testkit::{ExpressPeer, RedisServer};
use serde_json::{Value, json};

/// How long the router gets to register itself after starting.
const ROUTER_START: Duration = Duration::from_secs(30);
/// How long one Chromium run may take before it is killed.
const BROWSER_RUN: Duration = Duration::from_secs(90);
/// Node's rule (and the page's): an instance is late after 5 s without heartbeat.
const LATE_AFTER_SECS: f64 = 5.0;

/// A scratch directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> ScratchDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hydra-router-dashboard-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        ScratchDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `hydra-router` binary; killed on drop.
struct Router {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl Router {
    /// Starts the router with a Node-format config file on `redis` db 15 and
    /// waits until it has registered (its port is read from its
    /// `hydra:service:nodes` entry, whatever it prints).
    fn start(redis: &RedisServer, router_token: Option<&str>) -> Router {
        let dir = ScratchDir::new("router");
        let mut config = json!({
            "hydra": {
                "serviceName": "hydra-router",
                "serviceIP": "127.0.0.1",
                "servicePort": 0,
                "redis": { "url": redis.url(15) },
            },
        });
        if let Some(token) = router_token {
            config["routerToken"] = json!(token);
        }
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write the router config");
        let log = std::fs::File::create(dir.path().join("router.log")).expect("create the router log");
        let child = Command::new(env!("CARGO_BIN_EXE_hydra-router"))
            .arg("--config")
            .arg(&config_path)
            .env_remove("HYDRA_REDIS_URL")
            .env_remove("HYDRA_SERVICE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the hydra-router binary");
        let mut router = Router { child, port: 0, dir };

        let lookup = observer(redis);
        let found = wait_for(ROUTER_START, || {
            if let Ok(Some(status)) = router.child.try_wait() {
                panic!(
                    "hydra-router exited with {status} before registering; its log:\n{}",
                    router.log_tail()
                );
            }
            let nodes = lookup.get_service_nodes().ok()?;
            let me = nodes
                .into_iter()
                .find(|n| n.service_name == "hydra-router" && n.process_id == u64::from(router.child.id()))?;
            // Registered; the port answers once the server is up.
            TcpStream::connect(("127.0.0.1", me.port)).ok().map(|_| me.port)
        });
        router.port = found.unwrap_or_else(|| {
            panic!(
                "hydra-router did not register within {ROUTER_START:?}; its log:\n{}",
                router.log_tail()
            )
        });
        router
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("router.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Hydra handle that only reads Redis (not registered).
fn observer(redis: &RedisServer) -> Hydra {
    let config = Config::builder()
        .service_name("dashboard-test-observer")
        .redis_url(&redis.url(15))
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(Duration::from_secs(2))
        .build()
        .expect("observer config");
    Hydra::init(config).expect("observer init")
}

/// A registered Rust service with one HTTP route.
fn rust_service(redis: &RedisServer, name: &str) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(&redis.url(15))
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(Duration::from_secs(2))
        .build()
        .expect("service config");
    let hydra = Hydra::init(config).expect("service init");
    hydra.register_service().expect("register the Rust service");
    let path = format!("/v1/{name}/hello");
    let hello = |_: &Hydra, _: &HttpRequest| HttpResponse::send_response(200, json!({ "hello": "from rust" }));
    hydra
        .serve_http(HttpRoutes::new().get(&path, hello))
        .expect("serve HTTP");
    hydra
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.0 GET (so the answer ends with the connection): status and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The Chromium binary: `/usr/bin/chromium`, else `chromium` on PATH. Fails
/// the test (never skips it) when there is none.
fn chromium() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin/chromium"))
        .chain(on_path)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found (looked for /usr/bin/chromium and chromium on PATH): the dashboard test needs a \
             real browser. Install Debian's chromium ('apt-get install chromium'; scripts/test does it with \
             ensure_chromium from scripts/lib.sh)"
            )
        })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The DOM of `url` after Chromium ran the page's scripts for `budget` of
/// virtual time (fetches to the router complete in between).
fn dump_dom(url: &str, budget: Duration) -> String {
    let profile = ScratchDir::new("chromium-profile");
    let mut command = Command::new(chromium());
    command.args([
        "--headless",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
    ]);
    command.args([
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--mute-audio",
    ]);
    if running_as_root() {
        command.arg("--no-sandbox");
    }
    command
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("could not start chromium: {e}"));
    // Read both pipes on their own threads so a full pipe never blocks the browser.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let finished = wait_for(BROWSER_RUN, || child.try_wait().ok().flatten());
    if finished.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let dom = out.join().unwrap_or_default();
    let errors = err.join().unwrap_or_default();
    match finished {
        Some(status) if status.success() && dom.contains("</html>") => dom,
        Some(status) => panic!("chromium exited with {status} for {url}; stderr:\n{errors}"),
        None => panic!("chromium did not finish within {BROWSER_RUN:?} for {url}; stderr:\n{errors}"),
    }
}

/// The DOM once the page shows what `ready` looks for, with more virtual
/// time on each try (a slow machine may need it).
fn rendered(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for budget_secs in [4, 8, 16] {
        last = dump_dom(url, Duration::from_secs(budget_secs));
        if ready(&last) {
            return last;
        }
    }
    panic!("the page at {url} never rendered what the test waits for; last DOM:\n{last}")
}

/// The value of `attribute` in the start tag that carries `marker`
/// (e.g. `data-instance="<iid>"`), if any.
fn attribute_of_tag_with(dom: &str, marker: &str, attribute: &str) -> Vec<String> {
    dom.match_indices(marker)
        .filter_map(|(index, _)| {
            let start = dom[..index].rfind('<')?;
            let end = index + dom[index..].find('>')?;
            let tag = &dom[start..end];
            let needle = format!(" {attribute}=\"");
            let value_start = tag.find(&needle)? + needle.len();
            let value_len = tag[value_start..].find('"')?;
            Some(tag[value_start..value_start + value_len].to_owned())
        })
        .collect()
}

fn instance_states(dom: &str, instance_id: &str) -> Vec<String> {
    attribute_of_tag_with(dom, &format!("data-instance=\"{instance_id}\""), "data-state")
}

fn service_states(dom: &str, service: &str) -> Vec<String> {
    attribute_of_tag_with(
        dom,
        &format!("class=\"service\" data-service=\"{service}\""),
        "data-state",
    )
}

/// The router's `list/nodes` entry of `instance_id`.
fn router_node(router: &Router, instance_id: &str, token: Option<&str>) -> Option<Value> {
    let path = match token {
        Some(token) => format!("/v1/router/list/nodes?token={token}"),
        None => "/v1/router/list/nodes".to_owned(),
    };
    let (status, body) = http_get(router.port, &path).ok()?;
    if status != 200 {
        return None;
    }
    let answer: Value = serde_json::from_str(&body).ok()?;
    answer["result"]
        .as_array()?
        .iter()
        .find(|node| node["instanceID"] == instance_id)
        .cloned()
}

#[test]
fn the_page_shows_every_service_and_marks_the_late_instance() {
    let _ = chromium(); // fail first, and clearly, without a browser
    let redis = RedisServer::start();
    let rust = rust_service(&redis, "rust-svc");
    let express = ExpressPeer::spawn(&redis.url(15), "express-svc").expect("start a Node hydra-express service");
    // A Node service that crashes: its hydra:service:nodes entry stays, with
    // an updatedOn that no longer moves.
    let mut crashed = ExpressPeer::spawn(&redis.url(15), "crashed-svc").expect("start a second Node service");
    let crashed_id = crashed.instance_id().to_owned();
    crashed.kill();
    let router = Router::start(&redis, None);

    // The router itself must see the crashed instance as late before the page can.
    let late = wait_for(Duration::from_secs(30), || {
        let node = router_node(&router, &crashed_id, None)?;
        (node["elapsed"].as_f64()? > LATE_AFTER_SECS).then_some(node)
    });
    assert!(
        late.is_some(),
        "the router never reported {crashed_id} late; router log:\n{}",
        router.log_tail()
    );

    // Some traffic through the router, so the traffic table has rows. (Only now:
    // until its presence key expired, the crashed service still looked present,
    // and its copy of `/v1/express/hello` came first.)
    for path in ["/v1/rust-svc/hello", "/v1/express/hello"] {
        let (status, body) = http_get(router.port, path).expect("a call through the router");
        assert_eq!(
            status,
            200,
            "GET {path} through the router: {body}\nrouter log:\n{}",
            router.log_tail()
        );
    }

    let router_id = observer(&redis)
        .get_service_nodes()
        .expect("nodes")
        .into_iter()
        .find(|n| n.service_name == "hydra-router")
        .expect("the router's own entry")
        .instance_id;
    let live = [
        ("rust-svc", rust.get_instance_id().to_owned()),
        ("express-svc", express.instance_id().to_owned()),
        ("hydra-router", router_id),
    ];

    // A WebSocket client: the page shows this router's live count.
    let (_ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/", router.port)).expect("a WebSocket client");
    let dom = rendered(&router.url("/"), |dom| {
        dom.contains("data-nodes=\"loaded\"")
            && dom.contains("<dd id=\"ws-clients-local\">1</dd>")
            && dom.contains("data-service=\"crashed-svc\"")
            && live
                .iter()
                .all(|(service, _)| dom.contains(&format!("data-service=\"{service}\"")))
            && dom.contains("<tr data-service=\"rust-svc\"")
    });

    assert!(
        dom.contains("data-api=\"ok\""),
        "the page reports an API problem:\n{dom}"
    );
    for (service, instance_id) in &live {
        assert_eq!(service_states(&dom, service), ["live"], "service {service} in:\n{dom}");
        assert_eq!(
            instance_states(&dom, instance_id),
            ["live"],
            "{service} instance {instance_id} in:\n{dom}"
        );
    }
    assert_eq!(
        service_states(&dom, "crashed-svc"),
        ["late"],
        "service crashed-svc in:\n{dom}"
    );
    assert_eq!(
        instance_states(&dom, &crashed_id),
        ["late"],
        "crashed instance {crashed_id} in:\n{dom}"
    );
    // The late instance says how old its heartbeat is.
    assert!(dom.contains("late: last heartbeat "), "no heartbeat age shown:\n{dom}");
    // The calls made above are counted in the traffic table.
    for service in ["rust-svc", "express-svc"] {
        let hour = dom
            .split(&format!("<tr data-service=\"{service}\""))
            .nth(1)
            .and_then(|row| row.split("data-field=\"1h\">").nth(1))
            .and_then(|cell| cell.split('<').next())
            .and_then(|count| count.parse::<u64>().ok());
        assert!(hour.is_some_and(|n| n >= 1), "no traffic counted for {service}:\n{dom}");
    }

    // "Clear dead nodes": the browser follows the router's 302 back to the
    // page, which no longer lists the crashed instance (nor its service).
    let dom = rendered(&router.url("/v1/router/clear"), |dom| {
        dom.contains("data-nodes=\"loaded\"") && dom.contains("data-service=\"rust-svc\"")
    });
    assert!(
        !dom.contains(&crashed_id),
        "the crashed instance is still shown after clearing:\n{dom}"
    );
    assert!(
        !dom.contains("class=\"service\" data-service=\"crashed-svc\""),
        "crashed-svc still shown:\n{dom}"
    );
    for (service, instance_id) in &live {
        assert_eq!(
            instance_states(&dom, instance_id),
            ["live"],
            "{service} after clearing:\n{dom}"
        );
    }
}

#[test]
fn with_a_router_token_the_page_needs_it_in_its_address() {
    let _ = chromium();
    let redis = RedisServer::start();
    let token = "1f0c8a4e-5b7d-4c2a-9e3f-6a8b0d2c4e61";
    let router = Router::start(&redis, Some(token));
    let (status, _) = http_get(router.port, "/v1/router/list/nodes").expect("GET list/nodes");
    assert_eq!(status, 404, "the router API must refuse a call without the token");

    let refused = |dom: &str| dom.contains("data-api=\"refused\"");
    for url in [
        router.url("/"),
        router.url("/?token=00000000-0000-4000-8000-000000000000"),
    ] {
        let dom = rendered(&url, refused);
        assert!(
            dom.contains("Router API refused: check ?token="),
            "no refusal message at {url}:\n{dom}"
        );
        assert!(
            !dom.contains("data-instance="),
            "instances shown without the token at {url}:\n{dom}"
        );
    }

    let dom = rendered(&router.url(&format!("/?token={token}")), |dom| {
        dom.contains("data-nodes=\"loaded\"") && dom.contains("data-api=\"ok\"")
    });
    assert!(
        !dom.contains("Router API refused"),
        "refused with the right token:\n{dom}"
    );
    assert_eq!(
        service_states(&dom, "hydra-router"),
        ["live"],
        "the router's own service in:\n{dom}"
    );
    // The page carries the token over to the links it offers, and clearing
    // comes back to the page with the token.
    let dom = rendered(&router.url(&format!("/v1/router/clear?token={token}")), |dom| {
        dom.contains("data-nodes=\"loaded\"") && dom.contains("data-api=\"ok\"")
    });
    assert_eq!(service_states(&dom, "hydra-router"), ["live"], "after clearing:\n{dom}");
    assert!(
        dom.contains(&format!("href=\"/v1/router/clear?token={token}\"")),
        "clear link without the token:\n{dom}"
    );
}
