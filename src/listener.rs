//! The pub/sub listener thread (`hydra-listener`): one dedicated Redis
//! connection subscribed to the service channel and the instance channel.
//!
//! It reads with a short timeout so it can notice a stop request, and when the
//! line has been quiet for a while it sends `PING` (allowed while subscribed):
//! a half-open socket then shows up as a timeout instead of silence forever.
//! On any connection failure it reconnects and resubscribes with capped
//! exponential backoff, logging once when the link is lost and once when it is
//! back. Payloads go to `deliver` as bytes; parsing is the caller's job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::Store;
use crate::threads::OwnedThread;

/// How long one read may block; bounds how late a stop request is noticed.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Quiet time after which the listener checks the link with `PING`.
const PING_AFTER: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const JOIN_DEADLINE: Duration = Duration::from_secs(3);

/// Receives `(channel, payload)` of every message.
pub(crate) type Deliver = Box<dyn Fn(&str, &[u8]) + Send + 'static>;

/// A running listener.
pub(crate) struct Listener {
    stop: Arc<AtomicBool>,
    thread: OwnedThread,
}

impl Listener {
    /// Starts listening on `channels`. `subscribed` runs each time the
    /// subscription is (re-)established.
    pub(crate) fn spawn(
        store: Arc<Store>,
        channels: Vec<String>,
        deliver: Deliver,
        subscribed: Box<dyn Fn() + Send + 'static>,
    ) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = OwnedThread::spawn("hydra-listener", move || {
            run(&store, &channels, &deliver, &subscribed, &stop_flag);
        })?;
        Ok(Listener { stop, thread })
    }

    /// Stops and joins the thread (it notices within the read timeout).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join(JOIN_DEADLINE);
    }
}

fn run(store: &Store, channels: &[String], deliver: &Deliver, subscribed: &dyn Fn(), stop: &AtomicBool) {
    let mut backoff = FIRST_BACKOFF;
    let mut lost_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let outcome = store.open().map_err(redis_error).and_then(|mut conn| {
            serve(&mut conn, channels, deliver, stop, &mut || {
                if let Some(since) = lost_since.take() {
                    log::info!(
                        "pub/sub listener resubscribed to {} after {:.1}s",
                        channels.join(", "),
                        since.elapsed().as_secs_f64()
                    );
                }
                backoff = FIRST_BACKOFF;
                subscribed();
            })
        });
        match outcome {
            Ok(()) => return, // stopped
            Err(e) => {
                if lost_since.is_none() {
                    log::warn!("pub/sub listener lost Redis at {}: {e}; reconnecting", store.target());
                    lost_since = Some(Instant::now());
                }
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Subscribes, then reads until stopped (Ok) or the connection fails (Err).
fn serve(
    conn: &mut redis::Connection,
    channels: &[String],
    deliver: &Deliver,
    stop: &AtomicBool,
    on_subscribed: &mut dyn FnMut(),
) -> redis::RedisResult<()> {
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(channels)?;
    pubsub.set_read_timeout(Some(READ_TIMEOUT))?;
    on_subscribed();
    let mut last_heard = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match pubsub.get_message() {
            Ok(msg) => {
                last_heard = Instant::now();
                deliver(msg.get_channel_name(), msg.get_payload_bytes());
            }
            Err(e) if e.is_timeout() => {
                if last_heard.elapsed() >= PING_AFTER {
                    pubsub.ping::<redis::Value>()?;
                    last_heard = Instant::now();
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(25).min(until.saturating_duration_since(Instant::now())));
    }
}

fn redis_error(e: crate::Error) -> redis::RedisError {
    match e {
        crate::Error::Redis(e) => e,
        other => redis::RedisError::from(std::io::Error::other(other.to_string())),
    }
}
