//! An owned Redis pub/sub subscriber connection (RESP2) that can move between threads.
//!
//! Why not redis-rs's `PubSub`:
//! - `PubSub<'a>` borrows its `Connection` and unsubscribes on drop, so the subscription cannot be handed from
//!   thread to thread, as the listener's leader/follower group needs (whoever leads reads it).
//! - `Connection::recv_response` counts a read timeout as a reply still owed and skips the next frame it reads
//!   (`messages_to_skip += 1`): a reader polling with a short timeout would silently drop a published message after
//!   every quiet spell.
//!
//! This type owns its socket and uses only public redis-rs pieces: `redis::cmd` packs commands,
//! `redis::parse_redis_value` parses complete frames, `redis::Msg` decodes messages. Frames are delimited here (RESP2
//! announces every length up front), which gives two things redis-rs's `Parser` cannot:
//! - a frame cut by a read timeout stays in our buffer and is completed by the next call;
//! - a message whose payload is over the size limit ([`Subscription::set_max_payload`]) is skipped as it streams in,
//!   never buffered: only its header is read into memory, and it is reported as [`Incoming::Oversized`]. The read
//!   buffer grows only as far as the largest frame accepted, and shrinks back after one larger than
//!   [`KEPT_BUFFER`].
//!
//! It supports TCP, TLS over TCP (rustls, the settings of [`crate::tls`]) and Unix sockets, `AUTH` with a password or
//! an ACL user, `SUBSCRIBE` to a fixed set of channels, and `PING`. Not supported: RESP3, patterns, changing the
//! channels after `open` (reconnect instead), and `SELECT` (pub/sub ignores the database).
//!
//! One socket does both reading and writing (a TLS stream cannot be split): `&mut self` already means one thread at a
//! time. Over TLS a read timeout loses nothing either: rustls keeps the part of a TLS record read so far and completes
//! it on the next read, as this type does with a part of a RESP frame.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, ErrorKind, Msg, RedisError, RedisResult, Value};

use crate::tls::{RedisTls, TlsStream};

/// Sockets reject a zero timeout; the shortest wait still lets an already buffered frame through.
const MIN_WAIT: Duration = Duration::from_millis(1);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// Capacity the read buffer keeps between frames; a larger one (after a large message) is given back.
pub(crate) const KEPT_BUFFER: usize = 4 * READ_CHUNK;
/// Nesting depth of arrays accepted in a frame (pub/sub frames have none).
const MAX_DEPTH: usize = 4;

/// What [`Subscription::next_message`] hands out.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A published message.
    Message(Msg),
    /// A published message whose payload (`bytes` long) was over the size limit: skipped without being buffered.
    Oversized {
        /// The channel it was published on.
        channel: String,
        /// Its payload's length.
        bytes: usize,
    },
}

/// A subscribed connection. Reading and writing need `&mut self`, so one thread uses it at a time; it is `Send`.
pub(crate) struct Subscription {
    socket: Socket,
    /// Bytes read and not yet consumed: `buffer[start..end]`. Holds any partial frame between calls, so a timeout
    /// never loses data. The whole vector stays initialized, so reads need no zeroing but when it grows.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes of an oversized payload (and its CRLF) still to be discarded as they arrive.
    skipping: usize,
    /// Longest payload read into memory; longer ones are skipped.
    max_payload: usize,
    /// Messages read while `ping` waited for its pong, handed out first by `next_message`.
    pending: VecDeque<Incoming>,
    /// The socket's read timeout as last set: setting it is a system call, skipped when unchanged (the common case of
    /// one `next_message` after another).
    read_timeout: Option<Duration>,
}

