//! The router's configuration: Node hydra-router's `config.json` format
//! (spec §1.14), `HYDRA_ROUTER_*` environment overrides, and our additions.
//!
//! Differences from Node, each a fix: environment values are parsed as what
//! they stand for (`HYDRA_ROUTER_FORCEMESSAGESIGNATURE=false` is false, a
//! number must be a number), `HYDRA_ROUTER_DISABLEROUTERENDPOINT` is read
//! (Node reads the token into the flag), the variables are read from the
//! environment whether or not `HYDRA_ROUTER_ENV` names a dotenv file (when it
//! does, the file's values fill in what the environment does not set), and
//! `queuerDB` is read where the sample config puts it (top level) as well as
//! where Node's code looks (`hydra.queuerDB`). A bad value is an error naming
//! the field; the binary exits with status 2 on it.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The router's service name: what services broadcast `refresh` to.
pub const ROUTER_SERVICE: &str = "hydra-router";
/// The port used when the config names none (the one Node's docs use).
pub const DEFAULT_PORT: u16 = 5353;
/// Node's default `requestTimeout`: 5 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A configuration error: the field (or environment variable) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field (`requestTimeout`, `hydra.servicePort`) or variable
    /// (`HYDRA_ROUTER_REQUESTTIMEOUT`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Everything the router runs with.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `routerToken`: when set, the router API needs `?token=<it>`.
    pub router_token: Option<String>,
    /// `disableRouterEndpoint`: the router API answers 404 (health excepted,
    /// see [`access`](crate::access)).
    pub disable_router_endpoint: bool,
    /// `requestTimeout` (seconds in the file): each forwarding attempt's
    /// timeout; then the next instance is tried.
    pub request_timeout: Duration,
    /// `cors`: headers added to every response, in order.
    pub cors: Vec<(String, String)>,
    /// `externalRoutes`: `{ "http://host:port": ["[get]/path", …] }`; calls
    /// matching them are proxied to that URL.
    pub external_routes: Vec<(String, Vec<String>)>,
    /// `debugLogging`: a log line per forwarded request.
    pub debug_logging: bool,
    /// `forceMessageSignature` (WebSocket frames must be signed).
    pub force_message_signature: bool,
    /// `signatureSharedSecret`.
    pub signature_shared_secret: Option<String>,
    /// `queuerDB`: the Redis database of the offline WebSocket queue.
    pub queuer_db: i64,
    /// `requireWebsocketAuth`: a WebSocket client must be accepted by
    /// `websocketAuthService` before its welcome.
    pub require_websocket_auth: bool,
    /// `websocketAuthService`: the service asked to accept WebSocket clients.
    pub websocket_auth_service: Option<String>,
    /// `websocketAuthServiceAPI`: its route, POSTed `{key}` (`v1/auth/ws`).
    pub websocket_auth_service_api: Option<String>,
    /// `publicMetrics` (ours): `/v1/router/metrics` needs no token.
    pub public_metrics: bool,
    /// `maxBodyBytes` (ours): largest request body forwarded (default 10 MiB).
    pub max_body_bytes: usize,
    /// `workers` (ours): threads forwarding requests (default 64). A forward
    /// holds its worker until the service answers or the timeout fires.
    pub workers: usize,
    /// `routeRefreshInterval` (ours, seconds): how often the route table is
    /// re-read besides `refresh` broadcasts (default 10 s).
    pub route_refresh_interval: Duration,
    /// `routePruneAfter` (ours, seconds): a service with no live instance for
    /// this long leaves the route table (default 3600 s).
    pub route_prune_after: Duration,
    /// The `hydra` branch, as the library reads it.
    pub hydra: hydra::Config,
}

