//! The C library as its users install it: `make -C ffi install
//! PREFIX=<tmp>` (a release build carrying the soname), then programs built
//! out of the tree against that prefix only, each talking to a Rust echo
//! service in this process over a private redis-server:
//!
//! - a C program built with `pkg-config --cflags --libs hydra`;
//! - the same built by CMake with `find_package(hydra)`, linked to the shared
//!   (`hydra::hydra`) and the static (`hydra::hydra_static`) library;
//! - the Go example (`examples/go`, cgo with `#cgo pkg-config: hydra`), which
//!   also asks a Node hydra 1.9.3 service and answers a Rust request.
//!
//! Needs make, cc, pkg-config, cmake and readelf (scripts/test installs them)
//! and, for the Go test, a Go toolchain: without one that test says so on
//! stderr and passes, except when `CI` is set (scripts/test installs
//! golang-go when it runs as root).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, unbounded};
use hydra_rs::{Config, Hydra};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

/// Building and running a program (cmake, go build, a request) may take this long.
const DEADLINE: Duration = Duration::from_secs(300);
/// `make install` from a cold target is a release build of every dependency:
/// minutes on a busy 2-core machine (7 min 45 s seen).
const INSTALL_DEADLINE: Duration = Duration::from_secs(1800);
const WAIT: Duration = Duration::from_secs(20);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A fresh directory under cargo's per-test-target temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = process_scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `target/tmp/install/<pid>`: this test process's own (cargo-nextest runs
/// each test in a process of its own, several at once, and two `make
/// install`s into one prefix overwrite each other's files under the other's
/// readers). Directories of processes that no longer run are removed first.
fn process_scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install");
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.parse::<u32>().ok());
            if pid.is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        root.join(std::process::id().to_string())
    })
}

/// True when the `CI` environment variable says this is a CI run.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn have(tool: &str) -> bool {
    // `go` has no --version: `go version`.
    Command::new(tool)
        .arg(if tool == "go" { "version" } else { "--version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn require(tool: &str, package: &str) {
    assert!(
        have(tool),
        "{tool} is not installed: `apt-get install {package}` (scripts/test does it)"
    );
}

/// Runs a command to its end (at most DEADLINE) and returns its output;
/// panics with the output when it fails.
fn run(command: &mut Command) -> Output {
    run_within(command, DEADLINE)
}

fn run_within(command: &mut Command, deadline: Duration) -> Output {
    let output = output_of(command, deadline);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a command to its end (killed after `deadline`), success or not.
fn output_of(command: &mut Command, deadline: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            bytes
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let limit = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `make -C ffi install` into a temporary prefix, once per test run.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        require("make", "make");
        let prefix = scratch("prefix");
        run_within(
            Command::new("make")
                .arg("-C")
                .arg(workspace().join("ffi"))
                .arg("install")
                .arg(format!("PREFIX={}", prefix.display())),
            INSTALL_DEADLINE,
        );
        prefix
    })
}

/// What the soname must be: libhydra.so.0.<minor> before 1.0, then libhydra.so.<major>.
fn expected_soname() -> String {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    if major == "0" {
        format!("libhydra.so.0.{}", env!("CARGO_PKG_VERSION_MINOR"))
    } else {
        format!("libhydra.so.{major}")
    }
}

fn pkg_config(args: &[&str]) -> String {
    let lib = prefix().join("lib");
    let output = run(Command::new("pkg-config")
        .args(args)
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig")));
    text(&output.stdout).trim().to_string()
}

fn readelf_dynamic(file: &Path) -> String {
    require("readelf", "binutils");
    text(&run(Command::new("readelf").arg("-d").arg(file)).stdout)
}

/// A private redis-server and a Rust service "rust-echo" replying
/// `{"echo": body}` to every message that is not a reply.
struct RustEcho {
    server: RedisServer,
    hydra: Hydra,
}

impl RustEcho {
    fn start() -> RustEcho {
        let server = RedisServer::start();
        let config = Config::builder()
            .service_name("rust-echo")
            .service_ip("127.0.0.1")
            .redis_url(&server.url(15))
            .build()
            .unwrap();
        let hydra = Hydra::init(config).unwrap();
        hydra
            .on_message(|h, message| {
                if message.rmid.is_none() {
                    h.reply(&message, json!({ "echo": message.body }))?;
                }
                Ok(())
            })
            .unwrap();
        hydra.register_service().unwrap();
        RustEcho { server, hydra }
    }

    fn url(&self) -> String {
        self.server.url(15)
    }
}

/// Runs an installed-library client (`client.c`) against the Rust echo and
/// checks what it printed.
fn client_talks_to_rust(exe: &Path, my_name: &str) {
    let echo = RustEcho::start();
    let output = run(Command::new(exe)
        .args(["rust-echo", my_name])
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("HYDRA_SERVICE")
        .env("HYDRA_REDIS_URL", echo.url()));
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("version {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let reply: Value = serde_json::from_str(lines.next().and_then(|l| l.strip_prefix("reply ")).unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{exe:?} printed {stdout:?}: {e}"));
    assert_eq!(reply, json!({"echo": {"from": my_name}}));
}