impl Subscription {
    /// Connects within `connect_timeout` (each resolved address, like redis-rs; TCP_NODELAY on; with `tls`, the TLS
    /// handshake too), authenticates when the ConnectionInfo has a password (`AUTH [username] password`), subscribes
    /// to `channels` and waits for every subscribe confirmation, all within `command_timeout` per reply. Server errors
    /// (e.g. WRONGPASS) come back as the RedisError from `Value::extract_error`, so the message is clear.
    ///
    /// TLS is `tls`: the address (TCP, or redis-rs's TLS address, which carries no settings this type can read) only
    /// says where to connect. A TLS address without `tls` is refused.
    pub(crate) fn open(
        info: &ConnectionInfo,
        tls: Option<&RedisTls>,
        connect_timeout: Duration,
        command_timeout: Duration,
        channels: &[String],
    ) -> RedisResult<Subscription> {
        if channels.is_empty() {
            return Err((
                ErrorKind::InvalidClientConfig,
                "a subscription needs at least one channel",
            )
                .into());
        }
        let socket = Socket::connect(info.addr(), tls, connect_timeout)?;
        let mut sub = Subscription {
            socket,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            skipping: 0,
            max_payload: usize::MAX,
            pending: VecDeque::new(),
            read_timeout: None,
        };
        // With TLS 1.3 a server that refuses our client certificate says so after the handshake, in answer to the
        // first command: explain it as a handshake failure.
        match sub.log_in_and_subscribe(info, command_timeout, channels) {
            Ok(()) => Ok(sub),
            Err(e) => match tls.and_then(|tls| crate::tls::explain(&e, tls)) {
                Some(explained) => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("TLS handshake with {} failed: {explained}", info.addr()),
                )
                .into()),
                None => Err(e),
            },
        }
    }

    /// `AUTH` when the ConnectionInfo has a password, then `SUBSCRIBE`, waiting for every confirmation.
    fn log_in_and_subscribe(
        &mut self,
        info: &ConnectionInfo,
        command_timeout: Duration,
        channels: &[String],
    ) -> RedisResult<()> {
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password);
            self.send(&auth, command_timeout)?;
            // Any reply but an error (which await_reply returns as the error) means we are in.
            self.await_reply("AUTH", command_timeout, |_| true)?;
        }
        let mut subscribe = redis::cmd("SUBSCRIBE");
        subscribe.arg(channels);
        self.send(&subscribe, command_timeout)?;
        // One confirmation per channel named, duplicates included.
        for _ in channels {
            self.await_reply("SUBSCRIBE", command_timeout, |frame| {
                frame_kind(frame) == Some(b"subscribe")
            })?;
        }
        Ok(())
    }

    /// Payloads longer than `bytes` are skipped from now on, without being read into memory.
    pub(crate) fn set_max_payload(&mut self, bytes: usize) {
        self.max_payload = bytes;
    }

    /// The read buffer's capacity (tests check that it stays bounded).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// The next published message, waiting at most `timeout`; `Ok(None)` when none came (the connection stays usable,
    /// a frame cut by the timeout is kept and completed by the next call). Non-message frames (e.g. late subscribe
    /// confirmations) are skipped. Messages buffered by `ping` are returned first.
    pub(crate) fn next_message(&mut self, timeout: Duration) -> RedisResult<Option<Incoming>> {
        if let Some(incoming) = self.pending.pop_front() {
            return Ok(Some(incoming));
        }
        let deadline = Instant::now() + timeout;
        let mut wait = timeout;
        loop {
            let frame = match self.read_frame(wait) {
                Ok(Frame::Oversized { channel, bytes }) => return Ok(Some(Incoming::Oversized { channel, bytes })),
                Ok(Frame::Value(frame)) => frame.extract_error()?,
                Err(e) if e.is_timeout() => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(msg) = Msg::from_owned_value(frame) {
                return Ok(Some(Incoming::Message(msg)));
            }
            // A late pong or confirmation: skip it, but never past the deadline when such frames keep coming.
            wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Ok(None);
            }
        }
    }

    /// Sends PING and waits up to `timeout` for its pong (in RESP2 subscribed mode it is the array ["pong", ""]);
    /// messages that arrive before it are kept for `next_message`. A missing pong is a timeout error (half-open socket).
    pub(crate) fn ping(&mut self, timeout: Duration) -> RedisResult<()> {
        self.send(&redis::cmd("PING"), timeout)?;
        // A pong that arrives after a failed ping is skipped later, or answers the next ping (the link is alive).
        self.await_reply("PING", timeout, |frame| frame_kind(frame) == Some(b"pong"))?;
        Ok(())
    }

    /// Writes one command. A write that times out may leave half a command on the wire: the caller must reconnect,
    /// as after any error.
    fn send(&mut self, cmd: &redis::Cmd, timeout: Duration) -> RedisResult<()> {
        self.socket.set_write_timeout(Some(timeout.max(MIN_WAIT)))?;
        self.socket.write_all(&cmd.get_packed_command())?;
        // A TLS stream may keep part of what was written until flushed.
        self.socket.flush()?;
        Ok(())
    }

    /// Reads frames until one that `is_reply` accepts, within `timeout`. Published messages read meanwhile are kept
    /// for `next_message`; other frames are skipped; a server error reply is returned as the error.
    fn await_reply(
        &mut self,
        command: &str,
        timeout: Duration,
        is_reply: impl Fn(&Value) -> bool,
    ) -> RedisResult<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let frame = match self.read_frame(deadline.saturating_duration_since(Instant::now())) {
                Ok(Frame::Value(frame)) => frame.extract_error()?,
                Ok(Frame::Oversized { channel, bytes }) => {
                    self.pending.push_back(Incoming::Oversized { channel, bytes });
                    continue;
                }
                // The OS error ("Resource temporarily unavailable") would not say what was awaited.
                Err(e) if e.is_timeout() => return Err(no_reply(command, timeout)),
                Err(e) => return Err(e),
            };
            if is_reply(&frame) {
                return Ok(frame);
            }
            if matches!(frame_kind(&frame), Some(b"message" | b"pmessage"))
                && let Some(msg) = Msg::from_owned_value(frame)
            {
                self.pending.push_back(Incoming::Message(msg));
            }
            // A steady stream of messages must not keep us waiting past the deadline.
            if Instant::now() >= deadline {
                return Err(no_reply(command, timeout));
            }
        }
    }

    /// Reads one frame, each socket read waiting `wait` at most. A timeout keeps what was read for the next call.
    fn read_frame(&mut self, wait: Duration) -> RedisResult<Frame> {
        let wait = Some(wait.max(MIN_WAIT));
        if self.read_timeout != wait {
            self.socket.set_read_timeout(wait)?;
            self.read_timeout = wait;
        }
        loop {
            if self.skipping > 0 {
                let dropped = self.skipping.min(self.end - self.start);
                self.start += dropped;
                self.skipping -= dropped;
            }
            if self.skipping == 0 {
                match scan_frame(&self.buffer[self.start..self.end], self.max_payload)? {
                    Scan::Complete(len) => {
                        let frame = redis::parse_redis_value(&self.buffer[self.start..self.start + len]);
                        self.consume(len);
                        return frame.map(Frame::Value);
                    }
                    Scan::Oversized {
                        header,
                        channel,
                        payload,
                    } => {
                        self.consume(header);
                        self.skipping = payload + 2; // and its CRLF
                        return Ok(Frame::Oversized {
                            channel,
                            bytes: payload,
                        });
                    }
                    Scan::Incomplete => {}
                }
            }
            self.fill()?;
        }
    }

    /// Marks `len` buffered bytes as used; gives back the memory of an emptied buffer that grew large.
    fn consume(&mut self, len: usize) {
        self.start += len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buffer.len() > KEPT_BUFFER {
                self.buffer.truncate(KEPT_BUFFER);
                self.buffer.shrink_to_fit();
            }
        }
    }

    /// Reads what the socket has (waiting at most the read timeout) onto the buffer. While skipping, the buffer
    /// only ever holds one chunk.
    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buffer.len() - self.end < READ_CHUNK {
            // Move a partial frame to the front before growing.
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buffer.len() - self.end < READ_CHUNK {
                self.buffer.resize(self.end + READ_CHUNK, 0);
            }
        }
        match self.socket.read(&mut self.buffer[self.end..]) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            )),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// A frame as `read_frame` returns it.
