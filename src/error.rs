//! The one error type of hydra-rs, and the stable numeric codes the C ABI reuses.

use std::fmt;

/// Everything that can go wrong in hydra-rs.
///
/// Each variant carries the reason a user needs, worded like Node Hydra's where
/// Hydra has a text for it (`Can't find billing service`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; `field` names it as in Node's JSON
    /// config (`serviceName`, `servicePort`, `redis.url`, …).
    InvalidConfig {
        /// The offending field.
        field: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An argument to a call is invalid (HTTP-style 400).
    BadRequest(String),
    /// Redis could not be reached or answered with an error (HTTP-style 500).
    Redis(redis::RedisError),
    /// The thing asked for does not exist (HTTP-style 404).
    NotFound(String),
    /// No instance can serve the request (HTTP-style 503).
    ServiceUnavailable(String),
    /// A deadline passed.
    Timeout(String),
    /// The call needs a state the handle is not in (e.g. not registered, or
    /// already shut down).
    InvalidState(String),
    /// Data read from Redis is not what Hydra writes (e.g. garbage in a
    /// record), or a peer's answer cannot be taken (e.g. an HTTP response
    /// over the size limit); carries where it was found.
    Malformed(String),
    /// The Redis user lacks an ACL permission the call needs (HTTP-style
    /// 403); the message names the command and the key or channel.
    PermissionDenied(String),
}

/// Stable numeric error codes, shared with the C ABI (`hydra_status_t`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Success (only used across the C ABI).
    Ok = 0,
    /// [`Error::InvalidConfig`].
    InvalidConfig = 1,
    /// [`Error::BadRequest`].
    BadRequest = 2,
    /// [`Error::Redis`].
    Redis = 3,
    /// [`Error::NotFound`].
    NotFound = 4,
    /// [`Error::ServiceUnavailable`].
    ServiceUnavailable = 5,
    /// [`Error::Timeout`].
    Timeout = 6,
    /// [`Error::InvalidState`].
    InvalidState = 7,
    /// [`Error::Malformed`].
    Malformed = 8,
    /// [`Error::PermissionDenied`].
    PermissionDenied = 9,
}

impl Error {
    pub(crate) fn invalid_config(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The stable numeric code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::Redis(_) => ErrorCode::Redis,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::ServiceUnavailable(_) => ErrorCode::ServiceUnavailable,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            Error::Malformed(_) => ErrorCode::Malformed,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
        }
    }

    /// The HTTP-style status Node Hydra would answer with for this error
    /// (400, 403, 404, 500, 503, 504).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidConfig { .. } | Error::BadRequest(_) => 400,
            Error::PermissionDenied(_) => 403,
            Error::NotFound(_) => 404,
            Error::ServiceUnavailable(_) => 503,
            Error::Timeout(_) => 504,
            Error::Redis(_) | Error::InvalidState(_) | Error::Malformed(_) => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { field, reason } => {
                write!(f, "invalid config field {field}: {reason}")
            }
            Error::BadRequest(reason) => write!(f, "bad request: {reason}"),
            Error::Redis(e) => write!(f, "redis: {e}"),
            Error::NotFound(reason) => f.write_str(reason),
            Error::ServiceUnavailable(reason) => f.write_str(reason),
            Error::Timeout(reason) => write!(f, "timed out: {reason}"),
            Error::InvalidState(reason) => f.write_str(reason),
            Error::Malformed(reason) => write!(f, "malformed data: {reason}"),
            Error::PermissionDenied(reason) => write!(f, "permission denied: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Redis(e) => Some(e),
            _ => None,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error::Redis(e)
    }
}

/// What a Redis error means, for a log line: an out-of-memory refusal, a
/// permission denial, a connection that timed out or died, or Redis not
/// reachable, rather than the raw text (`os error 11`, `OOM command not
/// allowed…` under "cannot reach Redis").
pub(crate) fn describe_redis_error(e: &redis::RedisError) -> String {
    if e.code() == Some("OOM") {
        return format!("Redis is out of memory (maxmemory reached, so it refuses writes): {e}");
    }
    if e.code() == Some("NOPERM") {
        return format!("Redis denied the command (ACL): {e}");
    }
    if e.is_timeout() {
        return "the connection timed out or is dead (no reply from Redis within the command timeout)".into();
    }
    if e.is_connection_refusal() {
        return format!("Redis is not reachable (connection refused): {e}");
    }
    if e.is_connection_dropped() {
        return format!("the connection to Redis was lost: {e}");
    }
    e.to_string()
}

/// [`describe_redis_error`] for any [`Error`].
pub(crate) fn describe(e: &Error) -> String {
    match e {
        Error::Redis(redis) => describe_redis_error(redis),
        other => other.to_string(),
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod describe_tests {
    use super::*;
    use hydra_testkit::RedisServer;
    use std::time::Duration;

    fn connect(server: &RedisServer) -> redis::Connection {
        let conn = redis::Client::open(server.url(0)).unwrap().get_connection().unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        conn
    }

    #[test]
    fn redis_errors_say_what_happened() {
        let server = RedisServer::start();
        let mut conn = connect(&server);
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory", "1"])
            .query(&mut conn)
            .unwrap();
        let oom = redis::cmd("SET").arg(&["k", "v"]).query::<()>(&mut conn).unwrap_err();
        let text = describe_redis_error(&oom);
        assert!(text.starts_with("Redis is out of memory (maxmemory"), "{text}");
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory", "0"])
            .query(&mut conn)
            .unwrap();

        server.freeze();
        let dead = redis::cmd("PING").query::<()>(&mut conn).unwrap_err();
        server.resume();
        let text = describe(&Error::Redis(dead));
        assert_eq!(
            text,
            "the connection timed out or is dead (no reply from Redis within the command timeout)"
        );

        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-set"])
            .query(&mut connect(&server))
            .unwrap();
        let url = format!("redis://limited:pw@127.0.0.1:{}/", server.port());
        let mut limited = redis::Client::open(url).unwrap().get_connection().unwrap();
        let denied = redis::cmd("SET")
            .arg(&["k", "v"])
            .query::<()>(&mut limited)
            .unwrap_err();
        let text = describe_redis_error(&denied);
        assert!(text.starts_with("Redis denied the command (ACL)"), "{text}");
    }
}
