//! `watch` in a real terminal (tmux), and its plain and JSON forms off a
//! terminal: a service appears, an instance goes late, Redis goes away and
//! comes back, and Ctrl-C ends it with status 0 and the terminal restored.
//!
//! Needs Debian's `tmux` (`scripts/test` installs it with `ensure_tmux`);
//! without it the terminal test fails saying so, unless HYDRA_NO_TMUX=1 is
//! set (a documented opt-out that `scripts/test` refuses under CI).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Home, binary, command, eventually};
use hydra::{Config, Hydra};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

/// Longest wait for something to show on the screen.
const SCREEN_DEADLINE: Duration = Duration::from_secs(20);

fn rust_service(server: &RedisServer, name: &str) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .service_version("1.2.3")
        .redis_url(&server.url(15))
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    hydra
}

/// A real Node hydra 1.9.3 service; its instance ID.
fn node_service(server: &RedisServer, name: &str) -> (NodePeer, String) {
    let node = NodePeer::spawn().expect("start the Node hydra peer (npm ci --prefix interop)");
    let config = json!({"hydra": {
        "serviceName": name, "serviceIP": "127.0.0.1", "servicePort": 0, "serviceVersion": "9.9.9",
        "redis": {"url": server.url(15)}
    }});
    node.call("init", json!([config])).unwrap();
    node.call("registerService", json!([])).unwrap();
    let id = node
        .call("getInstanceID", json!([]))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    (node, id)
}

/// A tmux server of our own (`-L <unique socket>`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// None when tmux is missing and HYDRA_NO_TMUX=1 opts out; panics with
    /// how to install it otherwise.
    fn new() -> Option<Tmux> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            if std::env::var("HYDRA_NO_TMUX").as_deref() == Ok("1") {
                eprintln!("SKIPPED: tmux missing and HYDRA_NO_TMUX=1: watch was not tested in a terminal");
                return None;
            }
            panic!(
                "tmux not found: the watch test needs a real terminal. Install Debian's tmux ('apt-get install tmux'; \
                 scripts/test does it with ensure_tmux from scripts/lib.sh), or set HYDRA_NO_TMUX=1 to skip it knowingly"
            );
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Some(Tmux {
            socket: format!(
                "hydra-cli-watch-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        })
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "watch"])
    }

    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "watch", format])
            .trim()
            .to_string()
    }

    /// Waits until the screen shows what `check` wants; panics with the screen otherwise.
    fn wait_for(&self, what: &str, mut check: impl FnMut(&str) -> bool) -> String {
        let mut last = String::new();
        let found = eventually(SCREEN_DEADLINE, || {
            last = self.screen();
            check(&last)
        });
        assert!(found, "the screen never showed {what}:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The screen line of `instance`, if shown.
fn line_of<'a>(screen: &'a str, instance: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(instance))
}

#[test]
fn watch_in_a_terminal_shows_services_coming_and_going_late_and_exits_on_ctrl_c() {
    let Some(tmux) = Tmux::new() else { return };
    let server = RedisServer::start();
    let home = Home::new();
    // The shell writes watch's exit status to a file (128 + n if a signal killed
    // it): tmux's own #{pane_dead_status} was seen empty after the pane died on
    // a loaded machine. `trap : INT` keeps the shell alive through Ctrl-C to
    // write it; watch itself starts with SIGINT at its default, as from a prompt.
    let status_file = home.path().join("watch-exit-status");
    let shell_line = format!(
        "sh -c 'trap : INT; env HOME=\"$0\" NO_COLOR=1 \"$1\" --redis \"$2\" watch --interval 200ms; echo $? > \"$3\"' \
         '{}' '{}' '{}' '{}'",
        home.path().display(),
        binary(),
        server.url(15),
        status_file.display()
    );
    tmux.run(&["new-session", "-d", "-x", "160", "-y", "40", "-s", "watch", &shell_line]);
    // Keep the pane after the process exits, to read its exit status.
    tmux.run(&["set-option", "-w", "-t", "watch", "remain-on-exit", "on"]);
    tmux.wait_for("the header", |s| s.contains("hydra-cli watch · redis://127.0.0.1:"));
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "watch draws on the alternate screen"
    );
    assert_eq!(
        tmux.format("#{cursor_flag}"),
        "0",
        "the cursor is hidden while watching"
    );

    // A service appears.
    let rust = rust_service(&server, "rust-svc");
    let screen = tmux.wait_for("rust-svc alive", |s| {
        line_of(s, rust.get_instance_id()).is_some_and(|l| l.contains("alive"))
    });
    let line = line_of(&screen, rust.get_instance_id()).unwrap();
    for column in ["rust-svc", "1.2.3", "127.0.0.1:", " ago"] {
        assert!(line.contains(column), "{column} missing: {line}");
    }
    for header in ["SERVICE", "INSTANCE", "VERSION", "ADDRESS", "HEARTBEAT", "STATE"] {
        assert!(screen.contains(header), "{header} missing:\n{screen}");
    }

    // A Node instance appears, then dies without shutting down: its presence
    // expires (3 s) while its nodes entry stays, which is what late means.
    let (node, node_id) = node_service(&server, "node-svc");
    tmux.wait_for("node-svc alive", |s| {
        line_of(s, &node_id).is_some_and(|l| l.contains("alive"))
    });
    let _ = node.call("exit", json!([]));
    let screen = tmux.wait_for("node-svc late", |s| {
        line_of(s, &node_id).is_some_and(|l| l.contains("late"))
    });
    assert!(
        line_of(&screen, rust.get_instance_id()).unwrap().contains("alive"),
        "the other service stays alive:\n{screen}"
    );
    assert!(screen.contains("alive, 1 late"), "summary line:\n{screen}");

    // Ctrl-C: exit status 0, normal screen and cursor back.
    tmux.run(&["send-keys", "-t", "watch", "C-c"]);
    let mut status = String::new();
    let exited = eventually(SCREEN_DEADLINE, || {
        status = std::fs::read_to_string(&status_file).unwrap_or_default();
        status.ends_with('\n')
    });
    assert!(exited, "watch did not exit on Ctrl-C:\n{}", tmux.screen());
    assert_eq!(
        status.trim(),
        "0",
        "exit status after Ctrl-C (128 + n: killed by signal n)"
    );
    let dead = eventually(SCREEN_DEADLINE, || tmux.format("#{pane_dead}") == "1");
    assert!(dead, "the pane's shell did not exit:\n{}", tmux.screen());
    assert_eq!(tmux.format("#{alternate_on}"), "0", "the alternate screen was left");
    let after = tmux.screen();
    assert!(
        !after.contains("hydra-cli watch ·"),
        "the table is gone from the restored screen:\n{after}"
    );
    rust.shutdown().unwrap();
}

