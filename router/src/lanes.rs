//! Work handled in order per key, by a few threads: items pushed under one
//! key (one WebSocket client) are handled one at a time in the order pushed,
//! items of different keys in parallel.
//!
//! A key with items waiting is in the line for a worker once; a worker takes
//! ONE item of the key at the head of the line, handles it, and puts the key
//! back at the end of the line while it has more, so a key with a long
//! backlog (a client whose messages go to Redis because it is offline) takes
//! turns with the others and holds at most one worker. The same scheme as
//! the WebSocket dispatchers' (`ws::connections`), for the messages that
//! come from services.
//!
//! Bounded: at most `capacity` items wait in all; [`Lanes::push`] waits for
//! room (the caller reads the router's message channel, so the library stops
//! reading Redis meanwhile and Redis holds the rest).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a waiting thread looks at the stop flag again.
const RECHECK: Duration = Duration::from_millis(100);

struct State<T> {
    /// Keys with items waiting or being handled (an empty queue: its last
    /// item is being handled, the key is not in `line`).
    lanes: HashMap<String, VecDeque<T>>,
    /// Keys waiting for a worker, each at most once.
    line: VecDeque<String>,
    /// Items in all lanes (those being handled included).
    queued: usize,
    stopping: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when a key joins the line, and on stop.
    work: Condvar,
    /// Signalled when an item is done (room for a push), and on stop.
    room: Condvar,
    capacity: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every state of the queues is valid: go on after a panic elsewhere.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Worker threads handling pushed items in order per key.
pub struct Lanes<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Lanes<T> {
    /// Starts `workers` threads named `<name>-N` calling `handle`; at most
    /// `capacity` items wait.
    pub fn start(
        name: &str,
        workers: usize,
        capacity: usize,
        handle: impl Fn(T) + Send + Sync + 'static,
    ) -> std::io::Result<Lanes<T>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lanes: HashMap::new(),
                line: VecDeque::new(),
                queued: 0,
                stopping: false,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
        });
        let handle = Arc::new(handle);
        let mut lanes = Lanes {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for n in 0..workers.max(1) {
            let (shared, handle) = (shared.clone(), handle.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || work(&shared, &*handle));
            match spawned {
                Ok(thread) => lanes.threads.push(thread),
                Err(e) => {
                    lanes.stop();
                    return Err(e);
                }
            }
        }
        Ok(lanes)
    }

    /// Queues `item` behind the others of `key`; waits while `capacity`
    /// items are queued. After [`shutdown`](Lanes::shutdown) began, the item
    /// is dropped (returns false).
    pub fn push(&self, key: String, item: T) -> bool {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        while state.queued >= shared.capacity && !state.stopping {
            state = shared
                .room
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if state.stopping {
            return false;
        }
        state.queued += 1;
        match state.lanes.get_mut(&key) {
            // Waiting in the line or being handled: its worker requeues it.
            Some(lane) => lane.push_back(item),
            None => {
                state.lanes.insert(key.clone(), VecDeque::from([item]));
                state.line.push_back(key);
                shared.work.notify_one();
            }
        }
        true
    }

    /// Runs `now(item)` on the calling thread when nothing of `key` is
    /// queued or being handled, and queues what it gives back (or the item,
    /// when `key` is busy) as [`push`](Lanes::push) does: the cheap case
    /// costs no hand-over to a worker. Order holds against later items of
    /// `key` pushed by the same thread (the router has one pushing thread).
    pub fn run_or_push(&self, key: String, item: T, now: impl FnOnce(T) -> Option<T>) -> bool {
        let idle = !lock(&self.shared.state).lanes.contains_key(&key);
        let item = if idle { now(item) } else { Some(item) };
        match item {
            Some(item) => self.push(key, item),
            None => true,
        }
    }

    /// Items waiting or being handled.
    pub fn queued(&self) -> usize {
        lock(&self.shared.state).queued
    }

    /// Handles what is queued, then stops and joins the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        lock(&self.shared.state).stopping = true;
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl<T: Send + 'static> Drop for Lanes<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A worker: one item of the key at the head of the line at a time.
fn work<T>(shared: &Shared<T>, handle: &dyn Fn(T)) {
    let mut state = lock(&shared.state);
    loop {
        let Some(key) = state.line.pop_front() else {
            if state.stopping && state.lanes.is_empty() {
                return;
            }
            state = shared
                .work
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        };
        let Some(item) = state.lanes.get_mut(&key).and_then(VecDeque::pop_front) else {
            state.lanes.remove(&key);
            continue;
        };
        drop(state);
        if catch_unwind(AssertUnwindSafe(|| handle(item))).is_err() {
            log::error!("HR: a message handler panicked (lane {key}); the worker continues");
        }
        state = lock(&shared.state);
        state.queued -= 1;
        shared.room.notify_one();
        if state.lanes.get(&key).is_some_and(VecDeque::is_empty) {
            state.lanes.remove(&key);
            if state.stopping && state.lanes.is_empty() {
                // Wake the others to see that all is done.
                shared.work.notify_all();
            }
        } else {
            // To the end of the line: the other keys get their turn first.
            state.line.push_back(key);
            shared.work.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use crossbeam_channel::unbounded;

    use super::*;

    #[test]
    fn items_of_one_key_are_handled_in_order_and_keys_in_parallel() {
        let (seen_tx, seen) = unbounded();
        let lanes = Lanes::start("lanes-test", 4, 64, move |(key, n): (u32, u32)| {
            // Uneven work, so a parallel handling of one key would reorder.
            if n % 7 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = seen_tx.send((key, n));
        })
        .expect("start");
        for n in 0..500 {
            for key in 0..4 {
                assert!(lanes.push(format!("k{key}"), (key, n)));
            }
        }
        lanes.shutdown();
        let mut next = [0u32; 4];
        for (key, n) in seen.try_iter() {
            assert_eq!(n, next[key as usize], "key {key} out of order");
            next[key as usize] += 1;
        }
        assert_eq!(next, [500; 4], "every item handled before shutdown returned");
    }

    #[test]
    fn a_busy_key_does_not_hold_up_another() {
        let release = Arc::new(AtomicBool::new(false));
        let (seen_tx, seen) = unbounded();
        let gate = release.clone();
        let lanes = Lanes::start("lanes-test", 2, 1000, move |(key, n): (&'static str, u32)| {
            if key == "busy" {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !gate.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let _ = seen_tx.send((key, n));
        })
        .expect("start");
        for n in 0..10 {
            lanes.push("busy".into(), ("busy", n));
        }
        for n in 0..10 {
            lanes.push("other".into(), ("other", n));
        }
        // The busy key holds one worker; the other's ten go through the second.
        for n in 0..10 {
            assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(("other", n)));
        }
        release.store(true, Ordering::SeqCst);
        for n in 0..10 {
            assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(("busy", n)));
        }
        lanes.shutdown();
    }

    #[test]
    fn run_or_push_runs_here_only_when_the_key_is_idle() {
        let release = Arc::new(AtomicBool::new(false));
        let (seen_tx, seen) = unbounded();
        let gate = release.clone();
        let lanes = Lanes::start("lanes-test", 2, 100, move |n: u32| {
            if n == 0 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !gate.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let _ = seen_tx.send(n);
        })
        .expect("start");
        let ran_here = std::cell::Cell::new(Vec::new());
        let here = |n: u32| {
            let mut list = ran_here.take();
            list.push(n);
            ran_here.set(list);
            None
        };
        // Item 0 blocks in a worker: 1 and 2 must queue behind it, not run here.
        lanes.push("a".into(), 0);
        lanes.run_or_push("a".into(), 1, here);
        lanes.run_or_push("a".into(), 2, here);
        // Another key is idle: runs here at once.
        lanes.run_or_push("b".into(), 9, here);
        assert_eq!(ran_here.take(), [9]);
        release.store(true, Ordering::SeqCst);
        lanes.shutdown();
        assert_eq!(seen.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_panicking_handler_leaves_the_worker_running() {
        let (seen_tx, seen) = unbounded();
        let lanes = Lanes::start("lanes-test", 1, 8, move |n: u32| {
            assert!(n != 1, "deliberate panic");
            let _ = seen_tx.send(n);
        })
        .expect("start");
        for n in 0..3 {
            lanes.push("k".into(), n);
        }
        lanes.shutdown();
        assert_eq!(seen.try_iter().collect::<Vec<_>>(), [0, 2]);
    }
}
