//! The messages that reach the router over Redis (its service and instance
//! channels): route refreshes, other routers' `wsdir.*`, and services'
//! replies and pushes to WebSocket clients.
//!
//! One thread (`hydra-router-inbox`) takes them from the library's pull
//! receiver ([`Hydra::messages`]) in the order the router received them,
//! and hands them to [`Lanes`] keyed by the client they are for
//! ([`Routing::order_key`]): two pushes to one client are delivered in the
//! order received, while messages for different clients are handled in
//! parallel and a client with a backlog (e.g. one that is offline, whose
//! messages go to Redis) holds up only itself. A message for a client
//! connected here with nothing pending is queued on its socket by the inbox
//! thread itself (no Redis call, no hand-over to a worker). (With `Hydra::on_message`,
//! the library's message workers could hand two messages for one client to
//! the routing layer in either order.)

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use hydra::{Hydra, Umf};
use serde_json::Value;

use crate::lanes::Lanes;
use crate::ws::routing::Routing;

/// Threads delivering messages (as many as the library's message workers).
pub const MESSAGE_WORKERS: usize = hydra::DEFAULT_MESSAGE_WORKERS;

/// Messages waiting for a worker, at most; then the inbox stops taking
/// more and the library's own queue (then Redis) holds them.
pub const QUEUED_MESSAGES: usize = 4096;

/// How long [`Inbox::join`] waits for the inbox thread.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// The inbox thread; it ends when the router's Hydra handle shuts down
/// (the pull receiver disconnects), after handling what was received.
pub struct Inbox {
    thread: Option<JoinHandle<()>>,
}

impl Inbox {
    /// Starts taking the router's messages: a `refresh` asks `on_refresh`
    /// for a route table rebuild (folded: a full channel means one is due),
    /// the others go to the routing layer in order per client.
    pub fn start(hydra: &Hydra, routing: std::sync::Arc<Routing>, on_refresh: Sender<()>) -> std::io::Result<Inbox> {
        let messages = hydra.messages();
        let delivery = routing.clone();
        let lanes = Lanes::start("hydra-router-inbox", MESSAGE_WORKERS, QUEUED_MESSAGES, move |message| {
            delivery.on_service_message(message)
        })?;
        let thread = std::thread::Builder::new()
            .name("hydra-router-inbox".into())
            .spawn(move || {
                for message in messages.iter() {
                    sort(message, &routing, &lanes, &on_refresh);
                }
                lanes.shutdown();
            })?;
        Ok(Inbox { thread: Some(thread) })
    }

    /// Waits (at most 10 s) for the inbox to finish, once the Hydra handle
    /// has shut down.
    pub fn join(mut self) {
        let Some(thread) = self.thread.take() else { return };
        let deadline = Instant::now() + JOIN_DEADLINE;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                log::warn!("hydra-router: the message inbox did not finish within {JOIN_DEADLINE:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = thread.join();
    }
}

fn sort(message: Umf, routing: &Routing, lanes: &Lanes<Umf>, on_refresh: &Sender<()>) {
    if message.body.get("action").and_then(Value::as_str) == Some("refresh") {
        let _ = on_refresh.try_send(());
        return;
    }
    // Most messages are for a client connected here with nothing of its
    // own pending: queued on its socket at once, no hand-over.
    lanes.run_or_push(routing.order_key(&message), message, |message| {
        routing.deliver_now(message)
    });
}
