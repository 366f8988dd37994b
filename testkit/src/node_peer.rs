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
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{Value, json};

use crate::child::{self, ChildProcess, Launch, lock};

/// How long `spawn` waits for `{"ready":true}`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of [`NodePeer::call`].
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variables Node hydra reads at `init`; removed from the inherited
/// environment so tests are hermetic (pass them with `spawn_with_env`).
const HYDRA_ENV_VARS: [&str; 2] = ["HYDRA_REDIS_URL", "HYDRA_SERVICE"];

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

/// Calls waiting for a reply, by request id, shared with the stdout reader
/// thread. `None` once stdout has closed: no reply can come any more, so new
/// calls fail at once.
type Pending = Mutex<Option<HashMap<u64, Sender<Reply>>>>;

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
    process: ChildProcess,
    next_id: AtomicU64,
    pending: Arc<Pending>,
    events: Receiver<(String, Value)>,
}

// Calls may come from several threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NodePeer>();
};

impl fmt::Debug for NodePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodePeer")
            .field("pid", &self.process.pid())
            .field("log_path", &self.process.log_path())
            .finish_non_exhaustive()
    }
}

impl NodePeer {
    /// Path of the interop directory: `<workspace root>/interop`, the parent of the
    /// testkit crate's manifest directory.
    #[must_use]
    pub fn interop_dir() -> PathBuf {
        child::interop_dir()
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
        let launch = Launch {
            name: "node peer",
            stray_lines: "non-protocol stdout lines",
            script: "peer.js",
            package: "hydra",
            package_label: "Node hydra",
            env_remove: &HYDRA_ENV_VARS,
            env,
        };
        let pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let mut ready = Some(ready_tx);
        let on_line = {
            let pending = Arc::clone(&pending);
            move |line: &str| handle_line(line, &pending, &events_tx, &mut ready)
        };
        let on_eof = {
            let pending = Arc::clone(&pending);
            // stdout closed: the process is gone (or going). Fail all pending
            // calls now and refuse new ones.
            move || {
                let waiting = lock(&pending).take();
                for (_, tx) in waiting.into_iter().flatten() {
                    let _ = tx.send(Reply::Exited);
                }
            }
        };
        let process = ChildProcess::spawn(&launch, on_line, on_eof).map_err(NodeError::Spawn)?;
        let pid = process.pid();
        let mut peer = NodePeer {
            process,
            next_id: AtomicU64::new(1),
            pending,
            events,
        };

        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(()) => Ok(peer),
            Err(RecvTimeoutError::Timeout) => {
                peer.kill();
                Err(NodeError::Timeout(format!(
                    "no {{\"ready\":true}} from node peer.js (pid {pid}) within {READY_TIMEOUT:?}{}",
                    peer.process.diagnostics()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed before ready: the process is exiting.
                peer.kill();
                Err(NodeError::Spawn(format!(
                    "node peer.js (pid {pid}) exited before it was ready{}",
                    peer.process.diagnostics()
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
            let mut pending = lock(&self.pending);
            match pending.as_mut() {
                Some(map) => {
                    map.insert(id, tx);
                }
                None => return Err(self.exited_error(method)),
            }
        }

        let line = json!({ "id": id, "method": method, "args": args }).to_string();
        if let Err(e) = self.process.write_line(&line) {
            self.forget(id);
            return Err(NodeError::Exited(format!(
                "cannot send {method} to node peer (pid {}): {e}{}",
                self.process.pid(),
                self.process.diagnostics()
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
                    self.process.pid()
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
        self.process.pid()
    }

    /// Path of the log file receiving the Node process's stderr.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the Node process's stderr log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Sends SIGKILL to the Node process (crash simulation: no hydra shutdown, its
    /// Redis keys stay until they expire) and waits for it. Pending calls fail
    /// with [`NodeError::Exited`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Removes a pending call that will not be waited for any more.
    fn forget(&self, id: u64) {
        if let Some(map) = lock(&self.pending).as_mut() {
            map.remove(&id);
        }
    }

    /// The error for a call that can no longer be answered.
    fn exited_error(&self, method: &str) -> NodeError {
        NodeError::Exited(format!(
            "node peer (pid {}) exited before replying to {method}{}",
            self.process.pid(),
            self.process.diagnostics()
        ))
    }
}

/// One stdout line, on the reader thread: routes a reply by id, queues an
/// event, signals readiness. Returns `false` for a line that is not part of the
/// protocol.
fn handle_line(
    line: &str,
    pending: &Pending,
    events: &Sender<(String, Value)>,
    ready: &mut Option<Sender<()>>,
) -> bool {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    if let Some(id) = obj.get("id").and_then(Value::as_u64) {
        let reply = if let Some(err) = obj.get("err") {
            Reply::Err(err.as_str().map_or_else(|| err.to_string(), str::to_owned))
        } else {
            Reply::Ok(obj.remove("ok").unwrap_or(Value::Null))
        };
        let waiter = lock(pending).as_mut().and_then(|m| m.remove(&id));
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
