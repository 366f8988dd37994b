//! A Redis Sentinel group for failover tests and benchmarks: a master, its
//! replicas (`--replicaof`) and several `redis-sentinel` processes, all on
//! free loopback ports, with short timeouts so that a failover takes a few
//! seconds. Everything is killed on drop; the sentinels' logs are printed when
//! a test panics.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::RedisServer;
use crate::redis_server::free_port;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// How long the group gets to come up (sentinels discover each other through
/// hello messages sent every 2 s).
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How to build a [`SentinelGroup`].
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The name the sentinels monitor the master under.
    pub master_name: String,
    /// Replicas of the master.
    pub replicas: usize,
    /// Sentinel processes (the quorum is a majority of them).
    pub sentinels: usize,
    /// `requirepass` (and `masterauth`) of the data nodes.
    pub password: Option<String>,
    /// `requirepass` of the sentinels.
    pub sentinel_password: Option<String>,
    /// `sentinel down-after-milliseconds`.
    pub down_after: Duration,
    /// `sentinel failover-timeout`.
    pub failover_timeout: Duration,
    /// TLS everywhere: each data node and sentinel serves TLS on a port of
    /// its own (clients are given only those), replication and the sentinels'
    /// own connections use TLS (`tls-replication yes`). The plain ports stay
    /// open for the group's own checks. Client certificates are not asked for.
    pub tls: Option<TlsFiles>,
}

/// The PEM files a TLS [`SentinelGroup`] serves with: the CA its clients
/// trust, and the certificate (for 127.0.0.1) and key of every process.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The `tls-*` settings of a redis-server or redis-sentinel serving on `port`.
    fn settings(&self, port: u16) -> Vec<(String, String)> {
        let path = |p: &PathBuf| p.to_str().expect("UTF-8 temp path").to_string();
        vec![
            ("tls-port".into(), port.to_string()),
            ("tls-cert-file".into(), path(&self.cert)),
            ("tls-key-file".into(), path(&self.key)),
            ("tls-ca-cert-file".into(), path(&self.ca)),
            ("tls-auth-clients".into(), "no".into()),
            ("tls-replication".into(), "yes".into()),
        ]
    }
}

impl Default for SentinelOptions {
    /// One replica, three sentinels, no passwords, 1 s to call a master down
    /// and a 3 s failover timeout.
    fn default() -> SentinelOptions {
        SentinelOptions {
            master_name: "mymaster".into(),
            replicas: 1,
            sentinels: 3,
            password: None,
            sentinel_password: None,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
            tls: None,
        }
    }
}

/// One `redis-sentinel` process.
struct SentinelProcess {
    /// Plain port, for the group's own checks.
    port: u16,
    /// With TLS, the port clients are given.
    tls_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
}

