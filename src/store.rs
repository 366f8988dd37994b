//! Redis connections: every connection has connect and command timeouts; broken
//! connections are dropped and replaced on the next call; while Redis is down,
//! calls fail fast instead of each waiting out a connect timeout.
//!
//! The store is a small pool of synchronous connections (`redis::Connection`),
//! so callers on several threads do not queue behind one socket.
//!
//! With Redis Sentinel, every new connection goes to the master the sentinels
//! name (see [`sentinel`](crate::sentinel)): when a connection fails, or a
//! server answers `READONLY`/`MASTERDOWN` (it is, or has become, a replica),
//! the idle connections are dropped and the next call resolves the master
//! anew; when the sentinels name a new master, the connect gate opens at once.
//!
//! An ACL denial (`NOPERM`) of any command run through the store becomes
//! [`Error::PermissionDenied`] naming the command and its key or channel: the
//! connection handed to callers notes which command of the request Redis
//! refused (Redis's own message names at most one of the two).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use redis::{Client, Connection, ConnectionLike, RedisError, Value};

use crate::config::RedisConfig;
use crate::error::{Error, Result};
use crate::sentinel::{self, Resolver};
use crate::subscription::Subscription;
use crate::tls::{self, RedisTls};

/// Idle connections kept for reuse; more may be open while busy. Generous, so
/// that many threads sharing one handle do not open and close a connection per
/// call once they outnumber the pool (which would also pile up TIME_WAIT sockets).
const MAX_IDLE: usize = 64;
/// After a failed connect, further connects fail immediately for this long,
/// doubling up to `MAX_RETRY_GAP`, so a dead Redis costs callers nothing.
const FIRST_RETRY_GAP: Duration = Duration::from_millis(50);
const MAX_RETRY_GAP: Duration = Duration::from_millis(500);
/// With Sentinel the gate stays closed for less: the next attempt may find a
/// master just promoted, and costs a sentinel round trip, not a timeout.
const MAX_SENTINEL_RETRY_GAP: Duration = Duration::from_millis(100);
/// Longest the heartbeat's periodic look at the sentinels may take.
const GLANCE_TIMEOUT: Duration = Duration::from_millis(250);

/// A pool of Redis connections with timeouts.
pub(crate) struct Store {
    client: Client,
    /// TLS settings (also for the subscription socket, which is ours, not redis-rs's).
    tls: Option<RedisTls>,
    target: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    gate: Mutex<ConnectGate>,
    /// With Sentinel: finds the master.
    sentinel: Option<Resolver>,
    /// The resolver's switch epoch that the pool and the gate have followed.
    followed_epoch: AtomicU64,
}

/// Remembers the last connect failure so that calls during an outage fail fast.
#[derive(Default)]
struct ConnectGate {
    closed_until: Option<Instant>,
    gap: Duration,
    last_error: Option<String>,
}

impl Store {
    pub(crate) fn new(redis: &RedisConfig, connect_timeout: Duration, command_timeout: Duration) -> Result<Store> {
        let client = tls::client(redis.connection_info(), redis.tls())?;
        Ok(Store {
            client,
            tls: redis.tls().cloned(),
            target: redis.display_url().to_string(),
            connect_timeout,
            command_timeout,
            idle: Mutex::new(Vec::new()),
            gate: Mutex::new(ConnectGate::default()),
            sentinel: redis.sentinel().cloned().map(Resolver::new),
            followed_epoch: AtomicU64::new(0),
        })
    }

    /// With Sentinel, a receiver woken whenever the sentinels name a new
    /// master (coalesced); `None` for a single server.
    pub(crate) fn master_switches(&self) -> Option<Receiver<()>> {
        self.sentinel.as_ref().map(Resolver::switches)
    }

    /// How many times the master has moved (always 0 without Sentinel).
    pub(crate) fn master_epoch(&self) -> u64 {
        self.sentinel.as_ref().map_or(0, Resolver::epoch)
    }

