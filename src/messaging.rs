//! Messaging over Redis pub/sub (spec §3, §5): sending to one instance, to
//! any instance, to all instances, replies, request–reply with a timeout, and
//! the dispatch of incoming messages to handlers or a pull receiver.
//!
//! Incoming messages take this path: the thread reading the subscription (see
//! [`crate::listener`]) hands each payload to [`Messaging::dispatch`], which
//! drops oversized and invalid payloads (one rate-limited warning, a counter),
//! routes replies to waiting `request` calls directly (so busy handlers never
//! delay them), and turns everything else into a handler job for the listener's
//! threads, or puts it on the pull receiver when no handler is set. Waiting
//! messages are bounded by memory; at the bound the listener stops reading for
//! a while (Redis buffers) and only then drops and counts (see
//! [`crate::listener`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::hydra::Hydra;
use crate::keys;
use crate::listener::{Listener, QUEUED_MESSAGE_OVERHEAD, QueueLimits, Subscribed, Subscriber};
use crate::pool::Job;
use crate::records::Instance;
use crate::registry::Registry;
use crate::signing::{self, Signing, Verdict};
use crate::store::Store;
use crate::umf::Umf;

/// What a message handler returns on failure.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A message handler: runs on the message threads with a handle for replying.
pub(crate) type Handler = dyn Fn(&Hydra, Umf) -> std::result::Result<(), HandlerError> + Send + Sync;

/// Builds a `Hydra` handle for a handler call, or `None` while shutting down.
pub(crate) type HandleFactory = Box<dyn Fn() -> Option<Hydra> + Send + Sync>;

/// The service Node lets broadcasts to fail silently for (spec §5).
const ROUTER_SERVICE: &str = "hydra-router";
/// How many timed-out request IDs are remembered to recognise late replies.
const EXPIRED_REMEMBERED: usize = 65_536;
/// How many IDs of messages sent are remembered for the loop guard.
const SENT_REMEMBERED: usize = 65_536;
/// How long shutdown waits for running handlers to finish.
const WORKER_JOIN_DEADLINE: Duration = Duration::from_secs(5);

/// Tuning of the message runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessagingSettings {
    pub workers: usize,
    pub queue_capacity: usize,
    pub max_queued_bytes: usize,
    pub max_message_bytes: usize,
}

/// Message counters since `init` (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MessageStats {
    /// Payloads read from the service and instance channels.
    pub received: u64,
    /// Messages a handler returned `Ok` for.
    pub handled: u64,
    /// Messages whose handler returned an error or panicked.
    pub failed: u64,
    /// Of `failed`, those whose handler panicked.
    pub panicked: u64,
    /// Payloads dropped as not JSON, not UMF, or over the size limit.
    pub invalid: u64,
    /// Messages dropped because the waiting messages (handler queue or pull
    /// receiver) stayed over their budget for 5 s while the reader paused.
    pub overflow: u64,
    /// Times the listener stopped reading because the waiting messages
    /// reached their budget (`maxQueuedMessageBytes`, `messageQueueCapacity`);
    /// Redis buffered meanwhile.
    pub read_pauses: u64,
    /// Messages dropped because there was no handler and no pull receiver.
    pub unhandled: u64,
    /// Messages dropped by the loop guard: one claiming to come from this
    /// instance that this instance did not send (a spoofed `from`), or a reply
    /// from this service to a reply this instance sent (a handler answering
    /// itself).
    pub looped: u64,
    /// Replies delivered to a waiting `request`.
    pub replies_matched: u64,
    /// Replies that came after their `request` had timed out (discarded).
    pub replies_late: u64,
    /// Messages published by this handle.
    pub sent: u64,
    /// Times the listener subscribed; more than 1 means it recovered from a
    /// lost or frozen connection.
    pub subscriptions: u64,
    /// Messages refused because `signatureSecret` is set and they were
    /// unsigned or wrongly signed (never delivered).
    pub signature_rejected: u64,
    /// Unsigned messages let in by migration mode (`acceptUnsignedMessages`).
    pub unsigned_accepted: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    invalid: AtomicU64,
    overflow: AtomicU64,
    unhandled: AtomicU64,
    looped: AtomicU64,
    replies_matched: AtomicU64,
    replies_late: AtomicU64,
    sent: AtomicU64,
    signature_rejected: AtomicU64,
    unsigned_accepted: AtomicU64,
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// Who this instance is, for the loop guard.
pub(crate) struct Identity {
    pub instance_id: String,
    pub service_name: String,
}