impl SentinelProcess {
    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.join("sentinel.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A master, its replicas and its sentinels.
pub struct SentinelGroup {
    options: SentinelOptions,
    nodes: Vec<RedisServer>,
    /// With TLS, each node's TLS port (what the sentinels know it by).
    node_tls_ports: Vec<Option<u16>>,
    sentinels: Vec<SentinelProcess>,
}

impl SentinelGroup {
    /// Starts the data nodes and the sentinels and waits until every sentinel
    /// knows the master, every replica and every other sentinel, and every
    /// replica is in sync. Panics with a clear message when `redis-sentinel`
    /// is not installed (`scripts/test` installs Debian's `redis-sentinel`).
    pub fn start(options: SentinelOptions) -> SentinelGroup {
        let mut auth: Vec<String> = Vec::new();
        if let Some(pass) = &options.password {
            auth = vec![
                "--requirepass".into(),
                pass.clone(),
                "--masterauth".into(),
                pass.clone(),
            ];
        }
        // Each node's arguments, with its TLS port when the group serves TLS.
        let node_args = |extra: &[String]| -> (Vec<String>, Option<u16>) {
            let mut args: Vec<String> = auth.iter().chain(extra).cloned().collect();
            let tls_port = options.tls.as_ref().map(|tls| {
                let port = free_port();
                for (key, value) in tls.settings(port) {
                    args.push(format!("--{key}"));
                    args.push(value);
                }
                port
            });
            (args, tls_port)
        };
        let (master_args, master_tls_port) = node_args(&[]);
        let master = RedisServer::start_with_args(&as_strs(&master_args));
        let master_port = master_tls_port.unwrap_or(master.port());
        let mut nodes = vec![master];
        let mut node_tls_ports = vec![master_tls_port];
        for _ in 0..options.replicas {
            let (replica_args, tls_port) =
                node_args(&["--replicaof".into(), "127.0.0.1".into(), master_port.to_string()]);
            nodes.push(RedisServer::start_with_args(&as_strs(&replica_args)));
            node_tls_ports.push(tls_port);
        }
        let mut group = SentinelGroup {
            options,
            nodes,
            node_tls_ports,
            sentinels: Vec::new(),
        };
        for _ in 0..group.options.sentinels {
            let sentinel = group.spawn_sentinel(master_port);
            group.sentinels.push(sentinel);
        }
        group.wait_ready();
        group
    }

    fn spawn_sentinel(&self, master_port: u16) -> SentinelProcess {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hydra-sentinel-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create sentinel directory");
        let port = free_port();
        let o = &self.options;
        let quorum = o.sentinels / 2 + 1;
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {name} {down}\n\
             sentinel failover-timeout {name} {failover}\n\
             sentinel parallel-syncs {name} 1\n",
            dir = dir.display(),
            log = dir.join("sentinel.log").display(),
            name = o.master_name,
            down = o.down_after.as_millis(),
            failover = o.failover_timeout.as_millis(),
        );
        if let Some(pass) = &o.password {
            conf.push_str(&format!("sentinel auth-pass {} {pass}\n", o.master_name));
        }
        if let Some(pass) = &o.sentinel_password {
            conf.push_str(&format!("requirepass {pass}\nsentinel sentinel-pass {pass}\n"));
        }
        let tls_port = o.tls.as_ref().map(|tls| {
            let tls_port = free_port();
            for (key, value) in tls.settings(tls_port) {
                conf.push_str(&format!("{key} {value}\n"));
            }
            tls_port
        });
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let child = Command::new("redis-sentinel")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-sentinel is not installed (run scripts/test, or `apt-get install redis-sentinel`)")
            }
            Err(e) => panic!("cannot start redis-sentinel: {e}"),
        };
        SentinelProcess {
            port,
            tls_port,
            dir,
            child: Some(child),
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        let want_sentinels = self.sentinels.len().saturating_sub(1);
        let want_replicas = self.nodes.len() - 1;
        let mut last = String::new();
        while Instant::now() < deadline {
            let ready = self.sentinels.iter().all(|s| match self.sentinel_view(s.port) {
                Ok(view) => {
                    last = format!("sentinel {} sees {view:?}", s.port);
                    view.0 >= want_sentinels && view.1 >= want_replicas
                }
                Err(e) => {
                    last = format!("sentinel {}: {e}", s.port);
                    false
                }
            });
            if ready && self.replicas_in_sync() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the sentinel group did not come up within {START_DEADLINE:?} ({last}); first sentinel's log:\n{}",
            self.sentinels.first().map(SentinelProcess::log).unwrap_or_default()
        );
    }

    /// (other sentinels known, replicas known) of the sentinel at `port`.
    fn sentinel_view(&self, port: u16) -> redis::RedisResult<(usize, usize)> {
        let mut conn = self.sentinel_connection(port)?;
        let fields: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(&self.options.master_name)
            .query(&mut conn)?;
        let field = |name: &str| -> usize {
            fields
                .chunks(2)
                .find(|pair| pair[0] == name)
                .and_then(|pair| pair.get(1)?.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("num-other-sentinels"), field("num-slaves")))
    }

    fn sentinel_connection(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let mut url = "redis://".to_string();
        if let Some(pass) = &self.options.sentinel_password {
            url.push_str(&format!(":{pass}@"));
        }
        url.push_str(&format!("127.0.0.1:{port}/"));
        let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(conn)
    }