    /// With Sentinel, asks the sentinels where the master is now, so that a
    /// switch is noticed even while every connection to the old master still
    /// works (a demoted node whose clients were not disconnected, a network
    /// partition): the pool is dropped and the listener resubscribes. A
    /// no-op for a single server; errors are left to the next connect.
    pub(crate) fn check_master(&self) {
        if let Some(resolver) = &self.sentinel
            && resolver.glance(GLANCE_TIMEOUT.min(self.command_timeout)).is_some()
        {
            self.follow_switch();
        }
    }

    /// After a switch: the idle connections lead to the old master, and a
    /// gate closed by failures there must not keep callers off the new one.
    fn follow_switch(&self) {
        let epoch = self.master_epoch();
        // Read first: the common case (no switch) writes nothing shared.
        if self.followed_epoch.load(Ordering::SeqCst) != epoch
            && self.followed_epoch.swap(epoch, Ordering::SeqCst) != epoch
        {
            self.clear();
            *self.gate.lock().unwrap_or_else(|p| p.into_inner()) = ConnectGate::default();
        }
    }

    /// The Redis URL with the password masked.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a pooled connection. A connection that saw an I/O error or a
    /// timeout is discarded, so the next call reconnects.
    ///
    /// An idle pooled connection may have been closed by the server since its
    /// last use (a Redis restart, an idle timeout); when `f` fails on one with
    /// a dropped connection, it runs once more on a fresh connection. The
    /// command may then run twice in the rare case the server executed it but
    /// the reply was lost; Hydra's writes are idempotent or at-least-once.
    pub(crate) fn run<T>(&self, mut f: impl FnMut(&mut Traced<'_>) -> redis::RedisResult<T>) -> Result<T> {
        let epoch = self.master_epoch();
        let (mut conn, reused) = self.checkout()?;
        let mut traced = Traced::new(&mut conn);
        match f(&mut traced) {
            Ok(value) => {
                self.checkin(conn, epoch);
                Ok(value)
            }
            // A server that says it is no longer the master ran nothing:
            // the pool goes, and the call runs on the master found anew.
            Err(e) if reused && ((e.is_connection_dropped() && !e.is_timeout()) || is_not_master(&e)) => {
                drop(conn);
                if is_not_master(&e) {
                    self.clear();
                }
                let mut fresh = self.connect()?;
                let mut traced = Traced::new(&mut fresh);
                let result = f(&mut traced);
                let request = traced.denied_request.take();
                self.finish(fresh, result, request, epoch)
            }
            Err(e) => {
                let request = traced.denied_request.take();
                self.finish(conn, Err(e), request, epoch)
            }
        }
    }

    /// [`run`](Store::run) without the retry on a fresh connection: for a
    /// command that must not run twice and cannot be made idempotent (a
    /// blocking move). A dropped connection is reported, not retried.
    pub(crate) fn run_once<T>(&self, mut f: impl FnMut(&mut Traced<'_>) -> redis::RedisResult<T>) -> Result<T> {
        let epoch = self.master_epoch();
        let (mut conn, _) = self.checkout()?;
        let mut traced = Traced::new(&mut conn);
        let result = f(&mut traced);
        let request = traced.denied_request.take();
        self.finish(conn, result, request, epoch)
    }

    fn finish<T>(
        &self,
        conn: Connection,
        result: redis::RedisResult<T>,
        request: Option<Vec<u8>>,
        epoch: u64,
    ) -> Result<T> {
        match result {
            Ok(value) => {
                self.checkin(conn, epoch);
                Ok(value)
            }
            Err(e) => {
                if is_not_master(&e) {
                    log::warn!("{} is no longer the master ({e}); reconnecting", self.target);
                    self.clear();
                } else if !is_connection_fault(&e) {
                    self.checkin(conn, epoch);
                }
                Err(explain(e, request))
            }
        }
    }

    /// Checks that the server answers and is Redis 6.2 or newer (`INFO
    /// server`, one round trip). A user not allowed to run `INFO` gets a
    /// `PING` instead, and the version goes unchecked.
    pub(crate) fn check_server(&self) -> Result<()> {
        match self.run(|c| redis::cmd("INFO").arg("server").query::<String>(c)) {
            Ok(info) => check_server_version(&info, &self.target),
            Err(Error::PermissionDenied(reason)) => {
                log::debug!("cannot check the Redis version at {}: {reason}", self.target);
                self.run(|c| redis::cmd("PING").query::<()>(c))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a dedicated connection (e.g. for blocking commands) with the
    /// store's timeouts.
    pub(crate) fn open(&self) -> Result<Connection> {
        self.connect()
    }

    /// Opens a pub/sub connection subscribed to `channels`, with the store's
    /// timeouts. Not gated: the listener has its own backoff.
    pub(crate) fn subscribe(&self, channels: &[String]) -> redis::RedisResult<Subscription> {
        let resolved;
        let info = match &self.sentinel {
            None => self.client.get_connection_info(),
            Some(resolver) => {
                let (host, port) = resolver.master_address(self.connect_timeout, self.command_timeout)?;
                self.follow_switch();
                resolved = sentinel::at_address(self.client.get_connection_info(), &host, port);
                &resolved
            }
        };
        Subscription::open(
            info,
            self.tls.as_ref(),
            self.connect_timeout,
            self.command_timeout,
            channels,
        )
    }

    /// How long opening a connection may take.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The read/write timeout of each command.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Drops every idle connection (after a fork or on shutdown).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A connection, and whether it was reused from the pool.
    fn checkout(&self) -> Result<(Connection, bool)> {
        self.follow_switch();
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.connect()?, false)),
        }
    }

    /// Returns a connection checked out at master epoch `epoch` to the pool,
    /// unless the master has moved since (it leads to the old one).
    fn checkin(&self, conn: Connection, epoch: u64) {
        if self.master_epoch() != epoch {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn connect(&self) -> Result<Connection> {
        {
            let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = gate.closed_until
                && Instant::now() < until
            {
                let reason = gate.last_error.as_deref().unwrap_or("unreachable");
                return Err(Error::Redis(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("Redis at {} is unreachable: {reason}", self.target),
                ))));
            }
        }
        let result = match &self.sentinel {
            None => self.client.get_connection_with_timeout(self.connect_timeout),
            Some(resolver) => self.connect_to_master(resolver),
        }
        .and_then(|conn| {
            conn.set_read_timeout(Some(self.command_timeout))?;
            conn.set_write_timeout(Some(self.command_timeout))?;
            Ok(conn)
        });
        let max_gap = if self.sentinel.is_some() {
            MAX_SENTINEL_RETRY_GAP
        } else {
            MAX_RETRY_GAP
        };
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(conn) => {
                *gate = ConnectGate::default();
                Ok(conn)
            }
            Err(e) => {
                gate.gap = (gate.gap * 2).clamp(FIRST_RETRY_GAP, max_gap);
                gate.closed_until = Some(Instant::now() + gate.gap);
                gate.last_error = Some(e.to_string());
                Err(Error::Redis(self.explain_connect_error(e)))
            }
        }
    }
}

impl Store {
    /// A connection to the master the sentinels name, checked with `ROLE`.
    fn connect_to_master(&self, resolver: &Resolver) -> redis::RedisResult<Connection> {
        let (host, port) = resolver.master_address(self.connect_timeout, self.command_timeout)?;
        self.follow_switch();
        let info = sentinel::at_address(self.client.get_connection_info(), &host, port);
        let mut conn = Client::open(info)?.get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(Some(self.command_timeout))?;
        conn.set_write_timeout(Some(self.command_timeout))?;
        sentinel::verify_master(&mut conn, resolver.master_name(), &host, port)?;
        Ok(conn)
    }

