//! Service queues (spec §7): Node Hydra's `queueMessage` /
//! `getQueuedMessage` / `markQueueMessage` over the lists
//! `hydra:service:<svc>:mqrecieved` (sic) → `mqinprogress` → `mqincomplete`,
//! byte-compatible with Node consumers and producers; and what Hydra never
//! had, in [`Hydra::queue_worker`]: a message whose consumer dies is not lost
//! (see `claims` for how), failed deliveries are retried and counted, and
//! after too many the message becomes a dead letter in `mqincomplete`, from
//! where [`Hydra::redrive_dead_letters`] puts it back.
//!
//! Everything enqueued is written exactly as JavaScript's
//! `JSON.stringify(JSON.parse(s))` would reproduce it (see `js_json`), so that
//! a Node consumer's `LREM` finds it again; what is taken is kept as the raw
//! string that was stored, and removed with that string.
//!
//! Queue names are used as given, not lowercased, as Node does. Needs Redis ≥
//! 6.2 (`LMOVE`/`BLMOVE`) for the blocking take and the worker.

mod claims;
mod scripts;
mod worker;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use worker::{QueueWorker, QueueWorkerStats};

use crate::error::{Error, Result};
use crate::hydra::Hydra;
use crate::js_json;
use crate::keys;
use crate::messaging::HandlerError;
use crate::signing::{Signing, Verdict};
use crate::timestamp;
use crate::umf::{Umf, is_truthy};
use claims::QueueKeys;

/// Node's reason when a message is marked incomplete without one.
pub const DEFAULT_INCOMPLETE_REASON: &str = "reason not provided";

/// How many non-UMF items one take moves aside before giving up for this call.
const MAX_GARBAGE_PER_TAKE: usize = 100;
/// Dead letters moved per script call by `redrive_dead_letters`.
const REDRIVE_BATCH: u64 = 1000;

/// A message taken from a service queue.
///
/// It remembers the exact JSON that was stored, so that marking it removes
/// exactly that item (Node's `LREM` matches bytes, spec §7).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    /// The message (stored in short form; long and mixed forms are read too).
    pub message: Umf,
    raw: String,
    queue: String,
    delivery_count: u32,
}

impl QueuedMessage {
    /// The JSON exactly as it was stored in the queue.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The service whose queue it came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Which delivery this is: 1 the first time; a message that failed, or
    /// whose consumer died or stopped renewing its lease, comes back with the
    /// next number. Only queue workers count; a message taken with
    /// [`Hydra::get_queued_message`] always says 1.
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }
}

/// A message waiting in a service queue, as [`Hydra::peek_queue`] sees it
/// (still waiting: nobody took it).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WaitingMessage {
    /// The message; `None` when the item is not UMF JSON (a consumer taking
    /// it moves it to `mqincomplete` instead of delivering it).
    pub message: Option<Umf>,
    /// The item exactly as stored (invalid UTF-8 replaced).
    pub raw: String,
    /// Deliveries to queue workers that ended without completion so far
    /// (failed handlers, consumers that died); 0 for a fresh message.
    pub failed_deliveries: u32,
}

/// Settings of a [`Hydra::queue_worker_with`] worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// How long a worker may be silent (not renewing its lease, e.g. because
    /// its process died) before its messages go back to the queue for other
    /// consumers. Leases are renewed every eighth of this while the worker
    /// lives, however long a handler runs. At least 100 ms; default 30 s.
    pub visibility_timeout: Duration,
    /// Deliveries a message gets before it becomes a dead letter in
    /// `mqincomplete`: failed handler calls plus deliveries lost with their
    /// consumer. At least 1; default 5.
    pub max_deliveries: u32,
}

impl QueueOptions {
    /// Default visibility timeout: 30 s.
    pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default delivery limit: 5.
    pub const DEFAULT_MAX_DELIVERIES: u32 = 5;

    /// The defaults.
    pub fn new() -> QueueOptions {
        QueueOptions::default()
    }

    /// With this visibility timeout.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> QueueOptions {
        self.visibility_timeout = timeout;
        self
    }

    /// With this delivery limit.
    pub fn with_max_deliveries(mut self, deliveries: u32) -> QueueOptions {
        self.max_deliveries = deliveries;
        self
    }
}

