//! The pub/sub listener: one Redis subscription (the service channel and the
//! instance channel) read by a leader/follower group of threads that also run
//! the message handlers (`hydra-msg-N`).
//!
//! Why leader/follower: with a dedicated reader thread, every message crosses
//! to a worker, and waking that worker sits on the critical path of every
//! request–reply (about a tenth of a local round trip). Here the thread that
//! read a message runs its handler itself, and an idle thread takes over
//! reading: its wake-up overlaps the handler instead of delaying it.
//!
//! The reader only keeps a message for itself when another thread is idle to
//! take over, so the subscription is always being read: a slow handler, or one
//! that calls `request` and waits for a reply, cannot stall it. When every
//! thread is busy, messages wait in a queue that busy threads drain as they
//! finish. The queue is bounded by memory (payload bytes plus a fixed
//! overhead each, [`QueueLimits`]), not by a small count, so a burst waits
//! instead of being dropped.
//!
//! When the budget is reached (or the pull receiver is full), the reader stops
//! reading: the messages wait in the socket and in Redis's output buffer for
//! this client, which holds far more than a count-bounded queue would. It
//! reads on as soon as the busy threads have made room. Only when no room has
//! come for [`MAX_PAUSE`] does it read on anyway, dropping (and counting) what
//! does not fit: a subscriber that never reads is disconnected by Redis when
//! its output buffer overflows (`client-output-buffer-limit pubsub`, 32 MiB
//! hard, 8 MiB for 60 s by default), which would lose everything in flight,
//! and replies that unblock handlers waiting in `request` arrive on the same
//! subscription.
//!
//! The reader reads with a short timeout so it notices a stop request, and
//! after a quiet spell it sends `PING`: a half-open socket then shows up as a
//! missing pong instead of silence forever. On any failure it reconnects and
//! resubscribes with capped exponential backoff, logging once when the link is
//! lost and once when it is back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::pool::Job;
use crate::store::Store;
use crate::subscription::{Incoming, Subscription};
use crate::threads::OwnedThread;

/// How long one read may block; bounds how late a stop request is noticed.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Quiet time after which the reader checks the link with `PING`.
const PING_AFTER: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long `stop` waits for the reader to close its connection.
const STOP_DEADLINE: Duration = Duration::from_secs(3);
/// Longest the reader stops reading while the waiting messages are over their
/// budget; then it reads on and drops what does not fit.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often a paused reader looks again (handler threads also wake it when
/// they take a job; the pull receiver cannot).
const PAUSE_POLL: Duration = Duration::from_millis(5);
/// Bookkeeping counted for every waiting message besides its payload (the
/// parsed message, the job, the queue slot).
pub(crate) const QUEUED_MESSAGE_OVERHEAD: usize = 512;

/// Bounds of the messages waiting for a free thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    /// At most this many messages wait.
    pub max_messages: usize,
    /// At most this many bytes (payloads plus [`QUEUED_MESSAGE_OVERHEAD`] each) wait.
    pub max_bytes: usize,
}

/// What the listener reports to (the messaging runtime).
pub(crate) trait Subscriber: Send + Sync + 'static {
    /// A payload arrived on `channel`: deal with it now and return `None`, or
    /// return the job that handles it (run on this group, maybe inline).
    fn on_message(&self, channel: &str, payload: &[u8]) -> Option<Job>;
    /// Every thread was busy and the queue full: `job` is dropped.
    fn on_overflow(&self, job: Job);
    /// A message on `channel` whose payload (`bytes` long) is over
    /// [`max_payload`](Subscriber::max_payload) was skipped unread.
    fn on_oversized(&self, channel: &str, bytes: usize);
    /// Payloads longer than this are skipped as they stream in, never read
    /// into memory.
    fn max_payload(&self) -> usize {
        usize::MAX
    }
    /// Whether messages wait elsewhere beyond their budget (the pull
    /// receiver): the reader then stops reading, as for a full queue.
    fn is_saturated(&self) -> bool {
        false
    }
}

