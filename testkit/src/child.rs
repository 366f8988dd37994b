//! A Node.js child process running a script of `interop/`, driven over its stdin
//! and stdout (the Node peers are such processes): its stderr goes to a log file in the temp directory, a reader thread takes its
//! stdout line by line (lines nobody understood are kept for diagnostics), and
//! dropping it closes stdin and waits (≤ 5 s) for a graceful exit before killing
//! it. When a test panics while the process is alive, the tail of the log and
//! the stray stdout lines are printed.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long `Drop` waits for a graceful exit after closing stdin.
const GRACEFUL_EXIT: Duration = Duration::from_secs(5);
/// Lines of the stderr log printed when a test panics.
const PANIC_LOG_LINES: usize = 50;
/// Lines of the stderr log (and stray stdout lines) quoted in error messages.
const ERROR_LOG_LINES: usize = 20;
/// How many stray stdout lines are kept for diagnostics.
const MAX_STRAY_LINES: usize = 100;
/// How long `kill` and `Drop` wait for the stdout reader thread.
const READER_JOIN: Duration = Duration::from_secs(1);

static NEXT_LOG: AtomicU64 = AtomicU64::new(0);

/// Locks a mutex, ignoring poisoning (a panicking test thread must not make the
/// process unusable for its `Drop`).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What to run: a script in `interop/` with `node`, and how to name it.
pub(crate) struct Launch<'a> {
    /// The process in messages, e.g. `node peer`; it also names the log file
    /// (`hydra-node-peer-<pid>-<n>.log`) and the reader thread (`node-peer-stdout`).
    pub name: &'static str,
    /// What stray stdout lines are called in messages, e.g. `non-protocol stdout lines`.
    pub stray_lines: &'static str,
    /// The script's file name in `interop/`, e.g. `peer.js`.
    pub script: &'a str,
    /// The npm package the script needs in `interop/node_modules`, e.g. `hydra`.
    pub package: &'a str,
    /// How messages name that package, e.g. `Node hydra`.
    pub package_label: &'a str,
    /// Environment variables not inherited from this process (tests stay hermetic).
    pub env_remove: &'a [&'a str],
    /// Environment variables set for the child.
    pub env: &'a [(&'a str, &'a str)],
}

/// `<workspace root>/interop`, the parent of the testkit crate's manifest
/// directory.
pub(crate) fn interop_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("interop")
}

/// A running child process with its stdin, stderr log and stdout reader thread.
pub(crate) struct ChildProcess {
    name: &'static str,
    stray_lines: &'static str,
    child: Child,
    pid: u32,
    stdin: Mutex<Option<ChildStdin>>,
    /// Stdout lines the line handler did not take, oldest first.
    stray: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    log_path: PathBuf,
    /// Set once the process has been waited for (killed or exited).
    finished: bool,
}

impl ChildProcess {
    /// Runs `node interop/<script>` with stdin and stdout piped and stderr to a
    /// fresh log file, and starts a reader thread that passes every non-empty
    /// stdout line to `on_line` (a line it returns `false` for is kept as a stray
    /// line) and calls `on_eof` once stdout closes; `on_line` is dropped after
    /// that.
    ///
    /// Fails when the script or its npm package is missing (run `npm ci --prefix
    /// interop`) or `node` cannot be run.
    pub(crate) fn spawn(
        launch: &Launch<'_>,
        mut on_line: impl FnMut(&str) -> bool + Send + 'static,
        on_eof: impl FnOnce() + Send + 'static,
    ) -> Result<ChildProcess, String> {
        let dir = interop_dir();
        let script = dir.join(launch.script);
        if !script.is_file() {
            return Err(format!("{} not found", script.display()));
        }
        let package = dir.join("node_modules").join(launch.package).join("package.json");
        if !package.is_file() {
            return Err(format!(
                "{} is not installed in {}: run `npm ci --prefix interop` \
                 from the workspace root (scripts/test does it)",
                launch.package_label,
                dir.join("node_modules").display()
            ));
        }

        let slug = launch.name.replace(' ', "-");
        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("hydra-{slug}-{}-{n}.log", std::process::id()));
        let log = File::create(&log_path).map_err(|e| format!("cannot create log file {}: {e}", log_path.display()))?;

