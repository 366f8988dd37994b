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

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
