//! RFC 9112 message framing for the embedded server: where a request's head
//! ends, what its head says about the body, decoding a `Content-Length` or
//! `chunked` body, and writing a response head.
//!
//! The rules are strict on purpose, because a proxy in front of the service
//! may read the same bytes differently (request smuggling): a request whose
//! framing is ambiguous is refused (400, or 501 for a transfer coding we do
//! not implement) and its connection closed, never guessed at. Every scan is
//! incremental: bytes already looked at are not looked at again when more
//! arrive, so a client trickling bytes costs linear time.

use crate::http::envelope::status_text;
use crate::http::handler::HttpResponse;

/// Why a request is refused: the status to answer with (then the connection
/// is closed) and the reason put in the error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: u16,
    pub reason: String,
    /// The request's framing was ambiguous or malformed (counted apart:
    /// these are the requests a smuggling attempt is made of).
    pub framing: bool,
}

impl Rejection {
    fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            framing: false,
        }
    }

    fn framing(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            framing: true,
        }
    }
}

/// The size limits a request is read under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_head_bytes: usize,
    pub max_url_bytes: usize,
    pub max_body_bytes: usize,
}

/// Finds the blank line that ends a request head, looking at each byte once.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    scanned: usize,
}

impl HeadScanner {
    /// The length of the head (through its blank line) once `buffer` holds it
    /// all. A line feed without a carriage return before it is refused
    /// (RFC 9112 allows either reading; a proxy may have chosen the other).
    /// Over the head limit → 431, or 414 when the request line alone is.
    pub(crate) fn scan(&mut self, buffer: &[u8], limits: &Limits) -> Result<Option<usize>, Rejection> {
        let mut i = self.scanned;
        while i < buffer.len() {
            if buffer[i] == b'\n' {
                if i == 0 || buffer[i - 1] != b'\r' {
                    return Err(Rejection::framing(
                        400,
                        "bare LF in the request head (lines end with CRLF)",
                    ));
                }
                if i >= 3 && &buffer[i - 3..=i] == b"\r\n\r\n" {
                    let end = i + 1;
                    if end > limits.max_head_bytes {
                        return Err(head_too_large(buffer, limits));
                    }
                    return Ok(Some(end));
                }
            }
            i += 1;
        }
        self.scanned = buffer.len();
        if buffer.len() > limits.max_head_bytes {
            return Err(head_too_large(buffer, limits));
        }
        Ok(None)
    }
}

fn head_too_large(buffer: &[u8], limits: &Limits) -> Rejection {
    // A request line alone over the URL limit is a long URL, not big headers.
    let line_end = buffer.iter().position(|&b| b == b'\n').unwrap_or(buffer.len());
    if line_end > limits.max_url_bytes {
        Rejection::new(
            414,
            format!("request URL is longer than {} bytes", limits.max_url_bytes),
        )
    } else {
        Rejection::new(
            431,
            format!("request headers are larger than {} bytes", limits.max_head_bytes),
        )
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// Uppercase method.
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names lowercased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
    pub body: BodyFraming,
    /// `Expect: 100-continue` with a body to come.
    pub expects_continue: bool,
}

/// Parses a complete head (as found by [`HeadScanner`]) and decides how its
/// body is framed (RFC 9112 §6).
pub(crate) fn parse_head(head: &[u8], limits: &Limits) -> Result<RequestHead, Rejection> {
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Rejection::new(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::new(431, "too many request headers")),
        Err(e) => return Err(Rejection::new(400, format!("malformed request: {e}"))),
    }
    let method = parsed.method.unwrap_or("").to_ascii_uppercase();
    let target = parsed.path.unwrap_or("");
    if target.len() > limits.max_url_bytes {
        return Err(Rejection::new(
            414,
            format!("request URL is longer than {} bytes", limits.max_url_bytes),
        ));
    }
    if !target.starts_with('/') {
        return Err(Rejection::new(400, "request target must be a path"));
    }
    let http_1_0 = parsed.version == Some(0);
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| Rejection::new(400, format!("header {} is not UTF-8", header.name)))?;
        headers.push((header.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    if values("host").len() > 1 {
        return Err(Rejection::framing(400, "more than one host header"));
    }
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    let body = if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(Rejection::framing(
                400,
                "both content-length and transfer-encoding are set",
            ));
        }
        if http_1_0 {
            return Err(Rejection::framing(400, "transfer-encoding in an HTTP/1.0 request"));
        }
        chunked_only(&codings)?;
        BodyFraming::Chunked
    } else {
        match lengths.as_slice() {
            [] => BodyFraming::None,
            [one] => match content_length(one, limits)? {
                0 => BodyFraming::None,
                n => BodyFraming::Length(n),
            },
            _ => return Err(Rejection::framing(400, "more than one content-length header")),
        }
    };
    let connection: Vec<String> = values("connection")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let keep_alive = if http_1_0 {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let expects_continue =
        body != BodyFraming::None && values("expect").iter().any(|e| e.eq_ignore_ascii_case("100-continue"));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    Ok(RequestHead {
        method,
        path,
        query,
        headers,
        keep_alive,
        body,
        expects_continue,
    })
}

