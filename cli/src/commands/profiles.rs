//! `config <name>`, `config list`, `use <name>`, `shell`: connection
//! profiles in `~/.hydra-cli`, Node hydra-cli's file (see [`crate::profile`]).
//!
//! `config <name>` asks Node's four questions (`redisUrl`, `redisPort`,
//! `redisDb`, `redisPassword`) for whatever `--host/--port/--db/--password`
//! did not give. Like Node's readline, it reads the answers from standard
//! input line by line even when that is not a terminal, so scripts that pipe
//! answers into `hydra-cli config <name>` keep working; on a terminal it
//! shows the prompts (on stderr, so stdout stays the report) with defaults,
//! and reads the password without echo.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::args::ConfigArgs;
use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Cell, Report, Table, Tone};
use crate::profile::{Connection, Profiles, is_reserved_name};

/// What the prompts offer when the profile is new: Hydra's default Redis.
fn default_connection() -> Connection {
    Connection {
        host: "127.0.0.1".into(),
        port: 6379,
        db: 15,
        password: String::new(),
    }
}

/// Reads answers from stdin, one line each, with prompts on a terminal.
struct Prompter {
    terminal: bool,
    input: std::io::StdinLock<'static>,
}

impl Prompter {
    fn new() -> Prompter {
        let stdin = std::io::stdin();
        Prompter {
            terminal: stdin.is_terminal(),
            input: stdin.lock(),
        }
    }

    fn ended(field: &str) -> CliError {
        CliError::usage(
            format!("no answer for {field}: standard input ended"),
            "answer the four questions (redisUrl, redisPort, redisDb, redisPassword) one per line, \
             or pass --host, --port, --db and --password",
        )
    }

    /// One answer; a blank one takes `default`.
    fn ask(&mut self, field: &str, default: &str) -> CliResult<String> {
        if self.terminal {
            eprint!("{field} [{default}]: ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        let read = self
            .input
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("cannot read the answer for {field}: {e}"), ""))?;
        if read == 0 {
            return Err(Prompter::ended(field));
        }
        let answer = line.trim();
        Ok(if answer.is_empty() {
            default.to_string()
        } else {
            answer.to_string()
        })
    }

