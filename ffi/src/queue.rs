//! Service queues: put, take, mark (Node's `queueMessage`,
//! `getQueuedMessage`, `markQueueMessage`), stats, dead letters, and queue
//! workers calling a C callback.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use hydra_rs::{QueueOptions, QueueWorker, QueuedMessage, Umf};
use serde_json::{Value, json};

use crate::args::{self, millis, owned_json};
use crate::callbacks::{UserData, hydra_free_callback, run_callback};
use crate::handles::Table;
use crate::service::{handle, hydra};
use crate::status::{FfiError, FfiResult, HYDRA_NULL_ARGUMENT, call, call_or, note_error};

/// A message taken from a queue with `hydra_get_queued_message`: read it with
/// `hydra_queued_message_json`, mark it with `hydra_mark_queue_message`,
/// release it with `hydra_queued_message_free`. Usable from any thread.
pub struct hydra_queued_message {
    _opaque: [u8; 0],
}

/// A running queue worker (`hydra_queue_worker_new`). Usable from any thread.
pub struct hydra_queue_worker {
    _opaque: [u8; 0],
}

/// Processes one queued message, on one of the worker's threads
/// (`hydra-queue-<n>`), possibly on several at once. `queued_json` (valid
/// only during the call) is `{"message": <UMF long form>, "queue": "<service>",
/// "deliveryCount": 1}`. Return `HYDRA_OK` to mark it completed; any other
/// value fails this delivery: the message goes back to the queue, and after
/// `maxDeliveries` to the dead letters (`mqincomplete`) with `bdy.reason` =
/// `queue callback returned <STATUS>: <message>`, where the message is the
/// one the callback set with `hydra_set_last_error_message` (or that of a
/// library call that failed in it); to fail with a reason, set it and return
/// `HYDRA_CALLBACK_FAILED`. Do not mark the message yourself. The callback
/// may call any function of the library.
pub type hydra_queue_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, hydra: *mut hydra, queued_json: *const c_char) -> i32>;

static QUEUED: Table<QueuedMessage> = Table::new("hydra_queued_message");
static WORKERS: Table<QueueWorker> = Table::new("hydra_queue_worker");

fn queued_value(queued: &QueuedMessage) -> Value {
    let message: Value = serde_json::from_str(&queued.message.to_long_json()).unwrap_or(Value::Null);
    json!({
        "message": message,
        "queue": queued.queue(),
        "deliveryCount": queued.delivery_count(),
    })
}

/// Puts a message at the end of the queue of the service in its `to` (Node's
/// `queueMessage`); no instance needs to be present. `from` defaults to this
/// service. `HYDRA_BAD_REQUEST` when `to` or `body` is missing.
///
/// # Safety
/// `message_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_queue_message(hydra: *mut hydra, message_json: *const c_char) -> i32 {
    call("hydra_queue_message", || {
        // SAFETY: the caller's contract.
        let value = unsafe { args::json(message_json, "message_json") }?;
        let object = handle(hydra)?;
        let h = object.live()?;
        let mut message = Umf::from_value(value)?;
        if message.from.is_empty() {
            message.from = format!("{}:/", h.get_service_name());
        }
        h.queue_message(&message)?;
        Ok(())
    })
}

/// Takes the oldest message waiting in `service`'s queue (Node's
/// `getQueuedMessage`), waiting up to `timeout_ms` for one (0: do not wait).
/// `*out_queued` is the message, or NULL (with `HYDRA_OK`) when none came.
/// Mark it with `hydra_mark_queue_message`, or it stays in progress for good,
/// as in Node.
///
/// # Safety
/// `service` is NULL or a NUL-terminated string; `out_queued` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_get_queued_message(
    hydra: *mut hydra,
    service: *const c_char,
    timeout_ms: u64,
    out_queued: *mut *mut hydra_queued_message,
) -> i32 {
    call("hydra_get_queued_message", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_queued, "out_queued", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let service = unsafe { args::text(service, "service") }?;
        let object = handle(hydra)?;
        let h = object.live()?;
        let taken = if timeout_ms == 0 {
            h.get_queued_message(service)?
        } else {
            h.get_queued_message_timeout(service, millis(timeout_ms))?
        };
        if let Some(queued) = taken {
            *out = QUEUED.insert(Arc::new(queued)) as *mut hydra_queued_message;
        }
        Ok(())
    })
}

