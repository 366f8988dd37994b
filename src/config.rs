//! Service configuration: a builder that does no I/O, Node Hydra's
//! `{"hydra": {...}}` JSON documents, and the `HYDRA_REDIS_URL` / `HYDRA_SERVICE`
//! environment overrides (spec §11).
//!
//! The builder keeps the `hydra` branch as a JSON object, exactly as Node merges
//! it (file, then environment, then explicit setters win), and validates it in
//! [`ConfigBuilder::build`], naming the field at fault.

use std::path::Path;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::sentinel::{self, SentinelSettings};
use crate::signing::Signing;
use crate::tls::RedisTls;

/// Node Hydra's default Redis: db 15, so a Node service and ours meet with no config.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/15";
/// Default for connecting to Redis, including the handshake (AUTH, SELECT).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default read/write timeout of every Redis command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Default lifetime of cached presence lists (Node caches 3 s; ours is shorter
/// because a lookup costs one round trip, not a keyspace scan).
pub const DEFAULT_PRESENCE_CACHE_TTL: Duration = Duration::from_millis(500);
/// Default number of threads running message handlers.
pub const DEFAULT_MESSAGE_WORKERS: usize = 4;
/// Default cap on the number of messages waiting for a handler (or in the pull
/// receiver). The byte budget ([`DEFAULT_MAX_QUEUED_MESSAGE_BYTES`]) binds first
/// by default: the count only matters when set lower.
pub const DEFAULT_MESSAGE_QUEUE_CAPACITY: usize = 1 << 20;
/// Default memory budget of the messages waiting for a handler (or in the pull
/// receiver): their payload bytes plus a fixed 512 bytes each. When it is
/// reached the listener stops reading (Redis buffers the rest, up to its
/// pub/sub output limit) and drops only after that has lasted 5 s.
pub const DEFAULT_MAX_QUEUED_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Default size limit of one incoming message (larger ones are dropped).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Names a service may not take: they collide with Hydra's own key layout or
/// with the globs Node uses to read it (spec §2.11).
const RESERVED_NAMES: [&str; 4] = ["service", "hydra", "mc", "nodes"];

/// How the service port is chosen (`servicePort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// A fixed port, stored in the `nodes` record as a string (as Node does).
    Fixed(u16),
    /// `0` or absent: a random free port in 1024–65535, stored as a number.
    Random,
    /// `"3000-4000"` or `"3000-3010,4000"`: a random free port in one of the
    /// inclusive ranges, stored as a number.
    Ranges(Vec<(u16, u16)>),
}

/// Where Redis is, how to log in, and whether (and how) to speak TLS: one
/// server, or the master that Redis Sentinel names (`redis+sentinel://…`, or
/// `redis.sentinels` in the config).
#[derive(Clone)]
pub struct RedisConfig {
    /// The address is always `ConnectionAddr::Tcp` or `Unix`: TLS is `tls`,
    /// applied when a connection is made (`tls::client`).
    info: ConnectionInfo,
    tls: Option<RedisTls>,
    display: String,
    /// With Sentinel: the sentinels to ask; `info` then holds the data
    /// nodes' login and database, its address only a placeholder.
    sentinel: Option<SentinelSettings>,
}

impl RedisConfig {
    /// Parses a `redis://[user][:password@]host[:port][/db]` URL, `rediss://…`
    /// for TLS trusting the system's certificate store (a CA file or a client
    /// certificate go in the `redis.tls` settings of a config document), or
    /// the Sentinel form
    /// `redis+sentinel://[[user]:password@]host[:port][,host2[:port2]…]/name[/db][?sentinel_password=…]`.
    pub fn from_url(url: &str) -> Result<RedisConfig> {
        if url.starts_with(sentinel::URL_SCHEME) {
            return sentinel::config_from_url(url);
        }
        let (info, tls_scheme) = parse_url(url)?;
        let tls = if tls_scheme {
            Some(RedisTls::system_roots()?)
        } else {
            None
        };
        Ok(RedisConfig::from_info(info, tls))
    }

    /// Builds from Node's object form `{host, port, db, password}` (plus
    /// `username` for an ACL user).
    pub fn from_parts(
        host: &str,
        port: u16,
        db: i64,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<RedisConfig> {
        Ok(RedisConfig::from_info(
            parts_info(host, port, db, username, password)?,
            None,
        ))
    }

    fn from_info(info: ConnectionInfo, tls: Option<RedisTls>) -> RedisConfig {
        let settings = info.redis_settings();
        let user = settings.username().unwrap_or("");
        let login = match (user.is_empty(), settings.password().is_some()) {
            (true, false) => String::new(),
            (true, true) => ":***@".to_string(),
            (false, false) => format!("{user}@"),
            (false, true) => format!("{user}:***@"),
        };
        let scheme = if tls.is_some() { "rediss" } else { "redis" };
        let display = format!("{scheme}://{login}{}/{}", info.addr(), settings.db());
        let settings = settings.clone().set_lib_name("hydra-rs", env!("CARGO_PKG_VERSION"));
        RedisConfig {
            info: info.set_redis_settings(settings),
            tls,
            display,
            sentinel: None,
        }
    }

    /// The master named `settings.master_name` by the sentinels, with the
    /// data nodes' database and login.
    pub(crate) fn from_sentinel(
        settings: SentinelSettings,
        db: i64,
        username: Option<String>,
        password: Option<String>,
    ) -> RedisConfig {
        let (host, port) = settings.sentinels[0].clone();
        let mut login = RedisConnectionInfo::default().set_db(db);
        if let Some(user) = &username {
            login = login.set_username(user);
        }
        if let Some(pass) = &password {
            login = login.set_password(pass);
        }
        let shown_login = match (username.as_deref(), password.is_some()) {
            (None, false) => String::new(),
            (None, true) => ":***@".to_string(),
            (Some(user), false) => format!("{user}@"),
            (Some(user), true) => format!("{user}:***@"),
        };
        let display = settings.display(&shown_login, db);
        let login = login.set_lib_name("hydra-rs", env!("CARGO_PKG_VERSION"));
        // The address is a placeholder: the store asks the sentinels.
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .unwrap_or_else(|_| unreachable!("a TCP address is always connection info"))
            .set_redis_settings(login);
        RedisConfig {
            info,
            tls: None,
            display,
            sentinel: Some(settings),
        }
    }

    /// With Sentinel: TLS to the data nodes (`data`) and to the sentinels.
    pub(crate) fn with_sentinel_tls(mut self, data: Option<RedisTls>, sentinels: Option<RedisTls>) -> RedisConfig {
        if let Some(settings) = &mut self.sentinel {
            settings.tls = sentinels;
            if data.is_some() {
                self.display = self.display.replacen(sentinel::URL_SCHEME, "rediss+sentinel://", 1);
            }
            self.tls = data;
        }
        self
    }

    /// With Sentinel, the sentinels and the master's name.
    pub(crate) fn sentinel(&self) -> Option<&SentinelSettings> {
        self.sentinel.as_ref()
    }

    /// With Sentinel, the name of the master the sentinels are asked for.
    pub fn sentinel_master_name(&self) -> Option<&str> {
        self.sentinel.as_ref().map(|s| s.master_name.as_str())
    }

    /// The database number (Node's default is 15).
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    /// Whether connections use TLS (`rediss://` or `redis.tls`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connection URL with the password masked, for logs and errors.
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// Where to connect and how to log in; the address is plain TCP or Unix
    /// (see [`RedisConfig::tls`]).
    pub(crate) fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The TLS settings, when connections use TLS.
    pub(crate) fn tls(&self) -> Option<&RedisTls> {
        self.tls.as_ref()
    }

    /// The same server and login, database `db`.
    pub(crate) fn with_db(&self, db: i64) -> RedisConfig {
        let settings = self.info.redis_settings().clone().set_db(db);
        let info = self.info.clone().set_redis_settings(settings);
        let display = match self.display.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{db}"),
            None => self.display.clone(),
        };
        RedisConfig {
            info,
            tls: self.tls.clone(),
            display,
            sentinel: self.sentinel.clone(),
        }
    }
}

