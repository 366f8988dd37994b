//! A real Node `hydra-express@1.9.5` service (on `hydra@1.9.3`), run by
//! `interop/express-peer.js`, for HTTP interop tests.
//!
//! The child prints one line on stdout once its port listens and its routes are in
//! Redis: `{"ready":true,"serviceName":…,"instanceID":…,"port":…}`. Its routes
//! (all under `/v1/express`) are documented in the header of
//! `interop/express-peer.js`. The child's stderr goes to a log file in the temp
//! directory, whose tail is printed when a test panics while the peer is alive.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde_json::Value;

use crate::NodePeer;

/// How long `spawn` waits for the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `Drop` waits for a graceful exit after closing stdin.
const GRACEFUL_EXIT: Duration = Duration::from_secs(5);
/// Lines of the stderr log printed when a test panics.
const PANIC_LOG_LINES: usize = 50;
/// Lines of the stderr log quoted in spawn errors.
const ERROR_LOG_LINES: usize = 20;
/// How many unexpected stdout lines are kept for diagnostics.
const MAX_JUNK_LINES: usize = 100;
/// Environment variables the Node side reads; removed from the inherited
/// environment so tests are hermetic.
const ENV_VARS: [&str; 3] = ["HYDRA_REDIS_URL", "HYDRA_SERVICE", "SERVICE_NAME"];

static NEXT_LOG: AtomicU64 = AtomicU64::new(0);

/// What the ready line announced.
struct Ready {
    service_name: String,
    instance_id: String,
    port: u16,
}

/// Locks a mutex, ignoring poisoning (a panicking test must not break `Drop`).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A real hydra-express 1.9.5 service (`interop/express-peer.js`).
///
/// It registers itself with the hydra Redis at `redis_url` (presence, health,
/// `hydra:service:<svc>:service:routes`) and serves HTTP on
/// [`ExpressPeer::port`] (all interfaces; use `127.0.0.1`):
///
/// | Route | Answer |
/// |---|---|
/// | `GET /v1/express/hello` | 200, hydra envelope, `result: {hello: "from express", query}` |
/// | `POST`/`PUT /v1/express/echo` | 200, `result: {body, headers}` (JSON or urlencoded body) |
/// | `GET /v1/express/fail` | 500, `result: {reason: "express route failed on purpose"}` |
/// | `GET /v1/express/slow?ms=N` | 200 after N ms, `result: {slept: N}` |
/// | `GET /v1/express/text` | 200, `text/plain; charset=utf-8`, `plain text body` |
/// | anything else | 404 `{"code":404}` (wrong methods too) |
///
/// Dropping the peer closes its stdin: the service shuts down gracefully
/// (`hydraExpress.shutdown()`, which removes its presence key) and exits; after
/// 5 s it is killed.
pub struct ExpressPeer {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    service_name: String,
    instance_id: String,
    port: u16,
    junk: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    log_path: PathBuf,
    finished: bool,
}

// Peers are shared with test threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ExpressPeer>();
};