/// The taken message as JSON: `{"message": <UMF long form>, "queue":
/// "<service>", "deliveryCount": 1}`.
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_queued_message_json(
    queued: *const hydra_queued_message,
    out_json: *mut *mut c_char,
) -> i32 {
    call("hydra_queued_message_json", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        *out = owned_json(&queued_value(&*QUEUED.get(queued, "queued")?))?;
        Ok(())
    })
}

/// Marks a taken message (Node's `markQueueMessage`): removes it from the
/// queue's in-progress list and, unless `completed`, appends it to
/// `mqincomplete` with `bdy.reason` = `reason` (NULL or "": Node's "reason
/// not provided"). `*out_was_in_progress` (may be NULL) tells whether it was
/// still in progress. The message stays valid until
/// `hydra_queued_message_free`.
///
/// # Safety
/// `reason` is NULL or a NUL-terminated string; `out_was_in_progress` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_mark_queue_message(
    hydra: *mut hydra,
    queued: *const hydra_queued_message,
    completed: bool,
    reason: *const c_char,
    out_was_in_progress: *mut bool,
) -> i32 {
    call("hydra_mark_queue_message", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::optional_out(out_was_in_progress, false) };
        // SAFETY: the caller's contract.
        let reason = unsafe { args::optional_text(reason, "reason") }?;
        let queued = QUEUED.get(queued, "queued")?;
        let removed = handle(hydra)?.live()?.mark_queue_message(&queued, completed, reason)?;
        if let Some(out) = out {
            *out = removed;
        }
        Ok(())
    })
}

/// Releases a taken message (not marking it). NULL and stale handles are
/// ignored.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_queued_message_free(queued: *mut hydra_queued_message) {
    call_or("hydra_queued_message_free", (), || {
        if !queued.is_null() && QUEUED.remove(queued).is_none() {
            note_error("hydra_queued_message_free", &QUEUED.stale("queued"));
        }
    })
}

/// `service`'s queue now, a JSON object: `waiting`, `in_progress`,
/// `incomplete`, `oldest_waiting_ms` (or null), `consumers`.
///
/// # Safety
/// `service` is NULL or a NUL-terminated string; `out_json` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_queue_stats(
    hydra: *mut hydra,
    service: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    call("hydra_queue_stats", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let service = unsafe { args::text(service, "service") }?;
        *out = owned_json(&handle(hydra)?.live()?.queue_stats(service)?)?;
        Ok(())
    })
}

/// Moves every message of `service`'s `mqincomplete` (dead letters and
/// messages marked incomplete) back into its queue, oldest first;
/// `*out_moved` (may be NULL) = how many.
///
/// # Safety
/// `service` is NULL or a NUL-terminated string; `out_moved` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_redrive_dead_letters(
    hydra: *mut hydra,
    service: *const c_char,
    out_moved: *mut u64,
) -> i32 {
    call("hydra_redrive_dead_letters", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::optional_out(out_moved, 0) };
        // SAFETY: the caller's contract.
        let service = unsafe { args::text(service, "service") }?;
        let moved = handle(hydra)?.live()?.redrive_dead_letters(service)?;
        if let Some(out) = out {
            *out = moved;
        }
        Ok(())
    })
}

