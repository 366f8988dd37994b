//! Forwarding the library's `log` records to a C callback.
//!
//! Installing a logger is the application's choice, so it happens only when C
//! asks for it (`hydra_log_set_callback`), never by default. Records are not
//! passed to C on the thread that logged them: the library logs while holding
//! its own locks at times, and a callback calling back into the library there
//! could deadlock. They go through a bounded queue to one `hydra-log` thread
//! that calls the callback; when the queue is full, records are dropped.

use std::ffi::{CString, c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::callbacks::{UserData, hydra_free_callback};
use crate::status::{FfiError, HYDRA_INVALID_STATE, call};

/// Logging off (`hydra_log_set_callback` level).
pub const HYDRA_LOG_OFF: i32 = 0;
/// Errors.
pub const HYDRA_LOG_ERROR: i32 = 1;
/// Warnings and above.
pub const HYDRA_LOG_WARN: i32 = 2;
/// Information and above.
pub const HYDRA_LOG_INFO: i32 = 3;
/// Debugging and above.
pub const HYDRA_LOG_DEBUG: i32 = 4;
/// Everything.
pub const HYDRA_LOG_TRACE: i32 = 5;

/// Receives one log record of the library: `level` is `HYDRA_LOG_ERROR` ..
/// `HYDRA_LOG_TRACE`, `target` the Rust module (`hydra::messaging`),
/// `message` the text; both strings are valid only during the call. Called on
/// the library's `hydra-log` thread, one record at a time, in order. It may
/// call any function of the library.
pub type hydra_log_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, target: *const c_char, message: *const c_char)>;

/// Records waiting for the callback; beyond this, new ones are dropped.
const QUEUE_CAPACITY: usize = 4096;
/// How long replacing the callback waits for the old one to drain its queue.
const JOIN_DEADLINE: Duration = Duration::from_secs(5);

struct Record {
    level: i32,
    target: String,
    message: String,
}

/// The running `hydra-log` thread.
struct Forwarding {
    thread: JoinHandle<()>,
    exited: Receiver<()>,
}

impl Forwarding {
    fn thread_id(&self) -> ThreadId {
        self.thread.thread().id()
    }
}

static SENDER: RwLock<Option<Sender<Record>>> = RwLock::new(None);
static FORWARDING: Mutex<Option<Forwarding>> = Mutex::new(None);
static INSTALLED: AtomicBool = AtomicBool::new(false);

struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sender = SENDER.read().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = sender.as_ref() {
            let _ = sender.try_send(Record {
                level: record.level() as i32,
                target: record.target().to_string(),
                message: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

static FORWARDER: Forwarder = Forwarder;

fn level_filter(level: i32) -> Option<log::LevelFilter> {
    Some(match level {
        HYDRA_LOG_OFF => log::LevelFilter::Off,
        HYDRA_LOG_ERROR => log::LevelFilter::Error,
        HYDRA_LOG_WARN => log::LevelFilter::Warn,
        HYDRA_LOG_INFO => log::LevelFilter::Info,
        HYDRA_LOG_DEBUG => log::LevelFilter::Debug,
        HYDRA_LOG_TRACE => log::LevelFilter::Trace,
        _ => return None,
    })
}

fn text(s: String) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

fn spawn(
    callback: unsafe extern "C" fn(*mut c_void, i32, *const c_char, *const c_char),
    data: Arc<UserData>,
    records: Receiver<Record>,
) -> std::io::Result<Forwarding> {
    let (exited_tx, exited) = bounded::<()>(1);
    let thread = std::thread::Builder::new().name("hydra-log".into()).spawn(move || {
        for record in records.iter() {
            let target = text(record.target);
            let message = text(record.message);
            // SAFETY: the callback and user_data the caller registered.
            unsafe { callback(data.ptr(), record.level, target.as_ptr(), message.as_ptr()) };
        }
        drop(data);
        let _ = exited_tx.send(());
    })?;
    Ok(Forwarding { thread, exited })
}

/// Stops `old` after it has passed on what is queued; waits for it unless
/// called from it (a callback replacing itself) or it is stuck in a callback.
fn retire(old: Forwarding) {
    if std::thread::current().id() == old.thread_id() {
        return;
    }
    match old.exited.recv_timeout(JOIN_DEADLINE) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            let _ = old.thread.join();
        }
        Err(RecvTimeoutError::Timeout) => {
            // Cannot log this: it would go to the callback that is stuck.
        }
    }
}

/// Sends the library's log records at `max_level` and above
/// (`HYDRA_LOG_ERROR` .. `HYDRA_LOG_TRACE`) to `callback`, replacing any
/// previous callback; NULL `callback` (or `HYDRA_LOG_OFF`) stops forwarding.
/// Installs the library's logger in the process on first use:
/// `HYDRA_INVALID_STATE` if another logger is installed already (e.g. by a
/// Rust host). Returns once the previous callback has received the records
/// queued for it and its `free_user_data` has run (or after 5 s if it is stuck).
///
/// Records reach the callback asynchronously, on the `hydra-log` thread; when
/// 4096 records are waiting, new ones are dropped. On success the library
/// owns `user_data` and calls `free_user_data` once when the callback is
/// replaced; on failure it does not.
///
/// # Safety
/// `callback` and `free_user_data` must be callable from any thread with
/// `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_log_set_callback(
    max_level: i32,
    callback: hydra_log_callback,
    user_data: *mut c_void,
    free_user_data: hydra_free_callback,
) -> i32 {
    call("hydra_log_set_callback", || {
        let data = Arc::new(UserData::new(user_data, free_user_data));
        let Some(filter) = level_filter(max_level) else {
            data.disarm();
            return Err(FfiError::bad_request(format!(
                "max_level {max_level} is not HYDRA_LOG_OFF (0) .. HYDRA_LOG_TRACE (5)"
            )));
        };
        let mut forwarding = FORWARDING.lock().unwrap_or_else(|p| p.into_inner());
        let callback = callback.filter(|_| filter != log::LevelFilter::Off);
        let next = match callback {
            Some(callback) => {
                if !INSTALLED.load(Ordering::SeqCst) {
                    if log::set_logger(&FORWARDER).is_err() {
                        data.disarm();
                        return Err(FfiError::new(
                            HYDRA_INVALID_STATE,
                            "another logger is already installed in this process",
                        ));
                    }
                    INSTALLED.store(true, Ordering::SeqCst);
                }
                let (tx, rx) = bounded(QUEUE_CAPACITY);
                let started = spawn(callback, data.clone(), rx).map_err(|e| {
                    data.disarm();
                    FfiError::invalid_state(format!("cannot start the hydra-log thread: {e}"))
                })?;
                Some((tx, started))
            }
            None => {
                // Nothing will call it: finalize it now (NULL callback with a
                // finalizer is a way to hand user_data back).
                drop(data);
                None
            }
        };
        let (sender, thread) = match next {
            Some((tx, thread)) => (Some(tx), Some(thread)),
            None => (None, None),
        };
        let old_sender = std::mem::replace(&mut *SENDER.write().unwrap_or_else(|p| p.into_inner()), sender);
        drop(old_sender);
        let old = std::mem::replace(&mut *forwarding, thread);
        if INSTALLED.load(Ordering::SeqCst) {
            log::set_max_level(if forwarding.is_some() {
                filter
            } else {
                log::LevelFilter::Off
            });
        }
        drop(forwarding);
        if let Some(old) = old {
            retire(old);
        }
        Ok(())
    })
}
