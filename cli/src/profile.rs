//! Profiles in `~/.hydra-cli`, in Node hydra-cli's format, so a file Node
//! wrote is used as is and Node can read ours:
//!
//! ```json
//! {"version": 2, "redisUrl": "127.0.0.1", "redisPort": 6379, "redisDb": 15, "redisPassword": "",
//!  "local": {"redisUrl": "127.0.0.1", "redisPort": 6379, "redisDb": 15, "redisPassword": ""}}
//! ```
//!
//! The top-level `redis*` fields are the active connection; each other object
//! is a named profile. Despite its name, Node's `redisUrl` holds a host name;
//! a full `redis://` URL there is accepted too.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{CliError, CliResult};

/// The file's name in the home directory.
pub const FILE_NAME: &str = ".hydra-cli";

/// Node's config file version.
pub const FILE_VERSION: u64 = 2;

/// One connection: what `hydra-cli config <name>` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Host name (or a full redis:// URL).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database number.
    pub db: i64,
    /// Password; empty for none.
    pub password: String,
}

impl Connection {
    /// The connection as a redis:// URL (the password included: for the library, never for display).
    pub fn url(&self) -> String {
        if self.host.starts_with("redis://") || self.host.starts_with("rediss://") {
            return self.host.clone();
        }
        let login = if self.password.is_empty() {
            String::new()
        } else {
            format!(":{}@", percent_encode(&self.password))
        };
        format!("redis://{login}{}:{}/{}", self.host, self.port, self.db)
    }

    /// Reads the four `redis*` fields of a profile object.
    pub fn from_object(object: &Map<String, Value>, what: &str) -> CliResult<Connection> {
        let bad = |field: &str| {
            CliError::usage(
                format!("{what}: `{field}` is missing or has the wrong type"),
                "rewrite it with `hydra-cli config <name>`",
            )
        };
        let host = match object.get("redisUrl") {
            Some(Value::String(host)) if !host.is_empty() => host.clone(),
            _ => return Err(bad("redisUrl")),
        };
        // Node stores what its prompt read: numbers, or strings of digits.
        let number = |field: &str| -> CliResult<Option<i64>> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(field)),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(field)),
                Some(_) => Err(bad(field)),
            }
        };
        let port = match number("redisPort")? {
            None => 6379,
            Some(port) => u16::try_from(port).map_err(|_| bad("redisPort"))?,
        };
        let db = number("redisDb")?.unwrap_or(15);
        let password = match object.get("redisPassword") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(p)) => p.clone(),
            Some(_) => return Err(bad("redisPassword")),
        };
        Ok(Connection {
            host,
            port,
            db,
            password,
        })
    }
}

/// The whole `~/.hydra-cli` document.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    /// The JSON object as read (unknown fields are kept when written back).
    pub document: Map<String, Value>,
}

impl Profiles {
    /// `$HOME/.hydra-cli`.
    pub fn default_path() -> CliResult<PathBuf> {
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Ok(Path::new(&home).join(FILE_NAME)),
            _ => Err(CliError::usage(
                "HOME is not set, so ~/.hydra-cli cannot be found",
                "set HOME, or pass --redis <url>",
            )),
        }
    }

    /// Reads the file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> CliResult<Option<Profiles>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CliError::usage(
                    format!("cannot read {}: {e}", path.display()),
                    "check its permissions",
                ));
            }
        };
        match serde_json::from_str(&text) {
            Ok(Value::Object(document)) => Ok(Some(Profiles { document })),
            Ok(_) | Err(_) => Err(CliError::usage(
                format!("{} is not a JSON object", path.display()),
                "fix it, or remove it and run `hydra-cli config <name>`",
            )),
        }
    }

    /// The active connection (the top-level fields), if the file has one.
    pub fn active(&self, path: &Path) -> CliResult<Option<Connection>> {
        if !self.document.contains_key("redisUrl") {
            return Ok(None);
        }
        Connection::from_object(&self.document, &path.display().to_string()).map(Some)
    }
}

/// Minimal percent-encoding for a password inside a URL's userinfo.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn node_profiles_read_with_numbers_or_strings() {
        let a = Connection::from_object(
            &object(json!({"redisUrl": "redis.local", "redisPort": "6380", "redisDb": 3, "redisPassword": ""})),
            "t",
        )
        .unwrap();
        assert_eq!(a.url(), "redis://redis.local:6380/3");
        let b = Connection::from_object(&object(json!({"redisUrl": "h", "redisPassword": "p@ss:w"})), "t").unwrap();
        assert_eq!(b.url(), "redis://:p%40ss%3Aw@h:6379/15");
        let c = Connection::from_object(&object(json!({"redisUrl": "redis://x:1/2"})), "t").unwrap();
        assert_eq!(c.url(), "redis://x:1/2");
    }

    #[test]
    fn broken_profiles_name_the_field() {
        let e = Connection::from_object(&object(json!({"redisUrl": "h", "redisPort": "http"})), "t").unwrap_err();
        assert!(e.message.contains("redisPort"), "{e}");
        let e = Connection::from_object(&object(json!({"redisPort": 1})), "t").unwrap_err();
        assert!(e.message.contains("redisUrl"), "{e}");
    }
}