/// A `redis://` or `rediss://` URL's connection info (address as plain TCP),
/// and whether it asked for TLS.
fn parse_url(url: &str) -> Result<(ConnectionInfo, bool)> {
    let bad = |reason: &str| Error::invalid_config("redis.url", format!("{reason}: {}", redact(url)));
    let tls_scheme = url.starts_with("rediss://");
    if !tls_scheme && !url.starts_with("redis://") {
        return Err(bad("expected a redis://host:port/db (or rediss://) URL"));
    }
    let parsed = redis::parse_redis_url(url).ok_or_else(|| bad("not a valid URL"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("missing host"));
    }
    if parsed.fragment().is_some() {
        return Err(bad(
            "a #fragment (such as #insecure) is not supported: hydra-rs always verifies the server's certificate",
        ));
    }
    let path = parsed.path().trim_matches('/');
    if !path.is_empty() && path.parse::<u32>().is_err() {
        return Err(bad("the path must be a database number"));
    }
    let info = parsed.into_connection_info().map_err(|e| bad(&e.to_string()))?;
    let info = match info.addr().clone() {
        ConnectionAddr::TcpTls { host, port, .. } => info.set_addr(ConnectionAddr::Tcp(host, port)),
        _ => info,
    };
    Ok((info, tls_scheme))
}

fn parts_info(
    host: &str,
    port: u16,
    db: i64,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<ConnectionInfo> {
    if host.is_empty() {
        return Err(Error::invalid_config("redis.host", "must not be empty"));
    }
    let info = ConnectionAddr::Tcp(host.to_string(), port)
        .into_connection_info()
        .map_err(|e| Error::invalid_config("redis.host", e.to_string()))?;
    let mut settings = RedisConnectionInfo::default().set_db(db);
    if let Some(user) = username.filter(|u| !u.is_empty()) {
        settings = settings.set_username(user);
    }
    if let Some(pass) = password.filter(|p| !p.is_empty()) {
        settings = settings.set_password(pass);
    }
    Ok(info.set_redis_settings(settings))
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// A validated service configuration. Build one with [`Config::builder`],
/// [`Config::new`], [`ConfigBuilder::from_json`] or [`ConfigBuilder::from_file`].
#[derive(Clone)]
pub struct Config {
    pub(crate) service_name: String,
    pub(crate) service_description: String,
    pub(crate) service_ip: String,
    pub(crate) service_dns: String,
    pub(crate) service_port: PortSpec,
    pub(crate) service_type: String,
    pub(crate) service_version: String,
    pub(crate) redis: RedisConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) presence_cache_ttl: Duration,
    pub(crate) messaging: Tuning,
    pub(crate) signing: Option<Signing>,
    pub(crate) stored_config_label: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) document: Map<String, Value>,
}

/// Runtime tuning that is not part of Node's config document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub message_workers: usize,
    pub message_queue_capacity: usize,
    pub max_queued_message_bytes: usize,
    pub max_message_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            message_workers: DEFAULT_MESSAGE_WORKERS,
            message_queue_capacity: DEFAULT_MESSAGE_QUEUE_CAPACITY,
            max_queued_message_bytes: DEFAULT_MAX_QUEUED_MESSAGE_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl Config {
    /// A builder with nothing set (no environment read).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The near-zero configuration: a service name, then `HYDRA_REDIS_URL` and
    /// `HYDRA_SERVICE` from the environment, else the defaults.
    pub fn new(service_name: &str) -> Result<Config> {
        Config::builder().service_name(service_name).apply_env()?.build()
    }

    /// Service name, lowercased as Node does.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// `serviceDescription` (`"not specified"` when unset, as in Node's records).
    pub fn service_description(&self) -> &str {
        &self.service_description
    }

    /// `serviceType`.
    pub fn service_type(&self) -> &str {
        &self.service_type
    }

    /// `serviceVersion` (`"unspecified"` when unset).
    pub fn service_version(&self) -> &str {
        &self.service_version
    }

    /// `servicePort` as configured.
    pub fn service_port(&self) -> &PortSpec {
        &self.service_port
    }

    /// The Redis target.
    pub fn redis(&self) -> &RedisConfig {
        &self.redis
    }

    /// Timeout for connecting to Redis.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Read/write timeout of each Redis command.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The whole config document, `{"hydra": {...}, ...}` (other top-level
    /// branches of a file are kept for the application).
    pub fn document(&self) -> &Map<String, Value> {
        &self.document
    }

    /// When `HYDRA_SERVICE` named a stored config (`svc:version`), that label;
    /// `Hydra::init` loads it from Redis.
    pub fn stored_config_label(&self) -> Option<&str> {
        self.stored_config_label.as_deref()
    }

    /// The instance ID set with [`ConfigBuilder::instance_id`]; `None` means
    /// `Hydra::init` makes a random one, as Node does.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }
}

