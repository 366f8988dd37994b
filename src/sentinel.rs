//! Redis Sentinel: where the master is, asked of the sentinels every time a
//! connection is opened, so that every part of the library follows a failover.
//!
//! Configured in Node's object form, as ioredis spells it (and as Node hydra
//! PR #214, which switches Hydra to ioredis, passes it through):
//! `redis: {sentinels: [{host, port}], name, password, username, db,
//! sentinelPassword, sentinelUsername, role}`; or by URL, in the
//! `redis+sentinel://` form defined by the Python package Redis-Sentinel-Url
//! and used by Prefect/docket:
//! `redis+sentinel://[[user]:password@]host[:port][,host2[:port2]…]/name[/db][?sentinel_password=…&sentinel_username=…]`
//! (sentinel ports default to 26379; the login before `@` is the data nodes').
//!
//! Resolution follows Redis's "Sentinel client spec": ask the sentinels in
//! turn (`SENTINEL get-master-addr-by-name`), each within the connect and
//! command timeouts, the one that answered last first; connect to the address
//! named; confirm with `ROLE` that it is a master (a node just demoted, or one
//! a sentinel with a stale view still names, is refused and the caller tries
//! again). [`Store`](crate::store::Store) does this for every new command
//! connection, the listener for every subscription, the queue workers for
//! their blocking connections.
//!
//! Why not redis-rs's `sentinel` feature: its synchronous `Sentinel` opens
//! sentinel connections with no connect timeout and keeps them with no read
//! timeout (a frozen sentinel would block a caller for ever, against our rule
//! of no unbounded waits), checks `ROLE` on a throw-away connection rather
//! than on the one handed out (a demotion in between goes unseen, and every
//! connect costs two), always starts with the first sentinel in the list, and
//! pulls in `rand`. What we need fits in a couple of hundred lines.
//!
//! A *switch* is the sentinels naming another address than they did last
//! time. It bumps an epoch and wakes whoever asked to hear of it
//! ([`Resolver::switches`]): the heartbeat re-writes presence on the new master
//! at once, the listener and the queue workers retry without waiting out
//! their backoff.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use redis::{Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisResult};
use serde_json::{Map, Value};

use crate::config::RedisConfig;
use crate::error::{Error, Result};
use crate::tls::{self, RedisTls};

/// Port of a sentinel when none is given (Redis's default for `redis-sentinel`).
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// The URL scheme of the Sentinel form.
pub(crate) const URL_SCHEME: &str = "redis+sentinel://";

/// Where the sentinels are, which master to ask them for, and how to log in
/// to them (the data nodes' login is in the [`RedisConfig`]'s settings).
#[derive(Clone)]
pub(crate) struct SentinelSettings {
    pub sentinels: Vec<(String, u16)>,
    pub master_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS to the sentinels (`redis.sentinelTLS`); the data nodes' is the
    /// [`RedisConfig`]'s.
    pub tls: Option<RedisTls>,
}

impl SentinelSettings {
    /// `redis+sentinel://[login]h1:p1,h2:p2/name/db`, passwords masked.
    pub(crate) fn display(&self, data_login: &str, db: i64) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|(h, p)| host_port(h, *p)).collect();
        format!("{URL_SCHEME}{data_login}{}/{}/{db}", hosts.join(","), self.master_name)
    }
}