enum Frame {
    Value(Value),
    Oversized { channel: String, bytes: usize },
}

/// Where the next frame in a buffer ends.
#[derive(Debug, PartialEq)]
enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// A frame of this many bytes.
    Complete(usize),
    /// A frame whose last bulk string (a message's payload) is `payload` bytes, over the limit; its `header` bytes
    /// (everything before the payload) are buffered.
    Oversized {
        header: usize,
        channel: String,
        payload: usize,
    },
}

/// Longest header line accepted (a length, a status, an error message).
const MAX_LINE: usize = 64 * 1024;

/// The line at `at` (without its CRLF) and where the next one starts; `None` while incomplete.
fn line(buffer: &[u8], at: usize) -> RedisResult<Option<(&[u8], usize)>> {
    let rest = buffer.get(at..).unwrap_or_default();
    let searched = &rest[..rest.len().min(MAX_LINE + 2)];
    match searched.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&rest[..end], at + end + 2))),
        None if rest.len() > MAX_LINE => Err(protocol_error("a line without CRLF")),
        None => Ok(None),
    }
}

/// The length in a `*<n>` or `$<n>` header; `None` for -1 (null).
fn length(header: &[u8]) -> RedisResult<Option<usize>> {
    let n: i64 = std::str::from_utf8(&header[1..])
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| protocol_error(&format!("bad length in {:?}", String::from_utf8_lossy(header))))?;
    Ok(usize::try_from(n).ok())
}

fn protocol_error(what: &str) -> RedisError {
    (ErrorKind::Parse, "invalid RESP2 frame from Redis", what.to_string()).into()
}