/// ffi/tests/install/<file> copied into `dir`: built out of the source tree.
fn copy_client_sources(dir: &Path) {
    for file in ["client.c", "CMakeLists.txt"] {
        std::fs::copy(workspace().join("ffi/tests/install").join(file), dir.join(file)).unwrap();
    }
}

#[test]
fn install_lays_out_a_versioned_library_with_package_files() {
    let prefix = prefix();
    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let soname = expected_soname();
    for file in [
        "include/hydra.h",
        "lib/libhydra.a",
        "lib/pkgconfig/hydra.pc",
        "lib/cmake/hydra/hydraConfig.cmake",
        "lib/cmake/hydra/hydraConfigVersion.cmake",
    ] {
        assert!(prefix.join(file).is_file(), "{file} is not installed");
    }
    assert_eq!(
        std::fs::read(prefix.join("include/hydra.h")).unwrap(),
        std::fs::read(workspace().join("include/hydra.h")).unwrap()
    );
    // libhydra.so -> libhydra.so.0.1 -> libhydra.so.0.1.0 (the file).
    let real = format!("libhydra.so.{version}");
    assert!(lib.join(&real).is_file() && !lib.join(&real).is_symlink());
    assert_eq!(std::fs::read_link(lib.join(&soname)).unwrap(), PathBuf::from(&real));
    assert_eq!(
        std::fs::read_link(lib.join("libhydra.so")).unwrap(),
        PathBuf::from(&soname)
    );
    let dynamic = readelf_dynamic(&lib.join(&real));
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "no soname {soname} in:\n{dynamic}"
    );

    require("pkg-config", "pkg-config");
    assert_eq!(pkg_config(&["--modversion", "hydra"]), version);
    assert_eq!(
        pkg_config(&["--cflags", "hydra"]),
        format!("-I{}", prefix.join("include").display())
    );
    assert_eq!(pkg_config(&["--libs", "hydra"]), format!("-L{} -lhydra", lib.display()));
    // What the static library needs from the system (rustc's native-static-libs).
    let static_libs = pkg_config(&["--libs", "--static", "hydra"]);
    assert!(
        static_libs.contains("-lhydra") && static_libs.contains("-lpthread"),
        "{static_libs}"
    );
}

#[test]
fn a_program_built_with_pkg_config_talks_to_rust() {
    require("pkg-config", "pkg-config");
    let dir = scratch("pkg-config");
    copy_client_sources(&dir);
    let flags = pkg_config(&["--cflags", "--libs", "hydra"]);
    let lib = prefix().join("lib");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(cc)
        .current_dir(&dir)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "client.c", "-o", "client"])
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", lib.display())));
    let dynamic = readelf_dynamic(&dir.join("client"));
    assert!(
        dynamic.contains(&format!("Shared library: [{}]", expected_soname())),
        "the program does not need the soname:\n{dynamic}"
    );
    client_talks_to_rust(&dir.join("client"), "c-pkg-config");
}

#[test]
fn programs_built_with_cmake_find_package_talk_to_rust() {
    require("cmake", "cmake");
    let dir = scratch("cmake");
    copy_client_sources(&dir);
    let build = dir.join("build");
    let configure = |version: &str| {
        output_of(
            Command::new("cmake")
                .arg("-S")
                .arg(&dir)
                .arg("-B")
                .arg(&build)
                .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix().display()))
                .arg(format!("-DHYDRA_VERSION={version}")),
            DEADLINE,
        )
    };
    // The version file refuses what this library cannot be.
    for wrong in ["99", "0.999"] {
        let refused = configure(wrong);
        assert!(!refused.status.success(), "find_package(hydra {wrong}) succeeded");
        assert!(
            text(&refused.stderr).contains(r#"configuration file for package "hydra" that is compatible"#),
            "{}",
            text(&refused.stderr)
        );
        let _ = std::fs::remove_dir_all(&build);
    }
    let configured = configure(concat!(
        env!("CARGO_PKG_VERSION_MAJOR"),
        ".",
        env!("CARGO_PKG_VERSION_MINOR")
    ));
    assert!(
        configured.status.success(),
        "cmake configure failed:\n{}{}",
        text(&configured.stdout),
        text(&configured.stderr)
    );
    run(Command::new("cmake").arg("--build").arg(&build));
    let shared = readelf_dynamic(&build.join("client_shared"));
    assert!(
        shared.contains(&format!("Shared library: [{}]", expected_soname())),
        "{shared}"
    );
    let static_ = readelf_dynamic(&build.join("client_static"));
    assert!(
        !static_.contains("libhydra"),
        "the static build needs libhydra.so:\n{static_}"
    );
    client_talks_to_rust(&build.join("client_shared"), "c-cmake-shared");
    client_talks_to_rust(&build.join("client_static"), "c-cmake-static");
}