impl std::fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSettings")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses the `redis+sentinel://` URL form (see the module docs).
pub(crate) fn config_from_url(url: &str) -> Result<RedisConfig> {
    let bad = |reason: String| Error::invalid_config("redis.url", reason);
    let rest = url
        .strip_prefix(URL_SCHEME)
        .ok_or_else(|| bad(format!("expected {URL_SCHEME}…")))?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (login, hosts) = match authority.rsplit_once('@') {
        Some((login, hosts)) => (Some(login), hosts),
        None => (None, authority),
    };
    let (username, password) = match login {
        None => (None, None),
        Some(login) => {
            let (user, pass) = login.split_once(':').unwrap_or((login, ""));
            (
                non_empty(decode(user, "redis.url")?),
                non_empty(decode(pass, "redis.url")?),
            )
        }
    };
    let mut sentinels = Vec::new();
    for entry in hosts.split(',') {
        sentinels.push(parse_host_port(entry).map_err(|reason| bad(format!("{reason} (in {})", redact(url))))?);
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master_name = decode(parts.next().unwrap_or(""), "redis.url")?;
    if master_name.is_empty() {
        return Err(bad(format!(
            "the master's name is missing: {URL_SCHEME}host:26379/<name>[/db] (in {})",
            redact(url)
        )));
    }
    let db = match parts.next() {
        None => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| bad(format!("{db:?} is not a database number (in {})", redact(url))))?,
    };
    if let Some(extra) = parts.next() {
        return Err(bad(format!("unexpected path segment {extra:?} (in {})", redact(url))));
    }
    let (mut sentinel_username, mut sentinel_password) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = non_empty(decode(value, "redis.url")?);
        match key {
            "sentinel_password" | "sentinelPassword" => sentinel_password = value,
            "sentinel_username" | "sentinelUsername" => sentinel_username = value,
            other => {
                return Err(bad(format!(
                    "unknown option {other:?}: only sentinel_password and sentinel_username are understood"
                )));
            }
        }
    }
    let settings = SentinelSettings {
        sentinels,
        master_name,
        username: sentinel_username,
        password: sentinel_password,
        tls: None,
    };
    Ok(RedisConfig::from_sentinel(settings, db, username, password))
}

/// Parses Node's (ioredis's) object form: `{sentinels: [{host, port}], name,
/// password, username, db, sentinelPassword, sentinelUsername, role}`.
pub(crate) fn config_from_object(map: &Map<String, Value>) -> Result<RedisConfig> {
    for key in ["url", "host", "port"] {
        if map.get(key).is_some_and(|v| !v.is_null()) {
            return Err(Error::invalid_config(
                format!("redis.{key}"),
                "not used with redis.sentinels: the sentinels say where the master is (remove one of them)",
            ));
        }
    }
    let text = |key: &str| -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(non_empty(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(Error::invalid_config(
                format!("redis.{key}"),
                format!("must be a string, got {other}"),
            )),
        }
    };
    let list = match map.get("sentinels") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            return Err(Error::invalid_config(
                "redis.sentinels",
                "must name at least one sentinel",
            ));
        }
        other => {
            return Err(Error::invalid_config(
                "redis.sentinels",
                format!(
                    "must be a list of {{\"host\": …, \"port\": …}}, got {}",
                    other.unwrap_or(&Value::Null)
                ),
            ));
        }
    };
    let mut sentinels = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let field = format!("redis.sentinels[{i}]");
        let parsed = match entry {
            Value::String(text) => parse_host_port(text),
            Value::Object(entry) => sentinel_from_object(entry),
            other => Err(format!("must be {{\"host\": …, \"port\": …}}, got {other}")),
        };
        sentinels.push(parsed.map_err(|reason| Error::invalid_config(field, reason))?);
    }
    let master_name = text("name")?.ok_or_else(|| {
        Error::invalid_config(
            "redis.name",
            "the name of the master the sentinels monitor (e.g. \"mymaster\") is required with redis.sentinels",
        )
    })?;
    match text("role")?.as_deref() {
        None | Some("master") => {}
        Some(other) => {
            return Err(Error::invalid_config(
                "redis.role",
                format!("only \"master\" is supported (Hydra writes on every connection), got {other:?}"),
            ));
        }
    }
    let db = match text("db")? {
        None => 0,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| Error::invalid_config("redis.db", format!("{d:?} is not a database number")))?,
    };
    let settings = SentinelSettings {
        sentinels,
        master_name,
        username: text("sentinelUsername")?,
        password: text("sentinelPassword")?,
        tls: None,
    };
    Ok(RedisConfig::from_sentinel(
        settings,
        db,
        text("username")?,
        text("password")?,
    ))
}