/// Delimits the frame at the start of `buffer`. A bulk string longer than `max_payload` is allowed only as the last
/// element of the outer frame (where pub/sub puts the payload) or as the frame itself, and reported as
/// [`Scan::Oversized`] once its header is buffered.
fn scan_frame(buffer: &[u8], max_payload: usize) -> RedisResult<Scan> {
    let Some((head, mut at)) = line(buffer, 0)? else {
        return Ok(Scan::Incomplete);
    };
    match head.first() {
        Some(b'*') => {
            let count = length(head)?.unwrap_or(0);
            // The message kind and channel, for an oversized payload's report.
            let mut leading: Vec<&[u8]> = Vec::new();
            for index in 0..count {
                let Some((element, next)) = line(buffer, at)? else {
                    return Ok(Scan::Incomplete);
                };
                if element.first() != Some(&b'$') {
                    match scan_element(buffer, at, max_payload, 1)? {
                        Some(end) => at = end,
                        None => return Ok(Scan::Incomplete),
                    }
                    continue;
                }
                let Some(len) = length(element)? else {
                    at = next;
                    continue;
                };
                if len > max_payload {
                    if index + 1 < count {
                        return Err(protocol_error("a bulk string over the size limit before a frame's end"));
                    }
                    let channel = leading.get(1).map(|c| String::from_utf8_lossy(c).into_owned());
                    return Ok(Scan::Oversized {
                        header: next,
                        channel: channel.unwrap_or_default(),
                        payload: len,
                    });
                }
                if buffer.len() < next + len + 2 {
                    return Ok(Scan::Incomplete);
                }
                leading.push(&buffer[next..next + len]);
                at = next + len + 2;
            }
            Ok(Scan::Complete(at))
        }
        Some(b'$') => match length(head)? {
            None => Ok(Scan::Complete(at)),
            Some(len) if len > max_payload => Ok(Scan::Oversized {
                header: at,
                channel: String::new(),
                payload: len,
            }),
            Some(len) if buffer.len() < at + len + 2 => Ok(Scan::Incomplete),
            Some(len) => Ok(Scan::Complete(at + len + 2)),
        },
        // Simple strings, errors, integers; anything else is left to the parser to reject.
        _ => Ok(Scan::Complete(at)),
    }
}

/// The end of the element at `at` (any type, nested arrays up to [`MAX_DEPTH`]), or `None` when incomplete. A
/// bulk string over `max_payload` here is a protocol error: payloads come last.
fn scan_element(buffer: &[u8], at: usize, max_payload: usize, depth: usize) -> RedisResult<Option<usize>> {
    let Some((head, mut next)) = line(buffer, at)? else {
        return Ok(None);
    };
    match head.first() {
        Some(b'$') => match length(head)? {
            None => Ok(Some(next)),
            Some(len) if len > max_payload => Err(protocol_error("a bulk string over the size limit inside a frame")),
            Some(len) => Ok((buffer.len() >= next + len + 2).then_some(next + len + 2)),
        },
        Some(b'*') => {
            if depth >= MAX_DEPTH {
                return Err(protocol_error("arrays nested too deep"));
            }
            for _ in 0..length(head)?.unwrap_or(0) {
                match scan_element(buffer, next, max_payload, depth + 1)? {
                    Some(end) => next = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(next))
        }
        _ => Ok(Some(next)),
    }
}

/// The first element of a RESP2 pub/sub array frame: `message`, `subscribe`, `pong`, …
fn frame_kind(frame: &Value) -> Option<&[u8]> {
    match frame {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(kind)) => Some(kind),
            _ => None,
        },
        _ => None,
    }
}

fn no_reply(command: &str, timeout: Duration) -> RedisError {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply to {command} within {timeout:?}"),
    )
    .into()
}

/// Keeps the error kind (so `is_timeout` still works) and says which address failed.
fn at(addr: impl Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot connect to Redis at {addr}: {e}"))
}