    /// Names the target in socket-level connect errors ("Connection refused"
    /// alone does not say which Redis); other errors (auth, …) say enough.
    /// TLS failures say what to check (`tls::explain`).
    fn explain_connect_error(&self, e: RedisError) -> RedisError {
        if let Some(tls) = &self.tls
            && let Some(explained) = tls::explain_connect_error(&e, tls, self.connect_timeout)
        {
            let kind = tls::as_io_error(&e).map_or(std::io::ErrorKind::Other, std::io::Error::kind);
            return RedisError::from(std::io::Error::new(
                kind,
                format!("cannot connect to Redis at {}: {explained}", self.target),
            ));
        }
        match e.kind() {
            redis::ErrorKind::Io => {
                let kind = if e.is_timeout() {
                    std::io::ErrorKind::TimedOut
                } else {
                    std::io::ErrorKind::ConnectionRefused
                };
                let hint = tls::plain_text_reset_hint(&e, "redis.tls").unwrap_or_default();
                RedisError::from(std::io::Error::new(
                    kind,
                    format!(
                        "cannot connect to Redis at {} within {:?}: {e}{hint}",
                        self.target, self.connect_timeout
                    ),
                ))
            }
            _ => e,
        }
    }
}

/// The oldest Redis that has every command hydra-rs sends: `SET … GET`
/// (presence, every beat) and `LMOVE`/`BLMOVE` (queues) came with 6.2.
pub(crate) const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Fails with [`Error::InvalidConfig`] (field `redis`) when `INFO server`
/// reports a `redis_version` older than [`MIN_REDIS_VERSION`]. A server that
/// reports no parsable version (a Redis-compatible server) is let through.
pub(crate) fn check_server_version(info: &str, target: &str) -> Result<()> {
    let Some(version) = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))
        .map(str::trim)
    else {
        return Ok(());
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (need_major, need_minor) = MIN_REDIS_VERSION;
    if (major, minor) >= MIN_REDIS_VERSION {
        return Ok(());
    }
    Err(Error::invalid_config(
        "redis",
        format!(
            "hydra-rs needs Redis {need_major}.{need_minor} or newer (for SET … GET and BLMOVE); \
             the server at {target} runs Redis {version}"
        ),
    ))
}

