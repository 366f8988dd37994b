//! Who may use the router's own endpoints (spec §1.9).
//!
//! `disableRouterEndpoint` turns the router API off (404) and `routerToken`
//! requires `?token=<routerToken>` (404 without it, as Node answers). Unlike
//! Node, a `Host: localhost` header opens nothing: any client can send one.
//! The exceptions, all documented in the README:
//! - `GET /v1/router/health` needs no token and stays on when the API is
//!   disabled: load balancers and container health checks call it bare. It
//!   tells that the router runs, nothing about the services behind it;
//! - the dashboard's static files (`/`, `/index.html`, `/index.js`,
//!   `/index.css`) need no token (they hold no data; the page passes its own
//!   `?token=` to the API), but are off when the API is disabled;
//! - `/v1/router/metrics` needs no token when `publicMetrics` is set (for a
//!   Prometheus scraper), even with the API disabled.

use crate::config::RouterConfig;

/// What the router does with a request for one of its own paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Serve it.
    Allowed,
    /// Answer 404, as Node does for a disabled or token-protected API.
    Refused,
}

/// The router's own path kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnPath {
    /// `/v1/router/health`.
    Health,
    /// `/v1/router/metrics`.
    Metrics,
    /// The dashboard's files.
    Dashboard,
    /// Every other `/v1/router/...` endpoint.
    Api,
}

/// Decides access to `kind` for a request whose query string is `query`.
pub fn check(config: &RouterConfig, kind: OwnPath, query: &str) -> Access {
    let allowed = match kind {
        OwnPath::Health => true,
        OwnPath::Metrics if config.public_metrics => true,
        OwnPath::Dashboard => !config.disable_router_endpoint,
        OwnPath::Metrics | OwnPath::Api => !config.disable_router_endpoint && token_ok(config, query),
    };
    if allowed { Access::Allowed } else { Access::Refused }
}

/// True when no token is configured, or the query carries it. The value is
/// compared decoded (`%XX` escapes, `+` for a space), as Node's query parser
/// reads it: a token that is not a UUID may hold characters a client must
/// escape.
fn token_ok(config: &RouterConfig, query: &str) -> bool {
    let Some(expected) = &config.router_token else {
        return true;
    };
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .map(|given| {
            let spaced = given.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced).collect::<Vec<u8>>()
        })
        .any(|given| constant_time_eq(&given, expected.as_bytes()))
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(doc: serde_json::Value) -> RouterConfig {
        RouterConfig::from_document(doc, &[]).unwrap()
    }

    #[test]
    fn token_is_required_on_the_api_but_not_for_health() {
        let c = config(json!({"routerToken": "6a5c-tok"}));
        assert_eq!(check(&c, OwnPath::Api, ""), Access::Refused);
        assert_eq!(check(&c, OwnPath::Api, "token=wrong"), Access::Refused);
        assert_eq!(check(&c, OwnPath::Api, "a=1&token=6a5c-tok"), Access::Allowed);
        assert_eq!(check(&c, OwnPath::Api, "token=6a5c-to"), Access::Refused);
        assert_eq!(check(&c, OwnPath::Api, "token=%36a5c%2Dtok"), Access::Allowed);
        let c = config(json!({"routerToken": "a b+c&d"}));
        assert_eq!(check(&c, OwnPath::Api, "token=a+b%2Bc%26d"), Access::Allowed);
        assert_eq!(check(&c, OwnPath::Api, "token=a b+c&d"), Access::Refused);
        assert_eq!(check(&c, OwnPath::Health, ""), Access::Allowed);
        assert_eq!(check(&c, OwnPath::Dashboard, ""), Access::Allowed);
        assert_eq!(check(&c, OwnPath::Metrics, ""), Access::Refused);
        let public = config(json!({"routerToken": "t", "publicMetrics": true}));
        assert_eq!(check(&public, OwnPath::Metrics, ""), Access::Allowed);
    }

    #[test]
    fn disabled_api_answers_only_health_and_public_metrics() {
        let c = config(json!({"disableRouterEndpoint": true}));
        assert_eq!(check(&c, OwnPath::Api, ""), Access::Refused);
        assert_eq!(check(&c, OwnPath::Dashboard, ""), Access::Refused);
        assert_eq!(check(&c, OwnPath::Metrics, ""), Access::Refused);
        assert_eq!(check(&c, OwnPath::Health, ""), Access::Allowed);
        let c = config(json!({"disableRouterEndpoint": true, "publicMetrics": true}));
        assert_eq!(check(&c, OwnPath::Metrics, ""), Access::Allowed);
    }
}
