//! How a hydra-rs consumer holds a message so that it is never lost when the
//! consumer dies, while Node consumers on the same queue go on as before.
//!
//! A queue worker has one *slot* per worker thread, each with two private
//! lists and a lease:
//!
//! - `mqstaging:<slot>`: where a blocking take lands (`BLMOVE mqrecieved →
//!   staging`, atomic), until [`ADOPT`](super::scripts::ADOPT) records it;
//! - `mqclaimed:<slot>`: the messages of `mqinprogress` this slot holds. A
//!   non-blocking take ([`TAKE`](super::scripts::TAKE)) moves a message into
//!   `mqinprogress` (exactly what Node's `RPOPLPUSH` does) and into this list
//!   in one script;
//! - the slot's score in `mqconsumers`: when its lease runs out (Redis clock,
//!   renewed every eighth of the visibility timeout by the worker's keeper
//!   thread).
//!
//! So a message is always in exactly one place a reaper can see: waiting, in
//! a slot's staging list, or in `mqinprogress` *and* a slot's claimed list. A
//! reaper (any consumer of the queue, one at a time thanks to a `SET NX PX`
//! lock, atomically in Lua) puts the messages of slots whose lease has run out
//! back at the end of `mqrecieved` that is taken next, and counts a delivery
//! for each. Messages in `mqinprogress` that no claimed list names were taken
//! by Node (or by `get_queued_message`): they are never touched, however long
//! they stay.
//!
//! A slot processes one message at a time, so anything else found in its
//! lists (a take whose reply was lost to a timeout) is an orphan; the worker
//! gives such messages back with [`release`] before its next take.

use std::time::Duration;

use redis::{ConnectionLike, RedisResult};

use super::scripts;
use crate::keys;

/// Every key one queue's scripts use.
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    pub service: String,
    pub received: String,
    pub in_progress: String,
    pub incomplete: String,
    pub consumers: String,
    pub deliveries: String,
    pub reaper: String,
    pub staging_prefix: String,
    pub claimed_prefix: String,
}

impl QueueKeys {
    pub(crate) fn new(service: &str) -> QueueKeys {
        QueueKeys {
            service: service.to_string(),
            received: keys::queue_received(service),
            in_progress: keys::queue_in_progress(service),
            incomplete: keys::queue_incomplete(service),
            consumers: keys::queue_consumers(service),
            deliveries: keys::queue_deliveries(service),
            reaper: keys::queue_reaper(service),
            staging_prefix: keys::queue_staging(service, ""),
            claimed_prefix: keys::queue_claimed(service, ""),
        }
    }
}

/// One consumer slot: an ID and its two lists.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub id: String,
    pub staging: String,
    pub claimed: String,
}

impl Slot {
    pub(crate) fn new(keys: &QueueKeys, id: String) -> Slot {
        Slot {
            staging: format!("{}{id}", keys.staging_prefix),
            claimed: format!("{}{id}", keys.claimed_prefix),
            id,
        }
    }
}

/// A message a slot took, as stored (bytes, for an exact `LREM`), and how
/// many deliveries of it failed before.
#[derive(Debug)]
pub(crate) struct Taken {
    pub raw: Vec<u8>,
    pub failures: u32,
}

/// What [`fail`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Back in the queue for another delivery; failures so far.
    Retry(u32),
    /// Moved to `mqincomplete`; failures in all.
    Dead(u32),
    /// The slot no longer held it: it had been requeued meanwhile.
    Lost,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The oldest waiting message, without blocking, or `None`.
pub(crate) fn take(
    conn: &mut dyn ConnectionLike,
    keys: &QueueKeys,
    slot: &Slot,
    lease: Duration,
) -> RedisResult<Option<Taken>> {
    let taken: Option<(Vec<u8>, u32)> = scripts::TAKE
        .key(&keys.received)
        .key(&keys.in_progress)
        .key(&slot.claimed)
        .key(&keys.consumers)
        .key(&keys.deliveries)
        .arg(&slot.id)
        .arg(ms(lease))
        .invoke(conn)?;
    Ok(taken.map(|(raw, failures)| Taken { raw, failures }))
}

/// Waits up to `block` for a message (`BLMOVE`, no polling), then records it
/// as in progress. `None` when none came, or when the slot lost it in between
/// (presumed dead and requeued). The connection's read timeout must exceed
/// `block`.
pub(crate) fn take_blocking(
    conn: &mut dyn ConnectionLike,
    keys: &QueueKeys,
    slot: &Slot,
    lease: Duration,
    block: Duration,
) -> RedisResult<Option<Taken>> {
    let raw: Option<Vec<u8>> = redis::cmd("BLMOVE")
        .arg(&keys.received)
        .arg(&slot.staging)
        .arg("RIGHT")
        .arg("LEFT")
        .arg(block_seconds(block))
        .query(conn)?;
    let Some(raw) = raw else {
        return Ok(None);
    };
    let failures: Option<u32> = scripts::ADOPT
        .key(&slot.staging)
        .key(&slot.claimed)
        .key(&keys.in_progress)
        .key(&keys.consumers)
        .key(&keys.deliveries)
        .arg(&raw)
        .arg(&slot.id)
        .arg(ms(lease))
        .invoke(conn)?;
    Ok(failures.map(|failures| Taken { raw, failures }))
}

