//! Queue workers: `concurrency` threads (`hydra-queue-<n>`), each one slot
//! (see `claims`) with its own Redis connection, that take a message, run the
//! handler under `catch_unwind` and record the verdict; and one keeper thread
//! (`hydra-queue-keeper`) that renews the slots' leases and reaps the slots of
//! dead consumers. Stopped (threads joined, slots released) by
//! [`QueueWorker::stop`] or by the owning `Hydra`'s `shutdown`.
//!
//! A thread takes a message only when it is free, so a worker never holds
//! more messages than it has threads. While Redis is unreachable, threads
//! retry with a growing pause (50 ms to 2 s), logging once when the trouble
//! starts and once when it ends; a verdict that could not be written is kept
//! and written before the next take, so a handled message is not handed out
//! again just because Redis blinked.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, never, select};
use redis::{Connection, ConnectionLike};
use serde::Serialize;

use super::claims::{self, Failed, Keeping, QueueKeys, Slot, Taken};
use super::{QueueOptions, QueuedMessage, decode, with_reason};
use crate::error::{Error, Result, describe_redis_error};
use crate::hydra::{BackgroundTask, Hydra};
use crate::messaging::HandlerError;
use crate::signing::Signing;
use crate::store::Store;
use crate::threads::OwnedThread;

/// A queue handler.
pub(crate) type QueueHandler = dyn Fn(&QueuedMessage) -> std::result::Result<(), HandlerError> + Send + Sync;

/// Longest single blocking wait for a message; a stop also interrupts it
/// (`CLIENT UNBLOCK`), this only bounds the rare race with that.
const BLOCK: Duration = Duration::from_secs(1);
/// How long a stop waits for the threads (running handlers) to finish.
const JOIN_DEADLINE: Duration = Duration::from_secs(5);
/// How often a stop repeats `CLIENT UNBLOCK` for threads still running.
const UNBLOCK_REPEAT: Duration = Duration::from_millis(50);
/// Pause after a Redis error, doubling up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Most threads one worker may have.
const MAX_CONCURRENCY: usize = 256;
/// Shortest visibility timeout accepted.
const MIN_VISIBILITY_TIMEOUT: Duration = Duration::from_millis(100);
/// Dead slots are forgotten this long after their lease ran out (at least);
/// until then a message that lands in one late is still found.
const MIN_GRACE: Duration = Duration::from_secs(60);

/// A running queue worker ([`Hydra::queue_worker`]). Cheap to clone; all
/// clones control the same worker. Dropping it does not stop the worker.
#[derive(Clone)]
pub struct QueueWorker {
    core: Arc<Core>,
}

/// Counters of one queue worker since it started (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueWorkerStats {
    /// Messages taken from the queue.
    pub taken: u64,
    /// Messages the handler returned `Ok` for and that were marked completed.
    pub completed: u64,
    /// Handler calls that returned an error or panicked.
    pub failed: u64,
    /// Of `failed`, those that panicked.
    pub panicked: u64,
    /// Failed messages put back for another delivery.
    pub retried: u64,
    /// Messages moved to `mqincomplete`: out of deliveries, or not UMF.
    pub dead_lettered: u64,
    /// Verdicts that came too late: the message had already been put back
    /// because this worker was presumed dead (it may be processed again).
    pub lost: u64,
    /// Messages of dead consumers this worker put back in the queue.
    pub requeued: u64,
    /// Redis errors met (each followed by a pause and a retry).
    pub redis_errors: u64,
    /// Reaper passes this worker ran: keeper steps in which it held the
    /// queue's reaper lock and looked for the messages of dead consumers
    /// (whether or not it found any). The workers of one queue take turns,
    /// at most one pass per eighth of the visibility timeout in all, so a
    /// worker whose peers reap may count none for a while.
    pub reaper_passes: u64,
}

