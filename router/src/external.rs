//! `externalRoutes`: routes proxied to a URL outside Hydra
//! (`{"http://legacy:8080": ["[get]/api/v1/orders/:id"]}`).
//!
//! Node's docs describe this "HTTP proxy passthrough", but since hydra's May
//! 2017 change its router looks up a *service* named after the URL and
//! answers 503 (spec §1.2). Here the request goes to that URL: the base URL's
//! path is prepended to the request's path, the query kept. Plain `http` only
//! (a TLS-terminating proxy belongs in front of such a backend or the router).

use std::io::Read;
use std::time::Duration;

use hydra::ApiResponse;

/// Where an external route sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTarget {
    /// `host:port`.
    pub authority: String,
    /// Path prefix, without a trailing `/` (empty for none).
    pub base_path: String,
}

/// Parses `http://host[:port][/base]`.
pub fn parse_base_url(url: &str) -> Result<ExternalTarget, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err("https is not supported for external routes: use an http URL (TLS belongs in a proxy in front of that backend)".into());
        }
        _ => return Err("must be an http://host[:port][/path] URL".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let port_ok = authority
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_ok_and(|p| p > 0));
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if !host_ok || !port_ok || authority.contains('@') {
        return Err("must be an http://host[:port][/path] URL".into());
    }
    if path.contains(['?', '#']) || path.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("the URL's path must be a plain path (no query, fragment or spaces)".into());
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(ExternalTarget {
        authority,
        base_path: path.trim_end_matches('/').to_string(),
    })
}

/// Calls an external URL: one attempt, no failover (there is one target).
pub struct ExternalClient {
    agent: ureq::Agent,
    max_response_bytes: u64,
}

impl ExternalClient {
    /// A client with keep-alive whose attempts time out after `timeout`.
    pub fn new(timeout: Duration, max_response_bytes: u64) -> ExternalClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .build()
            .new_agent();
        ExternalClient {
            agent,
            max_response_bytes,
        }
    }

    /// Sends the request to `target`; `path` is origin-form (`/x?y`).
    pub fn call(
        &self,
        target: &ExternalTarget,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ApiResponse, String> {
        let uri = format!("http://{}{}{}", target.authority, target.base_path, path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let sent = if body.is_empty() && !matches!(method, "POST" | "PUT" | "PATCH") {
            builder.body(()).map_err(|e| e.to_string()).map(|r| self.agent.run(r))?
        } else {
            builder
                .body(body.to_vec())
                .map_err(|e| e.to_string())
                .map(|r| self.agent.run(r))?
        };
        let mut response = sent.map_err(|e| format!("{uri}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(self.max_response_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{uri}: reading the response failed: {e}"))?;
        if bytes.len() as u64 > self.max_response_bytes {
            return Err(format!(
                "{uri}: the response is larger than {} bytes",
                self.max_response_bytes
            ));
        }
        Ok(ApiResponse {
            status,
            headers,
            body: bytes,
            instance_id: target.authority.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let t = parse_base_url("http://legacy:8080/api/").unwrap();
        assert_eq!(t.authority, "legacy:8080");
        assert_eq!(t.base_path, "/api");
        assert_eq!(parse_base_url("http://10.0.0.2").unwrap().authority, "10.0.0.2:80");
        for bad in [
            "https://x",
            "ftp://x",
            "x:80",
            "http://",
            "http://u@h",
            "http://h:0",
            "http://h:99999",
            "http://h/a?b",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }
}
