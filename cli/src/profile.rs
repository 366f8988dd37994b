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
//!
//! Node's `config` stores what its prompts read, so ports and databases are
//! strings there (`"6379"`); we read both and write numbers, which Node reads
//! too. Unknown fields, top-level or in a profile, are kept when we write.
//! We write the file with mode 0600, as it may hold a password (Node left it
//! world-readable), and atomically (a temporary file renamed over it).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{CliError, CliResult};

/// The file's name in the home directory.
pub const FILE_NAME: &str = ".hydra-cli";

/// Node's config file version.
pub const FILE_VERSION: u64 = 2;

/// The connection fields, top-level (active) and in each profile.
const CONNECTION_FIELDS: [&str; 4] = ["redisUrl", "redisPort", "redisDb", "redisPassword"];

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
        // Node's hydra-cli connects with `redisDb || 0`: a blank answer meant db 0.
        let db = number("redisDb")?.unwrap_or(0);
        if db < 0 {
            return Err(bad("redisDb"));
        }
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

    /// Writes the four fields into `object`, keeping its other fields; no
    /// `redisPassword` when there is none (as Node writes it).
    pub fn write_into(&self, object: &mut Map<String, Value>) {
        object.insert("redisUrl".into(), Value::from(self.host.clone()));
        object.insert("redisPort".into(), Value::from(self.port));
        object.insert("redisDb".into(), Value::from(self.db));
        if self.password.is_empty() {
            object.remove("redisPassword");
        } else {
            object.insert("redisPassword".into(), Value::from(self.password.clone()));
        }
    }

    /// Host, port and db, the password never shown.
    pub fn shown(&self) -> String {
        if self.host.starts_with("redis://") || self.host.starts_with("rediss://") {
            return self.host.clone();
        }
        format!("{}:{}/{}", self.host, self.port, self.db)
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

    /// An empty document of Node's version.
    pub fn empty() -> Profiles {
        let mut document = Map::new();
        document.insert("version".into(), Value::from(FILE_VERSION));
        Profiles { document }
    }

    /// The profile names (every top-level object), in file order.
    pub fn names(&self) -> Vec<String> {
        self.document
            .iter()
            .filter(|(_, value)| value.is_object())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The named profile's connection; `Ok(None)` when there is no such profile.
    pub fn profile(&self, name: &str, path: &Path) -> CliResult<Option<Connection>> {
        match self.document.get(name) {
            Some(Value::Object(object)) => {
                Connection::from_object(object, &format!("profile `{name}` in {}", path.display())).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Stores `connection` as profile `name` (its other fields kept) and
    /// makes it the active one.
    pub fn set_profile(&mut self, name: &str, connection: &Connection) {
        // Active fields first, then the profile: the order Node's file has.
        self.activate(connection);
        let entry = self
            .document
            .entry(name.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(object) = entry {
            connection.write_into(object);
        }
    }

    /// Makes `connection` the active one (the top-level fields). Unlike
    /// Node's `use`, a password of the previous profile does not stay behind.
    pub fn activate(&mut self, connection: &Connection) {
        if !self.document.contains_key("version") {
            self.document.insert("version".into(), Value::from(FILE_VERSION));
        }
        connection.write_into(&mut self.document);
    }

    /// Writes the file with mode 0600 (it may hold a password), through a
    /// temporary file renamed over it, so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> CliResult<()> {
        let failed = |e: std::io::Error| {
            CliError::usage(
                format!("cannot write {}: {e}", path.display()),
                "check the permissions of your home directory",
            )
        };
        let mut text =
            serde_json::to_string_pretty(&Value::Object(self.document.clone())).expect("a JSON object serializes");
        text.push('\n');
        let temporary = path.with_file_name(format!("{FILE_NAME}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(failed)
    }
}

/// True when `name` would collide with the file's own fields.
pub fn is_reserved_name(name: &str) -> bool {
    name == "version" || CONNECTION_FIELDS.contains(&name)
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
        // No redisDb: db 0, as Node's hydra-cli connects (`redisDb || 0`).
        assert_eq!(b.url(), "redis://:p%40ss%3Aw@h:6379/0");
        let c = Connection::from_object(&object(json!({"redisUrl": "redis://x:1/2"})), "t").unwrap();
        assert_eq!(c.url(), "redis://x:1/2");
    }

    #[test]
    fn broken_profiles_name_the_field() {
        let e = Connection::from_object(&object(json!({"redisUrl": "h", "redisPort": "http"})), "t").unwrap_err();
        assert!(e.message.contains("redisPort"), "{e}");
        let e = Connection::from_object(&object(json!({"redisPort": 1})), "t").unwrap_err();
        assert!(e.message.contains("redisUrl"), "{e}");
        let e = Connection::from_object(&object(json!({"redisUrl": "h", "redisDb": -1})), "t").unwrap_err();
        assert!(e.message.contains("redisDb"), "{e}");
    }

    #[test]
    fn writing_keeps_unknown_fields_and_drops_a_stale_password() {
        let mut profiles = Profiles {
            document: object(json!({"version": 2, "theme": "dark", "old": {"redisUrl": "o", "note": "kept"}})),
        };
        let secret = Connection {
            host: "s".into(),
            port: 7000,
            db: 2,
            password: "pw".into(),
        };
        profiles.set_profile("old", &secret);
        assert_eq!(profiles.document["theme"], "dark");
        assert_eq!(profiles.document["old"]["note"], "kept");
        assert_eq!(profiles.document["redisPassword"], "pw");
        let open = Connection {
            password: String::new(),
            ..secret.clone()
        };
        profiles.set_profile("open", &open);
        assert!(
            !profiles.document.contains_key("redisPassword"),
            "{:?}",
            profiles.document
        );
        assert_eq!(profiles.names(), ["old", "open"]);
        assert!(is_reserved_name("redisUrl") && is_reserved_name("version") && !is_reserved_name("prod"));
    }
}
