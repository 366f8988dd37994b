//! What every command gets: the global options, where Redis is, and a
//! connected [`Hydra`] handle made on first use (commands such as `config`,
//! `message create` or `completions` never touch Redis).
//!
//! The handle is Node hydra-cli's: the non-service `hydra-cli` (type `non`),
//! initialised but never registered, so the CLI never shows up in `nodes`.

use std::cell::OnceCell;
use std::path::PathBuf;
use std::time::Duration;

use hydra::{Config, Hydra};

use crate::error::{CliError, CliResult};
use crate::output::Style;
use crate::profile::Profiles;

/// Redis when nothing else says where: Node's default database 15.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/15";

/// Where the Redis URL came from (shown by `doctor` and in connection errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// `--redis`.
    Flag,
    /// `HYDRA_REDIS_URL`.
    Environment,
    /// The active profile in this file.
    Profile(PathBuf),
    /// [`DEFAULT_REDIS_URL`].
    Default,
}

impl std::fmt::Display for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Flag => write!(f, "--redis"),
            UrlSource::Environment => write!(f, "HYDRA_REDIS_URL"),
            UrlSource::Profile(path) => write!(f, "the active profile in {}", path.display()),
            UrlSource::Default => write!(f, "the default"),
        }
    }
}

/// The global options and the lazily connected handle.
pub struct Context {
    /// How to print.
    pub style: Style,
    /// How long to wait for Redis.
    pub connect_timeout: Duration,
    redis_flag: Option<String>,
    hydra: OnceCell<Hydra>,
}

impl Context {
    /// A context from the global options.
    pub fn new(redis_flag: Option<String>, style: Style, connect_timeout: Duration) -> Context {
        Context {
            style,
            connect_timeout,
            redis_flag,
            hydra: OnceCell::new(),
        }
    }

    /// The Redis URL to use and where it came from: `--redis`, then
    /// `HYDRA_REDIS_URL`, then the active profile, then the default.
    pub fn redis_url(&self) -> CliResult<(String, UrlSource)> {
        if let Some(url) = &self.redis_flag {
            return Ok((url.clone(), UrlSource::Flag));
        }
        if let Some(url) = std::env::var("HYDRA_REDIS_URL").ok().filter(|u| !u.is_empty()) {
            return Ok((url, UrlSource::Environment));
        }
        let path = match Profiles::default_path() {
            Ok(path) => path,
            Err(_) => return Ok((DEFAULT_REDIS_URL.to_string(), UrlSource::Default)),
        };
        if let Some(profiles) = Profiles::load(&path)?
            && let Some(active) = profiles.active(&path)?
        {
            return Ok((active.url(), UrlSource::Profile(path)));
        }
        Ok((DEFAULT_REDIS_URL.to_string(), UrlSource::Default))
    }

    /// The connected handle (connects on first call, within the connect timeout).
    pub fn hydra(&self) -> CliResult<&Hydra> {
        if let Some(hydra) = self.hydra.get() {
            return Ok(hydra);
        }
        let hydra = self.connect(None)?;
        Ok(self.hydra.get_or_init(|| hydra))
    }

    /// A second handle of its own, under the given instance ID (random when
    /// `None`): for a command that registers (`request`).
    pub fn connect_as(&self, instance_id: Option<&str>) -> CliResult<Hydra> {
        self.connect(instance_id)
    }

    fn connect(&self, instance_id: Option<&str>) -> CliResult<Hydra> {
        let (url, source) = self.redis_url()?;
        let mut builder = Config::builder()
            .service_name("hydra-cli")
            .service_type("non")
            .service_description("hydra-cli")
            .redis_url(&url)
            .connect_timeout(self.connect_timeout);
        if let Some(id) = instance_id {
            builder = builder.instance_id(id);
        }
        let config = builder.build().map_err(|e| {
            CliError::usage(
                format!("the Redis URL from {source} is not usable: {e}"),
                "write it as redis://[user:password@]host[:port][/db]",
            )
        })?;
        let shown = config.redis().display_url().to_string();
        Hydra::init(config).map_err(|e| match e.code() {
            hydra::ErrorCode::InvalidConfig => CliError::connection(
                format!("Redis at {shown} (from {source}) cannot be used: {e}"),
                "hydra needs Redis 6.2 or newer",
            ),
            _ => CliError::connection(
                format!(
                    "unable to connect to Redis at {shown} (from {source}) within {}: {e}",
                    humantime::format_duration(self.connect_timeout)
                ),
                "check that it runs and the address is right (`hydra-cli config list`), or pass --redis <url>",
            ),
        })
    }
}
