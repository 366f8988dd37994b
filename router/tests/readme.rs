//! The README's router numbers are the code's: every default quoted in the
//! hydra-router section's config table and paragraphs is compared with the
//! value the router really uses. When the README is reworded, the claim here
//! must follow; when a default changes, the README must.

use std::time::Duration;

use hydra_router::config::RouterConfig;
use serde_json::json;

const README: &str = include_str!("../../README.md");

/// The README's hydra-router section, with runs of white space made one space.
fn router_section() -> String {
    let start = README
        .find("## hydra-router")
        .expect("README has a hydra-router section");
    let rest = &README[start + 3..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

fn claims(text: &str, claim: &str) {
    assert!(
        router_section().contains(claim),
        "the README's hydra-router section no longer says {claim:?} — reword this test with the README{text}"
    );
}

#[test]
fn config_defaults_are_the_ones_the_readme_gives() {
    let config = RouterConfig::from_document(json!({}), &[]).unwrap();
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    claims("", "| `requestTimeout` | 5 (s) |");
    assert_eq!(config.max_body_bytes, 10 * 1024 * 1024);
    claims("", "| `maxBodyBytes` (ours) | 10 MiB |");
    assert_eq!(config.workers, 64);
    claims("", "| `workers` (ours) | 64 |");
    assert_eq!(config.route_refresh_interval, Duration::from_secs(10));
    claims("", "| `routeRefreshInterval` (ours) | 10 (s) |");
    assert_eq!(config.route_prune_after, Duration::from_secs(3600));
    claims("", "| `routePruneAfter` (ours) | 3600 (s) |");
    assert_eq!(hydra_router::config::DEFAULT_PORT, 5353);
    claims("", "`servicePort` 5353");
    claims("", "no file: port 5353");
    assert!(!config.disable_router_endpoint && !config.public_metrics && !config.debug_logging);
    assert_eq!(
        config
            .cors
            .iter()
            .find(|(n, _)| n == "access-control-max-age")
            .map(|(_, v)| v.as_str()),
        Some("10")
    );
    claims("", "max-age 10");
}

#[test]
fn limits_in_the_paragraphs_are_the_code_s() {
    assert_eq!(hydra_router::log_ring::CAPACITY, 100);
    claims("", "keeps its last 100 lines for `/v1/router/log`");
    assert_eq!(hydra_router::forward::GZIP_MIN_BYTES, 1024);
    claims("", "JSON answers of 1 KiB or more are gzipped");
    assert_eq!(hydra_router::api::CLEAR_OLDER_THAN, Duration::from_secs(5));
    claims("", "removes `nodes` entries more than 5 s late");
    assert_eq!(hydra_router::stats::MAX_TRACKED_SERVICES, 1024);
    claims("", "at most 1,024 names get series of their own");
}