impl Default for QueueOptions {
    fn default() -> QueueOptions {
        QueueOptions {
            visibility_timeout: QueueOptions::DEFAULT_VISIBILITY_TIMEOUT,
            max_deliveries: QueueOptions::DEFAULT_MAX_DELIVERIES,
        }
    }
}

/// A snapshot of one service queue ([`Hydra::queue_stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages waiting (`mqrecieved`).
    pub waiting: u64,
    /// Messages being processed (`mqinprogress`), by Node or hydra-rs.
    pub in_progress: u64,
    /// Messages marked incomplete and dead letters (`mqincomplete`).
    pub incomplete: u64,
    /// Age of the oldest waiting message, from its `ts`; `None` when the
    /// queue is empty or that message has no readable timestamp.
    #[serde(rename = "oldest_waiting_ms", serialize_with = "serialize_millis")]
    pub oldest_waiting_age: Option<Duration>,
    /// Live hydra-rs worker threads (slots) on this queue, in all processes.
    /// Node consumers are invisible.
    pub consumers: u64,
}

fn serialize_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

impl Hydra {
    /// Puts `message` at the end of its service's queue (Node's
    /// `queueMessage`): `LPUSH hydra:service:<svc>:mqrecieved <short form>`,
    /// `<svc>` from `to`. No presence is needed. [`Error::BadRequest`] with
    /// Node's reason when `to`, `from` or `body` is missing or `to` is not a
    /// route.
    ///
    /// The JSON is written as JavaScript would print it, so numbers beyond a
    /// double's precision are stored rounded (as a Node producer's would be).
    pub fn queue_message(&self, message: &Umf) -> Result<()> {
        message.validate()?;
        let route = message.to_route()?;
        if route.service_name.is_empty() {
            return Err(Error::BadRequest(format!("route {:?} names no service", message.to)));
        }
        let mut item = js_json::to_string(&message.to_short_value());
        if let Some(signing) = &self.config().signing {
            // Sign what a consumer will parse back: the message as stored
            // (JavaScript's JSON may round numbers), not the caller's copy.
            let stored = Umf::parse(&item)?;
            item = js_json::to_string(&signing.signed(&stored)?.to_short_value());
        }
        let key = keys::queue_received(&route.service_name);
        self.store()
            .run(|c| redis::cmd("LPUSH").arg(&key).arg(&item).query::<()>(c))
    }

