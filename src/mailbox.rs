//! Mailboxes: per-recipient lists of UMF messages kept in Redis for someone
//! who is not there to receive them now (hydra-router's offline queue for
//! WebSocket clients, spec hydra-tools §1.11).
//!
//! The keys are Node hydra-router's, so a Node router and a Rust one share
//! them: `hydra-router:message:queue:<recipient>:queued`, a list appended
//! with `RPUSH` whose time to live is renewed on every push (Node: `EXPIRE
//! 86400`). Differences from Node's `Queuer`, both fixes:
//! - [`take`](Mailboxes::take) returns the oldest messages first (Node pops
//!   from the tail it pushes to, so replay is newest first);
//! - a take removes the messages in one `LPOP <key> <count>`, instead of
//!   moving each to `…:processing` and removing it after sending, which left
//!   copies behind whenever the sender stopped in between. A message taken
//!   is the taker's to deliver (at most once).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys;
use crate::store::Store;
use crate::umf::Umf;

/// Node hydra-router's time to live of an offline queue: a day.
pub const DEFAULT_MAILBOX_TTL: Duration = Duration::from_secs(86_400);

/// Mailboxes in one Redis database; see [`Hydra::mailboxes`](crate::Hydra::mailboxes).
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Mailboxes {
    store: Arc<Store>,
}

impl Mailboxes {
    pub(crate) fn new(store: Arc<Store>) -> Mailboxes {
        Mailboxes { store }
    }

    /// Appends `message` (short form, as Node's router sends to clients) to
    /// `recipient`'s mailbox and sets the mailbox to expire `ttl` from now
    /// (whole seconds, at least one).
    pub fn push(&self, recipient: &str, message: &Umf, ttl: Duration) -> Result<()> {
        check_recipient(recipient)?;
        let key = keys::mailbox(recipient);
        let item = message.to_short_json();
        let seconds = ttl.as_secs().max(1);
        self.store.run(|c| {
            redis::pipe()
                .atomic()
                .cmd("RPUSH")
                .arg(&key)
                .arg(&item)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(seconds)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Removes and returns up to `max` of `recipient`'s messages, oldest
    /// first; empty when there are none. Items that are not UMF (written by
    /// something else) are dropped and logged.
    pub fn take(&self, recipient: &str, max: usize) -> Result<Vec<Umf>> {
        check_recipient(recipient)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let key = keys::mailbox(recipient);
        // Not retried on a fresh connection: a second LPOP would take (and
        // lose) the next messages when only the first reply was lost.
        let items: Option<Vec<String>> = self
            .store
            .run_once(|c| redis::cmd("LPOP").arg(&key).arg(max).query(c))?;
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| match Umf::parse(&item) {
                Ok(umf) => Some(umf),
                Err(e) => {
                    log::warn!("dropping an item of mailbox {recipient:?} that is not UMF: {e}");
                    None
                }
            })
            .collect())
    }

    /// How many messages wait for `recipient`.
    pub fn len(&self, recipient: &str) -> Result<usize> {
        check_recipient(recipient)?;
        let key = keys::mailbox(recipient);
        self.store.run(|c| redis::cmd("LLEN").arg(&key).query(c))
    }
}

/// A recipient names one mailbox: no key separators or glob characters.
fn check_recipient(recipient: &str) -> Result<()> {
    let bad = recipient.is_empty()
        || recipient.len() > 256
        || recipient
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control() || "*?[]".contains(c));
    if bad {
        return Err(Error::BadRequest(format!(
            "{recipient:?} is not a mailbox recipient (1 to 256 characters, no ':', spaces or glob characters)"
        )));
    }
    Ok(())
}