/// True when the connection can no longer be trusted: the socket failed, or a
/// reply timed out (a late reply would be read as the answer to the next command).
pub(crate) fn is_connection_fault(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// True when the server refused because it is not (or no longer) a usable
/// master: `READONLY` (a replica, e.g. a master just demoted by Sentinel) or
/// `MASTERDOWN` (a replica cut off from its master). Its connections are
/// no use for Hydra's writes.
pub(crate) fn is_not_master(e: &RedisError) -> bool {
    let named = |code: &str, details: &str| {
        matches!(code, "READONLY" | "MASTERDOWN") || details.contains("READONLY You can't write")
    };
    if e.code().is_some_and(|code| named(code, e.detail().unwrap_or_default())) {
        return true;
    }
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, se)| named(se.code(), se.details().unwrap_or_default()))
    })
}

/// `e` as the library reports it: an ACL denial becomes
/// [`Error::PermissionDenied`] naming the command and key, found in the
/// request that [`Traced`] kept (`request`).
pub(crate) fn explain(e: RedisError, request: Option<Vec<u8>>) -> Error {
    // A plain NOPERM names the command; one from inside a script (Redis 7.0)
    // does not, so prefer the former when a pipeline had both.
    let Some(denial) = e.clone().into_server_errors().and_then(|errors| {
        let mut denials = errors
            .iter()
            .filter(|(_, se)| is_denial(se.code(), se.details().unwrap_or_default()));
        let first = denials.clone().next();
        denials
            .find(|(_, se)| se.code() == "NOPERM")
            .or(first)
            .map(|(index, se)| (*index, se.details().unwrap_or_default().to_string()))
    }) else {
        return Error::Redis(e);
    };
    let (index, said) = denial;
    let what = request.as_deref().and_then(|r| describe_denied(r, index, &said));
    match what {
        Some(what) => Error::PermissionDenied(format!("the Redis user may not run {what} ({said})")),
        None => Error::PermissionDenied(format!("the Redis user lacks a permission: {said}")),
    }
}