/// The subscription's one socket: reads and writes go through it.
enum Socket {
    Tcp(TcpStream),
    /// Boxed: rustls's connection state is large, and the variants should not all pay for it.
    Tls(Box<TlsStream>),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Socket {
    fn connect(addr: &ConnectionAddr, tls: Option<&RedisTls>, timeout: Duration) -> RedisResult<Socket> {
        match addr {
            // A redis-rs TLS address (the store's client) names the server; the settings are `tls`.
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
                if tls.is_some() || matches!(addr, ConnectionAddr::Tcp(..)) =>
            {
                let deadline = Instant::now() + timeout;
                // Like redis-rs: each resolved address gets the whole timeout; the last error is reported.
                let mut last_error = None;
                for resolved in (host.as_str(), *port).to_socket_addrs().map_err(|e| at(addr, e))? {
                    match TcpStream::connect_timeout(&resolved, timeout) {
                        Ok(tcp) => {
                            tcp.set_nodelay(true)?;
                            return match tls {
                                None => Ok(Socket::Tcp(tcp)),
                                // The handshake gets what is left of the connect timeout.
                                Some(tls) => Ok(Socket::Tls(Box::new(tls.handshake(host, tcp, deadline)?))),
                            };
                        }
                        Err(e) => last_error = Some(at(resolved, e)),
                    }
                }
                let none = || {
                    at(
                        addr,
                        io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address"),
                    )
                };
                Err(last_error.unwrap_or_else(none).into())
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) if tls.is_none() => Ok(Socket::Unix(
                UnixStream::connect(path).map_err(|e| at(path.display(), e))?,
            )),
            ConnectionAddr::TcpTls { .. } => Err((
                ErrorKind::InvalidClientConfig,
                "a rediss:// address without TLS settings (they come as the subscription's own)",
            )
                .into()),
            _ => Err((
                ErrorKind::InvalidClientConfig,
                "unsupported Redis address for a subscription (TLS needs a TCP address)",
            )
                .into()),
        }
    }

    /// The TCP or Unix socket underneath.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Tls(s) => s.get_ref().set_read_timeout(timeout),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(timeout),
            Socket::Tls(s) => s.get_ref().set_write_timeout(timeout),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
            #[cfg(unix)]
            Socket::Unix(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydra_testkit::RedisServer;
    use hydra_testkit::tls::{TestCertificates, TlsRedis};
    use redis::IntoConnectionInfo;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(2);

    fn open(url: &str, channels: &[&str]) -> RedisResult<Subscription> {
        let info = url.into_connection_info().expect("valid URL");
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        Subscription::open(&info, None, WAIT, WAIT, &channels)
    }

    fn publisher(url: &str) -> redis::Connection {
        redis::Client::open(url)
            .expect("valid URL")
            .get_connection()
            .expect("publisher connects")
    }

    /// Publishes and checks that exactly one subscriber (ours) got it.
    fn publish(conn: &mut redis::Connection, channel: &str, payload: &[u8]) {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query(conn)
            .expect("PUBLISH");
        assert_eq!(receivers, 1, "subscribers of {channel}");
    }

    fn receive(sub: &mut Subscription) -> Msg {
        match sub.next_message(WAIT).expect("next_message") {
            Some(Incoming::Message(msg)) => msg,
            other => panic!("expected a message within 2 s, got {other:?}"),
        }
    }

    fn assert_message(msg: &Msg, channel: &str, payload: &[u8]) {
        assert_eq!(msg.get_channel_name(), channel);
        assert_eq!(msg.get_payload_bytes(), payload, "payload on {channel}");
    }

    #[test]
    fn is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Subscription>();
    }

    #[test]
    fn messages_arrive_in_order_with_exact_bytes() {
        let server = RedisServer::start();
        let mut sub = open(&server.url(0), &["a", "b"]).expect("open");
        let mut publisher = publisher(&server.url(0));
        let binary = [0xff, 0xfe, 0x00, b'\r', b'\n', b'$', b'5'];
        let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        publish(&mut publisher, "a", b"one");
        publish(&mut publisher, "b", &binary);
        publish(&mut publisher, "a", &big);
        publish(&mut publisher, "b", b"");
        publish(&mut publisher, "b", b"last");
        assert_message(&receive(&mut sub), "a", b"one");
        assert_message(&receive(&mut sub), "b", &binary);
        assert_message(&receive(&mut sub), "a", &big);
        assert_message(&receive(&mut sub), "b", b"");
        assert_message(&receive(&mut sub), "b", b"last");
        assert!(sub.next_message(Duration::from_millis(50)).expect("quiet").is_none());
    }

    #[test]
    fn timeouts_lose_nothing() {
        let server = RedisServer::start();
        let mut sub = open(&server.url(0), &["c"]).expect("open");
        for _ in 0..5 {
            let started = Instant::now();
            assert!(
                sub.next_message(Duration::from_millis(50))
                    .expect("a timeout is not an error")
                    .is_none()
            );
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "waited {:?}",
                started.elapsed()
            );
        }
        // redis-rs's Connection would skip the first frame read after a timeout: "first" would be lost.
        let mut publisher = publisher(&server.url(0));
        publish(&mut publisher, "c", b"first");
        publish(&mut publisher, "c", b"second");
        assert_message(&receive(&mut sub), "c", b"first");
        assert_message(&receive(&mut sub), "c", b"second");
    }

    #[test]
    fn moves_between_threads() {
        let server = RedisServer::start();
        let mut sub = open(&server.url(0), &["c"]).expect("open");
        let mut publisher = publisher(&server.url(0));
        publish(&mut publisher, "c", b"before");
        assert_message(&receive(&mut sub), "c", b"before");
        publish(&mut publisher, "c", b"there");
        let (mut sub, msg) = std::thread::spawn(move || {
            let msg = receive(&mut sub);
            (sub, msg)
        })
        .join()
        .expect("thread");
        assert_message(&msg, "c", b"there");
        publish(&mut publisher, "c", b"back");
        assert_message(&receive(&mut sub), "c", b"back");
    }

    #[test]
    fn ping_keeps_messages_and_detects_a_frozen_server() {
        let server = RedisServer::start();
        let mut sub = open(&server.url(0), &["c"]).expect("open");
        let mut publisher = publisher(&server.url(0));
        publish(&mut publisher, "c", b"m1");
        publish(&mut publisher, "c", b"m2");
        sub.ping(WAIT).expect("ping a live server");
        assert_message(&receive(&mut sub), "c", b"m1");
        assert_message(&receive(&mut sub), "c", b"m2");

        server.freeze();
        let started = Instant::now();
        let result = sub.ping(Duration::from_millis(200));
        let waited = started.elapsed();
        server.resume();
        let err = result.expect_err("no pong from a frozen server");
        assert!(err.is_timeout(), "{err}");
        assert!(err.to_string().contains("PING"), "{err}");
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");

        // Thawed, the late pong is skipped and the link works again.
        publish(&mut publisher, "c", b"m3");
        assert_message(&receive(&mut sub), "c", b"m3");
    }