/// The thread group and its subscription. Threads start on demand and live
/// until [`close`](Listener::close); listening can start and stop in between.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    threads: Mutex<Vec<OwnedThread>>,
}

struct Shared {
    state: Mutex<GroupState>,
    /// Members wait here for a job or for the baton.
    work: Condvar,
    /// `stop` and `wait_subscribed` wait here.
    events: Condvar,
    /// A reader paused for room in the queue waits here.
    room: Condvar,
    /// Times the reader paused because the waiting messages were over budget.
    pauses: AtomicU64,
    /// Whether the queue is at its budget, kept with every push and pop so the
    /// reader checks it before each read without taking the lock.
    queue_full: AtomicBool,
    /// Bumped by every `start` and `stop`: a baton of an older generation is
    /// dropped by whoever holds it.
    generation: AtomicU64,
    limits: QueueLimits,
}

#[derive(Default)]
struct GroupState {
    /// The right (and the means) to read the subscription, while it waits for
    /// a member to pick it up. `None` while a member holds it.
    baton: Option<Box<Baton>>,
    /// Batons alive anywhere (normally 0 or 1; briefly 2 after a restart).
    readers: usize,
    /// Jobs waiting for a free member, with the bytes they count for.
    jobs: VecDeque<(Job, usize)>,
    /// Sum of the bytes of `jobs`.
    queued_bytes: usize,
    /// A reader waits on `room`: members taking a job wake it.
    reader_paused: bool,
    /// Members waiting on `work`, i.e. ready to take the baton.
    idle: usize,
    /// Subscriptions established so far (for `wait_subscribed`).
    subscriptions: u64,
    /// Why Redis refused the current generation's subscription (ACL), if it did.
    refused: Option<String>,
    closing: bool,
}

