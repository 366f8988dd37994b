//! The command line: every hydra-cli 1.8 command with Node's names and
//! arguments (so existing runbooks work), plus the commands Node never had.
//!
//! Parsing only; each command's work lives in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// See and operate a Hydra system from the terminal.
///
/// Redis is found from --redis, else HYDRA_REDIS_URL, else the active profile
/// in ~/.hydra-cli (written by `hydra-cli config <name>`, Node's format), else
/// redis://127.0.0.1:6379/15.
///
/// Exit status: 0 ok, 1 the operation failed, 2 usage or connection error.
#[derive(Parser, Debug)]
#[command(name = "hydra-cli", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Redis to use, as `redis://[user:password@]host[:port][/db]`; overrides HYDRA_REDIS_URL and the profile.
    #[arg(long, global = true, value_name = "URL")]
    pub redis: Option<String>,
    /// Print one JSON document (stable field names) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for Redis before giving up (exit 2).
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a named profile (prompts for what is not given), or `config list` to print the profiles.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Config(ConfigArgs),
    /// Make a named profile the active one.
    Use {
        /// The profile's name.
        name: String,
    },
    /// List the nodes entries (every instance that ever registered), with their heartbeat age.
    Nodes {
        /// Only this service's instances.
        service: Option<String>,
    },
    /// List the registered services.
    Services {
        /// Only this service.
        service: Option<String>,
    },
    /// List the HTTP routes services registered, or `routes match <path>` to see which one a router picks.
    #[command(args_conflicts_with_subcommands = true)]
    Routes(RoutesArgs),
    /// Show the health records of every live instance.
    Health {
        /// Only this service's instances.
        service: Option<String>,
    },
    /// Print a service's health log.
    Healthlog {
        /// The service.
        service: String,
    },
    /// Create, send or queue UMF messages.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Call a service's HTTP route, as in `svc:[get]/v1/path` or `iid@svc:[post]/v1/path`.
    Rest {
        /// The UMF `to` with the method in brackets.
        route: String,
        /// A JSON file with the request body (refused for GET and DELETE).
        payload: Option<PathBuf>,
    },
    /// Send a message and print the reply (request-reply).
    Request {
        /// The UMF `to`, e.g. `svc:/` or `iid@svc:/`.
        to: String,
        /// The message body, as JSON text.
        body: String,
        /// How long to wait for the reply (exit 1 when none came).
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Remove stale entries: `refresh node list`.
    #[command(subcommand)]
    Refresh(RefreshCommand),
    /// Redis itself: `redis info`.
    #[command(subcommand)]
    Redis(RedisCommand),
    /// Stored service configs: push, pull, list, remove.
    #[command(subcommand)]
    Cfg(CfgCommand),
    /// A service's queue: stats, peek, redrive.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// A live table of services and instances with heartbeat ages, refreshed in place until Ctrl-C.
    ///
    /// On a terminal the table is redrawn in place (alternate screen, restored on
    /// exit). When stdout is not a terminal, one plain snapshot is printed per
    /// refresh; with --json, one JSON document per line per refresh. Redis
    /// going away is shown and retried; Ctrl-C exits with status 0.
    Watch {
        /// Time between refreshes.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
    },
    /// Check Redis and the registry, and say what to fix (exit 1 when a check fails).
    Doctor {
        /// Check this Redis user's ACL permissions instead of the connection's own
        /// (needs a connection whose user may run ACL DRYRUN, e.g. an administrator).
        #[arg(long, value_name = "USER")]
        acl_user: Option<String>,
    },
    /// Print the redis-cli command line for the active profile.
    Shell,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `config <name>` or `config list`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// `list`.
    #[command(subcommand)]
    pub list: Option<ConfigCommand>,
    /// The profile's name.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Redis host (Node's redisUrl); asked for when not given on a terminal.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Redis port (Node's redisPort).
    #[arg(long)]
    pub port: Option<u16>,
    /// Redis database (Node's redisDb).
    #[arg(long)]
    pub db: Option<i64>,
    /// Redis password (Node's redisPassword); empty for none.
    #[arg(long)]
    pub password: Option<String>,
}

