//! A real Node `hydra@1.9.3` process, driven over JSON lines by `interop/peer.js`.
//!
//! Protocol (one JSON value per line; see the header of `interop/peer.js`):
//!
//! - child → us, once at start: `{"ready":true}`
//! - us → child: `{"id":<n>,"method":"<name>","args":[...]}`
//! - child → us: `{"id":<n>,"ok":<result>}` or `{"id":<n>,"err":"<message>"}`
//! - child → us, any time: `{"event":"message"|"log"|"metric","data":<value>}`
//!
//! Replies are routed to the waiting call by id, so calls from several threads may
//! be in flight at once. The child's stderr goes to a log file in the temp
//! directory, printed (its tail) when a test panics while the peer is alive.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{Value, json};

/// How long `spawn` waits for `{"ready":true}`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of [`NodePeer::call`].
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Drop` waits for a graceful exit after closing stdin.
const GRACEFUL_EXIT: Duration = Duration::from_secs(5);
/// Lines of the stderr log printed when a test panics.
const PANIC_LOG_LINES: usize = 50;
/// Lines of the stderr log quoted in spawn/exit errors.
const ERROR_LOG_LINES: usize = 20;
/// How many non-protocol stdout lines are kept for diagnostics.
const MAX_JUNK_LINES: usize = 100;
/// Environment variables Node hydra reads at `init`; removed from the inherited
/// environment so tests are hermetic (pass them with `spawn_with_env`).
const HYDRA_ENV_VARS: [&str; 2] = ["HYDRA_REDIS_URL", "HYDRA_SERVICE"];

static NEXT_LOG: AtomicU64 = AtomicU64::new(0);

/// Why a [`NodePeer`] operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The Node process could not be started or did not become ready.
    Spawn(String),
    /// No reply (or no readiness signal) within the allowed time.
    Timeout(String),
    /// Node answered with an error: the thrown error's or rejection's message.
    Call(String),
    /// The Node process exited (or closed its stdout) before replying.
    Exited(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Spawn(m) => write!(f, "node peer failed to start: {m}"),
            NodeError::Timeout(m) => write!(f, "node peer timed out: {m}"),
            NodeError::Call(m) => write!(f, "node hydra call failed: {m}"),
            NodeError::Exited(m) => write!(f, "node peer exited: {m}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// A reply to one call, as routed by the reader thread.
enum Reply {
    Ok(Value),
    Err(String),
    Exited,
}

/// State shared between the peer handle and its stdout reader thread.
struct Shared {
    /// Calls waiting for a reply, by request id. `None` once stdout has closed:
    /// no reply can come any more, so new calls fail at once.
    pending: Mutex<Option<HashMap<u64, Sender<Reply>>>>,
    /// Stdout lines that are not part of the protocol (kept for diagnostics).
    junk: Mutex<Vec<String>>,
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not make the
/// peer unusable for its `Drop`).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A real Node `hydra@1.9.3` process driven over JSON lines (`interop/peer.js`).
///
/// `hydra` in Node is a singleton, so one `NodePeer` is one Node hydra instance.
/// Calls map to `hydra.<method>(...args)` (see `interop/peer.js` for the special
/// methods `init`, `createUMFMessage`, `toShort`, `signMessage`, `validateUMF`,
/// `parseRoute`, `getProperty`, `ping`, `shutdown` and `exit`). Hydra's `message`,
/// `log` and `metric` events are queued and read with [`NodePeer::next_event`] /
/// [`NodePeer::wait_event`].
///
/// Dropping the peer closes its stdin: `peer.js` then shuts hydra down gracefully
/// (if a service is registered) and exits; after 5 s it is killed.
pub struct NodePeer {
    child: Child,
    pid: u32,
    stdin: Mutex<Option<ChildStdin>>,
    next_id: AtomicU64,
    shared: Arc<Shared>,
    events: Receiver<(String, Value)>,
    reader: Option<JoinHandle<()>>,
    log_path: PathBuf,
    finished: bool,
}

// Calls may come from several threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NodePeer>();
};

impl fmt::Debug for NodePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodePeer")
            .field("pid", &self.pid)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl NodePeer {
    /// Path of the interop directory: `<workspace root>/interop`, the parent of the
    /// testkit crate's manifest directory.
    #[must_use]
    pub fn interop_dir() -> PathBuf {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest.parent().unwrap_or(manifest).join("interop")
    }

    /// Spawns `node interop/peer.js` and waits (≤ 10 s) for `{"ready":true}`.
    ///
    /// Fails with [`NodeError::Spawn`] when `interop/node_modules/hydra` is missing
    /// (run `npm ci --prefix interop`; `scripts/test` does it) or `node` cannot be
    /// run. The child's stderr goes to a log file in the temp directory
    /// ([`NodePeer::log_path`]). `HYDRA_REDIS_URL` and `HYDRA_SERVICE` are not
    /// inherited from this process; use [`NodePeer::spawn_with_env`] to set them.
    ///
    /// # Errors
    ///
    /// [`NodeError::Spawn`] when the process cannot be started or exits before it is
    /// ready, [`NodeError::Timeout`] when it is not ready within 10 s (it is killed).
    pub fn spawn() -> Result<NodePeer, NodeError> {
        Self::spawn_with_env(&[])
    }

    /// Same as [`NodePeer::spawn`], with extra environment variables for the Node
    /// process (e.g. `HYDRA_REDIS_URL`).
    ///
    /// # Errors
    ///
    /// As [`NodePeer::spawn`].
    pub fn spawn_with_env(env: &[(&str, &str)]) -> Result<NodePeer, NodeError> {
        let dir = Self::interop_dir();
        let script = dir.join("peer.js");
        if !script.is_file() {
            return Err(NodeError::Spawn(format!("{} not found", script.display())));
        }
        if !dir.join("node_modules/hydra/package.json").is_file() {
            return Err(NodeError::Spawn(format!(
                "Node hydra is not installed in {}: run `npm ci --prefix interop` \
                 from the workspace root (scripts/test does it)",
                dir.join("node_modules").display()
            )));
        }

        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("hydra-node-peer-{}-{n}.log", std::process::id()));
        let log = File::create(&log_path)
            .map_err(|e| NodeError::Spawn(format!("cannot create log file {}: {e}", log_path.display())))?;

        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for var in HYDRA_ENV_VARS {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().map_err(|e| {
            NodeError::Spawn(format!(
                "cannot run `node {}`: {e} (is Node.js installed?)",
                script.display()
            ))
        })?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NodeError::Spawn("child stdout was not captured".into()));
        };

        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            junk: Mutex::new(Vec::new()),
        });
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let reader = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("node-peer-stdout".into())
                .spawn(move || read_stdout(stdout, &shared, &events_tx, ready_tx))
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NodeError::Spawn(format!("cannot start reader thread: {e}")));
            }
        };

        let mut peer = NodePeer {
            child,
            pid,
            stdin: Mutex::new(stdin),
            next_id: AtomicU64::new(1),
            shared,
            events,
            reader: Some(reader),
            log_path,
            finished: false,
        };

        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(()) => Ok(peer),
            Err(RecvTimeoutError::Timeout) => {
                peer.kill();
                Err(NodeError::Timeout(format!(
                    "no {{\"ready\":true}} from node peer.js (pid {pid}) within {READY_TIMEOUT:?}{}",
                    peer.diagnostics()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed before ready: the process is exiting.
                peer.kill();
                Err(NodeError::Spawn(format!(
                    "node peer.js (pid {pid}) exited before it was ready{}",
                    peer.diagnostics()
                )))
            }
        }
    }

    /// Calls `hydra.<method>(...args)` in the Node process and waits up to `timeout`
    /// for the reply with the same id.
    ///
    /// `args` must be a JSON array (`Value::Null` counts as no arguments). Returns
    /// the `ok` value (`null` for an `undefined` result), [`NodeError::Call`] with
    /// the error text when the call throws or rejects, [`NodeError::Exited`] as
    /// soon as the process has gone, or [`NodeError::Timeout`].
    ///
    /// # Errors
    ///
    /// [`NodeError::Call`] for an error reply (or `args` not an array),
    /// [`NodeError::Exited`] when the process is gone, [`NodeError::Timeout`] when no
    /// reply came within `timeout` (a late reply is then discarded).
    pub fn call_with_timeout(&self, method: &str, args: Value, timeout: Duration) -> Result<Value, NodeError> {
        let args = match args {
            Value::Null => Value::Array(Vec::new()),
            Value::Array(a) => Value::Array(a),
            other => {
                return Err(NodeError::Call(format!(
                    "args of {method} must be a JSON array, got {other}"
                )));
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        {
            let mut pending = lock(&self.shared.pending);
            match pending.as_mut() {
                Some(map) => {
                    map.insert(id, tx);
                }
                None => return Err(self.exited_error(method)),
            }
        }

        let mut line = json!({ "id": id, "method": method, "args": args }).to_string();
        line.push('\n');
        let written = {
            let mut stdin = lock(&self.stdin);
            match stdin.as_mut() {
                Some(w) => w.write_all(line.as_bytes()).and_then(|()| w.flush()),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "stdin already closed",
                )),
            }
        };
        if let Err(e) = written {
            self.forget(id);
            return Err(NodeError::Exited(format!(
                "cannot send {method} to node peer (pid {}): {e}{}",
                self.pid,
                self.diagnostics()
            )));
        }

        match rx.recv_timeout(timeout) {
            Ok(Reply::Ok(v)) => Ok(v),
            Ok(Reply::Err(e)) => Err(NodeError::Call(e)),
            Ok(Reply::Exited) | Err(RecvTimeoutError::Disconnected) => Err(self.exited_error(method)),
            Err(RecvTimeoutError::Timeout) => {
                self.forget(id);
                Err(NodeError::Timeout(format!(
                    "no reply to {method} (id {id}) from node peer (pid {}) within {timeout:?}",
                    self.pid
                )))
            }
        }
    }

    /// [`NodePeer::call_with_timeout`] with a 10 s timeout.
    ///
    /// # Errors
    ///
    /// As [`NodePeer::call_with_timeout`].
    pub fn call(&self, method: &str, args: Value) -> Result<Value, NodeError> {
        self.call_with_timeout(method, args, CALL_TIMEOUT)
    }

    /// The next event line (`message`, `log`, `metric`) as `(event name, data)`,
    /// waiting up to `timeout`. `None` on timeout, or at once when the process has
    /// exited and all its events have been read.
    pub fn next_event(&self, timeout: Duration) -> Option<(String, Value)> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Waits up to `timeout` for the next event named `name`, discarding events
    /// with other names; returns its data.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, data) = self.events.recv_timeout(left).ok()?;
            if event == name {
                return Some(data);
            }
        }
    }

    /// OS process id of the Node process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the log file receiving the Node process's stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the Node process's stderr log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path, lines)
    }

    /// Sends SIGKILL to the Node process (crash simulation: no hydra shutdown, its
    /// Redis keys stay until they expire) and waits for it. Pending calls fail
    /// with [`NodeError::Exited`].
    pub fn kill(&mut self) {
        if self.finished {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finished = true;
        lock(&self.stdin).take();
        self.join_reader();
    }

    /// Removes a pending call that will not be waited for any more.
    fn forget(&self, id: u64) {
        if let Some(map) = lock(&self.shared.pending).as_mut() {
            map.remove(&id);
        }
    }

    /// The error for a call that can no longer be answered.
    fn exited_error(&self, method: &str) -> NodeError {
        NodeError::Exited(format!(
            "node peer (pid {}) exited before replying to {method}{}",
            self.pid,
            self.diagnostics()
        ))
    }

    /// Stray stdout lines and the stderr tail, for error messages.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        let junk = lock(&self.shared.junk);
        if !junk.is_empty() {
            s.push_str("\n--- non-protocol stdout lines ---\n");
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

impl Drop for NodePeer {
    fn drop(&mut self) {
        if !self.finished {
            // Closing stdin asks peer.js to shut hydra down and exit.
            lock(&self.stdin).take();
            let deadline = Instant::now() + GRACEFUL_EXIT;
            loop {
                match self.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break;
                    }
                }
            }
            self.finished = true;
            self.join_reader();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- node peer (pid {}) stderr, last {PANIC_LOG_LINES} lines of {} ---\n{}",
                self.pid,
                self.log_path.display(),
                tail_of_file(&self.log_path, PANIC_LOG_LINES)
            );
            let junk = lock(&self.shared.junk);
            if !junk.is_empty() {
                eprintln!("--- node peer non-protocol stdout lines ---");
                for line in junk.iter() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// The stdout reader thread: routes replies by id, queues events, signals
/// readiness; on EOF fails every pending call.
fn read_stdout(stdout: ChildStdout, shared: &Shared, events: &Sender<(String, Value)>, ready: Sender<()>) {
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
        let parsed: Option<Value> = serde_json::from_str(line).ok();
        let handled = match parsed {
            Some(Value::Object(mut obj)) => {
                if let Some(id) = obj.get("id").and_then(Value::as_u64) {
                    let reply = if let Some(err) = obj.get("err") {
                        Reply::Err(err.as_str().map_or_else(|| err.to_string(), str::to_owned))
                    } else {
                        Reply::Ok(obj.remove("ok").unwrap_or(Value::Null))
                    };
                    let waiter = lock(&shared.pending).as_mut().and_then(|m| m.remove(&id));
                    // A reply nobody waits for (timed out) is dropped.
                    if let Some(tx) = waiter {
                        let _ = tx.send(reply);
                    }
                    true
                } else if let Some(Value::String(name)) = obj.remove("event") {
                    let data = obj.remove("data").unwrap_or(Value::Null);
                    let _ = events.send((name, data));
                    true
                } else if obj.get("ready") == Some(&Value::Bool(true)) {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    true
                } else {
                    // e.g. {"id":null,"err":"bad request: ..."}
                    false
                }
            }
            _ => false,
        };
        if !handled {
            let mut junk = lock(&shared.junk);
            if junk.len() >= MAX_JUNK_LINES {
                junk.remove(0);
            }
            junk.push(line.to_owned());
        }
    }
    // stdout closed: the process is gone (or going). Fail all pending calls now
    // and refuse new ones; dropping `ready` wakes a spawn still waiting.
    let pending = lock(&shared.pending).take();
    for (_, tx) in pending.into_iter().flatten() {
        let _ = tx.send(Reply::Exited);
    }
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