/// `Transfer-Encoding` must be exactly `chunked`: chunked not last leaves the
/// length unknown (400, RFC 9112 §6.3); another coding before it is one we do
/// not decode (501).
fn chunked_only(values: &[&str]) -> Result<(), Rejection> {
    let codings: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    if codings.iter().any(String::is_empty) {
        return Err(Rejection::framing(400, "empty transfer coding"));
    }
    let Some(last) = codings.last() else {
        return Err(Rejection::framing(400, "empty transfer-encoding"));
    };
    if last != "chunked" {
        return Err(Rejection::framing(
            400,
            format!("transfer-encoding {:?} does not end with chunked", codings.join(", ")),
        ));
    }
    let before = &codings[..codings.len() - 1];
    if before.iter().any(|c| c == "chunked") {
        return Err(Rejection::framing(400, "chunked is applied more than once"));
    }
    if let Some(other) = before.first() {
        return Err(Rejection::framing(
            501,
            format!("transfer coding {other:?} is not supported (only chunked)"),
        ));
    }
    Ok(())
}

/// `Content-Length = 1*DIGIT`: no sign, no list, no spaces inside.
fn content_length(text: &str, limits: &Limits) -> Result<usize, Rejection> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::framing(400, format!("bad content-length {text:?}")));
    }
    let too_large = || {
        Rejection::new(
            413,
            format!("request body is larger than {} bytes", limits.max_body_bytes),
        )
    };
    let n: usize = text.parse().map_err(|_| too_large())?;
    if n > limits.max_body_bytes {
        return Err(too_large());
    }
    Ok(n)
}

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Decodes a request body as it arrives.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    Length { remaining: usize },
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    pub(crate) fn new(framing: BodyFraming) -> BodyDecoder {
        match framing {
            BodyFraming::None => BodyDecoder::Length { remaining: 0 },
            BodyFraming::Length(n) => BodyDecoder::Length { remaining: n },
            BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::default()),
        }
    }

    /// Takes what it can from `input` into `body`: returns how many bytes of
    /// `input` it used and whether the body is complete. Bytes after the body
    /// (a pipelined request) are left alone.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<(usize, bool), Rejection> {
        match self {
            BodyDecoder::Length { remaining } => {
                let n = (*remaining).min(input.len());
                body.extend_from_slice(&input[..n]);
                *remaining -= n;
                Ok((n, *remaining == 0))
            }
            BodyDecoder::Chunked(decoder) => decoder.decode(input, body, limits),
        }
    }
}

#[derive(Debug, Default)]
enum ChunkState {
    #[default]
    Size,
    Data {
        remaining: usize,
    },
    DataEnd,
    Trailers,
}

