//! Child processes for the router's benchmark programs (the router, echo
//! services): started with a readiness line on stdout, output drained so a
//! full pipe never blocks them, stopped by closing stdin or SIGTERM. Included
//! by each benchmark with `#[path = "support/process.rs"] mod support;`.

use std::error::Error;
use std::io::Write;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

/// Longest a child may take to say it is ready.
const START_DEADLINE: Duration = Duration::from_secs(30);

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// A child process whose output is drained by threads (so it never blocks on
/// a full pipe), keeping the last lines of stderr for error messages. Killed
/// on drop if still running.
pub struct Process {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Spawns `command` and waits (at most `START_DEADLINE`) for a stdout line
    /// starting with `prefix`; returns the process and the rest of that line.
    pub fn start(name: &'static str, mut command: Command, prefix: &'static str) -> BoxResult<(Process, String)> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the {name}: {e}"))?;
        let stdin = child.stdin.take();
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if tail.len() == 20 {
                        tail.remove(0);
                    }
                    tail.push(line);
                }
            });
        }
        let (ready_tx, ready_rx) = bounded(1);
        if let Some(stdout) = child.stdout.take() {
            thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                for line in lines.by_ref().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let _ = ready_tx.send(rest.trim().to_string());
                        break;
                    }
                }
                for _ in lines {}
            });
        }
        let mut process = Process {
            name,
            child,
            stdin,
            stderr_tail,
        };
        match ready_rx.recv_timeout(START_DEADLINE) {
            Ok(rest) => Ok((process, rest)),
            Err(_) => {
                process.kill();
                Err(format!(
                    "the {name} did not print `{prefix}…` within {START_DEADLINE:?}; its stderr:\n{}",
                    process.stderr_tail()
                )
                .into())
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_tail(&self) -> String {
        self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// Asks it to stop (closes stdin; SIGTERM with `term`) and waits up to
    /// 10 s, then kills it.
    pub fn stop(&mut self, term: bool) {
        self.stdin = None;
        if term {
            let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!(
            "{}: the {} did not stop within 10 s; killing it",
            program_name(),
            self.name
        );
        self.kill();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// The `hydra-router` binary of this program's profile:
/// `target/<profile>/examples/bench_x` → `target/<profile>/hydra-router`.
pub fn router_binary() -> BoxResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("hydra-router"))
        .ok_or("cannot tell the target directory from this program's path")?;
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: build it first with `cargo build --release -p hydra-router` \
             (`cargo build -p hydra-router` for a debug run)",
            binary.display()
        )
        .into());
    }
    Ok(binary)
}

/// A running `hydra-router` child.
pub struct RouterChild {
    /// The process.
    pub process: Process,
    /// The port it listens on.
    pub port: u16,
    /// The binary it runs.
    pub binary: PathBuf,
    /// Its config file's directory (removed when the child is dropped).
    _config_dir: TempDir,
}

/// Starts the `hydra-router` binary of this program's profile on `redis_url`,
/// configured by a file (127.0.0.1, any free port), and waits until it listens.
pub fn start_router(redis_url: &str) -> BoxResult<RouterChild> {
    let binary = router_binary()?;
    let dir = TempDir::new()?;
    let config_path = dir.0.join("config.json");
    let config = serde_json::json!({
        "hydra": { "serviceIP": "127.0.0.1", "servicePort": 0, "redis": { "url": redis_url } }
    });
    std::fs::write(&config_path, config.to_string())?;
    let mut command = Command::new(&binary);
    command.arg("--config").arg(&config_path).env_remove("HYDRA_REDIS_URL");
    let (process, port) = Process::start("router", command, "hydra-router listening on port ")?;
    Ok(RouterChild {
        process,
        port: port.parse()?,
        binary,
        _config_dir: dir,
    })
}

/// Starts this program again as the echo service (`flag redis_url`) and
/// waits for its line starting with `ready`; returns the rest of that line.
pub fn start_echo_child(flag: &str, redis_url: &str) -> BoxResult<(Process, String)> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg(flag).arg(redis_url);
    let (process, rest) = Process::start("echo", command, "ready")?;
    Ok((process, rest.trim().to_string()))
}

/// A benchmark's `main`, first step: when this program was started as its
/// own child (`<flag> <redis_url>`, see [`start_echo_child`]), runs `serve`
/// with the Redis URL and returns the exit code; `None` otherwise.
pub fn child_mode(flag: &str, serve: impl FnOnce(&str) -> BoxResult<()>) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(flag) {
        return None;
    }
    Some(match serve(args.get(2).map(String::as_str).unwrap_or_default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} echo: {e}", program_name());
            ExitCode::FAILURE
        }
    })
}

/// The message echo of the WebSocket benchmarks: registers `service` in
/// `redis_url`, answers every message with `{"echo": <body>}`, prints
/// `ready`, and stops when stdin closes.
#[allow(dead_code)] // bench_router's echo serves HTTP instead
pub fn serve_message_echo(redis_url: &str, service: &str) -> BoxResult<()> {
    let hydra = hydra::Hydra::init(
        hydra::Config::builder()
            .service_name(service)
            .service_ip("127.0.0.1")
            .redis_url(redis_url)
            .build()?,
    )?;
    hydra.register_service()?;
    hydra.on_message(|h, message| {
        h.reply(&message, serde_json::json!({ "echo": message.body }))?;
        Ok(())
    })?;
    println!("ready");
    std::io::stdout().flush()?;
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    hydra.shutdown()?;
    Ok(())
}

/// A directory removed on drop (the router's config file).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("{}-{}", program_name(), std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This program's file name (`bench_router`), for messages and temp names.
pub fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "bench".into())
}