    fn replicas_in_sync(&self) -> bool {
        let Some(master) = self.master_port() else {
            return false;
        };
        self.node_ports().into_iter().filter(|p| *p != master).all(|port| {
            self.data_connection(port)
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("master_link_status:up"))
        })
    }

    /// The node the sentinels know by `port` (its TLS port in a TLS group).
    fn index_of(&self, port: u16) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.node_tls_ports[i].unwrap_or(self.nodes[i].port()) == port)
    }

    /// A plain connection to the data node the sentinels know by `port` (db 0), logged in.
    pub fn data_connection(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let port = self.index_of(port).map_or(port, |i| self.nodes[i].port());
        let mut url = "redis://".to_string();
        if let Some(pass) = &self.options.password {
            url.push_str(&format!(":{pass}@"));
        }
        url.push_str(&format!("127.0.0.1:{port}/"));
        let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(conn)
    }

    /// The ports clients reach the sentinels on (their TLS ports in a TLS group).
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.tls_port.unwrap_or(s.port)).collect()
    }

    /// The options the group was started with.
    pub fn options(&self) -> &SentinelOptions {
        &self.options
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let mut conn = self.sentinel_connection(s.port).ok()?;
            let (_, port): (String, String) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.options.master_name)
                .query(&mut conn)
                .ok()?;
            port.parse().ok()
        })
    }

    /// The ports the sentinels know the data nodes by (the master first, as
    /// started; TLS ports in a TLS group).
    pub fn node_ports(&self) -> Vec<u16> {
        (0..self.nodes.len())
            .map(|i| self.node_tls_ports[i].unwrap_or(self.nodes[i].port()))
            .collect()
    }

    /// The data node the sentinels know by `port`.
    pub fn node(&self, port: u16) -> Option<&RedisServer> {
        self.index_of(port).map(|i| &self.nodes[i])
    }

    /// `redis+sentinel://[:password@]127.0.0.1:p1,…/<name>/<db>[?sentinel_password=…]`.
    pub fn url(&self, db: u8) -> String {
        let login = self
            .options
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let hosts: Vec<String> = self.sentinel_ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut url = format!(
            "redis+sentinel://{login}{}/{}/{db}",
            hosts.join(","),
            self.options.master_name
        );
        if let Some(pass) = &self.options.sentinel_password {
            url.push_str(&format!("?sentinel_password={pass}"));
        }
        url
    }

    /// Node's (ioredis's) object form of the same: the value of `hydra.redis`.
    pub fn redis_json(&self, db: u8) -> Value {
        let sentinels: Vec<Value> = self
            .sentinel_ports()
            .iter()
            .map(|p| json!({"host": "127.0.0.1", "port": p}))
            .collect();
        let mut redis = json!({"sentinels": sentinels, "name": self.options.master_name, "db": db});
        if let Some(pass) = &self.options.password {
            redis["password"] = json!(pass);
        }
        if let Some(pass) = &self.options.sentinel_password {
            redis["sentinelPassword"] = json!(pass);
        }
        if let Some(tls) = &self.options.tls {
            redis["tls"] = json!({"ca": tls.ca});
            redis["sentinelTLS"] = json!({"ca": tls.ca});
        }
        redis
    }

    /// The master's replication offset now: once [`replicas_reached`](SentinelGroup::replicas_reached)
    /// it, every write acknowledged before
    /// this call is on the replicas.
    pub fn replication_offset(&self) -> Option<u64> {
        let master = self.master_port()?;
        let mut conn = self.data_connection(master).ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut conn).ok()?;
        info_field(&info, "master_repl_offset")
    }

    /// True when every replica has received the master's stream up to `offset`.
    pub fn replicas_reached(&self, offset: u64) -> bool {
        let Some(master) = self.master_port() else {
            return false;
        };
        self.node_ports().into_iter().filter(|p| *p != master).all(|port| {
            self.data_connection(port)
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query::<String>(&mut c))
                .ok()
                .and_then(|info| info_field(&info, "slave_repl_offset"))
                .is_some_and(|reached| reached >= offset)
        })
    }

    /// Kills the current master with SIGKILL (its data since the last
    /// replication is gone) and returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port().expect("the sentinels name a master");
        let index = self.index_of(port).expect("the master is one of the group's nodes");
        self.nodes[index].stop();
        port
    }

    /// Asks a sentinel for a manual failover (`SENTINEL FAILOVER`): the
    /// replica is promoted and the old master, alive, is made its replica.
    /// Returns the old master's port.
    pub fn failover(&self) -> u16 {
        let port = self.master_port().expect("the sentinels name a master");
        let mut conn = self
            .sentinel_connection(self.sentinels[0].port)
            .expect("connect to a sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(&self.options.master_name)
            .query(&mut conn)
            .expect("SENTINEL FAILOVER");
        port
    }

    /// Waits until the sentinels name a master other than `old_port` and that
    /// node says it is a master; its port, or `None` after `timeout`.
    pub fn wait_for_new_master(&self, old_port: u16, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(port) = self.master_port().filter(|p| *p != old_port) {
                let is_master = self
                    .data_connection(port)
                    .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
                    .is_ok_and(|role| matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"));
                if is_master {
                    return Some(port);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for sentinel in &self.sentinels {
                let log = sentinel.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!(
                    "--- redis-sentinel log (port {}) ---\n{}",
                    sentinel.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        for sentinel in &mut self.sentinels {
            sentinel.kill();
            let _ = std::fs::remove_dir_all(&sentinel.dir);
        }
    }
}

fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