#[derive(Default)]
struct Counters {
    taken: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    lost: AtomicU64,
    requeued: AtomicU64,
    redis_errors: AtomicU64,
    reaper_passes: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Core {
    keys: QueueKeys,
    consumer_id: String,
    options: QueueOptions,
    store: Arc<Store>,
    command_timeout: Duration,
    /// `signatureSecret`: messages without a valid signature are buried unrun.
    signing: Option<Signing>,
    handler: Box<QueueHandler>,
    slots: Vec<Slot>,
    /// Per slot: its thread has returned (its lease is no longer renewed).
    exited: Vec<AtomicBool>,
    /// Per slot: the Redis client ID of its connection, for `CLIENT UNBLOCK`.
    client_ids: Mutex<Vec<Option<i64>>>,
    stopping: AtomicBool,
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    threads: Mutex<Vec<OwnedThread>>,
    keeper: Mutex<Option<OwnedThread>>,
    kept_once: AtomicBool,
    counters: Counters,
}

/// What to write after a handler ran.
enum Verdict {
    Complete {
        raw: Vec<u8>,
        mid: String,
    },
    /// Handler failed: retry, or dead-letter at the limit.
    Fail {
        raw: Vec<u8>,
        mid: String,
        reason: String,
        dead_letter: Vec<u8>,
    },
    /// Dead-letter now, without running the handler.
    Bury {
        raw: Vec<u8>,
        reason: String,
        dead_letter: Vec<u8>,
    },
}

pub(super) fn start(
    hydra: &Hydra,
    service: &str,
    concurrency: usize,
    options: QueueOptions,
    handler: Box<QueueHandler>,
) -> Result<QueueWorker> {
    if service.is_empty() || service.contains([':', '*', '?', '[', ']']) {
        return Err(Error::BadRequest(format!("{service:?} is not a queue name")));
    }
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(Error::BadRequest(format!(
            "queue worker concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}"
        )));
    }
    if options.visibility_timeout < MIN_VISIBILITY_TIMEOUT {
        return Err(Error::BadRequest(format!(
            "visibility timeout must be at least {MIN_VISIBILITY_TIMEOUT:?}, not {:?}",
            options.visibility_timeout
        )));
    }
    if options.max_deliveries == 0 {
        return Err(Error::BadRequest("max_deliveries must be at least 1".into()));
    }
    let keys = QueueKeys::new(service);
    let consumer_id = uuid::Uuid::new_v4().simple().to_string();
    let slots: Vec<Slot> = (0..concurrency)
        .map(|n| Slot::new(&keys, format!("{consumer_id}-{n}")))
        .collect();
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let core = Arc::new(Core {
        keys,
        consumer_id,
        options,
        store: hydra.store().clone(),
        command_timeout: hydra.config().command_timeout(),
        signing: hydra.config().signing.clone(),
        handler,
        exited: (0..concurrency).map(|_| AtomicBool::new(false)).collect(),
        client_ids: Mutex::new(vec![None; concurrency]),
        slots,
        stopping: AtomicBool::new(false),
        stop_tx: Mutex::new(Some(stop_tx)),
        stop_rx,
        threads: Mutex::new(Vec::new()),
        keeper: Mutex::new(None),
        kept_once: AtomicBool::new(false),
        counters: Counters::default(),
    });
    // Register the slots (and bring back what dead consumers left) before
    // taking anything; an unreachable Redis fails the call.
    core.keep_once()?;
    if let Err(e) = core.spawn_threads() {
        core.stop();
        return Err(Error::InvalidState(format!("cannot start queue worker threads: {e}")));
    }
    hydra.add_task(Box::new(WorkerTask(core.clone())))?;
    log::info!(
        "queue {}: worker {} started with {concurrency} thread(s), visibility timeout {:?}, {} deliveries at most",
        core.keys.service,
        core.consumer_id,
        core.options.visibility_timeout,
        core.options.max_deliveries
    );
    Ok(QueueWorker { core })
}

impl QueueWorker {
    /// Stops taking messages, lets running handlers finish (up to 5 s in
    /// all), records their verdicts, and gives back anything still held.
    /// Idempotent; also done by the owning `Hydra`'s `shutdown`.
    pub fn stop(&self) {
        self.core.stop();
    }

    /// Counters since the worker started.
    pub fn stats(&self) -> QueueWorkerStats {
        let c = &self.core.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Read first: the other counters are then at least as new as the passes.
        let reaper_passes = c.reaper_passes.load(Ordering::Acquire);
        QueueWorkerStats {
            taken: get(&c.taken),
            completed: get(&c.completed),
            failed: get(&c.failed),
            panicked: get(&c.panicked),
            retried: get(&c.retried),
            dead_lettered: get(&c.dead_lettered),
            lost: get(&c.lost),
            requeued: get(&c.requeued),
            redis_errors: get(&c.redis_errors),
            reaper_passes,
        }
    }

