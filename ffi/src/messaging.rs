//! Messaging: UMF messages as JSON, send / broadcast / reply / request, the
//! message-handler callback and the pull alternative, counters.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use crossbeam_channel::RecvTimeoutError;
use hydra_rs::{Hydra, Umf};

use crate::args::{self, millis, owned_json, owned_string};
use crate::callbacks::{UserData, hydra_free_callback, run_callback};
use crate::service::{handle, hydra};
use crate::status::{FfiError, FfiResult, HYDRA_NULL_ARGUMENT, HYDRA_TIMEOUT, call};

/// Called for every message that reaches this instance (on its service or
/// instance channel), on one of the library's worker threads
/// (`messageWorkers`, default 4), possibly on several at once.
///
/// `hydra` is the handle the callback was registered on (use it to reply);
/// `message_json` is the message in UMF long form (`to`, `from`, `mid`,
/// `body`, ...), valid only during the call. Return `HYDRA_OK` when handled;
/// any other value is logged (`message callback returned <STATUS>: <message>`,
/// the message being the one the callback set with
/// `hydra_set_last_error_message`, or that of a library call that failed in
/// it) and counted as failed (`message_stats.failed`). The library sends no
/// reply for a failed message: a callback that wants the sender to know
/// replies itself (e.g. with Hydra's error envelope) before returning.
/// The callback may call any function of the library, including
/// `hydra_request`, `hydra_shutdown` and `hydra_free` on its own handle.
/// While all workers are busy, new messages wait in a queue bounded by
/// memory (`maxQueuedMessageBytes`, 32 MiB, and `messageQueueCapacity`);
/// when it is full the listener stops reading (Redis buffers) and only after
/// 5 s without room drops and counts (`message_stats.overflow`).
pub type hydra_message_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, hydra: *mut hydra, message_json: *const c_char) -> i32>;

/// Parses a UMF message (long, short or mixed form); an empty `from` becomes
/// this service (`<service>:/`).
fn parse_message(h: &Hydra, text: &str, name: &str) -> FfiResult<Umf> {
    let value = args::parse_json(text, name)?;
    let mut umf = Umf::from_value(value)?;
    if umf.from.is_empty() {
        umf.from = format!("{}:/", h.get_service_name());
    }
    Ok(umf)
}

/// A new message from this service (`from` = `<service>:/`) to `to` with the
/// JSON `body_json`, in long form with a fresh `mid` and `timestamp` (Node's
/// `createUMFMessage`). Edit it as JSON, then send it.
///
/// # Safety
/// `to` and `body_json` are NULL or NUL-terminated strings; `out_message_json`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_create_umf_message(
    hydra: *mut hydra,
    to: *const c_char,
    body_json: *const c_char,
    out_message_json: *mut *mut c_char,
) -> i32 {
    call("hydra_create_umf_message", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_message_json, "out_message_json", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let to = unsafe { args::text(to, "to") }?;
        // SAFETY: the caller's contract.
        let body = unsafe { args::json(body_json, "body_json") }?;
        let object = handle(hydra)?;
        *out = owned_string(object.hydra.create_umf_message(to, body).to_long_json())?;
        Ok(())
    })
}

/// Sends a message to one instance (Node's `sendMessage`): the one named in
/// `to` (`<instanceID>@<service>:/`) or any present one. `message_json` is a
/// UMF message in long or short form; `from` defaults to this service.
/// `HYDRA_SERVICE_UNAVAILABLE` `Unavailable <service> instances` when none is
/// present.
///
/// # Safety
/// `message_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_send_message(hydra: *mut hydra, message_json: *const c_char) -> i32 {
    call("hydra_send_message", || {
        // SAFETY: the caller's contract.
        let text = unsafe { args::text(message_json, "message_json") }?;
        let object = handle(hydra)?;
        let h = object.live()?;
        h.send_message(&parse_message(h, text, "message_json")?)?;
        Ok(())
    })
}

/// Sends a message to every instance of the service in `to` (Node's
/// `sendBroadcastMessage`).
///
/// # Safety
/// `message_json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_send_broadcast_message(hydra: *mut hydra, message_json: *const c_char) -> i32 {
    call("hydra_send_broadcast_message", || {
        // SAFETY: the caller's contract.
        let text = unsafe { args::text(message_json, "message_json") }?;
        let object = handle(hydra)?;
        let h = object.live()?;
        h.send_broadcast_message(&parse_message(h, text, "message_json")?)?;
        Ok(())
    })
}

/// Sends `response_json` (a UMF message; `to`/`from` may be omitted) as the
/// reply to `original_json` (Node's `sendReplyMessage`): to the original's
/// `via`, else its `from`, with `rmid` = its `mid`.
///
/// # Safety
/// `original_json` and `response_json` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_send_reply_message(
    hydra: *mut hydra,
    original_json: *const c_char,
    response_json: *const c_char,
) -> i32 {
    call("hydra_send_reply_message", || {
        // SAFETY: the caller's contract.
        let original = unsafe { args::json(original_json, "original_json") }?;
        // SAFETY: the caller's contract.
        let response = unsafe { args::json(response_json, "response_json") }?;
        let object = handle(hydra)?;
        let h = object.live()?;
        h.send_reply_message(&Umf::from_value(original)?, Umf::from_value(response)?)?;
        Ok(())
    })
}