/// Incoming and outgoing messages of one `Hydra` handle.
pub(crate) struct Messaging {
    identity: Identity,
    /// Messages this instance sent recently (the loop guard).
    sent: Mutex<SentMessages>,
    store: Arc<Store>,
    registry: Arc<Registry>,
    settings: MessagingSettings,
    /// `signatureSecret`: sign what is sent, check what arrives.
    signing: Option<Signing>,
    counters: Counters,
    pending: Mutex<HashMap<String, Sender<Umf>>>,
    expired: Mutex<ExpiredRequests>,
    handler: RwLock<Option<Arc<Handler>>>,
    listener: Listener,
    /// The pull receiver's end, cloned for every caller of `receiver`.
    pull: Receiver<Umf>,
    /// Its sender (dropped at shutdown, which wakes every waiting receiver)
    /// and the bytes counted for each message in it.
    pull_backlog: Mutex<PullBacklog>,
    pull_enabled: AtomicBool,
    make_handle: HandleFactory,
    warnings: RateLimitedWarnings,
}

impl Messaging {
    pub(crate) fn new(
        identity: Identity,
        store: Arc<Store>,
        registry: Arc<Registry>,
        settings: MessagingSettings,
        signing: Option<Signing>,
        make_handle: HandleFactory,
    ) -> Messaging {
        // Unbounded as a channel (a bounded one allocates its capacity up
        // front); bounded by `pull_backlog` instead.
        let (pull_sender, pull) = unbounded();
        Messaging {
            identity,
            sent: Mutex::new(SentMessages::default()),
            store,
            registry,
            settings,
            signing,
            counters: Counters::default(),
            pending: Mutex::new(HashMap::new()),
            expired: Mutex::new(ExpiredRequests::default()),
            handler: RwLock::new(None),
            listener: Listener::new(QueueLimits {
                max_messages: settings.queue_capacity,
                max_bytes: settings.max_queued_bytes,
            }),
            pull,
            pull_backlog: Mutex::new(PullBacklog {
                sender: Some(pull_sender),
                sizes: VecDeque::new(),
                bytes: 0,
            }),
            pull_enabled: AtomicBool::new(false),
            make_handle,
            warnings: RateLimitedWarnings::default(),
        }
    }