impl RouterConfig {
    /// Reads a config file, then the environment.
    pub fn from_file(path: &Path) -> Result<RouterConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("--config", format!("cannot read {}: {e}", path.display())))?;
        let document: Value = serde_json::from_str(&text)
            .map_err(|e| invalid("--config", format!("{} is not valid JSON: {e}", path.display())))?;
        RouterConfig::from_document(document, &process_env()?)
    }

    /// The configuration with no file: defaults and the environment.
    pub fn from_env() -> Result<RouterConfig, ConfigError> {
        RouterConfig::from_document(json!({}), &process_env()?)
    }

    /// Builds the configuration from a parsed `config.json` document and the
    /// environment variables given (name → value).
    pub fn from_document(document: Value, env: &[(String, String)]) -> Result<RouterConfig, ConfigError> {
        let Value::Object(mut document) = document else {
            return Err(invalid("config", "must be a JSON object"));
        };
        apply_env_overrides(&mut document, env)?;
        let get = |name: &str| document.get(name).filter(|v| !v.is_null());
        let router_token = match get("routerToken") {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => return Err(invalid("routerToken", "must be a string")),
        };
        let queuer_db = match get("queuerDB").or_else(|| document.get("hydra").and_then(|h| h.get("queuerDB"))) {
            None => 0,
            Some(v) => v
                .as_i64()
                .filter(|db| (0..=15_000).contains(db))
                .ok_or_else(|| invalid("queuerDB", format!("must be a Redis database number, got {v}")))?,
        };
        let config = RouterConfig {
            router_token,
            disable_router_endpoint: bool_field(get("disableRouterEndpoint"), "disableRouterEndpoint", false)?,
            request_timeout: seconds_field(get("requestTimeout"), "requestTimeout", DEFAULT_REQUEST_TIMEOUT)?,
            cors: cors_field(get("cors"))?,
            external_routes: external_routes_field(get("externalRoutes"))?,
            debug_logging: bool_field(get("debugLogging"), "debugLogging", false)?,
            force_message_signature: bool_field(get("forceMessageSignature"), "forceMessageSignature", false)?,
            signature_shared_secret: match get("signatureSharedSecret") {
                None => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(invalid("signatureSharedSecret", "must be a string")),
            },
            queuer_db,
            require_websocket_auth: bool_field(get("requireWebsocketAuth"), "requireWebsocketAuth", false)?,
            websocket_auth_service: text_field(get("websocketAuthService"), "websocketAuthService")?,
            websocket_auth_service_api: text_field(get("websocketAuthServiceAPI"), "websocketAuthServiceAPI")?,
            public_metrics: bool_field(get("publicMetrics"), "publicMetrics", false)?,
            max_body_bytes: count_field(get("maxBodyBytes"), "maxBodyBytes", 10 * 1024 * 1024, 1)?,
            workers: count_field(get("workers"), "workers", 64, 1)?.min(1024),
            route_refresh_interval: seconds_field(
                get("routeRefreshInterval"),
                "routeRefreshInterval",
                Duration::from_secs(10),
            )?,
            route_prune_after: seconds_field(get("routePruneAfter"), "routePruneAfter", Duration::from_secs(3600))?,
            hydra: hydra_config(&document, env)?,
        };
        if config.force_message_signature && config.signature_shared_secret.is_none() {
            return Err(invalid(
                "signatureSharedSecret",
                "must be set when forceMessageSignature is true",
            ));
        }
        if config.require_websocket_auth {
            for (field, value) in [
                ("websocketAuthService", &config.websocket_auth_service),
                ("websocketAuthServiceAPI", &config.websocket_auth_service_api),
            ] {
                if value.is_none() {
                    return Err(invalid(field, "must be set when requireWebsocketAuth is true"));
                }
            }
        }
        Ok(config)
    }
}

/// An optional non-empty string.
fn text_field(value: Option<&Value>, field: &str) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => Err(invalid(field, format!("must be a string, got {other}"))),
    }
}

/// The process environment, after the dotenv file named by
/// `HYDRA_ROUTER_ENV` (if any) filled in what is not set.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    if let Some((_, path)) = env.iter().find(|(k, _)| k == "HYDRA_ROUTER_ENV").cloned() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid("HYDRA_ROUTER_ENV", format!("cannot read {path}: {e}")))?;
        for (key, value) in parse_dotenv(&text) {
            if !env.iter().any(|(k, _)| *k == key) {
                env.push((key, value));
            }
        }
    }
    Ok(env)
}