/// Reads stdout lines on a thread, so waits have deadlines.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line `check` accepts, within the deadline.
fn next_matching(lines: &mpsc::Receiver<String>, what: &str, mut check: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + SCREEN_DEADLINE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if check(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let tail = seen[seen.len().saturating_sub(20)..].join("\n");
    panic!("no line with {what}; last lines:\n{tail}");
}

fn interrupt(child: &mut std::process::Child) -> Option<i32> {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut code = None;
    let exited = eventually(SCREEN_DEADLINE, || match child.try_wait() {
        Ok(Some(status)) => {
            code = status.code();
            true
        }
        _ => false,
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("watch did not exit on SIGINT");
    }
    code
}

#[test]
fn json_lines_off_a_terminal_survive_redis_going_away() {
    let mut server = RedisServer::start();
    let home = Home::new();
    let url = server.url(15);
    let rust = rust_service(&server, "json-svc");
    let mut child = command(&home, &["--redis", &url, "--json", "watch", "--interval", "200ms"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let first = next_matching(&lines, "json-svc", |l| l.contains("json-svc"));
    let doc: Value = serde_json::from_str(&first).expect("one JSON document per line");
    assert_eq!(doc["ok"], true);
    let instance = &doc["instances"][0];
    assert_eq!(instance["service"], "json-svc");
    assert_eq!(instance["instance_id"], rust.get_instance_id());
    assert_eq!(instance["state"], "alive");
    assert_eq!(instance["present"], true);
    assert!(instance["heartbeat_age_ms"].as_i64().unwrap() >= 0);
    assert_eq!(doc["services"][0]["alive"], 1);

    // Redis goes away: watch reports it and keeps going.
    server.stop();
    let down = next_matching(&lines, "an error", |l| l.contains("\"ok\":false"));
    let doc: Value = serde_json::from_str(&down).unwrap();
    assert!(!doc["error"].as_str().unwrap().is_empty(), "{doc}");
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "watch keeps running while Redis is down"
    );
    // It comes back (empty): watch reads again, and sees the service re-register itself.
    server.restart();
    next_matching(&lines, "json-svc again", |l| {
        l.contains("\"ok\":true") && l.contains("json-svc")
    });
    assert_eq!(interrupt(&mut child), Some(0), "SIGINT ends watch with status 0");
    rust.shutdown().unwrap();
}

#[test]
fn plain_snapshots_off_a_terminal_have_no_escape_codes() {
    let server = RedisServer::start();
    let home = Home::new();
    let rust = rust_service(&server, "plain-svc");
    let mut child = command(&home, &["--redis", &server.url(15), "watch", "--interval", "100ms"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let mut headers = 0;
    next_matching(&lines, "a second snapshot", |l| {
        assert!(!l.contains('\x1b'), "escape code in {l:?}");
        if l.starts_with("hydra-cli watch · ") {
            headers += 1;
        }
        headers == 2
    });
    next_matching(&lines, "plain-svc alive", |l| {
        l.contains("plain-svc") && l.contains("alive")
    });
    assert_eq!(interrupt(&mut child), Some(0));
    rust.shutdown().unwrap();

    // Bad input: an interval that is not a duration is a usage error.
    let bad = common::run(&home, Some(&server.url(15)), &["watch", "--interval", "soon"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
}

#[test]
fn ctrl_c_ends_watch_even_when_nobody_reads_its_output() {
    let server = RedisServer::start();
    // Enough entries that one snapshot overflows a pipe's buffer.
    let mut conn = redis::Client::open(server.url(15))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let _: i64 = redis::cmd("EVAL")
        .arg(
            r#"for i = 1, 3000 do
                 local id = string.format('%032x', i)
                 redis.call('HSET', 'hydra:service:nodes', id, '{"serviceName":"bulk-' .. (i % 300) .. '","serviceDescription":"","version":"1.0.0","instanceID":"' .. id .. '","updatedOn":"2020-01-01T00:00:00.000Z","processID":1,"ip":"10.0.0.1","port":"80","hostName":"h"}')
               end
               return 1"#,
        )
        .arg(0)
        .query(&mut conn)
        .unwrap();
    let home = Home::new();
    let mut child = command(&home, &["--redis", &server.url(15), "watch", "--interval", "100ms"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read nothing: the first snapshot fills the pipe and the write blocks.
    let wchan = format!("/proc/{}/wchan", child.id());
    let blocked = eventually(SCREEN_DEADLINE, || {
        std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("pipe_write"))
    });
    assert!(blocked, "watch never blocked writing to the full pipe");
    assert_eq!(
        interrupt(&mut child),
        Some(0),
        "Ctrl-C ends a watch stuck writing, with status 0"
    );
}