/// True for Redis's ACL refusals: `NOPERM …`, and from inside a script
/// (Redis 7.0) `ERR The user executing the script can't run this command…`.
fn is_denial(code: &str, details: &str) -> bool {
    code == "NOPERM" || details.contains("user executing the script can't") || details.contains("no permissions")
}

fn value_is_denial(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if is_denial(e.code(), e.details().unwrap_or_default()))
}

fn error_is_denial(e: &RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, se)| is_denial(se.code(), se.details().unwrap_or_default()))
    })
}

/// The connection callers of [`Store::run`] get: a plain connection that
/// keeps a copy of a request Redis refused for lack of permission, so the
/// error can name the command and key. Nothing is copied otherwise.
pub(crate) struct Traced<'a> {
    conn: &'a mut Connection,
    denied_request: Option<Vec<u8>>,
}

impl<'a> Traced<'a> {
    fn new(conn: &'a mut Connection) -> Traced<'a> {
        Traced {
            conn,
            denied_request: None,
        }
    }

    /// The underlying connection, e.g. to change its read timeout for a
    /// blocking command. (Commands sent on it directly are not traced.)
    pub(crate) fn connection(&mut self) -> &mut Connection {
        self.conn
    }
}

impl ConnectionLike for Traced<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<Value> {
        let result = self.conn.req_packed_command(cmd);
        let denied = match &result {
            Ok(value) => value_is_denial(value),
            Err(e) => error_is_denial(e),
        };
        if denied {
            self.denied_request = Some(cmd.to_vec());
        }
        result
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> redis::RedisResult<Vec<Value>> {
        let result = self.conn.req_packed_commands(cmd, offset, count);
        let denied = match &result {
            Ok(values) => values.iter().any(value_is_denial),
            Err(e) => error_is_denial(e),
        };
        if denied {
            self.denied_request = Some(cmd.to_vec());
        }
        result
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.conn.check_connection()
    }

    fn is_open(&self) -> bool {
        self.conn.is_open()
    }
}

/// "HSET on hydra:service:nodes" for command `index` of a packed request (of
/// a transaction's commands when it starts with MULTI). A script names its
/// keys; Redis's message may name the command inside it.
fn describe_denied(packed: &[u8], index: usize, said: &str) -> Option<String> {
    let commands = parse_packed(packed)?;
    let name_of =
        |c: &[Vec<u8>]| String::from_utf8_lossy(c.first().map(Vec::as_slice).unwrap_or_default()).to_ascii_uppercase();
    let in_transaction = commands.first().is_some_and(|c| name_of(c) == "MULTI");
    let chosen = commands.get(index + usize::from(in_transaction))?;
    let name = name_of(chosen);
    let keys: Vec<String> = key_arguments(&name, chosen)
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    // "… to run the 'hset' command": the command inside a script.
    let inner = said
        .split('\'')
        .nth(1)
        .filter(|_| said.contains("' command"))
        .map(str::to_ascii_uppercase)
        .filter(|inner| *inner != name);
    let name = match inner {
        Some(inner) => format!("{inner} (in a script, {name})"),
        None => name,
    };
    Some(if keys.is_empty() {
        name
    } else {
        format!("{name} on {}", keys.join(", "))
    })
}
/// The key (or channel) arguments of a command, as far as Hydra uses them.
fn key_arguments<'c>(name: &str, args: &'c [Vec<u8>]) -> &'c [Vec<u8>] {
    match name {
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" => {
            let count = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            args.get(3..3 + count).unwrap_or_default()
        }
        "MGET" | "DEL" | "EXISTS" | "SUBSCRIBE" | "UNLINK" => args.get(1..).unwrap_or_default(),
        "RPOPLPUSH" | "LMOVE" | "BLMOVE" => args.get(1..3).unwrap_or_default(),
        "PING" | "INFO" | "MULTI" | "EXEC" | "SCRIPT" | "CLIENT" => &[],
        _ => args.get(1..2).unwrap_or_default(),
    }
}