/// `KEY=value` lines; `#` comments, `export ` prefixes and matching quotes
/// around values are allowed, as the dotenv package reads them.
fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value);
            Some((key.trim().to_string(), unquoted.to_string()))
        })
        .collect()
}

/// How an environment variable's text becomes a JSON value.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Bool,
    Number,
}

/// `HYDRA_ROUTER_<NAME>` → (place in the document, kind).
const TOP_LEVEL_ENV: &[(&str, &str, Kind)] = &[
    ("ROUTERTOKEN", "routerToken", Kind::Text),
    ("DISABLEROUTERENDPOINT", "disableRouterEndpoint", Kind::Bool),
    ("DEBUGLOGGING", "debugLogging", Kind::Bool),
    ("QUEUERDB", "queuerDB", Kind::Number),
    ("REQUESTTIMEOUT", "requestTimeout", Kind::Number),
    ("FORCEMESSAGESIGNATURE", "forceMessageSignature", Kind::Bool),
    ("SIGNATURESHAREDSECRET", "signatureSharedSecret", Kind::Text),
    ("PUBLICMETRICS", "publicMetrics", Kind::Bool),
    ("REQUIREWEBSOCKETAUTH", "requireWebsocketAuth", Kind::Bool),
    ("WEBSOCKETAUTHSERVICE", "websocketAuthService", Kind::Text),
    ("WEBSOCKETAUTHSERVICEAPI", "websocketAuthServiceAPI", Kind::Text),
    ("MAXBODYBYTES", "maxBodyBytes", Kind::Number),
    ("WORKERS", "workers", Kind::Number),
    ("ROUTEREFRESHINTERVAL", "routeRefreshInterval", Kind::Number),
    ("ROUTEPRUNEAFTER", "routePruneAfter", Kind::Number),
];

const HYDRA_ENV: &[(&str, &str)] = &[
    ("SERVICENAME", "serviceName"),
    ("SERVICEDESCRIPTION", "serviceDescription"),
    ("SERVICEIP", "serviceIP"),
    ("SERVICEINTERFACE", "serviceInterface"),
    ("SERVICEDNS", "serviceDNS"),
    ("SERVICEPORT", "servicePort"),
    ("SERVICETYPE", "serviceType"),
];

const CORS_ENV: &[(&str, &str)] = &[
    ("ALLOW_ORIGIN", "access-control-allow-origin"),
    ("ALLOW_METHODS", "access-control-allow-methods"),
    ("ALLOW_HEADERS", "access-control-allow-headers"),
    ("ALLOW_CREDENTIALS", "access-control-allow-credentials"),
    ("MAX_AGE", "access-control-max-age"),
];

fn apply_env_overrides(document: &mut Map<String, Value>, env: &[(String, String)]) -> Result<(), ConfigError> {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
    for (suffix, field, kind) in TOP_LEVEL_ENV {
        let name = format!("HYDRA_ROUTER_{suffix}");
        if let Some(text) = lookup(&name) {
            document.insert(field.to_string(), env_value(&name, &text, *kind)?);
        }
    }
    if let Some(text) = lookup("HYDRA_ROUTER_CORS") {
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| invalid("HYDRA_ROUTER_CORS", format!("must be a JSON object of headers: {e}")))?;
        document.insert("cors".into(), value);
    }
    for (suffix, header) in CORS_ENV {
        if let Some(text) = lookup(&format!("HYDRA_ROUTER_CORS_ACCESS_CONTROL_{suffix}")) {
            let cors = document.entry("cors").or_insert_with(default_cors_value);
            if let Value::Object(cors) = cors {
                cors.insert(header.to_string(), Value::String(text));
            }
        }
    }
    let hydra = document.entry("hydra").or_insert_with(|| json!({}));
    let Value::Object(hydra) = hydra else {
        return Err(invalid("hydra", "must be an object"));
    };
    for (suffix, field) in HYDRA_ENV {
        if let Some(text) = lookup(&format!("HYDRA_ROUTER_HYDRA_{suffix}")) {
            hydra.insert(field.to_string(), Value::String(text));
        }
    }
    if let Some(url) = lookup("HYDRA_ROUTER_HYDRA_REDIS_URL") {
        let redis = hydra.entry("redis").or_insert_with(|| json!({}));
        match redis {
            Value::Object(redis) => {
                redis.insert("url".into(), Value::String(url));
            }
            other => *other = json!({ "url": url }),
        }
    }
    Ok(())
}