/// A blocking timeout as Redis takes it: seconds with millisecond precision,
/// never 0 (which would mean forever).
pub(crate) fn block_seconds(block: Duration) -> String {
    format!("{:.3}", block.as_secs_f64().max(0.001))
}

/// Marks a message the slot holds completed. `false` when the slot no longer
/// held it.
pub(crate) fn complete(conn: &mut dyn ConnectionLike, keys: &QueueKeys, slot: &Slot, raw: &[u8]) -> RedisResult<bool> {
    let held: i64 = scripts::COMPLETE
        .key(&slot.claimed)
        .key(&keys.in_progress)
        .key(&keys.deliveries)
        .arg(raw)
        .invoke(conn)?;
    Ok(held == 1)
}

/// [`complete`] and [`take`] in one round trip: whether the slot still held
/// the completed message, and the next one if any.
pub(crate) fn complete_and_take(
    conn: &mut dyn ConnectionLike,
    keys: &QueueKeys,
    slot: &Slot,
    raw: &[u8],
    lease: Duration,
) -> RedisResult<(bool, Option<Taken>)> {
    let reply: Vec<redis::Value> = scripts::COMPLETE_AND_TAKE
        .key(&slot.claimed)
        .key(&keys.in_progress)
        .key(&keys.deliveries)
        .key(&keys.received)
        .key(&keys.consumers)
        .arg(raw)
        .arg(&slot.id)
        .arg(ms(lease))
        .invoke(conn)?;
    let mut reply = reply.into_iter();
    let held: i64 = redis::from_redis_value(reply.next().unwrap_or(redis::Value::Int(0)))?;
    let taken = match (reply.next(), reply.next()) {
        (Some(raw), Some(failures)) => Some(Taken {
            raw: redis::from_redis_value(raw)?,
            failures: redis::from_redis_value(failures)?,
        }),
        _ => None,
    };
    Ok((held == 1, taken))
}

/// Counts a failed delivery: retry below `max_deliveries`, else `dead_letter`
/// goes to `mqincomplete` (`max_deliveries` 0: at once).
pub(crate) fn fail(
    conn: &mut dyn ConnectionLike,
    keys: &QueueKeys,
    slot: &Slot,
    raw: &[u8],
    max_deliveries: u32,
    dead_letter: &[u8],
) -> RedisResult<Failed> {
    let (outcome, failures): (String, u32) = scripts::FAIL
        .key(&slot.claimed)
        .key(&keys.in_progress)
        .key(&keys.deliveries)
        .key(&keys.received)
        .key(&keys.incomplete)
        .arg(raw)
        .arg(max_deliveries)
        .arg(dead_letter)
        .invoke(conn)?;
    Ok(match outcome.as_str() {
        "retry" => Failed::Retry(failures),
        "dead" => Failed::Dead(failures),
        _ => Failed::Lost,
    })
}

/// Gives back everything `slots` hold, to be taken next; with `forget`, also
/// removes the slots (a clean stop). Returns how many messages went back.
pub(crate) fn release(
    conn: &mut dyn ConnectionLike,
    keys: &QueueKeys,
    slots: &[&Slot],
    forget: bool,
) -> RedisResult<u64> {
    if slots.is_empty() {
        return Ok(0);
    }
    let mut invocation = scripts::RELEASE.prepare_invoke();
    invocation
        .key(&keys.received)
        .key(&keys.in_progress)
        .key(&keys.deliveries)
        .key(&keys.consumers)
        .arg(&keys.staging_prefix)
        .arg(&keys.claimed_prefix)
        .arg(if forget { "1" } else { "0" });
    for slot in slots {
        invocation.arg(&slot.id);
    }
    invocation.invoke(conn)
}

/// Timing of a consumer's keeper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keeping {
    pub lease: Duration,
    pub reap_interval: Duration,
    pub grace: Duration,
}

/// What one keeper step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Slots that were not registered (first step, or after being presumed
    /// dead, or after Redis lost its data).
    pub registered: u64,
    /// Messages of dead slots requeued; `None` when another consumer reaped.
    pub requeued: Option<u64>,
    /// Stale delivery counters removed.
    pub pruned: u64,
}

/// Renews the leases of `slots` and, unless another consumer did recently,
/// requeues the messages of dead slots.
pub(crate) fn keep(
    conn: &mut dyn ConnectionLike,
    keys: &QueueKeys,
    slots: &[&Slot],
    timing: Keeping,
    token: &str,
) -> RedisResult<Kept> {
    let mut invocation = scripts::KEEP.prepare_invoke();
    invocation
        .key(&keys.consumers)
        .key(&keys.reaper)
        .key(&keys.received)
        .key(&keys.in_progress)
        .key(&keys.deliveries)
        .arg(&keys.staging_prefix)
        .arg(&keys.claimed_prefix)
        .arg(ms(timing.lease))
        .arg(ms(timing.reap_interval))
        .arg(ms(timing.grace))
        .arg(token);
    for slot in slots {
        invocation.arg(&slot.id);
    }
    let (registered, requeued, pruned): (u64, i64, u64) = invocation.invoke(conn)?;
    Ok(Kept {
        registered,
        requeued: u64::try_from(requeued).ok(),
        pruned,
    })
}
