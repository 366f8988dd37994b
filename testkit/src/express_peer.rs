//! A real Node `hydra-express@1.9.5` service (on `hydra@1.9.3`), run by
//! `interop/express-peer.js`, for HTTP interop tests.
//!
//! The child prints one line on stdout once its port listens and its routes are in
//! Redis: `{"ready":true,"serviceName":…,"instanceID":…,"port":…}`. Its routes
//! (all under `/v1/express`) are documented in the header of
//! `interop/express-peer.js`. The child's stderr goes to a log file in the temp
//! directory, whose tail is printed when a test panics while the peer is alive.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use serde_json::Value;

use crate::child::{ChildProcess, Launch};

/// How long `spawn` waits for the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Environment variables the Node side reads; removed from the inherited
/// environment so tests are hermetic.
const ENV_VARS: [&str; 3] = ["HYDRA_REDIS_URL", "HYDRA_SERVICE", "SERVICE_NAME"];

/// What the ready line announced.
struct Ready {
    service_name: String,
    instance_id: String,
    port: u16,
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
    process: ChildProcess,
    service_name: String,
    instance_id: String,
    port: u16,
}

// Peers are shared with test threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ExpressPeer>();
};

impl fmt::Debug for ExpressPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpressPeer")
            .field("pid", &self.process.pid())
            .field("service_name", &self.service_name)
            .field("instance_id", &self.instance_id)
            .field("port", &self.port)
            .field("log_path", &self.process.log_path())
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
        let launch = Launch {
            name: "express peer",
            stray_lines: "unexpected stdout lines",
            script: "express-peer.js",
            package: "hydra-express",
            package_label: "hydra-express",
            env_remove: &ENV_VARS,
            env: &[("HYDRA_REDIS_URL", redis_url), ("SERVICE_NAME", service_name)],
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let mut ready = Some(ready_tx);
        // The ready line goes to `spawn`; anything else is unexpected.
        let on_line = move |line: &str| {
            if ready.is_none() {
                return false;
            }
            let Some(r) = parse_ready(line) else {
                return false;
            };
            if let Some(tx) = ready.take() {
                let _ = tx.send(r);
            }
            true
        };
        let mut process = ChildProcess::spawn(&launch, on_line, || {})?;
        let pid = process.pid();

        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(ready) => Ok(ExpressPeer {
                process,
                service_name: ready.service_name,
                instance_id: ready.instance_id,
                port: ready.port,
            }),
            Err(RecvTimeoutError::Timeout) => {
                process.kill();
                Err(format!(
                    "no ready line from node express-peer.js (pid {pid}) within {READY_TIMEOUT:?}{}",
                    process.diagnostics()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed before the ready line: the process is exiting.
                let status = process
                    .wait_exit(Duration::from_secs(2))
                    .map_or_else(|| "still running, killed".to_string(), |s| s.to_string());
                process.kill();
                Err(format!(
                    "node express-peer.js (pid {pid}) exited before it was ready ({status}){}",
                    process.diagnostics()
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
        self.process.pid()
    }

    /// Path of the log file receiving the Node process's stderr.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the Node process's stderr log.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Sends SIGKILL to the Node process (crash simulation: no shutdown, its Redis
    /// keys stay until they expire; its routes stay for good) and waits for it.
    pub fn kill(&mut self) {
        self.process.kill();
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