/// `tls` and `sentinelTLS` beside the sentinels, as ioredis names them: TLS to
/// the data nodes the sentinels name, and to the sentinels themselves (each
/// certificate checked against the address connected to, so no `servername`).
///
/// ioredis uses `tls` for the data nodes only with `enableTLSForSentinelMode:
/// true` — without it, it connects to them in plain text although `tls` is
/// set. Here `tls` alone means TLS; `enableTLSForSentinelMode: false` beside
/// it is refused as a contradiction rather than obeyed or ignored.
pub(crate) fn with_tls(config: RedisConfig, map: &Map<String, Value>) -> Result<RedisConfig> {
    let read = |field: &'static str, key: &str| -> Result<Option<RedisTls>> {
        match map.get(key) {
            None => Ok(None),
            Some(value) => RedisTls::from_setting(field, value, None),
        }
    };
    let data = read("redis.tls", "tls")?;
    let sentinels = read("redis.sentinelTLS", "sentinelTLS")?;
    let field = "redis.enableTLSForSentinelMode";
    match (map.get("enableTLSForSentinelMode"), data.is_some()) {
        (None | Some(Value::Null), _) | (Some(Value::Bool(true)), true) | (Some(Value::Bool(false)), false) => {}
        (Some(Value::Bool(true)), false) => {
            return Err(Error::invalid_config(
                field,
                "needs redis.tls: the TLS settings for the data nodes",
            ));
        }
        (Some(Value::Bool(false)), true) => {
            return Err(Error::invalid_config(
                field,
                "false contradicts redis.tls: hydra-rs does not connect in plain text when TLS is set (remove one)",
            ));
        }
        (Some(other), _) => {
            return Err(Error::invalid_config(
                field,
                format!("must be true or false, got {other}"),
            ));
        }
    }
    Ok(config.with_sentinel_tls(data, sentinels))
}

fn sentinel_from_object(entry: &Map<String, Value>) -> std::result::Result<(String, u16), String> {
    let host = match entry.get("host") {
        None | Some(Value::Null) => "127.0.0.1".to_string(),
        Some(Value::String(h)) if !h.trim().is_empty() => h.trim().to_string(),
        Some(other) => return Err(format!("host must be a non-empty string, got {other}")),
    };
    let port = match entry.get("port") {
        None | Some(Value::Null) => DEFAULT_SENTINEL_PORT,
        Some(Value::Number(n)) => port_number(&n.to_string())?,
        Some(Value::String(s)) => port_number(s)?,
        Some(other) => return Err(format!("port must be a number, got {other}")),
    };
    Ok((host, port))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_host_port(text: &str) -> std::result::Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("{text:?}: unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?}: a sentinel's host is missing"));
    }
    let port = match port {
        Some(port) => port_number(port)?,
        None => DEFAULT_SENTINEL_PORT,
    };
    Ok((host.to_string(), port))
}

fn port_number(text: &str) -> std::result::Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{text:?} is not a port number"))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Percent-decoding of URL parts (a password may hold `@`, `:` or `/`).
fn decode(text: &str, field: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid_config(field, "a % escape is not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid_config(field, "a % escape decodes to invalid UTF-8"))
}

/// The URL with its password masked, for messages.
fn redact(url: &str) -> String {
    let Some(rest) = url.strip_prefix(URL_SCHEME) else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((login, hosts)) if login.contains(':') => {
            let user = login.split_once(':').map_or("", |(u, _)| u);
            format!("{URL_SCHEME}{user}:***@{hosts}")
        }
        _ => url.to_string(),
    }
    .split('?')
    .next()
    .unwrap_or_default()
    .to_string()
}

/// Finds the master for one [`Store`](crate::store::Store): asks the sentinels,
/// remembers which answered, and tells listeners when the master moved.
pub(crate) struct Resolver {
    settings: SentinelSettings,
    /// Indexes into `settings.sentinels`; the last one that answered first.
    order: Mutex<Vec<usize>>,
    /// The connection to the sentinel that answered last, kept for the next
    /// question (the heartbeat asks every second).
    kept: Mutex<Option<(usize, Connection)>>,
    /// The address the sentinels named last.
    master: Mutex<Option<(String, u16)>>,
    /// Bumped at every switch.
    epoch: AtomicU64,
    watchers: Mutex<Vec<Sender<()>>>,
}