        let mut command = Command::new("node");
        command
            .arg(&script)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for var in launch.env_remove {
            command.env_remove(var);
        }
        command.envs(launch.env.iter().copied());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run `node {}`: {e} (is Node.js installed?)", script.display()))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("child stdout was not captured".into());
        };

        let stray = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let stray = Arc::clone(&stray);
            std::thread::Builder::new()
                .name(format!("{slug}-stdout"))
                .spawn(move || {
                    read_lines(stdout, &stray, &mut on_line);
                    on_eof();
                    drop(on_line);
                })
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot start reader thread: {e}"));
            }
        };
        Ok(ChildProcess {
            name: launch.name,
            stray_lines: launch.stray_lines,
            child,
            pid,
            stdin: Mutex::new(stdin),
            stray,
            reader: Some(reader),
            log_path,
            finished: false,
        })
    }

    /// OS process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the log file receiving the process's stderr.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the stderr log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path, lines)
    }

    /// Writes `line` and a newline to the process's stdin and flushes it; fails
    /// with `BrokenPipe` once stdin has been closed.
    pub(crate) fn write_line(&self, line: &str) -> io::Result<()> {
        let mut stdin = lock(&self.stdin);
        match stdin.as_mut() {
            Some(w) => {
                let mut bytes = Vec::with_capacity(line.len() + 1);
                bytes.extend_from_slice(line.as_bytes());
                bytes.push(b'\n');
                w.write_all(&bytes).and_then(|()| w.flush())
            }
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin already closed")),
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status,
    /// or `None` while it is still running (or cannot be waited for).
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    /// Sends SIGKILL and waits for the process, closes its stdin and waits
    /// (briefly) for the reader thread. Does nothing the second time.
    pub(crate) fn kill(&mut self) {
        if self.finished {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finished = true;
        lock(&self.stdin).take();
        self.join_reader();
    }

    /// The last stray stdout lines and the stderr tail, for error messages.
    pub(crate) fn diagnostics(&self) -> String {
        let mut s = String::new();
        let stray = lock(&self.stray);
        if !stray.is_empty() {
            let _ = writeln!(s, "\n--- {} ---", self.stray_lines);
            let skip = stray.len().saturating_sub(ERROR_LOG_LINES);
            for line in &stray[skip..] {
                s.push_str(line);
                s.push('\n');
            }
        }
        drop(stray);
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
        let deadline = Instant::now() + READER_JOIN;
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if !self.finished {
            // Closing stdin asks the process to shut down and exit.
            lock(&self.stdin).take();
            if self.wait_exit(GRACEFUL_EXIT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            self.finished = true;
            self.join_reader();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} (pid {}) stderr, last {PANIC_LOG_LINES} lines of {} ---\n{}",
                self.name,
                self.pid,
                self.log_path.display(),
                tail_of_file(&self.log_path, PANIC_LOG_LINES)
            );
            let stray = lock(&self.stray);
            if !stray.is_empty() {
                eprintln!("--- {} {} ---", self.name, self.stray_lines);
                for line in stray.iter() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Reads stdout until EOF (so the child never blocks on it), passing every
/// non-empty line to `on_line` and keeping the last `MAX_STRAY_LINES` it did not
/// take in `stray`.
fn read_lines(stdout: ChildStdout, stray: &Mutex<Vec<String>>, on_line: &mut impl FnMut(&str) -> bool) {
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
        if line.trim().is_empty() || on_line(line) {
            continue;
        }
        let mut stray = lock(stray);
        if stray.len() >= MAX_STRAY_LINES {
            stray.remove(0);
        }
        stray.push(line.to_owned());
    }
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