    pub(crate) fn stats(&self) -> MessageStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MessageStats {
            received: get(&c.received),
            handled: get(&c.handled),
            failed: get(&c.failed),
            panicked: get(&c.panicked),
            invalid: get(&c.invalid),
            overflow: get(&c.overflow),
            unhandled: get(&c.unhandled),
            looped: get(&c.looped),
            replies_matched: get(&c.replies_matched),
            replies_late: get(&c.replies_late),
            sent: get(&c.sent),
            signature_rejected: get(&c.signature_rejected),
            unsigned_accepted: get(&c.unsigned_accepted),
            subscriptions: self.listener.subscriptions(),
            read_pauses: self.listener.read_pauses(),
        }
    }

    /// Installs the handler (replacing any) and grows the message threads so
    /// that `workers` handlers can run while one thread reads.
    pub(crate) fn set_handler(&self, handler: Arc<Handler>) -> Result<()> {
        self.listener
            .ensure_threads(self.settings.workers + 1)
            .map_err(|e| Error::InvalidState(format!("cannot start message threads: {e}")))?;
        *self.handler.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
        Ok(())
    }

    /// Subscribes to `channels` and reads them until [`stop_listening`]; waits
    /// at most `deadline` for the first subscription.
    ///
    /// [`stop_listening`]: Messaging::stop_listening
    pub(crate) fn listen(self: &Arc<Self>, channels: Vec<String>, deadline: Duration) -> Result<()> {
        self.listener
            .ensure_threads(1)
            .map_err(|e| Error::InvalidState(format!("cannot start the listener thread: {e}")))?;
        let before = self.listener.subscriptions();
        let described = channels.join(", ");
        self.listener.start(self.store.clone(), channels, self.clone());
        match self.listener.wait_subscribed(before, deadline) {
            Subscribed::Yes => Ok(()),
            Subscribed::Refused(why) => {
                self.listener.stop();
                Err(Error::PermissionDenied(format!(
                    "SUBSCRIBE {described} on {}: {why} (the Redis user needs the subscribe command and these channels)",
                    self.store.target()
                )))
            }
            Subscribed::TimedOut => {
                self.listener.stop();
                Err(Error::Timeout(format!(
                    "could not subscribe to {described} on {} within {deadline:?}",
                    self.store.target()
                )))
            }
        }
    }

    /// Unsubscribes (closes the subscriber connection); running handlers go on.
    pub(crate) fn stop_listening(&self) {
        self.listener.stop();
    }

    /// The pull receiver: messages arrive here when no handler is set. It
    /// disconnects at shutdown (after the messages already in it).
    pub(crate) fn receiver(&self) -> Receiver<Umf> {
        self.pull_enabled.store(true, Ordering::SeqCst);
        self.pull.clone()
    }

    /// Called by the reading thread for every payload: deals with it now
    /// (`None`), or returns the handler job for it.
    pub(crate) fn dispatch(&self, channel: &str, payload: &[u8]) -> Option<Job> {
        bump(&self.counters.received);
        if payload.len() > self.settings.max_message_bytes {
            self.drop_invalid(
                channel,
                &format!(
                    "{} bytes, over the {} byte limit",
                    payload.len(),
                    self.settings.max_message_bytes
                ),
            );
            return None;
        }
        let umf = match std::str::from_utf8(payload)
            .map_err(|_| Error::BadRequest("not UTF-8".into()))
            .and_then(Umf::parse)
        {
            Ok(umf) => umf,
            Err(e) => {
                self.drop_invalid(channel, &e.to_string());
                return None;
            }
        };
        // Before a reply can reach its waiting request: a forged reply is refused too.
        if let Some(signing) = &self.signing {
            match signing.check(&umf) {
                Verdict::Valid => {}
                Verdict::UnsignedAccepted => {
                    bump(&self.counters.unsigned_accepted);
                }
                Verdict::Rejected(why) => {
                    let n = bump(&self.counters.signature_rejected);
                    self.warnings.warn("signature", || {
                        format!(
                            "refused message {} from {} on {channel}: {why} ({n} refused so far)",
                            umf.mid, umf.from
                        )
                    });
                    return None;
                }
            }
        }
        if let Some(rmid) = umf.rmid.as_deref() {
            let waiting = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(rmid);
            if let Some(caller) = waiting {
                bump(&self.counters.replies_matched);
                let _ = caller.try_send(umf);
                return None;
            }
            if self.expired.lock().unwrap_or_else(|p| p.into_inner()).contains(rmid) {
                bump(&self.counters.replies_late);
                log::debug!("discarding late reply to {rmid}");
                return None;
            }
        }
        if let Err(e) = umf.validate() {
            self.drop_invalid(channel, &e.to_string());
            return None;
        }
        if let Some(why) = self.loops_back(&umf) {
            let n = bump(&self.counters.looped);
            self.warnings.warn("looped", || {
                format!(
                    "dropped message {} from {}: {why} ({n} dropped by the loop guard so far)",
                    umf.mid, umf.from
                )
            });
            return None;
        }
        self.route_to_consumer(umf, payload.len() + QUEUED_MESSAGE_OVERHEAD)
    }

    /// The loop guard: why `umf` must not reach a handler, if it must not.
    ///
    /// A replying handler talks to itself when a message names this instance
    /// (or service) as its sender: its reply comes back to it, and so on.
    /// Nesting depth cannot bound that (a handler may reply with a constant
    /// body), so the guard looks at who sent what instead:
    /// - a message whose `from` names this instance but whose `mid` this
    ///   instance never sent is spoofed (dropped before any handler runs);
    /// - a reply whose `from` names this service and whose `rmid` is a reply
    ///   this instance sent is the second turn of a handler answering itself.
    ///
    /// Not affected: `request` to this very service (its reply matches the
    /// waiting request before any handler sees it), messages this instance
    /// sends to itself, and the first reply to one (it reaches the handler, as
    /// in Node, but the handler's answer to it stops here).
    fn loops_back(&self, umf: &Umf) -> Option<&'static str> {
        // Most senders are other services: skip parsing their routes.
        let name = self.identity.service_name.as_bytes();
        if name.is_empty()
            || !umf
                .from
                .as_bytes()
                .windows(name.len())
                .any(|w| w.eq_ignore_ascii_case(name))
        {
            return None;
        }
        let from = crate::umf::Route::parse(&umf.from).ok()?;
        if !from.service_name.eq_ignore_ascii_case(&self.identity.service_name) {
            return None;
        }
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if from.instance == self.identity.instance_id && sent.was_reply(&umf.mid).is_none() {
            return Some("it claims to come from this instance, which did not send it");
        }
        if umf.rmid.as_deref().and_then(|rmid| sent.was_reply(rmid)) == Some(true) {
            return Some("a reply from this service to a reply this instance sent (a handler answering itself)");
        }
        None
    }

    /// Remembers that this instance sends `umf` (before it is published, so
    /// it is known when it comes back).
    fn remember_sent(&self, umf: &Umf) {
        let is_reply = umf.rmid.as_deref().is_some_and(|r| !r.is_empty());
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(umf.mid.clone(), is_reply);
    }

    /// The handler job for `umf`, or `None` after putting it on the pull
    /// receiver (or dropping it when there is neither).
    fn route_to_consumer(&self, umf: Umf, bytes: usize) -> Option<Job> {
        let handler = self.handler.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(handler) = handler {
            return Some(self.handler_job(handler, umf));
        }
        if self.pull_enabled.load(Ordering::SeqCst) {
            let mut backlog = self.pull_backlog.lock().unwrap_or_else(|p| p.into_inner());
            backlog.settle(self.pull.len());
            let fits = backlog.sizes.len() < self.settings.queue_capacity.max(1)
                && backlog.bytes < self.settings.max_queued_bytes.max(1);
            let sent = fits && backlog.sender.as_ref().is_some_and(|s| s.try_send(umf).is_ok());
            if sent {
                backlog.push(bytes);
            } else {
                let n = bump(&self.counters.overflow);
                self.warnings.warn("overflow", || {
                    format!("message receiver is full; dropped a message ({n} dropped so far)")
                });
            }
        } else {
            let n = bump(&self.counters.unhandled);
            self.warnings.warn("unhandled", || {
                format!("no message handler or receiver is set; dropped a message ({n} so far)")
            });
        }
        None
    }

    fn handler_is_set(&self) -> bool {
        self.handler.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn handler_job(&self, handler: Arc<Handler>, umf: Umf) -> Job {
        let Some(hydra) = (self.make_handle)() else {
            return Box::new(|| {});
        };
        Box::new(move || {
            let messaging = hydra.messaging();
            let mid = umf.mid.clone();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&hydra, umf))) {
                Ok(Ok(())) => {
                    bump(&messaging.counters.handled);
                }
                Ok(Err(e)) => {
                    bump(&messaging.counters.failed);
                    log::warn!("message handler failed on {mid}: {e}");
                }
                Err(_) => {
                    bump(&messaging.counters.failed);
                    bump(&messaging.counters.panicked);
                    log::error!("message handler panicked on {mid}; the worker continues");
                }
            }
        })
    }

    fn drop_invalid(&self, channel: &str, reason: &str) {
        let n = bump(&self.counters.invalid);
        self.warnings.warn("invalid", || {
            format!("dropped an invalid message on {channel}: {reason} ({n} invalid so far)")
        });
    }

    /// `sendMessage`: to the named instance, or to a random present one. A
    /// publish nobody received (the instance died since its last heartbeat)
    /// moves on to another instance.
    pub(crate) fn send_message(&self, umf: &Umf) -> Result<()> {
        let route = umf.to_route()?;
        self.remember_sent(umf);
        let service = route.service_name.to_lowercase();
        let payload = signing::wire_form(self.signing.as_ref(), umf)?;
        if !route.instance.is_empty() {
            let instance = self.find_instance(&service, &route.instance)?;
            let receivers = self.publish(&keys::instance_channel(&service, &instance.instance_id), &payload)?;
            if receivers == 0 {
                self.registry.forget_presence(&service);
                return Err(Error::ServiceUnavailable(format!(
                    "Unavailable {service} instance named {}",
                    route.instance
                )));
            }
            return Ok(());
        }
        // Try the cached list; when it runs out (or was empty), ask Redis once
        // more for instances not tried yet: the cache may be stale either way.
        let mut instances = self.registry.cached_presence(&service)?;
        let mut tried: HashSet<String> = HashSet::new();
        let mut reread = false;
        loop {
            let Some(instance) = instances.pop() else {
                if reread {
                    return Err(Error::ServiceUnavailable(format!("Unavailable {service} instances")));
                }
                reread = true;
                self.registry.forget_presence(&service);
                instances = self.registry.cached_presence(&service)?;
                continue;
            };
            if !tried.insert(instance.instance_id.clone()) {
                continue;
            }
            let channel = keys::instance_channel(&service, &instance.instance_id);
            if self.publish(&channel, &payload)? > 0 {
                return Ok(());
            }
        }
    }

    /// `sendBroadcastMessage`: every instance of the service.
    pub(crate) fn send_broadcast_message(&self, umf: &Umf) -> Result<()> {
        let route = umf.to_route()?;
        self.remember_sent(umf);
        let service = route.service_name.to_lowercase();
        if self.registry.cached_instances(&service)?.is_empty() {
            if service == ROUTER_SERVICE {
                return Ok(());
            }
            return Err(Error::ServiceUnavailable(format!("Unavailable {service} instances")));
        }
        self.publish(
            &keys::service_channel(&service),
            &signing::wire_form(self.signing.as_ref(), umf)?,
        )?;
        Ok(())
    }

    /// Request–reply: publishes `umf` (whose `from` the caller has set to this
    /// instance) and waits for the message whose `rmid` is its `mid`.
    pub(crate) fn request(&self, umf: Umf, timeout: Duration) -> Result<Umf> {
        let mid = umf.mid.clone();
        let (tx, rx) = bounded::<Umf>(1);
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.contains_key(&mid) {
                return Err(Error::BadRequest(format!(
                    "a request with mid {mid} is already waiting for its reply"
                )));
            }
            pending.insert(mid.clone(), tx);
        }
        if let Err(e) = self.send_message(&umf) {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&mid);
            return Err(e);
        }
        match rx.recv_timeout(timeout) {
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Disconnected) => Err(Error::InvalidState(format!(
                "shut down while request {mid} was waiting for its reply"
            ))),
            Err(RecvTimeoutError::Timeout) => {
                let was_pending = self
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&mid)
                    .is_some();
                if !was_pending {
                    // The reply won the race with the deadline: it is in the channel.
                    if let Ok(reply) = rx.try_recv() {
                        return Ok(reply);
                    }
                }
                self.expired
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(mid.clone());
                Err(Error::Timeout(format!(
                    "no reply to message {mid} sent to {} within {timeout:?}",
                    umf.to
                )))
            }
        }
    }

    /// Wakes every waiting `request` with an error, stops listening, lets
    /// queued handler jobs finish and joins the message threads.
    pub(crate) fn shutdown(&self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // Receivers waiting in `recv` wake up disconnected.
        self.pull_backlog.lock().unwrap_or_else(|p| p.into_inner()).sender = None;
        *self.handler.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.listener.close(WORKER_JOIN_DEADLINE);
    }

    fn find_instance(&self, service: &str, instance_id: &str) -> Result<Instance> {
        if let Some(found) = self.registry.cached_instance(service, instance_id)? {
            return Ok(found);
        }
        // Maybe it appeared since the cache was filled: ask Redis once more.
        self.registry.forget_presence(service);
        self.registry
            .cached_instance(service, instance_id)?
            .ok_or_else(|| Error::ServiceUnavailable(format!("Unavailable {service} instance named {instance_id}")))
    }

    fn publish(&self, channel: &str, payload: &str) -> Result<u64> {
        let receivers: u64 = self
            .store
            .run(|c| redis::cmd("PUBLISH").arg(channel).arg(payload).query(c))?;
        bump(&self.counters.sent);
        Ok(receivers)
    }
}

