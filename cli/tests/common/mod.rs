//! What every hydra-cli test needs: the built binary run as a real process,
//! with its own empty HOME (so ~/.hydra-cli is the test's) and a deadline.
#![allow(dead_code)] // each test file uses a part

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// No CLI command in a test may take longer than this.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A finished hydra-cli run.
#[derive(Debug)]
pub struct Run {
    /// The exit status (None when killed).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// stdout as the one JSON document `--json` promises (panics with the output otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts exit status 0 and returns self.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "hydra-cli failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A private home directory, removed on drop.
pub struct Home {
    path: PathBuf,
}

impl Home {
    /// A new empty directory under the system's temp dir.
    pub fn new() -> Home {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "hydra-cli-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a test home");
        Home { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `~/.hydra-cli` in it.
    pub fn profile_file(&self) -> PathBuf {
        self.path.join(".hydra-cli")
    }

    /// Writes a file in it and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The hydra-cli binary Cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_hydra-cli")
}

/// A hydra-cli command line with a clean environment: HOME set to `home`,
/// no HYDRA_REDIS_URL and no NO_COLOR from the caller.
pub fn command(home: &Home, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("HOME", home.path())
        .env_remove("HYDRA_REDIS_URL")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `hydra-cli <args>` against `redis_url` (passed as --redis when Some).
pub fn run(home: &Home, redis_url: Option<&str>, args: &[&str]) -> Run {
    let mut all: Vec<&str> = Vec::new();
    if let Some(url) = redis_url {
        all.extend(["--redis", url]);
    }
    all.extend_from_slice(args);
    finish(command(home, &all))
}

/// Runs a prepared command to the end, killing it at [`DEADLINE`]. Output is
/// read while it runs, so a long one cannot fill the pipe and stall it.
pub fn finish(mut command: Command) -> Run {
    let mut child = command.spawn().expect("start hydra-cli");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for hydra-cli") {
            Some(status) => break Some(status),
            None if started.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Run {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Waits until `check` holds, up to `timeout`.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}