fn queue_options(options: &serde_json::Map<String, Value>) -> FfiResult<QueueOptions> {
    const KEYS: [&str; 2] = ["visibilityTimeoutMs", "maxDeliveries"];
    if let Some(key) = options.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(FfiError::bad_request(format!(
            "options_json has an unknown key {key:?} (known: {})",
            KEYS.join(", ")
        )));
    }
    let number = |key: &str| -> FfiResult<Option<u64>> {
        match options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                FfiError::bad_request(format!("options_json.{key} must be a non-negative integer, got {v}"))
            }),
        }
    };
    let mut result = QueueOptions::new();
    if let Some(ms) = number("visibilityTimeoutMs")? {
        result = result.with_visibility_timeout(millis(ms));
    }
    if let Some(n) = number("maxDeliveries")? {
        result = result.with_max_deliveries(u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(result)
}

/// Works `service`'s queue on `concurrency` threads, calling `callback` for
/// each message (see `hydra_queue_callback`): completed on `HYDRA_OK`,
/// retried otherwise, a dead letter after `maxDeliveries`. Messages held by a
/// worker whose process dies go back to the queue after the visibility
/// timeout. `options_json` may be NULL or `{"visibilityTimeoutMs": 30000,
/// "maxDeliveries": 5}`. Runs until `hydra_queue_worker_stop`,
/// `hydra_queue_worker_free`, or the shutdown of `hydra`.
///
/// On success `*out_worker` is the worker (release it with
/// `hydra_queue_worker_free`) and the library owns `user_data`:
/// `free_user_data` runs once the worker has stopped and both its handle and
/// `hydra` have been released or shut down. On failure it does not run.
///
/// # Safety
/// `service` and `options_json` are NULL or NUL-terminated strings;
/// `callback` and `free_user_data` must be callable from any thread with
/// `user_data`; `out_worker` is NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn hydra_queue_worker_new(
    hydra: *mut hydra,
    service: *const c_char,
    concurrency: u32,
    options_json: *const c_char,
    callback: hydra_queue_callback,
    user_data: *mut c_void,
    free_user_data: hydra_free_callback,
    out_worker: *mut *mut hydra_queue_worker,
) -> i32 {
    call("hydra_queue_worker_new", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_worker, "out_worker", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let service = unsafe { args::text(service, "service") }?;
        // SAFETY: the caller's contract.
        let options = queue_options(&unsafe { args::optional_object(options_json, "options_json") }?)?;
        let Some(callback) = callback else {
            return Err(FfiError::new(HYDRA_NULL_ARGUMENT, "argument callback is NULL"));
        };
        let object = handle(hydra)?;
        let h = object.live()?;
        let id = hydra as usize;
        let data = Arc::new(UserData::new(user_data, free_user_data));
        let captured = data.clone();
        let result = h.queue_worker_with(service, concurrency as usize, options, move |queued| {
            let text = CString::new(queued_value(queued).to_string()).map_err(|_| "message has a NUL byte")?;
            // SAFETY: the callback and user_data the caller registered.
            run_callback(|| unsafe { callback(captured.ptr(), crate::service::as_ptr(id), text.as_ptr()) })
                .map_err(|failure| format!("queue callback returned {failure}").into())
        });
        if result.is_err() {
            data.disarm();
        }
        *out = WORKERS.insert(Arc::new(result?)) as *mut hydra_queue_worker;
        Ok(())
    })
}

/// Stops the worker: takes no more messages, lets running callbacks finish
/// (up to 5 s in all) and gives back what it still holds. Idempotent.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_queue_worker_stop(worker: *mut hydra_queue_worker) -> i32 {
    call("hydra_queue_worker_stop", || {
        WORKERS.get(worker, "worker")?.stop();
        Ok(())
    })
}

/// The worker's counters, a JSON object: `taken`, `completed`, `failed`,
/// `panicked`, `retried`, `dead_lettered`, `lost`, `requeued`,
/// `redis_errors`, `reaper_passes`.
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_queue_worker_stats(worker: *mut hydra_queue_worker, out_json: *mut *mut c_char) -> i32 {
    call("hydra_queue_worker_stats", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        *out = owned_json(&WORKERS.get(worker, "worker")?.stats())?;
        Ok(())
    })
}

/// Stops the worker (as `hydra_queue_worker_stop`) and releases the handle.
/// NULL and stale handles are ignored.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_queue_worker_free(worker: *mut hydra_queue_worker) {
    call_or("hydra_queue_worker_free", (), || {
        if worker.is_null() {
            return;
        }
        match WORKERS.remove(worker) {
            Some(w) => w.stop(),
            None => note_error("hydra_queue_worker_free", &WORKERS.stale("worker")),
        }
    })
}