/// Replies to `original_json` with a message whose body is `body_json` (the
/// short way of `hydra_send_reply_message`).
///
/// # Safety
/// `original_json` and `body_json` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_reply(hydra: *mut hydra, original_json: *const c_char, body_json: *const c_char) -> i32 {
    call("hydra_reply", || {
        // SAFETY: the caller's contract.
        let original = unsafe { args::json(original_json, "original_json") }?;
        // SAFETY: the caller's contract.
        let body = unsafe { args::json(body_json, "body_json") }?;
        let object = handle(hydra)?;
        object.live()?.reply(&Umf::from_value(original)?, body)?;
        Ok(())
    })
}

/// Sends `message_json` from this instance and waits up to `timeout_ms` for
/// the reply (the message whose `rmid` is its `mid`), returned in long form in
/// `*out_reply_json`. `HYDRA_TIMEOUT` when none comes in time;
/// `HYDRA_INVALID_STATE` unless registered (replies come to the instance
/// channel). Any number of requests may wait at once, from any threads.
///
/// # Safety
/// `message_json` is NULL or a NUL-terminated string; `out_reply_json` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_request(
    hydra: *mut hydra,
    message_json: *const c_char,
    timeout_ms: u64,
    out_reply_json: *mut *mut c_char,
) -> i32 {
    call("hydra_request", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_reply_json, "out_reply_json", std::ptr::null_mut()) }?;
        // SAFETY: the caller's contract.
        let text = unsafe { args::text(message_json, "message_json") }?;
        let object = handle(hydra)?;
        let h = object.live()?;
        let reply = h.request(&parse_message(h, text, "message_json")?, millis(timeout_ms))?;
        *out = owned_string(reply.to_long_json())?;
        Ok(())
    })
}

/// Sets the message handler (Node's `hydra.on('message', ...)`), replacing
/// any previous one (whose `free_user_data` then runs once its running calls
/// have returned). See `hydra_message_callback`. On success the library owns
/// `user_data` and calls `free_user_data(user_data)` exactly once, when the
/// handler is replaced or the handle shut down; on failure it does not.
///
/// # Safety
/// `callback` is a valid function pointer or NULL; it and `free_user_data`
/// must be callable from any thread with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_on_message(
    hydra: *mut hydra,
    callback: hydra_message_callback,
    user_data: *mut c_void,
    free_user_data: hydra_free_callback,
) -> i32 {
    call("hydra_on_message", || {
        let Some(callback) = callback else {
            return Err(FfiError::new(HYDRA_NULL_ARGUMENT, "argument callback is NULL"));
        };
        let object = handle(hydra)?;
        let h = object.live()?;
        let id = hydra as usize;
        let data = Arc::new(UserData::new(user_data, free_user_data));
        let captured = data.clone();
        let result = h.on_message(move |_, message| {
            let text = CString::new(message.to_long_json()).map_err(|_| "message has a NUL byte")?;
            // SAFETY: the callback and user_data the caller registered.
            run_callback(|| unsafe { callback(captured.ptr(), crate::service::as_ptr(id), text.as_ptr()) })
                .map_err(|failure| format!("message callback returned {failure}").into())
        });
        if result.is_err() {
            data.disarm();
        }
        Ok(result?)
    })
}

/// The pull alternative to `hydra_on_message`: waits up to `timeout_ms` for
/// the next message (long form) while no handler is set. The first call
/// switches incoming messages to a bounded queue (`maxQueuedMessageBytes`,
/// `messageQueueCapacity`; when it is full the listener stops reading for up
/// to 5 s, then drops and counts). `HYDRA_TIMEOUT` when none came;
/// `HYDRA_INVALID_STATE` ("shut down") once the handle is shut down, also
/// for a thread already waiting here when `hydra_shutdown` runs: it wakes at
/// once.
///
/// # Safety
/// `out_message_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_receive_message(
    hydra: *mut hydra,
    timeout_ms: u64,
    out_message_json: *mut *mut c_char,
) -> i32 {
    call("hydra_receive_message", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_message_json, "out_message_json", std::ptr::null_mut()) }?;
        let object = handle(hydra)?;
        object.live()?;
        match object.receiver().recv_timeout(millis(timeout_ms)) {
            Ok(message) => {
                *out = owned_string(message.to_long_json())?;
                Ok(())
            }
            Err(RecvTimeoutError::Timeout) => Err(FfiError::new(
                HYDRA_TIMEOUT,
                format!("no message within {timeout_ms} ms"),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(FfiError::invalid_state("this hydra handle has been shut down")),
        }
    })
}

/// Message counters since `hydra_new`, a JSON object: `received`, `handled`,
/// `failed`, `panicked`, `invalid`, `overflow`, `read_pauses`, `unhandled`,
/// `looped`, `replies_matched`, `replies_late`, `sent`, `subscriptions`,
/// `signature_rejected`, `unsigned_accepted` (works after shutdown).
///
/// # Safety
/// `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_message_stats(hydra: *mut hydra, out_json: *mut *mut c_char) -> i32 {
    call("hydra_message_stats", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_json, "out_json", std::ptr::null_mut()) }?;
        *out = owned_json(&handle(hydra)?.hydra.message_stats())?;
        Ok(())
    })
}