fn env_value(name: &str, text: &str, kind: Kind) -> Result<Value, ConfigError> {
    match kind {
        Kind::Text => Ok(Value::String(text.to_string())),
        Kind::Bool => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| invalid(name, format!("must be true or false, got {text:?}"))),
        Kind::Number => serde_json::from_str::<serde_json::Number>(text)
            .map(Value::Number)
            .map_err(|_| invalid(name, format!("must be a number, got {text:?}"))),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn bool_field(value: Option<&Value>, field: &str, default: bool) -> Result<bool, ConfigError> {
    match value {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        // Node's env values reach the config as strings; read them for what they say.
        Some(Value::String(s)) => {
            parse_bool(s.trim()).ok_or_else(|| invalid(field, format!("must be true or false, got {s:?}")))
        }
        Some(other) => Err(invalid(field, format!("must be true or false, got {other}"))),
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn seconds_field(value: Option<&Value>, field: &str, default: Duration) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    number_of(value)
        .filter(|s| *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            invalid(
                field,
                format!("must be a number of seconds above 0 (at most a day), got {value}"),
            )
        })
}

fn count_field(value: Option<&Value>, field: &str, default: usize, min: usize) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    number_of(value)
        .filter(|n| n.fract() == 0.0 && *n >= min as f64 && *n <= u32::MAX as f64)
        .map(|n| n as usize)
        .ok_or_else(|| invalid(field, format!("must be a whole number of at least {min}, got {value}")))
}

/// Node's sample `cors` block (the headers Node adds by default).
fn default_cors_value() -> Value {
    json!({
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "access-control-allow-headers": "accept, authorization, cache-control, content-type, x-requested-with",
        "access-control-allow-credentials": "true",
        "access-control-max-age": "10",
    })
}

fn cors_field(value: Option<&Value>) -> Result<Vec<(String, String)>, ConfigError> {
    let default = default_cors_value();
    let Value::Object(map) = value.unwrap_or(&default) else {
        return Err(invalid("cors", "must be an object of header names to values"));
    };
    map.iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return Err(invalid(&format!("cors.{name}"), "must be a string")),
            };
            let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !name_ok || text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(invalid(&format!("cors.{name}"), "is not a valid HTTP header"));
            }
            Ok((name.to_ascii_lowercase(), text))
        })
        .collect()
}