/// The commands of a packed RESP request (`*n $len arg …`, repeated).
fn parse_packed(mut bytes: &[u8]) -> Option<Vec<Vec<Vec<u8>>>> {
    fn line(bytes: &mut &[u8], marker: u8) -> Option<usize> {
        let end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let (head, rest) = bytes.split_at(end);
        if head.first() != Some(&marker) {
            return None;
        }
        let n = std::str::from_utf8(&head[1..]).ok()?.parse().ok()?;
        *bytes = &rest[2..];
        Some(n)
    }
    let mut commands = Vec::new();
    while !bytes.is_empty() {
        let argc = line(&mut bytes, b'*')?;
        let mut args = Vec::with_capacity(argc);
        for _ in 0..argc {
            let len = line(&mut bytes, b'$')?;
            args.push(bytes.get(..len)?.to_vec());
            bytes = bytes.get(len + 2..)?;
        }
        commands.push(args);
    }
    Some(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> String {
        format!("# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n")
    }

    #[test]
    fn redis_older_than_6_2_is_refused_with_the_version_found() {
        for old in ["6.0.16", "5.0.7", "6.1.0", "4.0.14", "2.8.24"] {
            let err = check_server_version(&info(old), "redis://127.0.0.1:6379/0").unwrap_err();
            let Error::InvalidConfig { field, reason } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(field, "redis");
            assert!(reason.contains("6.2 or newer"), "{reason}");
            assert!(reason.contains(&format!("runs Redis {old}")), "{reason}");
            assert!(reason.contains("redis://127.0.0.1:6379/0"), "{reason}");
        }
        for fine in ["6.2.0", "6.2.14", "7.0.15", "7.4.1", "8.0.0", "10.1.2"] {
            assert!(check_server_version(&info(fine), "x").is_ok(), "{fine}");
        }
        // No version, or not a number (a Redis-compatible server): let through.
        assert!(check_server_version("# Server\r\nvalkey_version:8.0.1\r\n", "x").is_ok());
        assert!(check_server_version(&info("unknown"), "x").is_ok());
    }

    #[test]
    fn a_denied_command_is_named_with_its_keys() {
        let pipeline = redis::pipe()
            .cmd("SET")
            .arg("k1")
            .arg("v")
            .cmd("HSET")
            .arg("hydra:service:nodes")
            .arg("f")
            .arg("v")
            .get_packed_pipeline();
        let said = "this user has no permissions to run the 'hset' command";
        assert_eq!(
            describe_denied(&pipeline, 1, said).unwrap(),
            "HSET on hydra:service:nodes"
        );
        // In a transaction the index counts from the first command after MULTI.
        let transaction = redis::pipe()
            .atomic()
            .cmd("LPUSH")
            .arg("log")
            .arg("x")
            .cmd("EXPIRE")
            .arg("other")
            .arg(5)
            .get_packed_pipeline();
        assert_eq!(
            describe_denied(&transaction, 1, "No permissions to access a key").unwrap(),
            "EXPIRE on other"
        );
        // A script: its keys, and the command inside when Redis names it.
        let script = redis::cmd("EVALSHA")
            .arg("abc")
            .arg(2)
            .arg("a")
            .arg("b")
            .arg("argv")
            .get_packed_command();
        assert_eq!(
            describe_denied(&script, 0, said).unwrap(),
            "HSET (in a script, EVALSHA) on a, b"
        );
        assert!(parse_packed(b"*1\r\n$4\r\nPI").is_none());
    }
}