    /// Takes the oldest message waiting for `service` (Node's
    /// `getQueuedMessage`: `RPOPLPUSH` to `mqinprogress`), or `None`.
    ///
    /// The move runs as a script that keeps a copy of what it took for a few
    /// seconds under a key of this call: when the reply is lost with the
    /// connection and the call is retried on a new one, the retry returns
    /// that message rather than moving a second one (which would leave the
    /// first in `mqinprogress` with nobody holding it).
    ///
    /// As in Node, nothing watches the message while you hold it: mark it with
    /// [`mark_queue_message`](Hydra::mark_queue_message), or it stays in
    /// `mqinprogress` for good. ([`queue_worker`](Hydra::queue_worker) holds
    /// messages with leases instead.) Items that are not UMF JSON are moved to
    /// `mqincomplete` unchanged (logged), and the next one is taken.
    pub fn get_queued_message(&self, service: &str) -> Result<Option<QueuedMessage>> {
        let keys = QueueKeys::new(service);
        for _ in 0..MAX_GARBAGE_PER_TAKE {
            let receipt = keys::queue_take(&keys.service, &uuid::Uuid::new_v4().simple().to_string());
            let receipt_ms = self.take_receipt_ttl().as_millis() as u64;
            let raw: Option<Vec<u8>> = self.store().run(|c| {
                scripts::TAKE_UNTRACKED
                    .key(&keys.received)
                    .key(&keys.in_progress)
                    .key(&receipt)
                    .arg(receipt_ms)
                    .invoke(c)
            })?;
            let Some(raw) = raw else {
                return Ok(None);
            };
            if let Some(message) = self.accept_untracked(&keys, raw)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// [`get_queued_message`](Hydra::get_queued_message) that waits up to
    /// `timeout` for a message to arrive (`BLMOVE`, no polling). The
    /// connection is held for the wait.
    ///
    /// A blocking move cannot be made idempotent, so it is never retried:
    /// when the connection drops during the wait the error is returned, and
    /// a message the server moved just before may be left in `mqinprogress`
    /// (as with Node's `getQueuedMessage`, nothing watches untracked takes;
    /// [`queue_worker`](Hydra::queue_worker) leases its messages instead).
    pub fn get_queued_message_timeout(&self, service: &str, timeout: Duration) -> Result<Option<QueuedMessage>> {
        if timeout.is_zero() {
            return self.get_queued_message(service);
        }
        let keys = QueueKeys::new(service);
        let command_timeout = self.config().command_timeout();
        let deadline = std::time::Instant::now() + timeout;
        for _ in 0..MAX_GARBAGE_PER_TAKE {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let raw: Option<Vec<u8>> = self.store().run_once(|c| {
                c.connection().set_read_timeout(Some(left + command_timeout))?;
                let raw = redis::cmd("BLMOVE")
                    .arg(&keys.received)
                    .arg(&keys.in_progress)
                    .arg("RIGHT")
                    .arg("LEFT")
                    .arg(claims::block_seconds(left))
                    .query(c);
                // The connection goes back to the pool: restore its timeout.
                c.connection().set_read_timeout(Some(command_timeout))?;
                raw
            })?;
            let Some(raw) = raw else {
                return Ok(None);
            };
            if let Some(message) = self.accept_untracked(&keys, raw)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// How long a take's receipt outlives it: longer than `Store::run` can
    /// take to retry (a reconnect and a command on the fresh connection).
    fn take_receipt_ttl(&self) -> Duration {
        2 * (self.config().connect_timeout() + self.config().command_timeout()) + Duration::from_secs(1)
    }

    /// A message just moved to `mqinprogress` without a lease: decoded, or
    /// moved on to `mqincomplete` when it is not UMF.
    fn accept_untracked(&self, keys: &QueueKeys, raw: Vec<u8>) -> Result<Option<QueuedMessage>> {
        match decode(&raw, self.config().signing.as_ref()) {
            Ok((text, message)) => Ok(Some(QueuedMessage {
                message,
                raw: text,
                queue: keys.service.clone(),
                delivery_count: 1,
            })),
            Err(reason) => {
                log::warn!(
                    "queue {}: moved an item that cannot be delivered to mqincomplete ({reason})",
                    keys.service
                );
                self.store().run(|c| {
                    redis::pipe()
                        .atomic()
                        .cmd("LREM")
                        .arg(&keys.in_progress)
                        .arg(1)
                        .arg(&raw)
                        .ignore()
                        .cmd("RPUSH")
                        .arg(&keys.incomplete)
                        .arg(with_reason(&raw, &format!("not deliverable: {reason}")))
                        .ignore()
                        .query::<()>(c)
                })?;
                Ok(None)
            }
        }
    }

    /// Marks a message taken from a queue (Node's `markQueueMessage`):
    /// removes exactly that item from `mqinprogress` and, unless `completed`,
    /// appends it to `mqincomplete` with `bdy.reason` set to `reason` (Node's
    /// "reason not provided" when `None` or empty), as Node does; both in one
    /// transaction. Returns whether the item was still in progress.
    ///
    /// Unlike Node, which uses the *caller's* service name, the lists are those
    /// of the queue the message came from ([`QueuedMessage::queue`]), so
    /// marking works whichever service took it. Do not mark messages a
    /// [`queue_worker`](Hydra::queue_worker) hands to its handler: the worker
    /// marks them.
    pub fn mark_queue_message(&self, message: &QueuedMessage, completed: bool, reason: Option<&str>) -> Result<bool> {
        let keys = QueueKeys::new(&message.queue);
        let reason = reason.filter(|r| !r.is_empty()).unwrap_or(DEFAULT_INCOMPLETE_REASON);
        let mut pipe = redis::pipe();
        if !completed {
            pipe.atomic();
        }
        pipe.cmd("LREM").arg(&keys.in_progress).arg(1).arg(&message.raw);
        if !completed {
            pipe.cmd("RPUSH")
                .arg(&keys.incomplete)
                .arg(with_reason(message.raw.as_bytes(), reason))
                .ignore();
        }
        let (removed,): (i64,) = self.store().run(|c| pipe.query(c))?;
        Ok(removed > 0)
    }

    /// Lengths of `service`'s three lists, the age of the oldest waiting
    /// message and the live hydra-rs worker slots, read atomically.
    pub fn queue_stats(&self, service: &str) -> Result<QueueStats> {
        let keys = QueueKeys::new(service);
        let (waiting, in_progress, incomplete, consumers, oldest): (u64, u64, u64, u64, Option<Vec<u8>>) =
            self.store().run(|c| {
                scripts::STATS
                    .key(&keys.received)
                    .key(&keys.in_progress)
                    .key(&keys.incomplete)
                    .key(&keys.consumers)
                    .invoke(c)
            })?;
        let oldest_waiting_age = oldest.as_deref().and_then(timestamp_ms).map(|ts| {
            let age = timestamp::now_ms().saturating_sub(ts).max(0);
            Duration::from_millis(u64::try_from(age).unwrap_or(0))
        });
        Ok(QueueStats {
            waiting,
            in_progress,
            incomplete,
            oldest_waiting_age,
            consumers,
        })
    }

    /// Moves every message of `service`'s `mqincomplete` (dead letters, and
    /// messages Node consumers marked incomplete) back to the end of its queue,
    /// oldest first; returns how many. Each move is atomic, so messages are
    /// never lost or doubled, even while others enqueue, take or redrive. The
    /// messages keep the `reason` their failure wrote into the body, and get a
    /// fresh delivery count.
    pub fn redrive_dead_letters(&self, service: &str) -> Result<u64> {
        let keys = QueueKeys::new(service);
        let mut total = 0;
        loop {
            let moved: u64 = self.store().run(|c| {
                scripts::REDRIVE
                    .key(&keys.incomplete)
                    .key(&keys.received)
                    .arg(REDRIVE_BATCH)
                    .invoke(c)
            })?;
            total += moved;
            if moved < REDRIVE_BATCH {
                return Ok(total);
            }
        }
    }

    /// The next `count` messages waiting in `service`'s queue, in the order
    /// consumers will take them (Node's `getQueuedMessage`, workers), without
    /// taking them: one `LRANGE` of the end of `mqrecieved` consumers take
    /// from, read atomically with each message's failed deliveries. Items that
    /// are not UMF are listed too (with `message: None`).
    pub fn peek_queue(&self, service: &str, count: usize) -> Result<Vec<WaitingMessage>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let keys = QueueKeys::new(service);
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let items: Vec<(Vec<u8>, u32)> = self.store().run(|c| {
            scripts::PEEK
                .key(&keys.received)
                .key(&keys.deliveries)
                .arg(count)
                .invoke(c)
        })?;
        Ok(items
            .into_iter()
            .map(|(raw, failed_deliveries)| {
                let raw = String::from_utf8_lossy(&raw).into_owned();
                WaitingMessage {
                    message: Umf::parse(&raw).ok(),
                    raw,
                    failed_deliveries,
                }
            })
            .collect())
    }

    /// Processes `service`'s queue on `concurrency` threads
    /// (`hydra-queue-<n>`) until [`QueueWorker::stop`] or
    /// [`shutdown`](Hydra::shutdown), with the default [`QueueOptions`]: see
    /// [`queue_worker_with`](Hydra::queue_worker_with).
    ///
    /// ```no_run
    /// use hydra::{Config, Hydra, Umf};
    /// use serde_json::json;
    ///
    /// # fn main() -> hydra::Result<()> {
    /// let hydra = Hydra::init(Config::new("billing")?)?;
    /// let worker = hydra.queue_worker("billing", 4, |queued| {
    ///     let invoice = &queued.message.body["invoice"];
    ///     println!("billing {invoice} (delivery {})", queued.delivery_count());
    ///     Ok(()) // an Err is retried, then dead-lettered with its text
    /// })?;
    /// // Anyone (Node or Rust) may enqueue:
    /// hydra.queue_message(&Umf::new("billing:/", "shop:/", json!({"invoice": 42})))?;
    /// # let _ = worker;
    /// hydra.shutdown()?; // also stops the worker
    /// # Ok(())
    /// # }
    /// ```
    pub fn queue_worker<F>(&self, service: &str, concurrency: usize, handler: F) -> Result<QueueWorker>
    where
        F: Fn(&QueuedMessage) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.queue_worker_with(service, concurrency, QueueOptions::default(), handler)
    }

    /// Processes `service`'s queue on `concurrency` threads until
    /// [`QueueWorker::stop`] or [`shutdown`](Hydra::shutdown).
    ///
    /// Each thread takes the oldest message (blocking while the queue is
    /// empty, no polling), runs `handler` on it, and marks it: completed on
    /// `Ok`; on `Err` or a panic (caught; the thread lives on), it goes back to
    /// the far end of the queue for another delivery, and after
    /// `max_deliveries` it goes to `mqincomplete` with `bdy.reason` = the
    /// error text (a dead letter). The messages it holds are leased: if this
    /// process dies, other workers of the queue (in any process) put them
    /// back at the front of the queue once the visibility timeout has passed,
    /// counting a delivery. Messages held by Node consumers are never taken
    /// from them. Delivery is at least once: a handler may see a message
    /// again after a crash, or after this worker was cut off from Redis for
    /// longer than the visibility timeout.
    ///
    /// The worker does not hold the `Hydra` handle: capture a clone in the
    /// handler if it needs one (the instance then lives until `shutdown`).
    /// Dropping the returned handle leaves the worker running.
    pub fn queue_worker_with<F>(
        &self,
        service: &str,
        concurrency: usize,
        options: QueueOptions,
        handler: F,
    ) -> Result<QueueWorker>
    where
        F: Fn(&QueuedMessage) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        worker::start(self, service, concurrency, options, Box::new(handler))
    }
}

/// A stored item as a message, or why it cannot be delivered (not UMF, or
/// refused by the signing policy: such items go to `mqincomplete`, kept).
fn decode(raw: &[u8], signing: Option<&Signing>) -> std::result::Result<(String, Umf), String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let message = Umf::parse(text).map_err(|e| e.to_string())?;
    if let Some(Verdict::Rejected(why)) = signing.map(|s| s.check(&message)) {
        return Err(format!("signature check: {why}"));
    }
    Ok((text.to_string(), message))
}