/// `Transfer-Encoding: chunked` (RFC 9112 §7.1), strictly: hex sizes only,
/// CRLF after every chunk's data, trailers bounded (by the head limit) and
/// read once, then ignored.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes of the current, unfinished line already scanned.
    line_scanned: usize,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    fn decode(&mut self, input: &[u8], body: &mut Vec<u8>, limits: &Limits) -> Result<(usize, bool), Rejection> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Size | ChunkState::Trailers => {
                    let Some(line) = self.next_line(rest)? else {
                        let limit = match self.state {
                            ChunkState::Trailers => limits.max_head_bytes.saturating_sub(self.trailer_bytes),
                            _ => MAX_CHUNK_LINE,
                        };
                        if rest.len() > limit {
                            return Err(self.line_too_long(limits));
                        }
                        return Ok((pos, false));
                    };
                    pos += line.len() + 2;
                    if let ChunkState::Trailers = self.state {
                        if line.is_empty() {
                            return Ok((pos, true));
                        }
                        self.trailer_bytes += line.len() + 2;
                        if self.trailer_bytes > limits.max_head_bytes {
                            return Err(self.line_too_long(limits));
                        }
                        check_trailer(line)?;
                        continue;
                    }
                    if line.len() > MAX_CHUNK_LINE {
                        return Err(self.line_too_long(limits));
                    }
                    let size = chunk_size(line, body.len(), limits)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data { remaining: size }
                    };
                }
                ChunkState::Data { remaining } => {
                    if rest.is_empty() {
                        return Ok((pos, false));
                    }
                    let n = remaining.min(rest.len());
                    body.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = if n == remaining {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data {
                            remaining: remaining - n,
                        }
                    };
                }
                ChunkState::DataEnd => {
                    let crlf = b"\r\n";
                    let have = rest.len().min(2);
                    if rest[..have] != crlf[..have] {
                        return Err(Rejection::framing(400, "missing CRLF after chunk data"));
                    }
                    if have < 2 {
                        return Ok((pos, false));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
            }
        }
    }

    /// The next CRLF-terminated line of `rest` (without its CRLF), scanning
    /// only bytes not seen in an earlier call.
    fn next_line<'a>(&mut self, rest: &'a [u8]) -> Result<Option<&'a [u8]>, Rejection> {
        let from = self.line_scanned.min(rest.len());
        match rest[from..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let lf = from + offset;
                self.line_scanned = 0;
                if lf == 0 || rest[lf - 1] != b'\r' {
                    return Err(Rejection::framing(
                        400,
                        "bare LF in the chunked body (lines end with CRLF)",
                    ));
                }
                Ok(Some(&rest[..lf - 1]))
            }
            None => {
                self.line_scanned = rest.len();
                Ok(None)
            }
        }
    }

    fn line_too_long(&self, limits: &Limits) -> Rejection {
        match self.state {
            ChunkState::Trailers => Rejection::new(
                431,
                format!("request trailers are larger than {} bytes", limits.max_head_bytes),
            ),
            _ => Rejection::framing(400, "chunk size line is too long"),
        }
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits only (no sign, no `0x`), then
/// nothing or extensions (`;name=value`, ignored).
fn chunk_size(line: &[u8], body_so_far: usize, limits: &Limits) -> Result<usize, Rejection> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let malformed = || Rejection::framing(400, format!("malformed chunk size {:?}", String::from_utf8_lossy(line)));
    if digits == 0 {
        return Err(malformed());
    }
    let extension = &line[digits..];
    let after_space = extension
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map(|p| &extension[p..]);
    match after_space {
        None if extension.is_empty() => {}
        Some(ext)
            if ext[0] == b';'
                && ext
                    .iter()
                    .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) => {}
        _ => return Err(malformed()),
    }
    let too_large = || {
        Rejection::new(
            413,
            format!("request body is larger than {} bytes", limits.max_body_bytes),
        )
    };
    let mut size: usize = 0;
    for &b in &line[..digits] {
        let digit = (b as char).to_digit(16).unwrap_or(0) as usize;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or_else(too_large)?;
    }
    // The size is the client's word: compare without overflowing.
    if size > limits.max_body_bytes.saturating_sub(body_so_far) {
        return Err(too_large());
    }
    Ok(size)
}