    /// The password: not echoed on a terminal; blank means none (Node's "blank for null").
    fn ask_password(&mut self) -> CliResult<String> {
        const FIELD: &str = "redisPassword (blank for null): ";
        if self.terminal {
            return rpassword::prompt_password(FIELD)
                .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| CliError::usage(format!("cannot read the password: {e}"), ""));
        }
        let mut line = String::new();
        let read = self
            .input
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}"), ""))?;
        if read == 0 {
            return Err(Prompter::ended("redisPassword"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Asks until the answer parses (on a terminal); piped input gets one try.
    fn ask_parsed<T: std::str::FromStr + std::fmt::Display>(
        &mut self,
        field: &str,
        default: T,
        what: &str,
    ) -> CliResult<T> {
        loop {
            let answer = self.ask(field, &default.to_string())?;
            match answer.parse() {
                Ok(value) => return Ok(value),
                Err(_) if self.terminal => eprintln!("{answer:?} is not {what}; try again"),
                Err(_) => {
                    return Err(CliError::usage(
                        format!("{field}: {answer:?} is not {what}"),
                        "fix the answer, or pass the value as an option",
                    ));
                }
            }
        }
    }
}

fn check_host(host: &str) -> CliResult<()> {
    let bad = |reason: &str| {
        CliError::usage(
            format!("redisUrl {host:?} {reason}"),
            "give a host name or address, e.g. 127.0.0.1 (or a full redis:// URL)",
        )
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(bad("is not a host name"));
    }
    if host.contains("://") {
        hydra::RedisConfig::from_url(host).map_err(|e| bad(&format!("is not usable: {e}")))?;
    }
    Ok(())
}

fn connection_json(connection: &Connection) -> Value {
    json!({
        "host": connection.host,
        "port": connection.port,
        "db": connection.db,
        "password": if connection.password.is_empty() { Value::Null } else { json!("***") },
    })
}

fn path_json(path: &Path) -> Value {
    json!(path.display().to_string())
}

/// `config <name>`: asks for what the options did not give, saves the
/// profile and makes it the active one (as Node's does).
pub fn config(_ctx: &Context, args: &ConfigArgs) -> CliResult<Report> {
    let name = args.name.as_deref().unwrap_or_default().trim();
    if name.is_empty() || is_reserved_name(name) {
        return Err(CliError::usage(
            format!("{name:?} cannot name a profile (the file uses it)"),
            "pick another name, e.g. local or prod",
        ));
    }
    let path = Profiles::default_path()?;
    let mut profiles = Profiles::load(&path)?.unwrap_or_else(Profiles::empty);
    // Re-running `config prod` offers prod's current values.
    let defaults = profiles
        .profile(name, &path)
        .ok()
        .flatten()
        .unwrap_or_else(default_connection);
    // Standard input is touched only when an option is missing.
    let mut prompter: Option<Prompter> = None;
    let host = match &args.host {
        Some(host) => host.trim().to_string(),
        None => prompter
            .get_or_insert_with(Prompter::new)
            .ask("redisUrl", &defaults.host)?,
    };
    check_host(&host)?;
    let port = match args.port {
        Some(port) => port,
        None => prompter.get_or_insert_with(Prompter::new).ask_parsed(
            "redisPort",
            defaults.port,
            "a port number (1-65535)",
        )?,
    };
    if port == 0 {
        return Err(CliError::usage("redisPort 0 is not a port", "give 1-65535, e.g. 6379"));
    }
    let db = match args.db {
        Some(db) => db,
        None => prompter
            .get_or_insert_with(Prompter::new)
            .ask_parsed("redisDb", defaults.db, "a database number")?,
    };
    if db < 0 {
        return Err(CliError::usage(
            format!("redisDb {db} is not a database number"),
            "give 0 or more (Hydra's default is 15)",
        ));
    }
    let password = match &args.password {
        Some(password) => password.clone(),
        None => prompter.get_or_insert_with(Prompter::new).ask_password()?,
    };
    let connection = Connection {
        host,
        port,
        db,
        password,
    };
    profiles.set_profile(name, &connection);
    profiles.save(&path)?;
    let with_password = if connection.password.is_empty() {
        ""
    } else {
        " (with a password)"
    };
    Ok(Report::new(json!({
        "profile": name,
        "path": path_json(&path),
        "active": true,
        "connection": connection_json(&connection),
    }))
    .text(format!(
        "profile {name} saved in {} and now in use: {}{with_password}",
        path.display(),
        connection.shown()
    )))
}

/// `config list`: the profiles, passwords hidden, the active one marked.
pub fn config_list(_ctx: &Context) -> CliResult<Report> {
    let path = Profiles::default_path()?;
    let Some(profiles) = Profiles::load(&path)? else {
        return Ok(
            Report::new(json!({"path": path_json(&path), "active": null, "profiles": []}))
                .table(Table::new(["name", "host", "port", "db", "password", "active"]))
                .text(format!(
                    "no profiles yet in {}; create one with `hydra-cli config <name>`",
                    path.display()
                )),
        );
    };
    let active = profiles.active(&path)?;
    let mut table = Table::new(["name", "host", "port", "db", "password", "active"]);
    let mut list = Vec::new();
    for name in profiles.names() {
        let Some(connection) = profiles.profile(&name, &path)? else {
            continue;
        };
        let is_active = active.as_ref() == Some(&connection);
        table.row([
            Cell::from(name.as_str()),
            Cell::from(connection.host.as_str()),
            Cell::from(connection.port.to_string()),
            Cell::from(connection.db.to_string()),
            Cell::from(if connection.password.is_empty() { "" } else { "***" }),
            if is_active {
                Cell::new("*", Tone::Good)
            } else {
                Cell::from("")
            },
        ]);
        let mut entry = connection_json(&connection);
        entry["name"] = json!(name);
        entry["active"] = json!(is_active);
        list.push(entry);
    }
    let mut report = Report::new(json!({
        "path": path_json(&path),
        "active": active.as_ref().map(connection_json),
        "profiles": list,
    }))
    .table(table);
    match &active {
        None => {
            report = report.text("no active connection; pick one with `hydra-cli use <name>`");
        }
        Some(connection) if !list.iter().any(|p| p["active"] == json!(true)) => {
            report = report.text(format!("active: {} (matches no profile)", connection.shown()));
        }
        Some(_) => {}
    }
    Ok(report)
}

/// `use <name>`: makes a profile the active one; an unknown name exits 2
/// with the names there are.
pub fn use_profile(_ctx: &Context, name: &str) -> CliResult<Report> {
    let path = Profiles::default_path()?;
    let Some(mut profiles) = Profiles::load(&path)? else {
        return Err(CliError::usage(
            format!("no profile named {name}: {} does not exist", path.display()),
            format!("create it with `hydra-cli config {name}`"),
        ));
    };
    let Some(connection) = profiles.profile(name, &path)? else {
        let names = profiles.names();
        let hint = if names.is_empty() {
            format!("there are none yet; create it with `hydra-cli config {name}`")
        } else {
            format!(
                "the profiles are: {}; or create it with `hydra-cli config {name}`",
                names.join(", ")
            )
        };
        return Err(CliError::usage(
            format!("no profile named {name} in {}", path.display()),
            hint,
        ));
    };
    profiles.activate(&connection);
    profiles.save(&path)?;
    Ok(Report::new(json!({
        "profile": name,
        "path": path_json(&path),
        "active": true,
        "connection": connection_json(&connection),
    }))
    .text(format!("now using {name}: {}", connection.shown())))
}

/// The parts of a Redis address as `RedisConfig::display_url` shows them:
/// `redis://[user[:***]@]host:port/db`.
struct Address {
    host: String,
    port: String,
    db: String,
    user: Option<String>,
    password: bool,
}

fn address(display_url: &str) -> Option<Address> {
    let rest = display_url.strip_prefix("redis://")?;
    let (login, rest) = match rest.rsplit_once('@') {
        Some((login, rest)) => (login, rest),
        None => ("", rest),
    };
    let (addr, db) = rest.rsplit_once('/')?;
    let (host, port) = addr.rsplit_once(':')?;
    let (user, password) = match login.split_once(':') {
        Some((user, _)) => (user, true),
        None => (login, false),
    };
    Some(Address {
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port: port.to_string(),
        db: db.to_string(),
        user: (!user.is_empty()).then(|| user.to_string()),
        password,
    })
}

/// `shell`: the `redis-cli` command line for the Redis in use. Never the
/// password: with one, `--askpass` makes redis-cli ask for it.
pub fn shell(ctx: &Context) -> CliResult<Report> {
    let (url, source) = ctx.redis_url()?;
    let unusable = |reason: String| {
        CliError::usage(
            format!("the Redis URL from {source} is not usable: {reason}"),
            "write it as redis://[user:password@]host[:port][/db]",
        )
    };
    let config = hydra::RedisConfig::from_url(&url).map_err(|e| unusable(e.to_string()))?;
    let parts = address(config.display_url()).ok_or_else(|| unusable(config.display_url().to_string()))?;
    let mut argv: Vec<String> = ["redis-cli", "-h", &parts.host, "-p", &parts.port, "-n", &parts.db]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(user) = &parts.user {
        argv.extend(["--user".to_string(), user.clone()]);
    }
    if parts.password {
        argv.push("--askpass".to_string());
    }
    let command = argv.join(" ");
    Ok(Report::new(json!({
        "command": command,
        "argv": argv,
        "password_set": parts.password,
        "source": source.to_string(),
    }))
    .text(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_urls_split_into_redis_cli_options() {
        let a = address("redis://127.0.0.1:6379/15").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port.as_str(), a.db.as_str()),
            ("127.0.0.1", "6379", "15")
        );
        assert!(!a.password && a.user.is_none());
        let b = address("redis://ops:***@cache.internal:7000/2").unwrap();
        assert_eq!(b.user.as_deref(), Some("ops"));
        assert!(b.password);
        let c = address("redis://:***@h:1/0").unwrap();
        assert!(c.password && c.user.is_none());
    }
}