impl Resolver {
    pub(crate) fn new(settings: SentinelSettings) -> Resolver {
        let order = (0..settings.sentinels.len()).collect();
        Resolver {
            settings,
            order: Mutex::new(order),
            kept: Mutex::new(None),
            master: Mutex::new(None),
            epoch: AtomicU64::new(0),
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// The name of the master the sentinels are asked for.
    pub(crate) fn master_name(&self) -> &str {
        &self.settings.master_name
    }

    /// How many times the master has moved since this resolver started.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// A receiver that gets a (coalesced) wake-up at every switch.
    pub(crate) fn switches(&self) -> Receiver<()> {
        let (tx, rx) = bounded(1);
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// The master's address, from the first sentinel (the last good one
    /// first) that knows it. Each sentinel costs at most one connect timeout
    /// and one command timeout.
    pub(crate) fn master_address(
        &self,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RedisResult<(String, u16)> {
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut failures = Vec::new();
        for index in order {
            let (host, port) = &self.settings.sentinels[index];
            match self.ask(index, connect_timeout, command_timeout) {
                Ok(Some(address)) => {
                    self.promote(index);
                    self.note(&address);
                    return Ok(address);
                }
                Ok(None) => failures.push(format!(
                    "{} does not know a master named {:?}",
                    host_port(host, *port),
                    self.settings.master_name
                )),
                Err(e) => failures.push(format!(
                    "{}: {}{}",
                    host_port(host, *port),
                    crate::error::describe_redis_error(&e),
                    match &self.settings.tls {
                        None => tls::plain_text_reset_hint(&e, "redis.sentinelTLS").unwrap_or_default(),
                        Some(_) => String::new(),
                    }
                )),
            }
        }
        Err(not_usable(format!(
            "no sentinel named the master {:?}: {}",
            self.settings.master_name,
            failures.join("; ")
        )))
    }

    /// The periodic check (the heartbeat's): asks only the first sentinel in
    /// the order, once, within `timeout` (a slow sentinel must not delay a
    /// beat); one that fails goes to the back, so the next check asks
    /// another. `None` when it did not answer.
    pub(crate) fn glance(&self, timeout: Duration) -> Option<(String, u16)> {
        let index = *self.order.lock().unwrap_or_else(|p| p.into_inner()).first()?;
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|(i, _)| *i == index);
        let mut conn = match kept {
            Some((_, conn)) => Some(conn),
            None => self.connect(index, timeout, timeout).ok(),
        };
        let reply = conn.as_mut().map(|c| {
            let _ = c.set_read_timeout(Some(timeout));
            self.query(c)
        });
        match reply {
            Some(Ok(Some(address))) => {
                *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = conn.map(|c| (index, c));
                self.note(&address);
                Some(address)
            }
            _ => {
                let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
                order.retain(|i| *i != index);
                order.push(index);
                None
            }
        }
    }

    /// Asks sentinel `index`, on the kept connection when it is that one's
    /// (once more on a fresh one should the kept one have gone stale).
    fn ask(
        &self,
        index: usize,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RedisResult<Option<(String, u16)>> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|(i, _)| *i == index);
        let (mut conn, reused) = match kept {
            Some((_, conn)) => (conn, true),
            None => (self.connect(index, connect_timeout, command_timeout)?, false),
        };
        let mut reply = self.query(&mut conn);
        if reply.is_err() && reused {
            conn = self.connect(index, connect_timeout, command_timeout)?;
            reply = self.query(&mut conn);
        }
        if reply.is_ok() {
            *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some((index, conn));
        }
        reply
    }

    fn connect(&self, index: usize, connect_timeout: Duration, command_timeout: Duration) -> RedisResult<Connection> {
        let (host, port) = &self.settings.sentinels[index];
        let mut login = RedisConnectionInfo::default();
        if let Some(user) = &self.settings.username {
            login = login.set_username(user);
        }
        if let Some(pass) = &self.settings.password {
            login = login.set_password(pass);
        }
        let info = ConnectionAddr::Tcp(host.clone(), *port)
            .into_connection_info()?
            .set_redis_settings(login);
        let conn = tls::client(&info, self.settings.tls.as_ref())?.get_connection_with_timeout(connect_timeout)?;
        conn.set_read_timeout(Some(command_timeout))?;
        conn.set_write_timeout(Some(command_timeout))?;
        Ok(conn)
    }

    fn query(&self, conn: &mut Connection) -> RedisResult<Option<(String, u16)>> {
        let reply: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.settings.master_name)
            .query(conn)?;
        Ok(match reply {
            Some((ip, port)) => Some((
                ip,
                port.parse()
                    .map_err(|_| not_usable(format!("sentinel gave port {port:?}")))?,
            )),
            None => None,
        })
    }

    fn promote(&self, index: usize) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if order.first() != Some(&index) {
            order.retain(|i| *i != index);
            order.insert(0, index);
        }
    }