/// The stored message with `bdy.reason` (or `body.reason`) set, as Node's
/// `markQueueMessage` writes it to `mqincomplete`: JavaScript's JSON of the
/// parsed item. An item that is not a JSON object, or whose body is not an
/// object, is returned unchanged.
fn with_reason(raw: &[u8], reason: &str) -> Vec<u8> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(raw) else {
        return raw.to_vec();
    };
    // Node: `if (message.bdy) … else if (message.body) …` (truthiness).
    let field = ["bdy", "body"].into_iter().find(|f| map.get(*f).is_some_and(is_truthy));
    match field.and_then(|f| map.get_mut(f)) {
        Some(Value::Object(body)) => {
            body.insert("reason".to_string(), Value::String(reason.to_string()));
            js_json::to_string(&Value::Object(map)).into_bytes()
        }
        _ => raw.to_vec(),
    }
}

/// The `ts` (or `timestamp`) of a stored message, in ms since the epoch.
fn timestamp_ms(raw: &[u8]) -> Option<i64> {
    let value: Value = serde_json::from_slice(raw).ok()?;
    let ts = ["ts", "timestamp"]
        .into_iter()
        .find_map(|f| value.get(f).and_then(Value::as_str))?;
    timestamp::parse_iso_ms(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_goes_into_the_body_as_node_writes_it() {
        let raw = br#"{"to":"q:/","frm":"a:/","mid":"m","bdy":{"n":1.50,"x":"\u00e9"}}"#;
        assert_eq!(
            String::from_utf8(with_reason(raw, "failed it")).unwrap(),
            r#"{"to":"q:/","frm":"a:/","mid":"m","bdy":{"n":1.5,"x":"é","reason":"failed it"}}"#
        );
        // An existing reason keeps its place; `body` when `bdy` is falsy.
        let raw = br#"{"bdy":0,"body":{"reason":"old","a":1}}"#;
        assert_eq!(
            String::from_utf8(with_reason(raw, "new")).unwrap(),
            r#"{"bdy":0,"body":{"reason":"new","a":1}}"#
        );
        // Not an object, or a body that is not one: unchanged.
        for raw in [&b"not json"[..], br#"[1]"#, br#"{"bdy":"text"}"#] {
            assert_eq!(with_reason(raw, "r"), raw.to_vec());
        }
    }

    #[test]
    fn timestamps_of_stored_messages() {
        assert_eq!(
            timestamp_ms(br#"{"ts":"2018-03-11T16:52:42.060Z"}"#),
            Some(1_520_787_162_060)
        );
        assert_eq!(
            timestamp_ms(br#"{"timestamp":"2018-03-11T16:52:42.060Z"}"#),
            Some(1_520_787_162_060)
        );
        assert_eq!(timestamp_ms(br#"{"ts":5}"#), None);
        assert_eq!(timestamp_ms(b"garbage"), None);
    }
}