impl Subscriber for Messaging {
    fn on_message(&self, channel: &str, payload: &[u8]) -> Option<Job> {
        self.dispatch(channel, payload)
    }

    fn on_oversized(&self, channel: &str, bytes: usize) {
        bump(&self.counters.received);
        self.drop_invalid(
            channel,
            &format!(
                "{bytes} bytes, over the {} byte limit (skipped unread)",
                self.settings.max_message_bytes
            ),
        );
    }

    fn max_payload(&self) -> usize {
        self.settings.max_message_bytes
    }

    fn is_saturated(&self) -> bool {
        if !self.pull_enabled.load(Ordering::Relaxed) || self.handler_is_set() {
            return false;
        }
        let mut backlog = self.pull_backlog.lock().unwrap_or_else(|p| p.into_inner());
        backlog.settle(self.pull.len());
        backlog.sizes.len() >= self.settings.queue_capacity.max(1) || backlog.bytes >= self.settings.max_queued_bytes
    }

    fn on_overflow(&self, job: Job) {
        // The job may hold the last handle; its drop shuts the instance down,
        // which the listener allows from the reading thread.
        drop(job);
        let n = bump(&self.counters.overflow);
        self.warnings.warn("overflow", || {
            format!("message handlers are saturated; dropped a message ({n} dropped so far)")
        });
    }
}