    #[test]
    fn authenticates_with_password_and_acl_user() {
        let server = RedisServer::start_with_args(&["--requirepass", "secret"]);
        let port = server.port();
        let mut admin = publisher(&format!("redis://:secret@127.0.0.1:{port}/"));
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all"])
            .query(&mut admin)
            .expect("ACL SETUSER");
        let mut publisher = publisher(&format!("redis://:secret@127.0.0.1:{port}/"));

        let mut sub = open(&format!("redis://:secret@127.0.0.1:{port}/"), &["c"]).expect("right password");
        publish(&mut publisher, "c", b"hi");
        assert_message(&receive(&mut sub), "c", b"hi");
        drop(sub);

        let mut alice = open(&format!("redis://alice:pw@127.0.0.1:{port}/"), &["c"]).expect("ACL user");
        publish(&mut publisher, "c", b"alice");
        assert_message(&receive(&mut alice), "c", b"alice");

        for url in [
            format!("redis://:wrong@127.0.0.1:{port}/"),
            format!("redis://alice:nope@127.0.0.1:{port}/"),
        ] {
            let err = open(&url, &["c"]).err().expect("a wrong password is rejected");
            let text = err.to_string();
            assert!(text.contains("WRONGPASS") || text.contains("invalid"), "{url}: {text}");
        }
        let err = open(&format!("redis://127.0.0.1:{port}/"), &["c"])
            .err()
            .expect("no password is rejected");
        assert!(err.to_string().contains("NOAUTH"), "{err}");
    }