/// Shows every setting but masks the Redis password (the document, which may
/// hold it in a URL, is left out).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("service_name", &self.service_name)
            .field("service_description", &self.service_description)
            .field("service_ip", &self.service_ip)
            .field("service_dns", &self.service_dns)
            .field("service_port", &self.service_port)
            .field("service_type", &self.service_type)
            .field("service_version", &self.service_version)
            .field("redis", &self.redis)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("presence_cache_ttl", &self.presence_cache_ttl)
            .field("signing", &self.signing)
            .field("stored_config_label", &self.stored_config_label)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Config`]. Does no I/O except reading a file or the environment
/// when asked to.
///
/// Every setting lives in the document's `hydra` branch, so a JSON file, the
/// `HYDRA_SERVICE` variable and the setters all say the same things the same
/// way. Besides Node's keys, hydra-rs reads its own: `connectTimeout`,
/// `commandTimeout` and `presenceCacheTTL` (milliseconds), `messageWorkers`,
/// `messageQueueCapacity`, `maxQueuedMessageBytes` and `maxMessageBytes`. Node
/// ignores them.
///
/// ```
/// use std::time::Duration;
/// use hydra::{Config, ConfigBuilder, PortSpec};
///
/// # fn main() -> hydra::Result<()> {
/// // With setters (nothing is read from the environment unless asked).
/// let config = Config::builder()
///     .service_name("billing")
///     .service_port("3000-3010")
///     .redis_url("redis://127.0.0.1:6379/15")
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(config.service_port(), &PortSpec::Ranges(vec![(3000, 3010)]));
/// assert_eq!(config.redis().db(), 15);
///
/// // From a Node-format document (as in Node's config.json), then the
/// // environment (`HYDRA_REDIS_URL`, `HYDRA_SERVICE`) on top:
/// let config = ConfigBuilder::from_json(
///     r#"{"hydra": {"serviceName": "invoices", "servicePort": 8080, "messageWorkers": 8}}"#,
/// )?
/// .apply_env()?
/// .build()?;
/// assert_eq!(config.service_name(), "invoices");
///
/// // A bad value fails with the field named, before any connection is made.
/// let error = Config::builder().service_name("billing").service_port("abc").build().unwrap_err();
/// assert!(error.to_string().contains("servicePort"), "{error}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ConfigBuilder {
    document: Map<String, Value>,
    stored_config_label: Option<String>,
    instance_id: Option<String>,
}

/// hydra-rs's own keys in the `hydra` branch (Node ignores them); they carry
/// over into a config loaded from Redis (`HYDRA_SERVICE` label), so a stored
/// config need not hold the signing secret.
const TUNING_KEYS: [&str; 10] = [
    "connectTimeout",
    "commandTimeout",
    "presenceCacheTTL",
    "messageWorkers",
    "messageQueueCapacity",
    "maxQueuedMessageBytes",
    "maxMessageBytes",
    "signatureSecret",
    "signatureAlgorithm",
    "acceptUnsignedMessages",
];

impl std::fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigBuilder").finish_non_exhaustive()
    }
}

impl Default for ConfigBuilder {
    fn default() -> ConfigBuilder {
        let mut document = Map::new();
        document.insert("hydra".into(), Value::Object(Map::new()));
        ConfigBuilder {
            document,
            stored_config_label: None,
            instance_id: None,
        }
    }
}

