//! What can go wrong, and the exit status and one-line advice for each.
//!
//! Exit status: 0 ok, 1 the operation failed (no reply, not found, Redis
//! refused a command), 2 usage or connection error (bad arguments or files,
//! Redis unreachable). Every error carries a hint saying what to do next,
//! because the person reading it may be on call at night.

use std::fmt;

use serde_json::{Value, json};

use crate::output::Report;

/// Which exit status an error gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operation itself failed (exit 1).
    Failed,
    /// The command line, a file or a profile is wrong (exit 2).
    Usage,
    /// Redis could not be reached or refused the login (exit 2).
    Connection,
}

impl ErrorKind {
    /// The process exit status for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Usage | ErrorKind::Connection => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Usage => "usage",
            ErrorKind::Connection => "connection",
        }
    }
}

/// An error for the person at the terminal: what happened, and what to do.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The exit status class.
    pub kind: ErrorKind,
    /// What happened, in one line.
    pub message: String,
    /// What to do about it, in one line (may be empty).
    pub hint: String,
    /// What to print anyway, in place of the error document (e.g. the 500 a
    /// service answered `rest` with): the command failed, but its output is
    /// what the person needs to see.
    pub report: Option<Box<Report>>,
}

impl CliError {
    /// The operation failed (exit 1).
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::Failed,
            message: message.into(),
            hint: hint.into(),
            report: None,
        }
    }

    /// The arguments, a file or a profile are wrong (exit 2).
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::Usage,
            message: message.into(),
            hint: hint.into(),
            report: None,
        }
    }

    /// Redis cannot be reached (exit 2).
    pub fn connection(message: impl Into<String>, hint: impl Into<String>) -> CliError {
        CliError {
            kind: ErrorKind::Connection,
            message: message.into(),
            hint: hint.into(),
            report: None,
        }
    }

    /// A library error met while doing `what` (e.g. "reading the nodes hash"):
    /// Redis trouble is a connection error, the rest a failed operation.
    pub fn from_hydra(what: &str, error: hydra::Error) -> CliError {
        use hydra::ErrorCode;
        match error.code() {
            ErrorCode::Redis => CliError::connection(
                format!("{what}: {error}"),
                "check that Redis is up and reachable (hydra-cli doctor), or pass --redis <url>",
            ),
            ErrorCode::PermissionDenied => CliError::failed(
                format!("{what}: {error}"),
                "the Redis user lacks a permission; `hydra-cli doctor` lists what the library needs",
            ),
            ErrorCode::InvalidConfig | ErrorCode::BadRequest | ErrorCode::Malformed => {
                CliError::usage(format!("{what}: {error}"), "")
            }
            _ => CliError::failed(format!("{what}: {error}"), ""),
        }
    }

    /// This error, printing `report` (in either form) before the message.
    pub fn with_report(mut self, report: Report) -> CliError {
        self.report = Some(Box::new(report));
        self
    }

    /// The error as the JSON document printed with --json:
    /// `{"error": {"kind", "message", "hint"}}`.
    pub fn to_json(&self) -> Value {
        json!({"error": {"kind": self.kind.name(), "message": self.message, "hint": self.hint}})
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hint.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}; {}", self.message, self.hint)
        }
    }
}

impl std::error::Error for CliError {}

/// The result of a command.
pub type CliResult<T> = Result<T, CliError>;