/// The Go program running, its stdout read line by line.
struct GoProgram {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl GoProgram {
    fn expect_line(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) if line.starts_with(prefix) => line,
            Ok(line) => panic!(
                "expected a line starting with {prefix:?}, got {line:?}\n{}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Timeout) => panic!("no line {prefix:?} in time\n{}", self.stderr()),
            Err(RecvTimeoutError::Disconnected) => panic!("exited before {prefix:?}\n{}", self.stderr()),
        }
    }

    fn stderr(&self) -> String {
        format!(
            "--- stderr ---\n{}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for GoProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_go_example_talks_to_rust_and_node() {
    if !have("go") {
        assert!(
            !in_ci(),
            "go is not installed: `apt-get install golang-go` (scripts/test does it as root)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: go is not installed: the Go example (examples/go) is NOT tested; `apt-get install golang-go`"
        );
        return;
    }
    require("pkg-config", "pkg-config");
    let prefix = prefix();
    let dir = scratch("go");
    let exe = dir.join("hydra-go");
    // Offline: the module has no requirements, and nothing may be fetched.
    run(Command::new("go")
        .current_dir(workspace().join("examples/go"))
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        // Caches of its own under target/: no dependence on $HOME.
        .env("GOCACHE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"))
        .env("GOPATH", Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-path"))
        // Go 1.19 reuses a cached cgo package whose link flags name the prefix
        // of an earlier build (now deleted) even when pkg-config now names
        // another ("cannot find -lhydra"); with the prefix in CGO_LDFLAGS it is
        // part of the cache key. Each test process installs into its own prefix.
        .env("CGO_LDFLAGS", format!("-L{}", prefix.join("lib").display()))
        .env("CGO_ENABLED", "1"));

    let echo = RustEcho::start();
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {"serviceName": "node-echo", "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": echo.url()}}});
    node.call("init", json!([config])).unwrap();
    node.call("registerService", json!([])).unwrap();
    node.call("echo", json!([])).unwrap();
    // Node's registerService resolves before its SUBSCRIBEs are done: ask
    // until it answers.
    let deadline = Instant::now() + WAIT;
    let probe = echo.hydra.create_umf_message("node-echo:/", json!({"probe": true}));
    while echo.hydra.request(&probe, Duration::from_millis(500)).is_err() {
        assert!(Instant::now() < deadline, "the Node echo never answered");
    }

    let stderr = dir.join("stderr");
    let mut child = Command::new(&exe)
        .args(["-name", "go-svc", "-ask", "rust-echo,node-echo"])
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env("HYDRA_REDIS_URL", echo.url())
        .env_remove("HYDRA_SERVICE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let (tx, lines) = unbounded();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut go = GoProgram {
        stdin: child.stdin.take(),
        child,
        lines,
        stderr,
    };
    let asked = json!({"from": "go-svc", "lang": "go"});
    for service in ["rust-echo", "node-echo"] {
        let line = go.expect_line(&format!("reply {service} "));
        let body: Value = serde_json::from_str(&line[format!("reply {service} ").len()..]).unwrap();
        assert_eq!(body, json!({"echo": asked}), "{service}");
    }
    go.expect_line("ready ");

    // Rust asks the Go service: its cgo handler answers.
    let reply = echo
        .hydra
        .request(
            &echo.hydra.create_umf_message("go-svc:/", json!({"n": [7, "seven"]})),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("no reply from the Go service: {e}\n{}", go.stderr()));
    assert_eq!(reply.body, json!({"go": {"n": [7, "seven"]}}));

    // End of input: it closes, and the library released the Go handler.
    go.stdin = None;
    assert_eq!(go.expect_line("closed"), "closed, 0 handlers held");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = go.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the Go program did not exit\n{}",
            go.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the Go program failed ({status})\n{}", go.stderr());
}