impl ConfigBuilder {
    /// Starts from a Node-format JSON document: `{"hydra": {...}, ...}`.
    pub fn from_json(text: &str) -> Result<ConfigBuilder> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::invalid_config("hydra", format!("not valid JSON: {e}")))?;
        ConfigBuilder::from_value(value)
    }

    /// Starts from a parsed Node-format document.
    pub fn from_value(value: Value) -> Result<ConfigBuilder> {
        let Value::Object(document) = value else {
            return Err(Error::invalid_config("hydra", "the config must be a JSON object"));
        };
        match document.get("hydra") {
            Some(Value::Object(_)) => {}
            Some(_) => return Err(Error::invalid_config("hydra", "must be an object")),
            None => {
                return Err(Error::invalid_config(
                    "hydra",
                    "missing: the document needs a {\"hydra\": {...}} branch",
                ));
            }
        }
        Ok(ConfigBuilder {
            document,
            ..ConfigBuilder::default()
        })
    }

    /// Reads a Node-format JSON config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ConfigBuilder> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_config("hydra", format!("cannot read {}: {e}", path.display())))?;
        ConfigBuilder::from_json(&text)
    }

    fn hydra(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .document
            .entry("hydra")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry.as_object_mut().expect("hydra branch is an object")
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        self.hydra().insert(key.to_string(), value.into());
        self
    }

    /// `serviceName` (required).
    pub fn service_name(self, name: &str) -> ConfigBuilder {
        self.set("serviceName", name)
    }

    /// `serviceDescription`.
    pub fn service_description(self, text: &str) -> ConfigBuilder {
        self.set("serviceDescription", text)
    }

    /// `serviceIP`: `""` for the first non-loopback IPv4, an address, a host
    /// name, or a prefix pattern such as `"10.0.*"`.
    pub fn service_ip(self, ip: &str) -> ConfigBuilder {
        self.set("serviceIP", ip)
    }

    /// `serviceDNS`: a name published instead of the IP.
    pub fn service_dns(self, dns: &str) -> ConfigBuilder {
        self.set("serviceDNS", dns)
    }

    /// `servicePort`: `"0"`, `"8080"`, `"3000-4000"` or `"3000-3010,4000"`.
    pub fn service_port(self, port: &str) -> ConfigBuilder {
        self.set("servicePort", port)
    }

    /// `serviceType`.
    pub fn service_type(self, kind: &str) -> ConfigBuilder {
        self.set("serviceType", kind)
    }

    /// `serviceVersion`.
    pub fn service_version(self, version: &str) -> ConfigBuilder {
        self.set("serviceVersion", version)
    }

    /// `redis.url`, replacing the other Redis settings (host, port, db,
    /// password) but keeping `redis.tls` and `redis.sentinelTLS`, so that a
    /// URL from the environment (`HYDRA_REDIS_URL`) still uses the CA and
    /// certificates of the file.
    pub fn redis_url(mut self, url: &str) -> ConfigBuilder {
        let mut redis = Map::new();
        redis.insert("url".into(), url.into());
        for key in ["tls", "sentinelTLS"] {
            if let Some(tls) = self.hydra().get("redis").and_then(|r| r.get(key)).cloned() {
                redis.insert(key.into(), tls);
            }
        }
        self.hydra().insert("redis".into(), Value::Object(redis));
        self
    }

    /// `redis.tls`: `true` (TLS trusting the system's certificate store), or
    /// `{"ca": path, "cert": path, "key": path, "servername": host}` (PEM
    /// files; `cert` and `key` for mutual TLS). Files are read by
    /// [`build`](ConfigBuilder::build).
    pub fn redis_tls(mut self, tls: Value) -> ConfigBuilder {
        let redis = self.hydra().entry("redis").or_insert_with(|| Value::Object(Map::new()));
        if !redis.is_object() {
            *redis = Value::Object(Map::new());
        }
        if let Value::Object(redis) = redis {
            redis.insert("tls".into(), tls);
        }
        self
    }

    /// Timeout for connecting to Redis (default 3 s).
    pub fn connect_timeout(self, timeout: Duration) -> ConfigBuilder {
        self.set("connectTimeout", millis(timeout))
    }

    /// Read/write timeout of each Redis command (default 3 s).
    pub fn command_timeout(self, timeout: Duration) -> ConfigBuilder {
        self.set("commandTimeout", millis(timeout))
    }

    /// How long presence lists used for routing messages and requests may be
    /// served from memory (default 500 ms; zero disables the cache).
    /// `get_service_presence` always reads Redis.
    pub fn presence_cache_ttl(self, ttl: Duration) -> ConfigBuilder {
        self.set("presenceCacheTTL", millis(ttl))
    }

    /// Message handlers that may run at once (default 4); one more thread
    /// keeps reading the subscription meanwhile.
    pub fn message_workers(self, workers: usize) -> ConfigBuilder {
        self.set("messageWorkers", workers)
    }

    /// Messages that may wait for a handler (or in the pull receiver) before
    /// the listener stops reading (default 1,048,576: by default the byte
    /// budget, [`max_queued_message_bytes`](ConfigBuilder::max_queued_message_bytes),
    /// binds first).
    pub fn message_queue_capacity(self, capacity: usize) -> ConfigBuilder {
        self.set("messageQueueCapacity", capacity)
    }

    /// Memory budget of the messages waiting for a handler (or in the pull
    /// receiver): payload bytes plus 512 bytes each (default 32 MiB). When it
    /// is reached the listener stops reading, so Redis buffers new messages
    /// (up to its `client-output-buffer-limit pubsub`); only when no room has
    /// come for 5 s does it read on, dropping and counting (`overflow`).
    pub fn max_queued_message_bytes(self, bytes: usize) -> ConfigBuilder {
        self.set("maxQueuedMessageBytes", bytes)
    }

    /// Size limit of one incoming message; larger ones are dropped and counted
    /// (default 1 MiB).
    pub fn max_message_bytes(self, bytes: usize) -> ConfigBuilder {
        self.set("maxMessageBytes", bytes)
    }

    /// `signatureSecret`: sign every message this instance sends and refuse
    /// incoming ones without a valid signature (see
    /// [`accept_unsigned_messages`](ConfigBuilder::accept_unsigned_messages)).
    /// Node's UMF HMAC, so Node senders that call `signMessage` with the same
    /// secret are accepted.
    pub fn signature_secret(self, secret: &str) -> ConfigBuilder {
        self.set("signatureSecret", secret)
    }

    /// `signatureAlgorithm`: `sha256` (default, Node's) or `sha512`.
    pub fn signature_algorithm(self, algorithm: &str) -> ConfigBuilder {
        self.set("signatureAlgorithm", algorithm)
    }

    /// `acceptUnsignedMessages`: migration mode — sign, but let unsigned
    /// messages in (counted in `MessageStats::unsigned_accepted`) while the
    /// other senders are switched over. Wrong signatures are refused anyway.
    pub fn accept_unsigned_messages(self, accept: bool) -> ConfigBuilder {
        self.set("acceptUnsignedMessages", accept)
    }

    /// The instance ID to register under, instead of a random one (Node always
    /// makes a random uuid, and has no such setting; so no config file or
    /// variable sets it here either).
    ///
    /// For a short-lived tool that registers again on every run: Node services
    /// cache a service's instance list for 3 s and send replies only to an
    /// instance on it, so an instance that comes back under the ID it had a
    /// moment ago is answered at once, where a new ID would wait out the cache.
    /// Two live instances must never share an ID: they would share one channel
    /// and one presence key. 1–64 characters from `A–Z a–z 0–9 _` (no `-`: in a
    /// route `id-sub@svc:/` it starts Node's sub-ID).
    ///
    /// ```
    /// # fn main() -> hydra::Result<()> {
    /// let config = hydra::Config::builder()
    ///     .service_name("nightly-report")
    ///     .instance_id("nightly_report_on_build_host")
    ///     .build()?;
    /// assert_eq!(config.instance_id(), Some("nightly_report_on_build_host"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn instance_id(mut self, id: &str) -> ConfigBuilder {
        self.instance_id = Some(id.to_string());
        self
    }

    /// Applies `HYDRA_REDIS_URL`, `HYDRA_SIGNATURE_SECRET` and `HYDRA_SERVICE`
    /// from the process environment; Node's two win over the file, as in Node.
    pub fn apply_env(self) -> Result<ConfigBuilder> {
        self.apply_env_from(|name| std::env::var(name).ok())
    }

    /// [`ConfigBuilder::apply_env`] with the variables taken from `lookup`
    /// (tests use this instead of mutating the process environment).
    pub fn apply_env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<ConfigBuilder> {
        if let Some(url) = lookup("HYDRA_REDIS_URL").filter(|u| !u.trim().is_empty()) {
            self = self.redis_url(url.trim());
        }
        if let Some(secret) = lookup("HYDRA_SIGNATURE_SECRET").filter(|s| !s.is_empty()) {
            self = self.signature_secret(&secret);
        }
        let Some(service) = lookup("HYDRA_SERVICE").filter(|s| !s.trim().is_empty()) else {
            return Ok(self);
        };
        let service = service.trim();
        if service.starts_with('{') {
            let value: Value = serde_json::from_str(service)
                .map_err(|e| Error::invalid_config("HYDRA_SERVICE", format!("not valid JSON: {e}")))?;
            let Value::Object(fields) = value else {
                return Err(Error::invalid_config("HYDRA_SERVICE", "must be a JSON object"));
            };
            self.hydra().extend(fields);
        } else if service.contains('=') {
            for pair in service.split('|').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').ok_or_else(|| {
                    Error::invalid_config("HYDRA_SERVICE", format!("expected key=value|key=value, got {pair:?}"))
                })?;
                self.hydra().insert(key.trim().to_string(), value.into());
            }
        } else {
            parse_label(service).map_err(|reason| Error::invalid_config("HYDRA_SERVICE", reason))?;
            self.stored_config_label = Some(service.to_string());
        }
        Ok(self)
    }

    /// Validates everything and returns the [`Config`].
    pub fn build(self) -> Result<Config> {
        let hydra = match self.document.get("hydra") {
            Some(Value::Object(h)) => h.clone(),
            _ => Map::new(),
        };
        let service_name = validate_service_name(&string_field(&hydra, "serviceName")?)?;
        if let Some(id) = &self.instance_id {
            validate_instance_id(id)?;
        }
        let service_port = parse_port_spec(hydra.get("servicePort"))?;
        let service_ip = string_field(&hydra, "serviceIP")?;
        if service_ip.chars().any(char::is_whitespace) {
            return Err(Error::invalid_config("serviceIP", "must not contain spaces"));
        }
        let redis = parse_redis(hydra.get("redis"))?;
        let positive = |key: &str, default: u64| -> Result<u64> {
            match count_field(&hydra, key)? {
                Some(0) => Err(Error::invalid_config(key, "must be greater than zero")),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let connect_timeout = Duration::from_millis(positive("connectTimeout", millis(DEFAULT_CONNECT_TIMEOUT))?);
        let command_timeout = Duration::from_millis(positive("commandTimeout", millis(DEFAULT_COMMAND_TIMEOUT))?);
        let presence_cache_ttl = Duration::from_millis(
            count_field(&hydra, "presenceCacheTTL")?.unwrap_or(millis(DEFAULT_PRESENCE_CACHE_TTL)),
        );
        // Channels allocate their capacity up front: keep a typo from aborting.
        let at_most = |key: &str, value: u64, limit: u64| -> Result<usize> {
            if value > limit {
                return Err(Error::invalid_config(
                    key,
                    format!("must be at most {limit}, got {value}"),
                ));
            }
            Ok(to_usize(value))
        };
        let tuning = Tuning {
            message_workers: at_most(
                "messageWorkers",
                positive("messageWorkers", DEFAULT_MESSAGE_WORKERS as u64)?,
                1024,
            )?,
            message_queue_capacity: at_most(
                "messageQueueCapacity",
                positive("messageQueueCapacity", DEFAULT_MESSAGE_QUEUE_CAPACITY as u64)?,
                1 << 20,
            )?,
            max_queued_message_bytes: to_usize(positive(
                "maxQueuedMessageBytes",
                DEFAULT_MAX_QUEUED_MESSAGE_BYTES as u64,
            )?),
            max_message_bytes: to_usize(positive("maxMessageBytes", DEFAULT_MAX_MESSAGE_BYTES as u64)?),
        };
        Ok(Config {
            service_name,
            service_description: non_empty_or(string_field(&hydra, "serviceDescription")?, "not specified"),
            service_ip,
            service_dns: string_field(&hydra, "serviceDNS")?,
            service_port,
            service_type: string_field(&hydra, "serviceType")?,
            service_version: non_empty_or(string_field(&hydra, "serviceVersion")?, "unspecified"),
            redis,
            connect_timeout,
            command_timeout,
            presence_cache_ttl,
            messaging: tuning,
            signing: Signing::from_settings(&hydra)?,
            stored_config_label: self.stored_config_label,
            instance_id: self.instance_id,
            document: self.document,
        })
    }

    /// Replaces the document with one loaded from Redis (`HYDRA_SERVICE` label),
    /// keeping the Redis settings this builder used to reach it, as Node does.
    pub(crate) fn with_stored_document(&self, stored: Value, redis_branch: Option<Value>) -> Result<ConfigBuilder> {
        let mut builder = ConfigBuilder::from_value(stored)?;
        builder.instance_id = self.instance_id.clone();
        if let Some(redis) = redis_branch {
            builder.hydra().insert("redis".into(), redis);
        }
        // hydra-rs's own settings carry over unless the stored config has them.
        let ours = self
            .document
            .get("hydra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for key in TUNING_KEYS {
            if let Some(value) = ours.get(key)
                && !builder.hydra().contains_key(key)
            {
                builder.hydra().insert(key.to_string(), value.clone());
            }
        }
        Ok(builder)
    }
}

impl Config {
    /// A builder holding this config's document and settings, used to rebuild it
    /// from a stored config.
    pub(crate) fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            document: self.document.clone(),
            stored_config_label: None,
            instance_id: self.instance_id.clone(),
        }
    }
}