/// The bytes of the messages in the pull receiver. The receiver is a plain
/// channel the user drains, so this mirrors it: one entry per message sent,
/// oldest first; as the channel is FIFO with one producer (the reader), the
/// messages taken since are the oldest entries beyond the channel's length.
struct PullBacklog {
    sender: Option<Sender<Umf>>,
    sizes: VecDeque<usize>,
    bytes: usize,
}

impl PullBacklog {
    fn push(&mut self, bytes: usize) {
        self.sizes.push_back(bytes);
        self.bytes += bytes;
    }

    /// Forgets the messages taken from a channel now holding `in_channel`.
    fn settle(&mut self, in_channel: usize) {
        while self.sizes.len() > in_channel {
            if let Some(bytes) = self.sizes.pop_front() {
                self.bytes -= bytes;
            }
        }
    }
}

/// `route` as `<instance>@<service>:/` when it names no instance.
pub(crate) fn instance_route(instance_id: &str, service: &str) -> String {
    format!("{instance_id}@{service}:/")
}

/// Message IDs of requests that timed out, remembered (bounded, oldest
/// forgotten first) so their late replies are recognised and discarded.
#[derive(Default)]
struct ExpiredRequests {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl ExpiredRequests {
    fn insert(&mut self, mid: String) {
        if self.set.insert(mid.clone()) {
            self.order.push_back(mid);
        }
        while self.order.len() > EXPIRED_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, mid: &str) -> bool {
        self.set.contains(mid)
    }
}

/// IDs of the messages this instance sent recently (bounded, oldest
/// forgotten first), each with whether it was a reply.
#[derive(Default)]
struct SentMessages {
    order: VecDeque<String>,
    is_reply: HashMap<String, bool>,
}

impl SentMessages {
    fn insert(&mut self, mid: String, is_reply: bool) {
        if self.is_reply.insert(mid.clone(), is_reply).is_none() {
            self.order.push_back(mid);
        }
        while self.order.len() > SENT_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.is_reply.remove(&old);
            }
        }
    }

    /// `None` when `mid` was not sent by this instance (or long ago).
    fn was_reply(&self, mid: &str) -> Option<bool> {
        self.is_reply.get(mid).copied()
    }
}

/// At most one warning per kind per second, so a flood of bad input cannot
/// flood the log; counters carry the totals.
#[derive(Default)]
struct RateLimitedWarnings {
    last: Mutex<HashMap<&'static str, Instant>>,
}

impl RateLimitedWarnings {
    fn warn(&self, kind: &'static str, message: impl FnOnce() -> String) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last
            .get(kind)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            last.insert(kind, now);
            log::warn!("{}", message());
        }
    }
}
