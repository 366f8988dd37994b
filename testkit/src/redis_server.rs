//! A private `redis-server` on a free loopback port, in the manner of redis-rs's
//! own test server: started per test, waited on until it answers, killed on drop,
//! its log kept and printed when the test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// How long a freshly started server gets to answer `PING`.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by one test.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port with persistence off (`--save ""`).
    ///
    /// Panics with a clear message when `redis-server` is not installed:
    /// `scripts/test` installs it.
    pub fn start() -> RedisServer {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments, e.g.
    /// `["--requirepass", "secret"]`.
    pub fn start_with_args(extra_args: &[&str]) -> RedisServer {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hydra-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create redis test directory");
        let mut server = RedisServer {
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        // Another process may grab the port between our probe and redis binding it;
        // retry on a new port a few times rather than fail the test.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn_and_wait() {
                return server;
            }
        }
        panic!("redis-server did not start; log:\n{}", server.log_tail(40));
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// OS process ID of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server (SIGSTOP) so that connections stay open but nothing
    /// answers: a half-open link as seen from clients. [`RedisServer::resume`] thaws it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("server is running").to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Kills the server (SIGKILL, so all data is gone) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new empty one on the same port, waiting until
    /// it answers. Panics if it does not come back within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_DEADLINE;
        // The port can linger briefly after the kill; keep trying until the deadline.
        while Instant::now() < deadline {
            if self.spawn_and_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}; log:\n{}",
            self.port,
            self.log_tail(40)
        );
    }

    /// Sends one command (inline form; arguments must not contain spaces or
    /// newlines) and returns the raw RESP reply. For harness checks only; tests
    /// use the redis crate.
    pub fn raw_command(&self, command: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(format!("{command}\r\n").as_bytes())?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let _ = stream.shutdown(Shutdown::Both);
        Ok(line.trim_end().to_string())
    }

    /// Path of the server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn_and_wait(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not installed (run scripts/test, or `apt-get install redis-server`)")
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: usually the port was taken
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT"); // a frozen server cannot be killed cleanly otherwise
        }
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}, {}) ---\n{}",
                self.port,
                self.log_path().display(),
                self.log_tail(30)
            );
        }
        self.stop();
        remove_dir(&self.dir);
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // A server started with `--requirepass` answers `-NOAUTH ...`: it is up.
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && (line == "+PONG\r\n" || line.starts_with("-NOAUTH"))
}