/// Splits a config label `svc:version` (spec §2.9).
pub(crate) fn parse_label(label: &str) -> std::result::Result<(&str, &str), String> {
    match label.split(':').collect::<Vec<_>>()[..] {
        [svc, version] if !svc.is_empty() && !version.is_empty() => Ok((svc, version)),
        _ => Err(format!("label not in this form: myservice:0.1.1 (got {label:?})")),
    }
}

/// Node lowercases the name; we also reject what would break Node's key globs
/// and route grammar (spec §2.11, §4.4, §16).
pub(crate) fn validate_service_name(raw: &str) -> Result<String> {
    let name = raw.trim().to_lowercase();
    let bad = |reason: &str| Err(Error::invalid_config("serviceName", format!("{reason} (got {raw:?})")));
    if name.is_empty() {
        return bad("is required");
    }
    if name.len() > 128 {
        return bad("must be at most 128 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '@' | '*' | '?' | '[' | ']' | '\\'))
    {
        return bad(&format!("must not contain {c:?}"));
    }
    if RESERVED_NAMES.contains(&name.as_str()) {
        return bad("is reserved by Hydra's key layout");
    }
    if name.starts_with("http") {
        return bad("must not start with \"http\" (Node's route parser mangles such names)");
    }
    Ok(name)
}

/// An instance ID goes into keys, channel names and routes (`id@svc:/`):
/// nothing that would change their meaning (`-` starts a route's sub-ID), and
/// no glob characters.
fn validate_instance_id(id: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::invalid_config("instanceID", format!("{reason} (got {id:?})")));
    if id.is_empty() || id.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return bad(&format!("may hold only A-Z, a-z, 0-9 and '_', not {c:?}"));
    }
    Ok(())
}