impl fmt::Debug for ExpressPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpressPeer")
            .field("pid", &self.pid)
            .field("service_name", &self.service_name)
            .field("instance_id", &self.instance_id)
            .field("port", &self.port)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl ExpressPeer {
    /// Spawns `node interop/express-peer.js` with `HYDRA_REDIS_URL=redis_url` and
    /// `SERVICE_NAME=service_name` and waits (≤ 15 s) for its ready line.
    ///
    /// `HYDRA_REDIS_URL`, `HYDRA_SERVICE` and `SERVICE_NAME` are not inherited from
    /// this process. The child's stderr goes to a log file in the temp directory
    /// ([`ExpressPeer::log_path`]).
    ///
    /// # Errors
    ///
    /// A message when `interop/node_modules/hydra-express` is missing (run
    /// `npm ci --prefix interop`), when `node` cannot be run, when the process
    /// exits before it is ready (e.g. Redis unreachable: hydra-express exits 1
    /// after about 8 s) or when it is not ready within 15 s (it is then killed).
    /// The message quotes the tail of the stderr log.
    pub fn spawn(redis_url: &str, service_name: &str) -> Result<ExpressPeer, String> {
        let dir = NodePeer::interop_dir();
        let script = dir.join("express-peer.js");
        if !script.is_file() {
            return Err(format!("{} not found", script.display()));
        }
        if !dir.join("node_modules/hydra-express/package.json").is_file() {
            return Err(format!(
                "hydra-express is not installed in {}: run `npm ci --prefix interop` \
                 from the workspace root",
                dir.join("node_modules").display()
            ));
        }

        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("hydra-express-peer-{}-{n}.log", std::process::id()));
        let log = File::create(&log_path).map_err(|e| format!("cannot create log file {}: {e}", log_path.display()))?;

        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for var in ENV_VARS {
            cmd.env_remove(var);
        }
        cmd.env("HYDRA_REDIS_URL", redis_url).env("SERVICE_NAME", service_name);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run `node {}`: {e} (is Node.js installed?)", script.display()))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("child stdout was not captured".into());
        };

        let junk = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let reader = {
            let junk = Arc::clone(&junk);
            std::thread::Builder::new()
                .name("express-peer-stdout".into())
                .spawn(move || read_stdout(stdout, &junk, ready_tx))
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot start reader thread: {e}"));
            }
        };

        let mut peer = ExpressPeer {
            child,
            pid,
            stdin,
            service_name: String::new(),
            instance_id: String::new(),
            port: 0,
            junk,
            reader: Some(reader),
            log_path,
            finished: false,
        };

        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(ready) => {
                peer.service_name = ready.service_name;
                peer.instance_id = ready.instance_id;
                peer.port = ready.port;
                Ok(peer)
            }
            Err(RecvTimeoutError::Timeout) => {
                peer.kill();
                Err(format!(
                    "no ready line from node express-peer.js (pid {pid}) within {READY_TIMEOUT:?}{}",
                    peer.diagnostics()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed before the ready line: the process is exiting.
                let mut status = wait_exit(&mut peer.child, Duration::from_secs(2));
                if status.is_empty() {
                    status = "still running, killed".into();
                }
                peer.kill();
                Err(format!(
                    "node express-peer.js (pid {pid}) exited before it was ready ({status}){}",
                    peer.diagnostics()
                ))
            }
        }
    }

    /// The HTTP port the service listens on (all interfaces; connect to
    /// `127.0.0.1`). Also the `port` of its `hydra:service:nodes` entry.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The service's hydra instance id (32 hex digits).
    #[must_use]
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The service name as hydra registered it (hydra lowercases it).
    #[must_use]
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// OS process id of the Node process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the log file receiving the Node process's stderr.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the Node process's stderr log.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path, lines)
    }

    /// Sends SIGKILL to the Node process (crash simulation: no shutdown, its Redis
    /// keys stay until they expire; its routes stay for good) and waits for it.
    pub fn kill(&mut self) {
        if self.finished {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finished = true;
        self.stdin.take();
        self.join_reader();
    }

    /// Unexpected stdout lines and the stderr tail, for error messages.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        let junk = lock(&self.junk);
        if !junk.is_empty() {
            s.push_str("\n--- unexpected stdout lines ---\n");
            let skip = junk.len().saturating_sub(ERROR_LOG_LINES);
            for line in &junk[skip..] {
                s.push_str(line);
                s.push('\n');
            }
        }
        drop(junk);
        let tail = tail_of_file(&self.log_path, ERROR_LOG_LINES);
        let _ = write!(s, "\n--- stderr ({}) ---\n{tail}", self.log_path.display());
        s
    }

    /// Waits (briefly) for the reader thread, which ends when stdout closes.
    fn join_reader(&mut self) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        // A grandchild holding the stdout pipe would keep the thread alive: do not
        // wait for it forever, detach it instead.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

impl Drop for ExpressPeer {
    fn drop(&mut self) {
        if !self.finished {
            // Closing stdin asks express-peer.js to shut down and exit.
            self.stdin.take();
            if wait_exit(&mut self.child, GRACEFUL_EXIT).is_empty() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            self.finished = true;
            self.join_reader();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- express peer (pid {}) stderr, last {PANIC_LOG_LINES} lines of {} ---\n{}",
                self.pid,
                self.log_path.display(),
                tail_of_file(&self.log_path, PANIC_LOG_LINES)
            );
            let junk = lock(&self.junk);
            if !junk.is_empty() {
                eprintln!("--- express peer unexpected stdout lines ---");
                for line in junk.iter() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Waits up to `timeout` for the child to exit; describes its exit status, or
/// returns an empty string if it is still running (or cannot be waited for).
fn wait_exit(child: &mut Child, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return String::new(),
        }
    }
}

/// Parses the ready line; `None` if `line` is not one.
fn parse_ready(line: &str) -> Option<Ready> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v.get("ready") != Some(&Value::Bool(true)) {
        return None;
    }
    Some(Ready {
        service_name: v.get("serviceName")?.as_str()?.to_owned(),
        instance_id: v.get("instanceID")?.as_str()?.to_owned(),
        port: u16::try_from(v.get("port")?.as_u64()?).ok()?,
    })
}

/// The stdout reader thread: sends the ready line, keeps anything else for
/// diagnostics, drains stdout until EOF (so the child never blocks on it).
fn read_stdout(stdout: ChildStdout, junk: &Mutex<Vec<String>>, ready: Sender<Ready>) {
    let mut ready = Some(ready);
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        if ready.is_some()
            && let Some(r) = parse_ready(line)
        {
            if let Some(tx) = ready.take() {
                let _ = tx.send(r);
            }
            continue;
        }
        let mut junk = lock(junk);
        if junk.len() >= MAX_JUNK_LINES {
            junk.remove(0);
        }
        junk.push(line.to_owned());
    }
    // Dropping `ready` (if still unused) wakes a spawn still waiting.
    drop(ready);
}

/// The last `lines` lines of a (log) file; reads at most the last 64 KiB.
fn tail_of_file(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let len = file.metadata().map_or(0, |m| m.len());
    if len > MAX_BYTES {
        let _ = file.seek(SeekFrom::Start(len - MAX_BYTES));
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return format!("(cannot read {})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    all[skip..].join("\n")
}