    /// The service whose queue it works.
    pub fn service(&self) -> &str {
        &self.core.keys.service
    }

    /// This worker's consumer ID (32 hex characters); its slots in
    /// `mqconsumers` are `<id>-<n>`.
    pub fn consumer_id(&self) -> &str {
        &self.core.consumer_id
    }

    /// The settings it runs with.
    pub fn options(&self) -> QueueOptions {
        self.core.options
    }
}

impl std::fmt::Debug for QueueWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWorker")
            .field("service", &self.core.keys.service)
            .field("consumer_id", &self.core.consumer_id)
            .field("threads", &self.core.slots.len())
            .field("options", &self.core.options)
            .finish()
    }
}

/// The worker as a `Hydra` background task, stopped by `shutdown`.
struct WorkerTask(Arc<Core>);

impl BackgroundTask for WorkerTask {
    fn stop(self: Box<Self>) {
        self.0.stop();
    }
}

thread_local! {
    /// On a worker thread: which worker (by its `Core`'s address) and slot it runs.
    static OWN_SLOT: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

impl Core {
    fn spawn_threads(self: &Arc<Self>) -> std::io::Result<()> {
        for index in 0..self.slots.len() {
            let core = self.clone();
            let thread = OwnedThread::spawn(&format!("hydra-queue-{index}"), move || {
                // Marked even if the loop panics: the keeper stops renewing
                // the slot's lease, so what it holds goes to other consumers.
                let _exit = ExitMark(&core.exited[index]);
                OWN_SLOT.with(|own| own.set(Some((Arc::as_ptr(&core) as usize, index))));
                core.run_slot(index);
            })?;
            self.threads.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
        }
        let core = self.clone();
        let keeper = OwnedThread::spawn("hydra-queue-keeper", move || core.run_keeper())?;
        *self.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(keeper);
        Ok(())
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits `pause`; true when a stop was requested (at once, or meanwhile).
    fn wait_stop(&self, pause: Duration) -> bool {
        matches!(self.stop_rx.recv_timeout(pause), Err(RecvTimeoutError::Disconnected)) || self.is_stopping()
    }

    /// [`wait_stop`](Core::wait_stop), cut short when the sentinels name a
    /// new master: a slot retries there at once instead of after its backoff.
    fn wait_stop_or_switch(&self, pause: Duration, switches: &Receiver<()>) -> bool {
        select! {
            recv(self.stop_rx) -> message => message.is_err() || self.is_stopping(),
            recv(switches) -> _ => self.is_stopping(),
            default(pause) => self.is_stopping(),
        }
    }

    fn timing(&self) -> Keeping {
        let lease = self.options.visibility_timeout;
        Keeping {
            lease,
            reap_interval: self.tick(),
            grace: (lease * 10).max(MIN_GRACE),
        }
    }

    /// Keeper period: an eighth of the visibility timeout, so a lease is
    /// renewed seven times before it could run out (a slow Redis or a busy
    /// machine does not cost a live worker its messages), and the messages
    /// of a dead one come back within an eighth of the timeout after its
    /// lease ran out.
    fn tick(&self) -> Duration {
        self.options.visibility_timeout / 8
    }

    fn run_keeper(&self) {
        let mut trouble = Trouble::new(format!("queue {} keeper", self.keys.service));
        while !self.wait_stop(self.tick()) {
            match self.keep_once() {
                Ok(()) => trouble.ok(),
                Err(e) => {
                    bump(&self.counters.redis_errors);
                    trouble.failed(&e);
                }
            }
        }
    }

    fn keep_once(&self) -> Result<()> {
        let live: Vec<&Slot> = self
            .slots
            .iter()
            .zip(&self.exited)
            .filter(|(_, exited)| !exited.load(Ordering::SeqCst))
            .map(|(slot, _)| slot)
            .collect();
        let timing = self.timing();
        let kept = self
            .store
            .run(|c| claims::keep(c, &self.keys, &live, timing, &self.consumer_id))?;
        let first = !self.kept_once.swap(true, Ordering::SeqCst);
        if kept.registered > 0 && !first {
            log::warn!(
                "queue {}: worker {} had lost its registration (presumed dead, or Redis lost its data); \
                 messages it held may be processed again",
                self.keys.service,
                self.consumer_id
            );
        }
        if let Some(n) = kept.requeued.filter(|n| *n > 0) {
            self.counters.requeued.fetch_add(n, Ordering::Relaxed);
            log::info!(
                "queue {}: put back {n} message(s) held by consumers that stopped renewing their leases",
                self.keys.service
            );
        }
        // Counted after `requeued`: whoever sees a pass also sees what it put back.
        if kept.requeued.is_some() {
            self.counters.reaper_passes.fetch_add(1, Ordering::Release);
        }
        if kept.pruned > 0 {
            log::debug!(
                "queue {}: forgot {} delivery count(s) of messages no longer queued",
                self.keys.service,
                kept.pruned
            );
        }
        Ok(())
    }

    /// A dedicated connection for slot `index`: reads may wait out a blocking
    /// take; its client ID is noted so that a stop can interrupt the wait.
    fn connect(&self, index: usize) -> Result<Connection> {
        let mut conn = self.store.open()?;
        conn.set_read_timeout(Some(self.command_timeout + BLOCK))?;
        let id: Option<i64> = redis::cmd("CLIENT").arg("ID").query(&mut conn).ok();
        self.client_ids.lock().unwrap_or_else(|p| p.into_inner())[index] = id;
        Ok(conn)
    }

    fn run_slot(&self, index: usize) {
        let slot = &self.slots[index];
        let mut trouble = Trouble::new(format!("queue {} worker thread {index}", self.keys.service));
        let mut conn: Option<Connection> = None;
        let mut verdict: Option<Verdict> = None;
        // Set when writing a verdict failed: the write may have happened
        // (only its reply lost), so finding the message gone is no news then.
        let mut rewriting = false;
        // Set when a take failed: it may have moved a message into the slot's
        // lists without telling us; such orphans are given back first.
        let mut dirty = false;
        let switches = self.store.master_switches().unwrap_or_else(never);
        // The master epoch `conn` was opened at: with Sentinel, a connection
        // that outlived a switch leads to the old master and is replaced.
        let mut conn_epoch = self.store.master_epoch();
        loop {
            let stopping = self.is_stopping();
            if stopping && verdict.is_none() {
                break;
            }
            if conn.is_some() && self.store.master_epoch() != conn_epoch {
                conn = None;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.connect(index) {
                    Ok(c) => {
                        conn_epoch = self.store.master_epoch();
                        conn.insert(c)
                    }
                    Err(e) => {
                        bump(&self.counters.redis_errors);
                        let pause = trouble.failed(&e);
                        if stopping || self.wait_stop_or_switch(pause, &switches) {
                            break;
                        }
                        continue;
                    }
                },
            };
            let step = self.step(c, slot, &mut verdict, rewriting, &mut dirty);
            match step {
                Ok(()) => {
                    rewriting = false;
                    trouble.ok();
                }
                Err(e) => {
                    bump(&self.counters.redis_errors);
                    rewriting = verdict.is_some();
                    conn = None;
                    // Says what happened: out of memory, an ACL denial, a dead connection.
                    let pause = trouble.failed(&describe_redis_error(&e));
                    if stopping || self.wait_stop_or_switch(pause, &switches) {
                        // One more try for a pending verdict, then give up:
                        // the message is requeued once the lease runs out.
                        if !stopping && verdict.is_some() {
                            continue;
                        }
                        break;
                    }
                }
            }
        }
        if verdict.is_some() {
            log::warn!(
                "queue {}: stopped before the verdict on a message could be written; \
                 it goes back to the queue when the lease runs out",
                self.keys.service
            );
        }
    }

    /// Writes a pending verdict, gives back orphans, then takes and handles
    /// one message (its verdict left pending for the next step). A completion
    /// and the next take share one round trip when they can.
    fn step(
        &self,
        c: &mut Connection,
        slot: &Slot,
        verdict: &mut Option<Verdict>,
        rewriting: bool,
        dirty: &mut bool,
    ) -> redis::RedisResult<()> {
        let lease = self.options.visibility_timeout;
        let mut taken: Option<Option<Taken>> = None; // Some: a take was tried
        if let Some(v) = verdict.as_ref() {
            match v {
                Verdict::Complete { raw, mid } if !*dirty && !self.is_stopping() => {
                    // Whatever its outcome, the take part may have moved a
                    // message: a failure leaves the slot dirty.
                    let (held, next) =
                        claims::complete_and_take(c, &self.keys, slot, raw, lease).inspect_err(|_| *dirty = true)?;
                    self.note_completed(held, mid, rewriting);
                    taken = Some(next);
                }
                _ => self.record(c, slot, v, rewriting)?,
            }
            *verdict = None;
        }
        if self.is_stopping() {
            // A message taken with the last completion goes back at once.
            if matches!(taken, Some(Some(_))) {
                *dirty = true;
            }
            if *dirty {
                claims::release(c, &self.keys, &[slot], false)?;
                *dirty = false;
            }
            return Ok(());
        }
        if *dirty {
            let n = claims::release(c, &self.keys, &[slot], false)?;
            *dirty = false;
            if n > 0 {
                log::info!(
                    "queue {}: gave back {n} message(s) a failed take had left with this worker",
                    self.keys.service
                );
            }
        }
        let taken = match taken {
            Some(Some(taken)) => Some(taken),
            Some(None) => claims::take_blocking(c, &self.keys, slot, lease, BLOCK).inspect_err(|_| *dirty = true)?,
            None => match claims::take(c, &self.keys, slot, lease) {
                Ok(Some(taken)) => Ok(Some(taken)),
                Ok(None) if self.is_stopping() => Ok(None),
                Ok(None) => claims::take_blocking(c, &self.keys, slot, lease, BLOCK),
                Err(e) => Err(e),
            }
            .inspect_err(|_| *dirty = true)?,
        };
        if let Some(taken) = taken {
            bump(&self.counters.taken);
            *verdict = Some(self.handle(taken));
        }
        Ok(())
    }

    fn note_completed(&self, held: bool, mid: &str, rewriting: bool) {
        if held {
            bump(&self.counters.completed);
        } else if rewriting {
            log::debug!(
                "queue {}: completion of {mid} was already written (its reply had been lost)",
                self.keys.service
            );
        } else {
            self.note_lost(mid);
        }
    }

    /// Runs the handler on a message and decides what to write.
    fn handle(&self, taken: Taken) -> Verdict {
        let Taken { raw, failures } = taken;
        let (text, message) = match decode(&raw, self.signing.as_ref()) {
            Ok(decoded) => decoded,
            Err(reason) => {
                let reason = format!("not deliverable: {reason}");
                return Verdict::Bury {
                    dead_letter: with_reason(&raw, &reason),
                    raw,
                    reason,
                };
            }
        };
        if failures >= self.options.max_deliveries {
            let reason = format!(
                "delivered {failures} times without being completed (its consumers died or were cut off from Redis)"
            );
            return Verdict::Bury {
                dead_letter: with_reason(&raw, &reason),
                raw,
                reason,
            };
        }
        let mid = message.mid.clone();
        let queued = QueuedMessage {
            message,
            raw: text,
            queue: self.keys.service.clone(),
            delivery_count: failures + 1,
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.handler)(&queued)));
        let reason = match outcome {
            Ok(Ok(())) => return Verdict::Complete { raw, mid },
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                bump(&self.counters.panicked);
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_string());
                format!("handler panicked: {text}")
            }
        };
        bump(&self.counters.failed);
        Verdict::Fail {
            dead_letter: with_reason(&raw, &reason),
            raw,
            mid,
            reason,
        }
    }

    /// Writes a verdict. `rewriting`: an earlier attempt failed, and may have
    /// been applied with only its reply lost.
    fn record(
        &self,
        c: &mut dyn ConnectionLike,
        slot: &Slot,
        verdict: &Verdict,
        rewriting: bool,
    ) -> redis::RedisResult<()> {
        let service = &self.keys.service;
        let max = self.options.max_deliveries;
        let note_lost = |mid: &str| {
            if rewriting {
                log::debug!("queue {service}: verdict on {mid} was already written (its reply had been lost)");
            } else {
                self.note_lost(mid);
            }
        };
        match verdict {
            Verdict::Complete { raw, mid } => {
                let held = claims::complete(c, &self.keys, slot, raw)?;
                self.note_completed(held, mid, rewriting);
            }
            Verdict::Fail {
                raw,
                mid,
                reason,
                dead_letter,
            } => match claims::fail(c, &self.keys, slot, raw, max, dead_letter)? {
                Failed::Retry(n) => {
                    bump(&self.counters.retried);
                    log::warn!("queue {service}: message {mid} failed (delivery {n} of {max}), will retry: {reason}");
                }
                Failed::Dead(n) => {
                    bump(&self.counters.dead_lettered);
                    log::warn!("queue {service}: message {mid} failed {n} times, moved to mqincomplete: {reason}");
                }
                Failed::Lost => note_lost(mid),
            },
            Verdict::Bury {
                raw,
                reason,
                dead_letter,
            } => match claims::fail(c, &self.keys, slot, raw, 0, dead_letter)? {
                Failed::Lost => note_lost("(unreadable)"),
                _ => {
                    bump(&self.counters.dead_lettered);
                    log::warn!("queue {service}: moved a message to mqincomplete: {reason}");
                }
            },
        }
        Ok(())
    }

    fn note_lost(&self, mid: &str) {
        bump(&self.counters.lost);
        log::warn!(
            "queue {}: message {mid} had already been put back (this worker was presumed dead); \
             it may be processed again",
            self.keys.service
        );
    }

    fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        drop(self.stop_tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let own = OWN_SLOT
            .with(|slot| slot.get())
            .filter(|(core, _)| *core == self as *const Core as usize)
            .map(|(_, index)| index);
        // End blocking takes at once (as a timeout would). A thread may be
        // just about to block when the first unblock comes, so repeat for the
        // threads still running, until they are done or the deadline passes.
        let deadline = Instant::now() + JOIN_DEADLINE;
        loop {
            let running: Vec<i64> = {
                let ids = self.client_ids.lock().unwrap_or_else(|p| p.into_inner());
                ids.iter()
                    .zip(&self.exited)
                    .enumerate()
                    // The calling thread's own slot (a handler stopping its
                    // worker) finishes after this returns: don't wait for it.
                    .filter(|(index, (_, exited))| Some(*index) != own && !exited.load(Ordering::SeqCst))
                    .filter_map(|(_, (id, _))| *id)
                    .collect()
            };
            if running.is_empty() || Instant::now() >= deadline {
                break;
            }
            for id in running {
                let _ = self
                    .store
                    .run(|c| redis::cmd("CLIENT").arg("UNBLOCK").arg(id).query::<i64>(c));
            }
            std::thread::sleep(UNBLOCK_REPEAT);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            thread.join(deadline.saturating_duration_since(Instant::now()));
        }
        if let Some(keeper) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            keeper.join(JOIN_DEADLINE);
        }
        let (done, stuck): (Vec<(&Slot, &AtomicBool)>, Vec<_>) = self
            .slots
            .iter()
            .zip(&self.exited)
            .partition(|(_, exited)| exited.load(Ordering::SeqCst));
        let done: Vec<&Slot> = done.into_iter().map(|(slot, _)| slot).collect();
        match self.store.run(|c| claims::release(c, &self.keys, &done, true)) {
            Ok(0) => {}
            Ok(n) => log::info!("queue {}: gave back {n} message(s) on stop", self.keys.service),
            Err(e) => log::warn!(
                "queue {}: could not release worker {} on stop ({e}); its messages go back to the queue \
                 when its leases run out",
                self.keys.service,
                self.consumer_id
            ),
        }
        if !stuck.is_empty() {
            log::warn!(
                "queue {}: {} handler(s) of worker {} still running after {JOIN_DEADLINE:?}; their messages \
                 go back to the queue when their leases run out",
                self.keys.service,
                stuck.len(),
                self.consumer_id
            );
        }
        log::info!("queue {}: worker {} stopped", self.keys.service, self.consumer_id);
    }
}

/// Sets its flag when dropped (a thread's body returned or unwound).
struct ExitMark<'a>(&'a AtomicBool);

impl Drop for ExitMark<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Log-once-per-episode error reporting with a growing pause.
struct Trouble {
    what: String,
    failing: bool,
    pause: Duration,
}

impl Trouble {
    fn new(what: String) -> Trouble {
        Trouble {
            what,
            failing: false,
            pause: Duration::ZERO,
        }
    }

    /// Notes an error; returns how long to pause before retrying.
    fn failed(&mut self, e: &dyn Display) -> Duration {
        if self.failing {
            log::debug!("{}: {e}", self.what);
        } else {
            log::warn!("{}: {e}; retrying", self.what);
        }
        self.failing = true;
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        self.pause
    }

    fn ok(&mut self) {
        if self.failing {
            log::info!("{}: working again", self.what);
        }
        self.failing = false;
        self.pause = Duration::ZERO;
    }
}