fn string_field(hydra: &Map<String, Value>, key: &str) -> Result<String> {
    match hydra.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(Error::invalid_config(key, format!("must be a string, got {other}"))),
    }
}

/// A non-negative whole number (JSON number or numeric string), if present.
fn count_field(hydra: &Map<String, Value>, key: &str) -> Result<Option<u64>> {
    let bad = |v: &Value| Error::invalid_config(key, format!("must be a non-negative whole number, got {v}"));
    match hydra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(v)),
        Some(v @ Value::String(text)) => text.trim().parse::<u64>().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn non_empty_or(value: String, default: &str) -> String {
    if value.trim().is_empty() {
        default.to_string()
    } else {
        value
    }
}

/// `servicePort`: number or string; `0`/absent → random; ranges `a-b[,c]`.
pub(crate) fn parse_port_spec(value: Option<&Value>) -> Result<PortSpec> {
    let bad = |reason: String| Error::invalid_config("servicePort", reason);
    let text = match value {
        None | Some(Value::Null) => return Ok(PortSpec::Random),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => return Err(bad(format!("must be a number or a string, got {other}"))),
    };
    if text.is_empty() || text == "0" {
        return Ok(PortSpec::Random);
    }
    let port = |s: &str| -> Result<u16> {
        match s.trim().parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(bad(format!("{s:?} is not a port number 1-65535 (in {text:?})"))),
        }
    };
    if !text.contains(['-', ',']) {
        return Ok(PortSpec::Fixed(port(&text)?));
    }
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (port(low)?, port(high)?),
            None => {
                let p = port(part)?;
                (p, p)
            }
        };
        if low > high {
            return Err(bad(format!("range {part:?} is backwards")));
        }
        ranges.push((low, high));
    }
    Ok(PortSpec::Ranges(ranges))
}

fn parse_redis(value: Option<&Value>) -> Result<RedisConfig> {
    let map = match value {
        None | Some(Value::Null) => return RedisConfig::from_url(DEFAULT_REDIS_URL),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(Error::invalid_config(
                "redis",
                format!("must be an object, got {other}"),
            ));
        }
    };
    if map.get("sentinels").is_some_and(|v| !v.is_null()) {
        return sentinel::with_tls(sentinel::config_from_object(map)?, map);
    }
    let text = |key: &str| -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(Error::invalid_config(
                format!("redis.{key}"),
                format!("must be a string or number, got {other}"),
            )),
        }
    };
    // Node merges {db: 0} <- URL parts <- explicit keys (spec §13).
    let url = text("url")?;
    if let Some(url) = url.as_deref().filter(|u| u.starts_with(sentinel::URL_SCHEME)) {
        return sentinel::with_tls(sentinel::config_from_url(url)?, map);
    }
    let (base, tls_scheme) = match url {
        Some(url) => {
            let (info, tls_scheme) = parse_url(&url)?;
            (Some(info), tls_scheme)
        }
        // An empty redis branch means db 0 on localhost in Node.
        None => (None, false),
    };
    let explicit = ["host", "port", "db", "password", "username"]
        .iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_null()));
    let info = match base {
        Some(base) if !explicit => base,
        base => {
            let (base_host, base_port) = match base.as_ref().map(ConnectionInfo::addr) {
                Some(ConnectionAddr::Tcp(host, port)) => (host.clone(), *port),
                _ => ("127.0.0.1".to_string(), 6379),
            };
            let settings = base.as_ref().map(|b| b.redis_settings().clone());
            let host = text("host")?.unwrap_or(base_host);
            let port = match text("port")? {
                Some(p) => p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| Error::invalid_config("redis.port", format!("{p:?} is not a port number")))?,
                None => base_port,
            };
            let db = match text("db")? {
                Some(d) => d
                    .parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| Error::invalid_config("redis.db", format!("{d:?} is not a database number")))?,
                None => settings.as_ref().map_or(0, |s| s.db()),
            };
            let username = text("username")?.or_else(|| settings.as_ref().and_then(|s| s.username().map(String::from)));
            let password = text("password")?.or_else(|| settings.as_ref().and_then(|s| s.password().map(String::from)));
            parts_info(&host, port, db, username.as_deref(), password.as_deref())?
        }
    };
    // `tls` (Node passes it to tls.connect) wins over the URL's scheme; a
    // rediss:// URL alone trusts the system's store.
    let host = match info.addr() {
        ConnectionAddr::Tcp(host, _) => host.clone(),
        _ => String::new(),
    };
    let tls = match map.get("tls").filter(|v| !v.is_null()) {
        Some(Value::Bool(false)) if tls_scheme => {
            return Err(Error::invalid_config(
                "redis.tls",
                "is false, but redis.url asks for TLS (rediss://)",
            ));
        }
        Some(setting) => RedisTls::from_setting("redis.tls", setting, Some(&host))?,
        None if tls_scheme => Some(RedisTls::system_roots()?),
        None => None,
    };
    Ok(RedisConfig::from_info(info, tls))
}

