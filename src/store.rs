//! Redis connections: every connection has connect and command timeouts; broken
//! connections are dropped and replaced on the next call; while Redis is down,
//! calls fail fast instead of each waiting out a connect timeout.
//!
//! The store is a small pool of synchronous connections (`redis::Connection`),
//! so callers on several threads do not queue behind one socket.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError};

use crate::config::RedisConfig;
use crate::error::{Error, Result};
use crate::subscription::Subscription;

/// Idle connections kept for reuse; more may be open while busy. Generous, so
/// that many threads sharing one handle do not open and close a connection per
/// call once they outnumber the pool (which would also pile up TIME_WAIT sockets).
const MAX_IDLE: usize = 64;
/// After a failed connect, further connects fail immediately for this long,
/// doubling up to `MAX_RETRY_GAP`, so a dead Redis costs callers nothing.
const FIRST_RETRY_GAP: Duration = Duration::from_millis(50);
const MAX_RETRY_GAP: Duration = Duration::from_millis(500);

/// A pool of Redis connections with timeouts.
pub(crate) struct Store {
    client: Client,
    target: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    gate: Mutex<ConnectGate>,
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
        let client = Client::open(redis.connection_info().clone())?;
        Ok(Store {
            client,
            target: redis.display_url().to_string(),
            connect_timeout,
            command_timeout,
            idle: Mutex::new(Vec::new()),
            gate: Mutex::new(ConnectGate::default()),
        })
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
    pub(crate) fn run<T>(&self, mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let (mut conn, reused) = self.checkout()?;
        match f(&mut conn) {
            Ok(value) => {
                self.checkin(conn);
                Ok(value)
            }
            Err(e) if reused && e.is_connection_dropped() && !e.is_timeout() => {
                drop(conn);
                let mut fresh = self.connect()?;
                let result = f(&mut fresh);
                self.finish(fresh, result)
            }
            Err(e) => self.finish(conn, Err(e)),
        }
    }

    fn finish<T>(&self, conn: Connection, result: redis::RedisResult<T>) -> Result<T> {
        match result {
            Ok(value) => {
                self.checkin(conn);
                Ok(value)
            }
            Err(e) => {
                if !is_connection_fault(&e) {
                    self.checkin(conn);
                }
                Err(Error::Redis(e))
            }
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
        Subscription::open(
            self.client.get_connection_info(),
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
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.connect()?, false)),
        }
    }

    fn checkin(&self, conn: Connection) {
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
        let result = self
            .client
            .get_connection_with_timeout(self.connect_timeout)
            .and_then(|conn| {
                conn.set_read_timeout(Some(self.command_timeout))?;
                conn.set_write_timeout(Some(self.command_timeout))?;
                Ok(conn)
            });
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(conn) => {
                *gate = ConnectGate::default();
                Ok(conn)
            }
            Err(e) => {
                gate.gap = (gate.gap * 2).clamp(FIRST_RETRY_GAP, MAX_RETRY_GAP);
                gate.closed_until = Some(Instant::now() + gate.gap);
                gate.last_error = Some(e.to_string());
                Err(Error::Redis(self.explain_connect_error(e)))
            }
        }
    }
}

impl Store {
    /// Names the target in socket-level connect errors ("Connection refused"
    /// alone does not say which Redis); other errors (auth, …) say enough.
    fn explain_connect_error(&self, e: RedisError) -> RedisError {
        match e.kind() {
            redis::ErrorKind::Io => {
                let kind = if e.is_timeout() {
                    std::io::ErrorKind::TimedOut
                } else {
                    std::io::ErrorKind::ConnectionRefused
                };
                RedisError::from(std::io::Error::new(
                    kind,
                    format!(
                        "cannot connect to Redis at {} within {:?}: {e}",
                        self.target, self.connect_timeout
                    ),
                ))
            }
            _ => e,
        }
    }
}

/// True when the connection can no longer be trusted: the socket failed, or a
/// reply timed out (a late reply would be read as the answer to the next command).
pub(crate) fn is_connection_fault(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}