    #[test]
    fn unix_socket() {
        let path = std::env::temp_dir().join(format!("hydra-sub-{}.sock", std::process::id()));
        let path_text = path.to_str().expect("UTF-8 temp path").to_string();
        let server = RedisServer::start_with_args(&["--unixsocket", &path_text, "--unixsocketperm", "700"]);
        let mut publisher = publisher(&server.url(0));
        for url in [format!("redis+unix://{path_text}"), format!("unix://{path_text}")] {
            let mut sub = open(&url, &["c"]).expect("open over the Unix socket");
            publish(&mut publisher, "c", url.as_bytes());
            assert_message(&receive(&mut sub), "c", url.as_bytes());
        }
        drop(server);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_restarted_server_is_an_error() {
        let mut server = RedisServer::start();
        let mut sub = open(&server.url(0), &["c"]).expect("open");
        server.restart();
        let deadline = Instant::now() + WAIT;
        loop {
            match sub.next_message(Duration::from_millis(50)) {
                Err(_) => break,
                Ok(None) => assert!(Instant::now() < deadline, "no error within 2 s of the restart"),
                Ok(Some(incoming)) => panic!("unexpected message {incoming:?}"),
            }
        }
    }

    #[test]
    fn connect_fails_within_the_timeout() {
        let timeout = Duration::from_millis(300);
        let open_at = |addr: std::net::SocketAddr| {
            let info = format!("redis://{addr}/").into_connection_info().expect("valid URL");
            let started = Instant::now();
            let err = Subscription::open(&info, None, timeout, WAIT, &["c".to_string()])
                .err()
                .expect("unreachable");
            let took = started.elapsed();
            assert!(took < timeout + Duration::from_millis(700), "{addr}: took {took:?}");
            assert!(err.to_string().contains(&addr.to_string()), "{err}");
            (err, took)
        };

        // A closed port refuses at once.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (err, _) = open_at(closed);
        assert!(!err.is_timeout(), "{err}");

        // A listener that never accepts: once its accept queue is full the kernel drops further SYNs, so a connect
        // only ends by its timeout (without one it would retry for minutes).
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut queued = Vec::new();
        while let Ok(conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            queued.push(conn);
            assert!(queued.len() < 5000, "the accept queue never filled");
        }
        let (err, took) = open_at(addr);
        assert!(err.is_timeout(), "{err}");
        assert!(took >= timeout - Duration::from_millis(50), "gave up early: {took:?}");
    }

    #[test]
    fn tls_is_a_clear_error() {
        // TLS comes as our own settings (tests/tls.rs); a redis-rs TLS address carries none we can read.
        let tls = ConnectionAddr::TcpTls {
            host: "127.0.0.1".into(),
            port: 1,
            insecure: false,
            tls_params: None,
        };
        let info = tls.into_connection_info().expect("a TLS address");
        let err = Subscription::open(&info, None, WAIT, WAIT, &["c".to_string()])
            .err()
            .expect("no TLS");
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    fn tls_settings(certs: &TestCertificates) -> RedisTls {
        let setting = serde_json::json!({"ca": certs.ca().to_str().expect("UTF-8 path")});
        RedisTls::from_setting("redis.tls", &setting, Some("127.0.0.1"))
            .expect("valid settings")
            .expect("TLS on")
    }

    fn open_tls(tls: &TlsRedis, settings: &RedisTls, channels: &[&str]) -> RedisResult<Subscription> {
        let info = format!("redis://127.0.0.1:{}/", tls.tls_port)
            .into_connection_info()
            .expect("valid URL");
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        Subscription::open(&info, Some(settings), WAIT, WAIT, &channels)
    }

    #[test]
    fn over_tls_short_read_timeouts_lose_nothing() {
        let certs = TestCertificates::generate();
        let tls = TlsRedis::start(&certs, false);
        let settings = tls_settings(&certs);
        let mut sub = open_tls(&tls, &settings, &["c"]).expect("open over TLS");
        let mut publisher = publisher(&tls.server.url(0));
        sub.ping(WAIT).expect("ping over TLS");
        // Messages of many TLS records each, read with 1 ms timeouts: reads stop in the middle of records.
        let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        publish(&mut publisher, "c", &big);
        publish(&mut publisher, "c", b"after");
        let mut timeouts = 0;
        let mut got = Vec::new();
        while got.len() < 2 {
            match sub
                .next_message(Duration::from_millis(1))
                .expect("a timeout is not an error")
            {
                Some(Incoming::Message(msg)) => got.push(msg),
                Some(other) => panic!("unexpected {other:?}"),
                None => {
                    timeouts += 1;
                    assert!(timeouts < 100_000, "no message after {timeouts} timeouts");
                }
            }
        }
        assert_message(&got[0], "c", &big);
        assert_message(&got[1], "c", b"after");
        assert!(sub.next_message(Duration::from_millis(20)).expect("quiet").is_none());
    }

    #[test]
    fn over_tls_a_refused_client_certificate_is_explained() {
        let certs = TestCertificates::generate();
        let tls = TlsRedis::start(&certs, true);
        let err = open_tls(&tls, &tls_settings(&certs), &["c"])
            .err()
            .expect("the server wants a client certificate");
        let text = err.to_string();
        assert!(text.contains("TLS handshake with"), "{text}");
        assert!(text.contains("redis.tls.cert"), "{text}");
    }

    /// A TLS server of our own that sends one message's TLS record in two halves, with the subscriber timing out
    /// in between: rustls keeps the half record, and the message arrives whole.
    #[test]
    fn over_tls_a_record_cut_by_a_timeout_is_completed() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let certs = TestCertificates::generate();
        let settings = tls_settings(&certs);
        let chain = CertificateDer::pem_file_iter(certs.server_cert())
            .expect("server cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM");
        let key = PrivateKeyDer::from_pem_file(certs.server_key()).expect("server key");
        let config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (half_sent, wait_half) = mpsc::channel();
        let (send_rest, rest) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || -> io::Result<()> {
            let (tcp, _) = listener.accept()?;
            let conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).map_err(io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut request = Vec::new();
            while !request.ends_with(b"$1\r\nc\r\n") {
                let mut buf = [0u8; 64];
                let n = tls.read(&mut buf)?;
                assert!(n > 0, "client hung up");
                request.extend_from_slice(&buf[..n]);
            }
            tls.write_all(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")?;
            tls.flush()?;
            // One record holding a whole message, written to the socket in two halves.
            tls.conn
                .writer()
                .write_all(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$10\r\nhelloworld\r\n")?;
            let mut record = Vec::new();
            while tls.conn.wants_write() {
                tls.conn.write_tls(&mut record)?;
            }
            let (first, second) = record.split_at(record.len() / 2);
            tls.sock.write_all(first)?;
            half_sent.send(()).expect("test alive");
            rest.recv().expect("test alive");
            tls.sock.write_all(second)?;
            // Wait for the client to hang up.
            let _ = tls.sock.read(&mut [0u8; 16]);
            Ok(())
        });
        let info = format!("redis://127.0.0.1:{port}/")
            .into_connection_info()
            .expect("valid URL");
        let mut sub = Subscription::open(&info, Some(&settings), WAIT, WAIT, &["c".to_string()]).expect("open");
        wait_half.recv().expect("server alive");
        for _ in 0..3 {
            assert!(
                sub.next_message(Duration::from_millis(20))
                    .expect("half a record is not an error")
                    .is_none()
            );
        }
        send_rest.send(()).expect("server alive");
        assert_message(&receive(&mut sub), "c", b"helloworld");
        drop(sub);
        server.join().expect("server thread").expect("server I/O");
    }

    /// A scripted server: partial frames across a timeout, junk frames, a server error and garbage.
    #[test]
    fn odd_server_input() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (half_sent, wait_half) = mpsc::channel();
        let (send_rest, rest) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || -> io::Result<()> {
            let (mut conn, _) = listener.accept()?;
            let mut request = Vec::new();
            while !request.ends_with(b"$1\r\nc\r\n") {
                let mut buf = [0u8; 64];
                let n = conn.read(&mut buf)?;
                assert!(n > 0, "client hung up");
                request.extend_from_slice(&buf[..n]);
            }
            assert_eq!(request, b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n");
            conn.write_all(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")?;
            // Frames to skip: an integer, a status, a truncated message, a pong; then half a message.
            conn.write_all(b":7\r\n+OK\r\n*1\r\n$7\r\nmessage\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")?;
            conn.write_all(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$10\r\nhello")?;
            half_sent.send(()).expect("test alive");
            rest.recv().expect("test alive");
            conn.write_all(b"world\r\n-ERR boom\r\n?\r\n")?;
            Ok(())
        });
        let mut sub = open(&format!("redis://127.0.0.1:{port}/"), &["c"]).expect("open");
        wait_half.recv().expect("server alive");
        assert!(
            sub.next_message(Duration::from_millis(50))
                .expect("half a frame")
                .is_none()
        );
        send_rest.send(()).expect("server alive");
        assert_message(&receive(&mut sub), "c", b"helloworld");
        let err = sub.next_message(WAIT).expect_err("server error");
        assert!(err.to_string().contains("boom"), "{err}");
        assert!(sub.next_message(WAIT).is_err(), "garbage is an error");
        server.join().expect("server thread").expect("server I/O");
    }

    #[test]
    fn an_oversized_message_is_skipped_unbuffered_and_the_next_one_arrives() {
        let server = RedisServer::start_with_args(&["--client-output-buffer-limit", "pubsub 0 0 0"]);
        let mut sub = open(&server.url(0), &["c"]).expect("open");
        sub.set_max_payload(64 * 1024);
        let mut publisher = publisher(&server.url(0));
        let huge = vec![b'x'; 10 * 1024 * 1024];
        let fits = vec![b'y'; 64 * 1024];
        publish(&mut publisher, "c", &huge);
        publish(&mut publisher, "c", &fits);
        publish(&mut publisher, "c", &huge);
        publish(&mut publisher, "c", b"next");
        let bound = KEPT_BUFFER + READ_CHUNK;
        match sub.next_message(WAIT).expect("read") {
            Some(Incoming::Oversized { channel, bytes }) => assert_eq!((channel.as_str(), bytes), ("c", huge.len())),
            other => panic!("expected the oversized report, got {other:?}"),
        }
        assert!(
            sub.buffer_capacity() <= bound,
            "buffer grew to {}",
            sub.buffer_capacity()
        );
        assert_message(&receive(&mut sub), "c", &fits);
        // Skipping streams through a buffer of one chunk, even across read timeouts.
        loop {
            match sub.next_message(Duration::from_millis(1)).expect("read") {
                None => assert!(
                    sub.buffer_capacity() <= bound,
                    "buffer grew to {}",
                    sub.buffer_capacity()
                ),
                Some(Incoming::Oversized { bytes, .. }) => {
                    assert_eq!(bytes, huge.len());
                    break;
                }
                Some(other) => panic!("expected the second oversized report, got {other:?}"),
            }
        }
        assert_message(&receive(&mut sub), "c", b"next");
        assert!(
            sub.buffer_capacity() <= bound,
            "buffer grew to {}",
            sub.buffer_capacity()
        );
    }

    #[test]
    fn a_large_message_within_the_limit_arrives_and_its_buffer_is_given_back() {
        let server = RedisServer::start();
        let mut sub = open(&server.url(0), &["c"]).expect("open");
        sub.set_max_payload(4 * 1024 * 1024);
        let mut publisher = publisher(&server.url(0));
        let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        publish(&mut publisher, "c", &big);
        assert_message(&receive(&mut sub), "c", &big);
        assert!(sub.buffer_capacity() <= KEPT_BUFFER, "kept {}", sub.buffer_capacity());
        // Exactly at the limit is allowed.
        sub.set_max_payload(big.len());
        publish(&mut publisher, "c", &big);
        assert_message(&receive(&mut sub), "c", &big);
    }

    #[test]
    fn frames_are_delimited_at_every_cut() {
        let frames: [&[u8]; 5] = [
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$10\r\nhelloworld\r\n",
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            b"-ERR boom\r\n",
            b"*2\r\n*1\r\n$-1\r\n:5\r\n",
        ];
        for frame in frames {
            for cut in 0..frame.len() {
                assert_eq!(
                    scan_frame(&frame[..cut], usize::MAX).unwrap(),
                    Scan::Incomplete,
                    "{cut}"
                );
            }
            let mut longer = frame.to_vec();
            longer.extend_from_slice(b"*1\r\n");
            assert_eq!(scan_frame(&longer, usize::MAX).unwrap(), Scan::Complete(frame.len()));
        }
        let message = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$10\r\n";
        assert_eq!(
            scan_frame(message, 9).unwrap(),
            Scan::Oversized {
                header: message.len(),
                channel: "ch".into(),
                payload: 10
            }
        );
        assert!(
            scan_frame(b"*2\r\n$10\r\n", 9).is_err(),
            "an oversized element before the end"
        );
        assert!(scan_frame(&[b'+'; MAX_LINE + 3], 9).is_err(), "a line without end");
    }
}