/// Masks the password in a URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidConfig { field, .. } => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn a_name_is_enough_and_defaults_match_node() {
        let config = Config::builder().service_name("Alpha-Service").build().unwrap();
        assert_eq!(config.service_name(), "alpha-service");
        assert_eq!(config.redis().db(), 15);
        assert_eq!(config.redis().display_url(), "redis://127.0.0.1:6379/15");
        assert_eq!(config.service_port(), &PortSpec::Random);
        assert_eq!(config.service_description(), "not specified");
        assert_eq!(config.service_version(), "unspecified");
    }

    #[test]
    fn invalid_names_are_rejected_naming_the_field() {
        for name in [
            "", "a:b", "a b", "svc*", "s?", "x[1]", "service", "hydra", "mc", "nodes", "httpbin", "a@b",
        ] {
            let err = Config::builder().service_name(name).build().unwrap_err();
            assert!(err.to_string().contains("serviceName"), "{name:?}: {err}");
            assert_eq!(field_of(err), "serviceName");
        }
    }

    #[test]
    fn node_json_document_is_read() {
        let config = ConfigBuilder::from_json(
            r#"{"hydra":{"serviceName":"beta","serviceDescription":"b desc","serviceIP":"10.0.0.5",
                "servicePort":"3000-3010,4000","serviceType":"api","serviceVersion":"2.0.1",
                "redis":{"host":"127.0.0.2","port":6380,"db":3,"password":"pw"}},
               "app":{"x":1}}"#,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            config.service_port(),
            &PortSpec::Ranges(vec![(3000, 3010), (4000, 4000)])
        );
        assert_eq!(config.redis().display_url(), "redis://:***@127.0.0.2:6380/3");
        assert_eq!(config.document()["app"], json!({"x": 1}));
        assert_eq!(config.service_type(), "api");
    }

    #[test]
    fn redis_url_with_acl_user_and_password() {
        let config = Config::builder()
            .service_name("a")
            .redis_url("redis://alice:s3cret@localhost:7000/2")
            .build()
            .unwrap();
        let settings = config.redis().connection_info().redis_settings();
        assert_eq!(settings.username(), Some("alice"));
        assert_eq!(settings.password(), Some("s3cret"));
        assert_eq!(settings.db(), 2);
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn explicit_redis_keys_override_the_url() {
        let doc = json!({"hydra":{"serviceName":"a","redis":{"url":"redis://h:1234/4","db":"7"}}});
        let config = ConfigBuilder::from_value(doc).unwrap().build().unwrap();
        assert_eq!(config.redis().db(), 7);
        assert_eq!(config.redis().display_url(), "redis://h:1234/7");
    }

    #[test]
    fn bad_redis_settings_name_the_field() {
        for (redis, field) in [
            (json!({"url": "http://x"}), "redis.url"),
            (json!({"url": "redis://"}), "redis.url"),
            (json!({"url": "redis://h:1/notadb"}), "redis.url"),
            (json!({"url": "rediss://h:1/0#insecure"}), "redis.url"),
            (json!({"url": "rediss://h:1/0", "tls": false}), "redis.tls"),
            (json!({"tls": {"ca": "/nonexistent/ca.pem"}}), "redis.tls.ca"),
            (json!({"port": "x"}), "redis.port"),
            (json!({"port": 0}), "redis.port"),
            (json!({"db": -1}), "redis.db"),
            (json!({"host": ""}), "redis.host"),
            (json!("redis://h"), "redis"),
        ] {
            let doc = json!({"hydra":{"serviceName":"a","redis":redis}});
            let err = ConfigBuilder::from_value(doc).unwrap().build().unwrap_err();
            assert_eq!(field_of(err), field, "{redis}");
        }
    }

    #[test]
    fn rediss_urls_and_the_tls_setting_turn_tls_on() {
        let config = Config::builder()
            .service_name("a")
            .redis_url("rediss://:pw@127.0.0.1:6380/2")
            .build()
            .unwrap();
        assert!(config.redis().is_tls());
        assert_eq!(config.redis().display_url(), "rediss://:***@127.0.0.1:6380/2");
        assert!(config.redis().with_db(4).is_tls());
        assert!(matches!(
            config.redis().connection_info().addr(),
            ConnectionAddr::Tcp(host, 6380) if host == "127.0.0.1"
        ));
        let doc = json!({"hydra": {"serviceName": "a", "redis": {"host": "localhost", "port": 6380, "tls": true}}});
        let config = ConfigBuilder::from_value(doc).unwrap().build().unwrap();
        assert_eq!(config.redis().display_url(), "rediss://localhost:6380/0");
        let doc = json!({"hydra": {"serviceName": "a", "redis": {"url": "redis://h:1/3", "tls": false}}});
        let config = ConfigBuilder::from_value(doc).unwrap().build().unwrap();
        assert!(!config.redis().is_tls());
        assert!(!Config::new("a").unwrap().redis().is_tls());
    }

    #[test]
    fn port_specs() {
        let p = |v: Value| parse_port_spec(Some(&v));
        assert_eq!(p(json!(0)).unwrap(), PortSpec::Random);
        assert_eq!(p(json!("0")).unwrap(), PortSpec::Random);
        assert_eq!(parse_port_spec(None).unwrap(), PortSpec::Random);
        assert_eq!(p(json!(8080)).unwrap(), PortSpec::Fixed(8080));
        assert_eq!(p(json!("8080")).unwrap(), PortSpec::Fixed(8080));
        assert_eq!(p(json!("3000-4000")).unwrap(), PortSpec::Ranges(vec![(3000, 4000)]));
        for bad in [
            json!("4000-3000"),
            json!("70000"),
            json!("a-b"),
            json!("-"),
            json!(true),
            json!(-1),
        ] {
            assert_eq!(field_of(p(bad.clone()).unwrap_err()), "servicePort", "{bad}");
        }
    }

    #[test]
    fn the_signing_secret_comes_from_the_file_or_the_environment_and_is_never_printed() {
        let from_file = ConfigBuilder::from_json(r#"{"hydra": {"serviceName": "a", "signatureSecret": "f1le"}}"#)
            .unwrap()
            .build()
            .unwrap();
        assert!(from_file.signing.is_some());
        let from_env = Config::builder()
            .service_name("a")
            .apply_env_from(|name| (name == "HYDRA_SIGNATURE_SECRET").then(|| "3nv".to_string()))
            .unwrap()
            .build()
            .unwrap();
        assert!(from_env.signing.is_some());
        assert!(!format!("{from_env:?}").contains("3nv"), "{from_env:?}");
        assert!(Config::new("a").unwrap().signing.is_none());
        let bad = Config::builder()
            .service_name("a")
            .signature_secret("s")
            .signature_algorithm("md5")
            .build();
        assert!(matches!(bad, Err(Error::InvalidConfig { field, .. }) if field == "signatureAlgorithm"));
    }

    #[test]
    fn environment_overrides_like_node() {
        let env = |url: &'static str, svc: &'static str| {
            move |name: &str| match name {
                "HYDRA_REDIS_URL" => Some(url.to_string()),
                "HYDRA_SERVICE" => Some(svc.to_string()),
                _ => None,
            }
        };
        let config = Config::builder()
            .service_name("a")
            .redis_url("redis://other:1/1")
            .apply_env_from(env(
                "redis://127.0.0.1:9999/3",
                r#"{"serviceType":"t1","servicePort":1234}"#,
            ))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.redis().display_url(), "redis://127.0.0.1:9999/3");
        assert_eq!(config.service_type(), "t1");
        assert_eq!(config.service_port(), &PortSpec::Fixed(1234));

        let config = Config::builder()
            .service_name("a")
            .apply_env_from(env("", "serviceType=t2|serviceVersion=9.9"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!((config.service_type(), config.service_version()), ("t2", "9.9"));

        let config = Config::builder()
            .service_name("a")
            .apply_env_from(env("", "alpha:1.2.3"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.stored_config_label(), Some("alpha:1.2.3"));

        for bad in ["{not json", "a:b:c", "[1]"] {
            let err = Config::builder()
                .service_name("a")
                .apply_env_from(env("", bad))
                .unwrap_err();
            assert_eq!(field_of(err), "HYDRA_SERVICE", "{bad}");
        }
    }

    #[test]
    fn tuning_keys_come_from_the_document_or_the_setters() {
        let doc = json!({"hydra": {"serviceName": "a", "connectTimeout": 1500, "messageWorkers": "2", "presenceCacheTTL": 0}});
        let config = ConfigBuilder::from_value(doc).unwrap().build().unwrap();
        assert_eq!(config.connect_timeout(), Duration::from_millis(1500));
        assert_eq!(config.command_timeout(), DEFAULT_COMMAND_TIMEOUT);
        assert_eq!(config.messaging.message_workers, 2);
        assert_eq!(config.presence_cache_ttl, Duration::ZERO);
        let config = Config::builder()
            .service_name("a")
            .max_message_bytes(4096)
            .command_timeout(Duration::from_millis(250))
            .build()
            .unwrap();
        assert_eq!(config.messaging.max_message_bytes, 4096);
        assert_eq!(config.command_timeout(), Duration::from_millis(250));
        assert_eq!(config.document()["hydra"]["maxMessageBytes"], 4096);
        assert_eq!(config.messaging.max_queued_message_bytes, 32 * 1024 * 1024);
        assert_eq!(config.messaging.message_queue_capacity, 1 << 20);
        let doc = json!({"hydra": {"serviceName": "a", "maxQueuedMessageBytes": 65536}});
        let config = ConfigBuilder::from_value(doc).unwrap().build().unwrap();
        assert_eq!(config.messaging.max_queued_message_bytes, 65536);
        for (key, value) in [
            ("messageWorkers", json!(0)),
            ("connectTimeout", json!(-5)),
            ("maxMessageBytes", json!("lots")),
            ("maxQueuedMessageBytes", json!(0)),
        ] {
            let doc = json!({"hydra": {"serviceName": "a", key: value}});
            assert_eq!(
                field_of(ConfigBuilder::from_value(doc).unwrap().build().unwrap_err()),
                key
            );
        }
    }

    #[test]
    fn documents_without_a_hydra_branch_are_rejected() {
        assert_eq!(
            field_of(ConfigBuilder::from_json(r#"{"serviceName":"a"}"#).unwrap_err()),
            "hydra"
        );
        assert_eq!(field_of(ConfigBuilder::from_json("nope").unwrap_err()), "hydra");
        assert_eq!(field_of(ConfigBuilder::from_json("[]").unwrap_err()), "hydra");
    }

    #[test]
    fn an_instance_id_is_checked_and_kept() {
        let with = |id: &str| Config::builder().service_name("svc").instance_id(id).build();
        assert_eq!(with("cli_Host_1").unwrap().instance_id(), Some("cli_Host_1"));
        assert_eq!(Config::new("svc").unwrap().instance_id(), None, "random unless set");
        for bad in ["", "a-b", "a:b", "a@b", "a b", "a*", "é", &"x".repeat(65)] {
            let error = with(bad).unwrap_err();
            assert_eq!(field_of(error), "instanceID", "{bad:?}");
        }
        // A config rebuilt from a stored document keeps it.
        let config = with("stable").unwrap();
        let rebuilt = config
            .to_builder()
            .with_stored_document(json!({"hydra": {"serviceName": "other"}}), None)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(rebuilt.instance_id(), Some("stable"));
    }
}
