//! The WebSocket gateway (spec §1.10–1.11): browsers and apps hold a socket
//! to the router and exchange UMF messages with services through it.
//!
//! Two layers meet at the two traits below, so each can be read (and tested)
//! on its own:
//! - the **connection layer** ([`connections`]): the HTTP upgrade handed over
//!   by the library's server (`HttpRoutes::on_upgrade`), the WebSocket
//!   handshake, and one readiness loop over every client socket (tungstenite
//!   over non-blocking sockets: no thread per client), with server pings, a
//!   dead-peer timeout, a maximum frame size and a bounded send queue per
//!   client. It implements [`ClientSockets`] and calls a [`FrameHandler`].
//! - the **routing layer** ([`routing`]): what a frame means (UMF calls to
//!   services, the router API, `ping`, `reconnect`, `wsdir.*`, client-to-
//!   client `forward`), messages from services back to clients (`via`,
//!   `forward`), the directory of clients across routers, and the offline
//!   queue. It implements [`FrameHandler`] and uses [`ClientSockets`].

pub mod directory;
pub mod frames;
pub mod offline;
pub mod routing;

/// Who a connected client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The short id the router gave it (Node's `ws.id`).
    pub id: String,
    /// Its address: `x-forwarded-for` of the upgrade request when present,
    /// else the socket's peer address.
    pub ip: String,
    /// The upgrade request's path and query (Node's `req.url`).
    pub url: String,
    /// The upgrade request's headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

/// What became of a frame handed to [`ClientSockets::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the client's socket.
    Queued,
    /// No client with that id is connected to this router.
    NotConnected,
    /// The client's send queue was full: the client has been closed (and
    /// counted), the frame is not sent.
    Overflowed,
}

/// The connection layer, as the routing layer sees it. Every method returns
/// at once (frames are queued, never written by the caller).
pub trait ClientSockets: Send + Sync {
    /// Queues a text frame for `client_id`.
    fn send(&self, client_id: &str, frame: String) -> Delivery;
    /// Sends a close frame (with `reason`) and closes the socket.
    fn close(&self, client_id: &str, reason: &str);
    /// Gives the connected client `from` the id `to` (a `reconnect` taking
    /// over its old id); false when `from` is not connected or `to` is taken.
    fn rename(&self, from: &str, to: &str) -> bool;
    /// The ids of the clients connected now.
    fn client_ids(&self) -> Vec<String>;
}

/// The routing layer, as the connection layer sees it. Called on the
/// gateway's dispatcher threads (never on the readiness loop), so a call may
/// block on a service; frames of one client are handed over in order, one
/// at a time.
pub trait FrameHandler: Send + Sync {
    /// A client completed the handshake (before any of its frames).
    fn connected(&self, client: &ClientInfo);
    /// A text frame from `client_id` (binary frames are refused by the
    /// connection layer).
    fn frame(&self, client_id: &str, text: String);
    /// The client's socket is gone (closed by either side, timed out, or
    /// overflowed).
    fn disconnected(&self, client_id: &str);
}

pub mod connections;
pub mod handshake;