fn external_routes_field(value: Option<&Value>) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = value else {
        return Err(invalid(
            "externalRoutes",
            "must be an object of URL to a list of routes",
        ));
    };
    map.iter()
        .map(|(url, routes)| {
            let field = format!("externalRoutes.{url}");
            crate::external::parse_base_url(url).map_err(|reason| invalid(&field, reason))?;
            let Value::Array(routes) = routes else {
                return Err(invalid(&field, "must be a list of routes such as \"[get]/v1/x\""));
            };
            let routes = routes
                .iter()
                .map(|r| {
                    r.as_str()
                        .filter(|r| r.contains('/'))
                        .map(str::to_string)
                        .ok_or_else(|| invalid(&field, format!("{r} is not a route such as \"[get]/v1/x\"")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((url.trim_end_matches('/').to_string(), routes))
        })
        .collect()
}

/// The library's config from the `hydra` branch, with the router's defaults
/// (name `hydra-router`, type `router`, port 5353) and `HYDRA_REDIS_URL`.
fn hydra_config(document: &Map<String, Value>, env: &[(String, String)]) -> Result<hydra::Config, ConfigError> {
    let mut hydra = match document.get("hydra") {
        Some(Value::Object(h)) => h.clone(),
        _ => Map::new(),
    };
    for (field, default) in [
        ("serviceName", json!(ROUTER_SERVICE)),
        ("serviceType", json!("router")),
        ("serviceDescription", json!("Service Router")),
        ("servicePort", json!(DEFAULT_PORT)),
    ] {
        let missing = hydra
            .get(field)
            .is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.is_empty()));
        if missing {
            hydra.insert(field.to_string(), default);
        }
    }
    let library_error = |e: hydra::Error| match e {
        hydra::Error::InvalidConfig { field, reason } => invalid(&format!("hydra.{field}"), reason),
        other => invalid("hydra", other.to_string()),
    };
    let builder = hydra::ConfigBuilder::from_value(json!({ "hydra": hydra }))
        .map_err(library_error)?
        .apply_env_from(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .map_err(library_error)?;
    builder.build().map_err(library_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_without_a_file() {
        let config = RouterConfig::from_document(json!({}), &[]).unwrap();
        assert_eq!(config.hydra.service_name(), "hydra-router");
        assert_eq!(config.hydra.service_type(), "router");
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert!(config.router_token.is_none());
        assert!(!config.disable_router_endpoint);
        assert_eq!(config.cors[0], ("access-control-allow-origin".into(), "*".into()));
    }

    #[test]
    fn node_sample_config_is_read() {
        let sample = json!({
            "externalRoutes": {},
            "routerToken": "",
            "disableRouterEndpoint": false,
            "debugLogging": true,
            "queuerDB": 3,
            "requestTimeout": 30,
            "forceMessageSignature": false,
            "signatureSharedSecret": "d632dd6d-fb75-44cc-bdbf-ee1364f3716c",
            "cors": {"access-control-allow-origin": "https://app.example", "access-control-max-age": 10},
            "hydra": {"serviceName": "hydra-router", "serviceDescription": "Service Router",
                      "serviceIP": "", "servicePort": "8080", "serviceType": "router",
                      "plugins": {"hydraLogger": {"logToConsole": true, "onlyLogLocally": false}},
                      "redis": {"url": "redis://127.0.0.1:6379/15"}}
        });
        let config = RouterConfig::from_document(sample, &[]).unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.queuer_db, 3);
        assert!(config.debug_logging);
        assert_eq!(
            config.cors,
            vec![
                (
                    "access-control-allow-origin".to_string(),
                    "https://app.example".to_string()
                ),
                ("access-control-max-age".to_string(), "10".to_string())
            ]
        );
        assert_eq!(config.hydra.redis().db(), 15);
    }

    #[test]
    fn env_booleans_mean_what_they_say() {
        let config = RouterConfig::from_document(
            json!({"forceMessageSignature": true, "signatureSharedSecret": "s"}),
            &env(&[
                ("HYDRA_ROUTER_FORCEMESSAGESIGNATURE", "false"),
                ("HYDRA_ROUTER_DISABLEROUTERENDPOINT", "true"),
                ("HYDRA_ROUTER_ROUTERTOKEN", "3b9f0e8e-5ab8-4b7a-a1a5-f2b8c0d1e2f3"),
                ("HYDRA_ROUTER_REQUESTTIMEOUT", "2.5"),
            ]),
        )
        .unwrap();
        assert!(!config.force_message_signature);
        assert!(config.disable_router_endpoint);
        assert_eq!(
            config.router_token.as_deref(),
            Some("3b9f0e8e-5ab8-4b7a-a1a5-f2b8c0d1e2f3")
        );
        assert_eq!(config.request_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn websocket_auth_settings_are_read_and_checked() {
        let config = RouterConfig::from_document(
            json!({"requireWebsocketAuth": true, "websocketAuthService": "auth-svc", "websocketAuthServiceAPI": "v1/auth/ws"}),
            &[],
        )
        .unwrap();
        assert!(config.require_websocket_auth);
        assert_eq!(config.websocket_auth_service.as_deref(), Some("auth-svc"));
        assert_eq!(config.websocket_auth_service_api.as_deref(), Some("v1/auth/ws"));
        let missing =
            RouterConfig::from_document(json!({"requireWebsocketAuth": true, "websocketAuthService": "a"}), &[]);
        assert_eq!(missing.unwrap_err().field, "websocketAuthServiceAPI");
        let off = RouterConfig::from_document(json!({}), &[]).unwrap();
        assert!(!off.require_websocket_auth && off.websocket_auth_service.is_none());
    }

    #[test]
    fn bad_values_name_their_field() {
        let field_of =
            |doc: Value, vars: &[(&str, &str)]| RouterConfig::from_document(doc, &env(vars)).unwrap_err().field;
        assert_eq!(field_of(json!({"requestTimeout": "soon"}), &[]), "requestTimeout");
        assert_eq!(field_of(json!({"requestTimeout": -1}), &[]), "requestTimeout");
        assert_eq!(
            field_of(json!({"disableRouterEndpoint": "maybe"}), &[]),
            "disableRouterEndpoint"
        );
        assert_eq!(field_of(json!({"cors": ["*"]}), &[]), "cors");
        assert_eq!(field_of(json!({"cors": {"x-a": "1\r\nx-b: 2"}}), &[]), "cors.x-a");
        assert_eq!(
            field_of(json!({"externalRoutes": {"ftp://x": ["[get]/a"]}}), &[]),
            "externalRoutes.ftp://x"
        );
        assert_eq!(
            field_of(json!({"hydra": {"servicePort": "http"}}), &[]),
            "hydra.servicePort"
        );
        assert_eq!(
            field_of(json!({"forceMessageSignature": true}), &[]),
            "signatureSharedSecret"
        );
        assert_eq!(
            field_of(json!({}), &[("HYDRA_ROUTER_DEBUGLOGGING", "verbose")]),
            "HYDRA_ROUTER_DEBUGLOGGING"
        );
        assert_eq!(
            field_of(json!({}), &[("HYDRA_ROUTER_WORKERS", "many")]),
            "HYDRA_ROUTER_WORKERS"
        );
        assert_eq!(field_of(json!([1]), &[]), "config");
    }

    #[test]
    fn env_reaches_the_hydra_branch_and_cors() {
        let config = RouterConfig::from_document(
            json!({}),
            &env(&[
                ("HYDRA_ROUTER_HYDRA_SERVICEPORT", "7070"),
                ("HYDRA_ROUTER_HYDRA_REDIS_URL", "redis://127.0.0.1:6390/4"),
                ("HYDRA_ROUTER_CORS_ACCESS_CONTROL_ALLOW_ORIGIN", "https://a.example"),
            ]),
        )
        .unwrap();
        assert_eq!(config.hydra.redis().db(), 4);
        assert!(format!("{:?}", config.hydra.service_port()).contains("7070"));
        assert!(
            config
                .cors
                .contains(&("access-control-allow-origin".into(), "https://a.example".into()))
        );
        // HYDRA_REDIS_URL, the library's variable, wins over the file.
        let config = RouterConfig::from_document(
            json!({"hydra": {"redis": {"url": "redis://127.0.0.1:6390/4"}}}),
            &env(&[("HYDRA_REDIS_URL", "redis://127.0.0.1:6391/2")]),
        )
        .unwrap();
        assert_eq!(config.hydra.redis().db(), 2);
    }

    #[test]
    fn dotenv_lines() {
        let parsed = parse_dotenv("# c\nexport A=1\nB = \"two words\"\n\nC='x'\nnoequals\n");
        assert_eq!(
            parsed,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("C".to_string(), "x".to_string())
            ]
        );
    }
}