/// A trailer field line: `name: value`, no folding, no control characters.
fn check_trailer(line: &[u8]) -> Result<(), Rejection> {
    let name_end = line.iter().position(|&b| b == b':');
    let valid = match name_end {
        Some(end) if end > 0 => {
            line[..end].iter().all(|&b| is_token_byte(b))
                && line[end + 1..]
                    .iter()
                    .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Rejection::framing(400, "malformed trailer field"))
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Status codes that never carry a body (RFC 9110 §6.4.1).
fn has_no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Headers the server writes itself; a handler's own are dropped, so they
/// cannot contradict the body that is sent.
fn is_framing_header(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// A response as bytes. `head_only` (a HEAD request) sends the head of what a
/// GET would get: its content-length, no body. 1xx, 204 and 304 never carry a
/// body or a content-length. Returns the bytes and whether the connection
/// must be closed after them (a 1xx given as the final answer: no final
/// response follows, so the client must not wait for one).
pub(crate) fn encode_response(
    response: &HttpResponse,
    keep_alive: bool,
    head_only: bool,
    process_id: u32,
) -> (Vec<u8>, bool) {
    let status = response.status;
    let no_body = has_no_body(status);
    let close = !keep_alive || (100..200).contains(&status);
    let (reason, _) = status_text(status);
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in &response.headers {
        if is_framing_header(name) || name.is_empty() || !name.bytes().all(is_token_byte) {
            continue;
        }
        // Header values must not break the framing.
        if value.bytes().any(|b| b != b'\t' && (b < b' ' || b == 0x7f)) {
            continue;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!("x-process-id: {process_id}\r\n"));
    if !no_body {
        head.push_str(&format!("content-length: {}\r\n", response.body.len()));
    }
    head.push_str(if close {
        "connection: close\r\n\r\n"
    } else {
        "connection: keep-alive\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    if !head_only && !no_body {
        bytes.extend_from_slice(&response.body);
    }
    (bytes, close)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 256,
        max_url_bytes: 64,
        max_body_bytes: 100,
    };

    fn head(text: &str) -> Result<RequestHead, Rejection> {
        let mut scanner = HeadScanner::default();
        let end = scanner.scan(text.as_bytes(), &LIMITS)?.expect("complete head");
        parse_head(&text.as_bytes()[..end], &LIMITS)
    }

    fn status(text: &str) -> u16 {
        head(text).map(|_| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn framing_is_strict() {
        let h = head("POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(
            (h.body, h.path.as_str(), h.query.as_str()),
            (BodyFraming::Length(5), "/a", "b=1")
        );
        let h = head("POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyFraming::Chunked);
        for bad in [
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: -3\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 0x3\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked;x=1\r\n\r\n",
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding : chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nx-a: 1\r\n transfer-encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\rhost: x\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{bad:?}");
        }
        assert_eq!(
            status("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n"),
            413
        );
        let mut scanner = HeadScanner::default();
        let bare = scanner.scan(b"GET / HTTP/1.1\nhost: x\n\n", &LIMITS).unwrap_err();
        assert_eq!(bare.status, 400);
    }

    #[test]
    fn the_head_is_scanned_once_as_it_arrives() {
        let text = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nrest";
        let mut scanner = HeadScanner::default();
        for n in 0..text.len() - 4 - 1 {
            assert_eq!(scanner.scan(&text[..n], &LIMITS).unwrap(), None, "{n}");
        }
        assert_eq!(scanner.scan(text, &LIMITS).unwrap(), Some(text.len() - 4));
    }

    fn chunked(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), Rejection> {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let mut body = Vec::new();
        let mut buffer = Vec::new();
        let mut fed = 0;
        let mut used_total = 0;
        while fed < input.len() {
            let next = (fed + step).min(input.len());
            buffer.extend_from_slice(&input[fed..next]);
            fed = next;
            let (used, done) = decoder.decode(&buffer, &mut body, &LIMITS)?;
            buffer.drain(..used);
            used_total += used;
            if done {
                return Ok((body, used_total));
            }
        }
        Err(Rejection::new(0, "incomplete"))
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let input = b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nx-t: 1\r\n\r\nGET";
        for step in [1, 2, 3, 7, 100] {
            let (body, used) = chunked(input, step).unwrap();
            assert_eq!(body, b"wikipedia");
            assert_eq!(used, input.len() - 3);
        }
        for bad in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            for step in [1, 100] {
                assert_eq!(chunked(bad, step).unwrap_err().status, 400, "{bad:?}");
            }
        }
        let huge = b"ffffffffffffffffffff\r\n";
        assert_eq!(chunked(huge, 100).unwrap_err().status, 413);
        let trailers = format!("0\r\n{}\r\n", "x-t: 1234567890\r\n".repeat(20));
        assert_eq!(chunked(trailers.as_bytes(), 5).unwrap_err().status, 431);
    }

    #[test]
    fn bodiless_statuses_have_no_body_or_length() {
        let response = HttpResponse::bytes(204, "text/plain", b"oops".to_vec())
            .with_header("content-length", "4")
            .with_header("transfer-encoding", "chunked");
        let (bytes, close) = encode_response(&response, true, false, 1);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n") && !close, "{text}");
        assert!(
            !text.contains("content-length") && !text.contains("transfer-encoding"),
            "{text}"
        );
        let (bytes, close) = encode_response(&HttpResponse::bytes(103, "x/y", b"z".to_vec()), true, false, 1);
        assert!(close && bytes.ends_with(b"connection: close\r\n\r\n"));
        let (bytes, _) = encode_response(&HttpResponse::bytes(200, "x/y", b"abc".to_vec()), true, true, 1);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("content-length: 3\r\n") && text.ends_with("\r\n\r\n"),
            "{text}"
        );
    }
}