    /// Records the address named; a new one is a switch.
    fn note(&self, address: &(String, u16)) {
        let mut master = self.master.lock().unwrap_or_else(|p| p.into_inner());
        if master.as_ref() == Some(address) {
            return;
        }
        let previous = master.replace(address.clone());
        drop(master);
        let Some((old_host, old_port)) = previous else {
            return;
        };
        log::warn!(
            "Sentinel: the master {:?} is now {} (was {}); reconnecting there",
            self.settings.master_name,
            host_port(&address.0, address.1),
            host_port(&old_host, old_port)
        );
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|tx| !matches!(tx.try_send(()), Err(TrySendError::Disconnected(()))));
    }
}

/// The connection details of the data node at `host:port`: `template`'s
/// login and database, and its kind of address (plain or TLS).
pub(crate) fn at_address(template: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match template.addr() {
        ConnectionAddr::TcpTls {
            insecure, tls_params, ..
        } => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    template.clone().set_addr(addr)
}

/// Checks with `ROLE` that `conn` (to `host:port`, named by the sentinels)
/// is a master: a replica (just demoted, or named by a sentinel whose view
/// is stale) is refused with an error that says so.
///
/// A user whose ACL does not allow `ROLE` is let through (the sentinels'
/// word is taken; a replica still shows itself by answering `READONLY`).
pub(crate) fn verify_master(conn: &mut Connection, master_name: &str, host: &str, port: u16) -> RedisResult<()> {
    let reply: Vec<redis::Value> = match redis::cmd("ROLE").query(conn) {
        Ok(reply) => reply,
        Err(e) if e.code() == Some("NOPERM") => {
            log::debug!("cannot check the role of {}: {e}", host_port(host, port));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let role = match reply.first() {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(redis::Value::SimpleString(text)) => text.clone(),
        _ => String::new(),
    };
    if role == "master" {
        return Ok(());
    }
    Err(not_usable(format!(
        "the sentinels name {} as the master {master_name:?}, but it reports the role {role:?} \
         (a failover is under way); trying again",
        host_port(host, port)
    )))
}

/// An error that makes callers treat the attempt as a failed connect (dropped,
/// retried with backoff), with `message` as its text.
fn not_usable(message: String) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;
    use serde_json::json;

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidConfig { field, .. } => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    fn redis_of(redis: Value) -> Result<RedisConfig> {
        let doc = json!({"hydra": {"serviceName": "a", "redis": redis}});
        ConfigBuilder::from_value(doc)?.build().map(|c| c.redis().clone())
    }

    #[test]
    fn the_ioredis_object_form_is_read() {
        let config = redis_of(json!({
            "sentinels": [{"host": "10.0.0.1", "port": 26380}, {"host": "10.0.0.2"}, "10.0.0.3:5000"],
            "name": "mymaster", "password": "data-pw", "db": 15,
            "sentinelPassword": "s-pw", "sentinelUsername": "watcher", "role": "master"
        }))
        .unwrap();
        let sentinel = config.sentinel().unwrap();
        assert_eq!(
            sentinel.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26380),
                ("10.0.0.2".to_string(), 26379),
                ("10.0.0.3".to_string(), 5000)
            ]
        );
        assert_eq!(sentinel.master_name, "mymaster");
        assert_eq!(sentinel.password.as_deref(), Some("s-pw"));
        assert_eq!(sentinel.username.as_deref(), Some("watcher"));
        assert_eq!(config.db(), 15);
        assert_eq!(config.connection_info().redis_settings().password(), Some("data-pw"));
        assert_eq!(
            config.display_url(),
            "redis+sentinel://:***@10.0.0.1:26380,10.0.0.2:26379,10.0.0.3:5000/mymaster/15"
        );
        let shown = format!("{config:?} {sentinel:?}");
        assert!(!shown.contains("data-pw") && !shown.contains("s-pw"), "{shown}");
    }

    #[test]
    fn tls_for_the_data_nodes_and_for_the_sentinels_is_read_apart() {
        let with = |extra: Value| {
            let mut redis = json!({"sentinels": [{"host": "h"}], "name": "m"});
            redis
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            redis_of(redis)
        };
        let plain = with(json!({"tls": false})).unwrap();
        assert!(!plain.is_tls() && plain.sentinel().unwrap().tls.is_none());
        let data_only = with(json!({"tls": true})).unwrap();
        assert!(data_only.is_tls() && data_only.sentinel().unwrap().tls.is_none());
        assert!(
            data_only.display_url().starts_with("rediss+sentinel://"),
            "{}",
            data_only.display_url()
        );
        let both = with(json!({"tls": true, "sentinelTLS": true, "enableTLSForSentinelMode": true})).unwrap();
        assert!(both.is_tls() && both.sentinel().unwrap().tls.is_some());
        let sentinels_only = with(json!({"sentinelTLS": true})).unwrap();
        assert!(!sentinels_only.is_tls() && sentinels_only.sentinel().unwrap().tls.is_some());
        // The URL form takes them from beside the URL.
        let url = redis_of(json!({"url": "redis+sentinel://h/m", "tls": true, "sentinelTLS": true})).unwrap();
        assert!(url.is_tls() && url.sentinel().unwrap().tls.is_some());

        for (extra, field) in [
            (
                json!({"tls": true, "enableTLSForSentinelMode": false}),
                "redis.enableTLSForSentinelMode",
            ),
            (
                json!({"enableTLSForSentinelMode": true}),
                "redis.enableTLSForSentinelMode",
            ),
            (
                json!({"tls": true, "enableTLSForSentinelMode": "yes"}),
                "redis.enableTLSForSentinelMode",
            ),
            (json!({"tls": {"servername": "redis.internal"}}), "redis.tls.servername"),
            (
                json!({"sentinelTLS": {"servername": "h"}}),
                "redis.sentinelTLS.servername",
            ),
            (
                json!({"sentinelTLS": {"ca": "/nonexistent/ca.pem"}}),
                "redis.sentinelTLS.ca",
            ),
            (
                json!({"sentinelTLS": {"cert": "/nonexistent/c.pem"}}),
                "redis.sentinelTLS.key",
            ),
            (
                json!({"sentinelTLS": {"rejectUnauthorized": false}}),
                "redis.sentinelTLS.rejectUnauthorized",
            ),
            (json!({"sentinelTLS": 1}), "redis.sentinelTLS"),
        ] {
            let err = with(extra.clone()).unwrap_err();
            assert_eq!(field_of(err), field, "{extra}");
        }
    }

    #[test]
    fn the_url_form_is_read() {
        let config = RedisConfig::from_url(
            "redis+sentinel://:p%40ss@127.0.0.1:26379,[::1],sentinel-3:26381/mymaster/15?sentinel_password=sp",
        )
        .unwrap();
        let sentinel = config.sentinel().unwrap();
        assert_eq!(
            sentinel.sentinels,
            vec![
                ("127.0.0.1".to_string(), 26379),
                ("::1".to_string(), 26379),
                ("sentinel-3".to_string(), 26381)
            ]
        );
        assert_eq!(sentinel.password.as_deref(), Some("sp"));
        assert_eq!(config.connection_info().redis_settings().password(), Some("p@ss"));
        assert_eq!(config.db(), 15);
        assert_eq!(
            config.display_url(),
            "redis+sentinel://:***@127.0.0.1:26379,[::1]:26379,sentinel-3:26381/mymaster/15"
        );
        let plain = RedisConfig::from_url("redis+sentinel://h1,h2/m").unwrap();
        assert_eq!(plain.db(), 0);
        assert_eq!(plain.sentinel().unwrap().master_name, "m");
        assert_eq!(plain.with_db(4).display_url(), "redis+sentinel://h1:26379,h2:26379/m/4");
        assert!(plain.with_db(4).sentinel().is_some());
    }

    #[test]
    fn bad_sentinel_settings_name_the_field() {
        for (redis, field) in [
            (json!({"sentinels": [], "name": "m"}), "redis.sentinels"),
            (json!({"sentinels": "h:1", "name": "m"}), "redis.sentinels"),
            (json!({"sentinels": [{"host": "h"}]}), "redis.name"),
            (
                json!({"sentinels": [{"host": "h", "port": "x"}], "name": "m"}),
                "redis.sentinels[0]",
            ),
            (
                json!({"sentinels": [{"host": "h"}, {"host": ""}], "name": "m"}),
                "redis.sentinels[1]",
            ),
            (
                json!({"sentinels": [{"host": "h"}, 7], "name": "m"}),
                "redis.sentinels[1]",
            ),
            (
                json!({"sentinels": [{"host": "h"}], "name": "m", "role": "slave"}),
                "redis.role",
            ),
            (json!({"sentinels": [{"host": "h"}], "name": "m", "db": -1}), "redis.db"),
            (
                json!({"sentinels": [{"host": "h"}], "name": "m", "url": "redis://x"}),
                "redis.url",
            ),
            (
                json!({"sentinels": [{"host": "h"}], "name": "m", "host": "x"}),
                "redis.host",
            ),
            (
                json!({"sentinels": [{"host": "h"}], "name": "m", "sentinelPassword": {}}),
                "redis.sentinelPassword",
            ),
            (json!({"url": "redis+sentinel://h:1"}), "redis.url"),
            (json!({"url": "redis+sentinel://h:1/"}), "redis.url"),
            (json!({"url": "redis+sentinel://h:x/m"}), "redis.url"),
            (json!({"url": "redis+sentinel://h,/m"}), "redis.url"),
            (json!({"url": "redis+sentinel://h/m/x"}), "redis.url"),
            (json!({"url": "redis+sentinel://h/m/1/2"}), "redis.url"),
            (json!({"url": "redis+sentinel://h/m?tls=1"}), "redis.url"),
            (json!({"url": "redis+sentinel://:%zz@h/m"}), "redis.url"),
        ] {
            let err = redis_of(redis.clone()).unwrap_err();
            assert_eq!(field_of(err), field, "{redis}");
        }
        let err = RedisConfig::from_url("redis+sentinel://:secret@h:x/m").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn the_environment_url_may_name_sentinels() {
        let config = crate::Config::builder()
            .service_name("a")
            .apply_env_from(|name| (name == "HYDRA_REDIS_URL").then(|| "redis+sentinel://s1:26379/mm/3".to_string()))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.redis().sentinel().unwrap().master_name, "mm");
        assert_eq!(config.redis().db(), 3);
    }

    #[test]
    fn the_data_node_keeps_the_login_database_and_kind_of_address() {
        let template = RedisConfig::from_url("redis+sentinel://u:pw@s1/m/7").unwrap();
        let info = at_address(template.connection_info(), "10.1.1.1", 6380);
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("10.1.1.1".into(), 6380));
        assert_eq!(info.redis_settings().db(), 7);
        assert_eq!(info.redis_settings().username(), Some("u"));
        assert_eq!(info.redis_settings().password(), Some("pw"));
    }

    #[test]
    fn the_sentinel_that_answered_is_asked_first_and_a_new_address_is_a_switch() {
        let resolver = Resolver::new(SentinelSettings {
            sentinels: vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
            master_name: "m".into(),
            username: None,
            password: None,
            tls: None,
        });
        resolver.promote(2);
        assert_eq!(*resolver.order.lock().unwrap(), vec![2, 0, 1]);
        resolver.promote(1);
        assert_eq!(*resolver.order.lock().unwrap(), vec![1, 2, 0]);
        let switches = resolver.switches();
        resolver.note(&("h".into(), 1));
        assert_eq!(resolver.epoch(), 0, "the first address is no switch");
        resolver.note(&("h".into(), 1));
        resolver.note(&("h".into(), 2));
        resolver.note(&("h".into(), 3));
        assert_eq!(resolver.epoch(), 2);
        assert!(switches.try_recv().is_ok());
        assert!(switches.try_recv().is_err(), "wake-ups are coalesced");
    }
}
