//! The WebSocket handshake (RFC 6455 §4.2) on a socket the library's HTTP
//! server handed over (`HttpRoutes::on_upgrade`): check the request, answer
//! `101 Switching Protocols` (or 400 / 426 / 503 and close), and say who the
//! client is. Runs on an HTTP worker; writes are bounded by a timeout so a
//! client that does not read cannot hold the worker.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use hydra::HttpRequest;
use tungstenite::handshake::derive_accept_key;

use super::ClientInfo;

/// How long writing the handshake answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upgrade request is refused: the status line and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `400 Bad Request`, `426 Upgrade Required`, `503 Service Unavailable`.
    pub status: &'static str,
    /// Told to the client in the body.
    pub reason: &'static str,
}

/// Checks a WebSocket upgrade request; the `sec-websocket-accept` value when
/// it is a valid one.
pub fn check(request: &HttpRequest) -> Result<String, Refusal> {
    let bad = |reason| Refusal {
        status: "400 Bad Request",
        reason,
    };
    if request.method != "GET" {
        return Err(bad("a WebSocket handshake is a GET"));
    }
    let upgrade = request.header("upgrade").unwrap_or("");
    if !upgrade
        .split(',')
        .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
    {
        return Err(bad("only `upgrade: websocket` is served"));
    }
    let connection = request.header("connection").unwrap_or("");
    if !connection
        .split(',')
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    {
        return Err(bad("`connection: upgrade` is missing"));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal {
            status: "426 Upgrade Required",
            reason: "only WebSocket version 13 is served",
        });
    }
    // The key is 16 random bytes in base64: 24 characters ending in `==`.
    let key = request.header("sec-websocket-key").map(str::trim).unwrap_or("");
    let well_formed = key.len() == 24
        && key.ends_with("==")
        && key[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !well_formed {
        return Err(bad("`sec-websocket-key` is missing or malformed"));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Writes the `101 Switching Protocols` answer.
pub fn accept(stream: &mut TcpStream, accept_key: &str) -> std::io::Result<()> {
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept_key}\r\n\r\n"
    );
    stream.write_all(head.as_bytes())
}

/// Answers a refused handshake and closes the socket.
pub fn refuse(mut stream: TcpStream, refusal: &Refusal) {
    let body = format!(
        "{{\"statusCode\":{},\"statusMessage\":\"{}\"}}",
        &refusal.status[..3],
        refusal.reason
    );
    let version = if refusal.status.starts_with("426") {
        "sec-websocket-version: 13\r\n"
    } else {
        ""
    };
    let answer = format!(
        "HTTP/1.1 {}\r\n{version}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        refusal.status,
        body.len()
    );
    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// Who the client is (`id` left empty: the connection layer gives it):
/// `x-forwarded-for` (its first address) else the peer's address, the path
/// and query, the headers.
pub fn client_info(request: &HttpRequest) -> ClientInfo {
    let forwarded = request
        .header("x-forwarded-for")
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|first| !first.is_empty());
    let ip = match forwarded {
        Some(first) => first.to_string(),
        None => request
            .remote_addr
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default(),
    };
    let url = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    ClientInfo {
        id: String::new(),
        ip,
        url,
        headers: request.headers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/ws".into(),
            query: "a=1".into(),
            params: Default::default(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            remote_addr: Some("10.1.2.3:4567".parse().unwrap()),
        }
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn the_rfc_example_is_accepted() {
        assert_eq!(check(&request(GOOD)).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_requests_are_refused() {
        let with = |name: &str, value: &str| {
            let mut headers: Vec<(&str, &str)> = GOOD.iter().filter(|(n, _)| *n != name).copied().collect();
            headers.push((name, value));
            check(&request(&headers)).unwrap_err().status
        };
        assert_eq!(with("sec-websocket-version", "8"), "426 Upgrade Required");
        assert_eq!(with("sec-websocket-key", "short=="), "400 Bad Request");
        assert_eq!(with("upgrade", "h2c"), "400 Bad Request");
        let mut post = request(GOOD);
        post.method = "POST".into();
        assert_eq!(check(&post).unwrap_err().status, "400 Bad Request");
    }

    #[test]
    fn the_client_is_the_first_forwarded_address_else_the_peer() {
        let info = client_info(&request(GOOD));
        assert_eq!((info.ip.as_str(), info.url.as_str()), ("10.1.2.3", "/ws?a=1"));
        let forwarded = client_info(&request(&[("x-forwarded-for", " 1.1.1.1 , 2.2.2.2")]));
        assert_eq!(forwarded.ip, "1.1.1.1");
    }
}