/// `config list`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the profiles (passwords hidden).
    List,
}

/// `routes [svc]` or `routes match <path>`.
#[derive(Args, Debug)]
pub struct RoutesArgs {
    /// `match <path>`.
    #[command(subcommand)]
    pub matcher: Option<RoutesCommand>,
    /// Only this service's routes.
    pub service: Option<String>,
}

/// `routes match`.
#[derive(Subcommand, Debug)]
pub enum RoutesCommand {
    /// Which service and route a hydra-router would pick for a path.
    Match {
        /// The request path, e.g. /v1/users/42.
        path: String,
        /// The HTTP method (the router matches method-blind, as Node's does; shown for the record).
        #[arg(long, default_value = "get")]
        method: String,
    },
}

/// `message …`.
#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// Print a UMF message template to edit.
    Create,
    /// Send the message in a JSON file to one live instance (fire and forget).
    Send {
        /// The message file.
        file: PathBuf,
    },
    /// Queue the message in a JSON file for its service.
    Queue {
        /// The message file.
        file: PathBuf,
    },
}

/// `refresh …`.
#[derive(Subcommand, Debug)]
pub enum RefreshCommand {
    /// `refresh node list`.
    Node {
        /// `list`.
        #[command(subcommand)]
        what: RefreshNodeCommand,
    },
}

/// `refresh node …`.
#[derive(Subcommand, Debug)]
pub enum RefreshNodeCommand {
    /// Remove nodes entries whose heartbeat is older than --older-than.
    List {
        /// Age beyond which an entry is stale (Node's hydra-cli uses 60 s).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        older_than: Duration,
    },
}

/// `redis …`.
#[derive(Subcommand, Debug)]
pub enum RedisCommand {
    /// Print Redis's INFO.
    Info,
}

/// `cfg …`.
#[derive(Subcommand, Debug)]
pub enum CfgCommand {
    /// Store a config file as `svc:version`.
    Push {
        /// `svc:version`.
        label: String,
        /// The JSON file.
        file: PathBuf,
    },
    /// Print a stored config.
    Pull {
        /// `svc:version`.
        label: String,
    },
    /// List a service's stored config versions.
    List {
        /// The service.
        service: String,
    },
    /// Remove one stored config version.
    Remove {
        /// `svc:version`.
        label: String,
    },
}

/// `queue …`.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Counts of a service's queue: waiting, in flight, dead letters.
    Stats {
        /// The service.
        service: String,
    },
    /// Show the next messages waiting in a service's queue without taking them.
    Peek {
        /// The service.
        service: String,
        /// How many.
        #[arg(default_value_t = 10)]
        count: usize,
    },
    /// Move a service's dead letters back to its queue.
    Redrive {
        /// The service.
        service: String,
    },
}

/// Durations as people write them: `500ms`, `5s`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Ok(Duration::from_secs_f64(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 5s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_spellings_parse() {
        let parse = |line: &str| Cli::try_parse_from(line.split(' ')).map(|cli| format!("{:?}", cli.command));
        assert!(parse("hydra-cli refresh node list").unwrap().contains("List"));
        assert!(parse("hydra-cli config list").unwrap().contains("Some(List)"));
        assert!(parse("hydra-cli config local").unwrap().contains("\"local\""));
        assert!(parse("hydra-cli routes match /v1/x").unwrap().contains("Match"));
        assert!(parse("hydra-cli routes svc").unwrap().contains("Some(\"svc\")"));
        assert!(parse("hydra-cli routes").unwrap().contains("service: None"));
        assert!(parse("hydra-cli cfg push svc:1.0.0 f.json").unwrap().contains("Push"));
        assert!(parse("hydra-cli redis info").unwrap().contains("Info"));
        assert!(parse("hydra-cli bogus").is_err());
        assert!(parse("hydra-cli config").is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
