//! The offline queue (spec §1.11): messages for a client that is not
//! connected to this router wait in Redis (the library's
//! [`Mailboxes`], under Node's keys in `queuerDB`, kept a
//! day) until the client reconnects, through this router or another, and
//! are replayed in the order they were queued (Node replays newest first).

use hydra::{DEFAULT_MAILBOX_TTL, Mailboxes, Umf};

/// How many queued messages one Redis call takes during a replay.
const REPLAY_BATCH: usize = 100;

/// The offline queues of every client.
pub struct OfflineQueue {
    mailboxes: Mailboxes,
}

impl OfflineQueue {
    /// Queues in the mailboxes given (the router's `queuerDB`).
    pub fn new(mailboxes: Mailboxes) -> OfflineQueue {
        OfflineQueue { mailboxes }
    }

    /// Keeps `message` for `client_id`; a Redis failure is logged (the
    /// message is then lost, as the sender could not be told anyway).
    pub fn keep(&self, client_id: &str, message: &Umf) {
        match self.mailboxes.push(client_id, message, DEFAULT_MAILBOX_TTL) {
            Ok(()) => log::debug!("HR: queued message {} for offline client {client_id}", message.mid),
            Err(e) => log::warn!(
                "HR: cannot queue message {} for offline client {client_id}: {e}",
                message.mid
            ),
        }
    }

    /// Hands `client_id`'s queued messages to `deliver`, oldest first, until
    /// the queue is empty or `deliver` refuses one (returns false: the
    /// client went away); what was taken and not delivered is queued again.
    /// Returns how many were delivered.
    pub fn replay(&self, client_id: &str, mut deliver: impl FnMut(&Umf) -> bool) -> usize {
        let mut delivered = 0;
        loop {
            let batch = match self.mailboxes.take(client_id, REPLAY_BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    log::warn!("HR: cannot read the offline queue of {client_id}: {e}");
                    return delivered;
                }
            };
            if batch.is_empty() {
                return delivered;
            }
            let mut rest = batch.iter();
            for message in rest.by_ref() {
                if !deliver(message) {
                    self.keep(client_id, message);
                    for unsent in rest {
                        self.keep(client_id, unsent);
                    }
                    return delivered;
                }
                delivered += 1;
            }
        }
    }

    /// How many messages wait for `client_id` (0 when Redis cannot say).
    pub fn len(&self, client_id: &str) -> usize {
        self.mailboxes.len(client_id).unwrap_or(0)
    }
}