thread_local! {
    /// Set while this thread holds the baton: `stop` called here (a dropped
    /// last handle) must not wait for itself.
    static READING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whoever holds this reads the subscription (boxed: it moves between
/// threads with every message).
struct Baton {
    generation: u64,
    source: Arc<Source>,
    link: Option<Subscription>,
    /// The store's master epoch when `link` was opened: with Sentinel, a
    /// link that outlived a switch is on the old master and is replaced.
    link_epoch: u64,
    last_heard: Instant,
    backoff: Duration,
    lost_since: Option<Instant>,
    /// Since when the waiting messages have been over budget, while they are.
    over_budget_since: Option<Instant>,
}

/// How [`Listener::wait_subscribed`] ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Subscribed {
    Yes,
    /// Redis denied the subscription (ACL); its message.
    Refused(String),
    TimedOut,
}

/// What the reader does after a message that needs a handler.
enum HandOver {
    /// Another member reads on; run the handler here.
    RunHere(Job),
    /// Nobody could take over (the job was queued or dropped): read on.
    KeepReading(Box<Baton>),
}

/// Where to read from and whom to tell.
struct Source {
    store: Arc<Store>,
    channels: Vec<String>,
    subscriber: Arc<dyn Subscriber>,
}

impl Listener {
    /// A group with no threads yet; `limits` bound the jobs waiting for a free
    /// thread.
    pub(crate) fn new(limits: QueueLimits) -> Listener {
        Listener {
            shared: Arc::new(Shared {
                state: Mutex::new(GroupState::default()),
                work: Condvar::new(),
                events: Condvar::new(),
                room: Condvar::new(),
                pauses: AtomicU64::new(0),
                queue_full: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                limits: QueueLimits {
                    max_messages: limits.max_messages.max(1),
                    max_bytes: limits.max_bytes.max(1),
                },
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Grows the group to `total` threads (it never shrinks before `close`).
    pub(crate) fn ensure_threads(&self, total: usize) -> std::io::Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.lock().closing {
            return Err(std::io::Error::other("the message threads are shut down"));
        }
        while threads.len() < total {
            let shared = self.shared.clone();
            let name = format!("hydra-msg-{}", threads.len());
            threads.push(OwnedThread::spawn(&name, move || shared.member())?);
        }
        Ok(())
    }

    /// Starts reading `channels` (replacing any previous subscription) and
    /// reporting to `subscriber`. Needs at least one thread.
    pub(crate) fn start(&self, store: Arc<Store>, channels: Vec<String>, subscriber: Arc<dyn Subscriber>) {
        let source = Arc::new(Source {
            store,
            channels,
            subscriber,
        });
        let mut state = self.shared.lock();
        let generation = self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        state.refused = None;
        if state.baton.take().is_some() {
            state.readers -= 1;
        }
        state.baton = Some(Box::new(Baton {
            generation,
            source,
            link: None,
            link_epoch: 0,
            last_heard: Instant::now(),
            backoff: FIRST_BACKOFF,
            lost_since: None,
            over_budget_since: None,
        }));
        state.readers += 1;
        self.shared.work.notify_one();
    }

    /// Waits until a subscription beyond the first `after` exists, at most
    /// `timeout`; ends at once when Redis refuses it (ACL).
    pub(crate) fn wait_subscribed(&self, after: u64, timeout: Duration) -> Subscribed {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .events
            .wait_timeout_while(state, timeout, |s| s.subscriptions <= after && s.refused.is_none())
            .unwrap_or_else(|p| p.into_inner());
        if state.subscriptions > after {
            Subscribed::Yes
        } else if let Some(why) = &state.refused {
            Subscribed::Refused(why.clone())
        } else {
            Subscribed::TimedOut
        }
    }

    /// Subscriptions established so far.
    pub(crate) fn subscriptions(&self) -> u64 {
        self.shared.lock().subscriptions
    }

    /// Times the reader stopped reading because the waiting messages were
    /// over their budget.
    pub(crate) fn read_pauses(&self) -> u64 {
        self.shared.pauses.load(Ordering::Relaxed)
    }

    /// Waits until `followers` members wait idle for work or the baton, at most `timeout`.
    #[cfg(test)]
    fn wait_idle(&self, followers: usize, timeout: Duration) -> bool {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .events
            .wait_timeout_while(state, timeout, |s| s.idle < followers)
            .unwrap_or_else(|p| p.into_inner());
        state.idle >= followers
    }

    /// Stops reading: the reader closes its connection within the read
    /// timeout; waits for that (bounded). Handlers already running go on.
    pub(crate) fn stop(&self) {
        let mut state = self.shared.lock();
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if state.baton.take().is_some() {
            state.readers -= 1;
        }
        self.shared.room.notify_all();
        if READING.get() {
            return; // this thread is the reader: it stops when it reads on
        }
        let (state, waited) = self
            .shared
            .events
            .wait_timeout_while(state, STOP_DEADLINE, |s| s.readers > 0)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() {
            log::warn!(
                "the pub/sub reader did not stop within {STOP_DEADLINE:?} ({} still reading)",
                state.readers
            );
        }
    }

    /// Stops reading, lets queued jobs finish and joins every thread, waiting
    /// at most `deadline` in all.
    pub(crate) fn close(&self, deadline: Duration) {
        self.stop();
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let until = Instant::now() + deadline;
        for thread in threads {
            thread.join(until.saturating_duration_since(Instant::now()));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loop of every thread: run queued jobs first, else read, else wait.
    fn member(&self) {
        let mut state = self.lock();
        loop {
            if let Some((job, bytes)) = state.jobs.pop_front() {
                state.queued_bytes -= bytes;
                self.note_queue_level(&state);
                if state.reader_paused {
                    self.room.notify_one();
                }
                drop(state);
                run(job);
            } else if let Some(baton) = state.baton.take() {
                drop(state);
                READING.set(true);
                let job = self.lead(baton);
                READING.set(false);
                if let Some(job) = job {
                    run(job);
                }
            } else if state.closing {
                return;
            } else {
                state.idle += 1;
                // Tests wait for idle followers (an event, not a guess).
                #[cfg(test)]
                self.events.notify_all();
                state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle -= 1;
                continue;
            }
            state = self.lock();
        }
    }

    /// Reads until a message needs a handler and another member can take over
    /// reading (returns that handler's job), or until listening stops.
    fn lead(&self, mut baton: Box<Baton>) -> Option<Job> {
        loop {
            if self.generation.load(Ordering::SeqCst) != baton.generation {
                self.retire(baton);
                return None;
            }
            if !self.wait_for_room(&mut baton) {
                continue; // stopped while paused
            }
            match self.read_one(&mut baton) {
                Ok(Some((job, bytes))) => match self.hand_over(baton, job, bytes) {
                    HandOver::RunHere(job) => return Some(job),
                    HandOver::KeepReading(kept) => baton = kept,
                },
                Ok(None) => {}
                Err(e) => {
                    baton.link = None;
                    self.note_lost(&mut baton, &e);
                }
            }
        }
    }

    /// Drops a baton of an older generation (`stop` or a newer `start` made it
    /// stale): one reader less.
    fn retire(&self, baton: Box<Baton>) {
        drop(baton);
        self.lock().readers -= 1;
        self.events.notify_all();
    }

    /// Whether the queue is at its budget (see [`over_budget`](Shared::over_budget)).
    fn queue_at_budget(&self, state: &GroupState) -> bool {
        state.jobs.len() >= self.limits.max_messages || state.queued_bytes >= self.limits.max_bytes
    }

    /// Keeps `queue_full` in step with the queue (called under the lock).
    fn note_queue_level(&self, state: &GroupState) {
        self.queue_full.store(self.queue_at_budget(state), Ordering::Relaxed);
    }

    /// Whether the waiting messages are at their budget.
    fn over_budget(&self, state: &GroupState, source: &Source) -> bool {
        self.queue_at_budget(state) || source.subscriber.is_saturated()
    }

    /// Backpressure: while the waiting messages are over budget, does not
    /// read (Redis buffers meanwhile), for at most [`MAX_PAUSE`] in a row;
    /// after that reads on (what does not fit is dropped) until room comes.
    /// Returns `false` when listening stopped meanwhile.
    fn wait_for_room(&self, baton: &mut Baton) -> bool {
        // The common case, without the lock: room, and no pause going on.
        if baton.over_budget_since.is_none()
            && !self.queue_full.load(Ordering::Relaxed)
            && !baton.source.subscriber.is_saturated()
        {
            return true;
        }
        let mut state = self.lock();
        if !self.over_budget(&state, &baton.source) {
            baton.over_budget_since = None;
            return true;
        }
        let since = match baton.over_budget_since {
            Some(since) => since,
            None => {
                self.pauses.fetch_add(1, Ordering::Relaxed);
                *baton.over_budget_since.insert(Instant::now())
            }
        };
        let until = since + MAX_PAUSE;
        loop {
            let now = Instant::now();
            if self.generation.load(Ordering::SeqCst) != baton.generation {
                return false;
            }
            if !self.over_budget(&state, &baton.source) {
                baton.over_budget_since = None;
                return true;
            }
            if now >= until {
                return true; // read on; hand_over drops what does not fit
            }
            state.reader_paused = true;
            state = self
                .room
                .wait_timeout(state, PAUSE_POLL.min(until - now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.reader_paused = false;
        }
    }

    /// One step of reading: connects when needed, waits up to the read timeout
    /// for a message (pinging a quiet line) and returns its handler job, if
    /// any, with the bytes it counts for while it waits.
    fn read_one(&self, baton: &mut Baton) -> redis::RedisResult<Option<(Job, usize)>> {
        if baton.link.is_some() && baton.source.store.master_epoch() != baton.link_epoch {
            log::info!(
                "pub/sub listener: the sentinels name a new master; resubscribing to {} there",
                baton.source.channels.join(", ")
            );
            baton.link = None;
        }
        let Baton {
            link: Some(link),
            source,
            last_heard,
            ..
        } = baton
        else {
            self.connect(baton);
            return Ok(None);
        };
        match link.next_message(READ_TIMEOUT)? {
            Some(Incoming::Oversized { channel, bytes }) => {
                *last_heard = Instant::now();
                source.subscriber.on_oversized(&channel, bytes);
                Ok(None)
            }
            Some(Incoming::Message(message)) => {
                *last_heard = Instant::now();
                let (channel, payload) = (message.get_channel_name(), message.get_payload_bytes());
                // A panic here would take the baton down with this thread and
                // leave the subscription unread: drop the message instead.
                let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    source.subscriber.on_message(channel, payload)
                }));
                let bytes = payload.len() + QUEUED_MESSAGE_OVERHEAD;
                Ok(delivered
                    .unwrap_or_else(|_| {
                        log::error!("dispatching a message from {channel} panicked; the message is dropped");
                        None
                    })
                    .map(|job| (job, bytes)))
            }
            None if last_heard.elapsed() >= PING_AFTER => {
                link.ping(source.store.command_timeout())?;
                *last_heard = Instant::now();
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// With a member idle, passes it the baton and returns `job` to run here.
    /// Otherwise queues `job` (or drops it when the queue is over budget,
    /// which `wait_for_room` allows only after a long pause) and gives the
    /// baton back: the reader must go on reading.
    ///
    /// A baton made stale meanwhile (a `stop` that timed out, then a new
    /// `start`) is retired instead of handed over: it must not take the place
    /// of the current generation's baton, which may be waiting there for a
    /// member. Its message was read, so it still runs here.
    fn hand_over(&self, baton: Box<Baton>, job: Job, bytes: usize) -> HandOver {
        let mut state = self.lock();
        if self.generation.load(Ordering::SeqCst) != baton.generation {
            drop(state);
            self.retire(baton);
            return HandOver::RunHere(job);
        }
        if state.idle > 0 {
            state.baton = Some(baton);
            self.work.notify_one();
            return HandOver::RunHere(job);
        }
        if !self.queue_at_budget(&state) {
            state.jobs.push_back((job, bytes));
            state.queued_bytes += bytes;
            self.note_queue_level(&state);
        } else {
            drop(state);
            baton.source.subscriber.on_overflow(job);
        }
        HandOver::KeepReading(baton)
    }

    fn connect(&self, baton: &mut Baton) {
        let source = baton.source.clone();
        match source.store.subscribe(&source.channels) {
            Ok(mut link) => {
                link.set_max_payload(source.subscriber.max_payload());
                baton.link = Some(link);
                baton.link_epoch = source.store.master_epoch();
                baton.last_heard = Instant::now();
                baton.backoff = FIRST_BACKOFF;
                if let Some(since) = baton.lost_since.take() {
                    log::info!(
                        "pub/sub listener resubscribed to {} after {:.1}s",
                        source.channels.join(", "),
                        since.elapsed().as_secs_f64()
                    );
                }
                let mut state = self.lock();
                // A reader that lost a race with `stop` or a newer `start`
                // must not count as this subscription.
                if self.generation.load(Ordering::SeqCst) == baton.generation {
                    state.subscriptions += 1;
                    self.events.notify_all();
                }
            }
            Err(e) => {
                if e.code() == Some("NOPERM") {
                    let mut state = self.lock();
                    if self.generation.load(Ordering::SeqCst) == baton.generation {
                        state.refused = Some(e.to_string());
                        self.events.notify_all();
                    }
                }
                self.note_lost(baton, &e);
                self.sleep_unless_stopped(baton.backoff, baton.generation, &source.store);
                baton.backoff = (baton.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn note_lost(&self, baton: &mut Baton, error: &redis::RedisError) {
        if baton.lost_since.is_none() {
            log::warn!(
                "pub/sub listener lost Redis at {}: {}; reconnecting",
                baton.source.store.target(),
                crate::error::describe_redis_error(error)
            );
            baton.lost_since = Some(Instant::now());
        }
    }

    /// Sleeps out a backoff, cut short by a stop or by a new master named by
    /// the sentinels (resubscribing there at once).
    fn sleep_unless_stopped(&self, total: Duration, generation: u64, store: &Store) {
        let until = Instant::now() + total;
        let epoch = store.master_epoch();
        while self.generation.load(Ordering::SeqCst) == generation
            && store.master_epoch() == epoch
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(25).min(until.saturating_duration_since(Instant::now())));
        }
    }
}

/// Runs a job; jobs count their own panics, this only keeps the thread alive.
fn run(job: Job) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
        log::error!("a job panicked in a hydra message thread; the thread continues");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, Sender, unbounded};
    use hydra_testkit::RedisServer;

    const WAIT: Duration = Duration::from_secs(5);

    /// Records each payload with the thread that read it; with `handlers`,
    /// returns a job that records the thread it runs on and then waits for a
    /// release.
    struct Recorder {
        reads: Sender<(Vec<u8>, String)>,
        handlers: Option<(Sender<String>, Receiver<()>)>,
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("?").to_string()
    }

    impl Subscriber for Recorder {
        fn on_message(&self, _channel: &str, payload: &[u8]) -> Option<Job> {
            let _ = self.reads.send((payload.to_vec(), thread_name()));
            let (started, release) = self.handlers.clone()?;
            Some(Box::new(move || {
                let _ = started.send(thread_name());
                let _ = release.recv_timeout(WAIT);
            }))
        }
        fn on_overflow(&self, _job: Job) {}
        fn on_oversized(&self, _channel: &str, _bytes: usize) {}
    }

    fn store(server: &RedisServer) -> Arc<Store> {
        let config = crate::Config::builder()
            .service_name("listener-test")
            .redis_url(&server.url(0))
            .build()
            .unwrap();
        Arc::new(Store::new(config.redis(), Duration::from_secs(2), Duration::from_secs(2)).unwrap())
    }

    fn publish(server: &RedisServer, payload: &str) -> u64 {
        let mut conn = redis::Client::open(server.url(0)).unwrap().get_connection().unwrap();
        redis::cmd("PUBLISH").arg("ch").arg(payload).query(&mut conn).unwrap()
    }

    type Reads = Receiver<(Vec<u8>, String)>;

    fn recorder(handlers: Option<(Sender<String>, Receiver<()>)>) -> (Arc<Recorder>, Reads) {
        let (reads, reads_rx) = unbounded();
        (Arc::new(Recorder { reads, handlers }), reads_rx)
    }

    #[test]
    fn stops_and_starts_again_and_close_joins_every_thread() {
        let server = RedisServer::start();
        let store = store(&server);
        let listener = Listener::new(QueueLimits {
            max_messages: 16,
            max_bytes: 1 << 20,
        });
        listener.ensure_threads(1).unwrap();
        let (subscriber, reads) = recorder(None);

        listener.start(store.clone(), vec!["ch".into()], subscriber.clone());
        assert_eq!(listener.wait_subscribed(0, WAIT), Subscribed::Yes);
        assert_eq!(publish(&server, "one"), 1);
        assert_eq!(reads.recv_timeout(WAIT).unwrap().0, b"one");

        listener.stop();
        assert_eq!(publish(&server, "lost"), 0, "stop closes the subscription");

        listener.start(store, vec!["ch".into()], subscriber);
        assert_eq!(listener.wait_subscribed(1, WAIT), Subscribed::Yes);
        assert_eq!(listener.subscriptions(), 2);
        assert_eq!(publish(&server, "two"), 1, "exactly one reader after a restart");
        assert_eq!(reads.recv_timeout(WAIT).unwrap().0, b"two");

        let started = Instant::now();
        listener.close(WAIT);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "close took {:?}",
            started.elapsed()
        );
        assert_eq!(publish(&server, "after"), 0);
        assert!(listener.ensure_threads(2).is_err(), "a closed group does not grow");
    }

    #[test]
    fn a_handler_runs_where_its_message_was_read_while_another_thread_reads_on() {
        let server = RedisServer::start();
        let listener = Listener::new(QueueLimits {
            max_messages: 16,
            max_bytes: 1 << 20,
        });
        listener.ensure_threads(3).unwrap();
        let (started_tx, started) = unbounded();
        let (release, release_rx) = unbounded::<()>();
        let (subscriber, reads) = recorder(Some((started_tx, release_rx)));
        listener.start(store(&server), vec!["ch".into()], subscriber);
        assert_eq!(listener.wait_subscribed(0, WAIT), Subscribed::Yes);
        // The reader keeps a message only when another member is idle to take
        // over: wait until the two others are idle followers (they may still be
        // starting up), or the first message would be queued instead.
        assert!(listener.wait_idle(2, WAIT), "two idle followers");

        // Two messages, two blocked handlers, each on the thread that read it.
        let mut busy = Vec::new();
        for payload in ["1", "2"] {
            publish(&server, payload);
            let (read, reader) = reads.recv_timeout(WAIT).unwrap();
            assert_eq!(read, payload.as_bytes());
            assert!(!busy.contains(&reader), "{reader} read while running a handler");
            assert_eq!(started.recv_timeout(WAIT).unwrap(), reader, "handled where it was read");
            busy.push(reader);
        }
        // The last free thread reads the third but must not keep it: nobody
        // would be left reading. It waits for the first handler to finish.
        publish(&server, "3");
        let (_, reader) = reads.recv_timeout(WAIT).unwrap();
        assert!(!busy.contains(&reader), "{reader} read while running a handler");
        assert!(
            started.recv_timeout(Duration::from_millis(300)).is_err(),
            "a third handler started"
        );
        release.send(()).unwrap();
        let third = started.recv_timeout(WAIT).unwrap();
        assert!(busy.contains(&third), "queued work goes to a freed thread, not {third}");
        assert!(third.starts_with("hydra-msg-"), "{third}");
        for _ in 0..2 {
            release.send(()).unwrap();
        }
        listener.close(WAIT);
    }

    #[test]
    fn a_stale_reader_does_not_replace_the_current_baton() {
        let server = RedisServer::start();
        // No threads: batons stay where the test puts them.
        let listener = Listener::new(QueueLimits {
            max_messages: 16,
            max_bytes: 1 << 20,
        });
        let (subscriber, _reads) = recorder(None);
        listener.start(store(&server), vec!["ch".into()], subscriber.clone());
        // A reader of generation 1 holds its baton while a stop times out and
        // a new start puts generation 2's baton up for a follower.
        let stale = listener.shared.lock().baton.take().expect("generation 1's baton");
        listener.start(store(&server), vec!["ch".into()], subscriber);
        listener.shared.lock().idle = 1; // a follower is about to take it
        let ran = matches!(
            listener.shared.hand_over(stale, Box::new(|| {}), 0),
            HandOver::RunHere(_)
        );
        let mut state = listener.shared.lock();
        state.idle = 0;
        assert!(ran, "the message read by the stale reader still runs");
        let waiting = state.baton.as_ref().map(|b| b.generation);
        assert_eq!(waiting, Some(2), "the current baton is still up for a follower");
        assert_eq!(state.readers, 1, "the stale reader retired");
    }
}
