//! Status codes, the thread-local last error message, and the `catch_unwind`
//! boundary every export runs behind.
//!
//! The codes below 100 are `hydra_rs::ErrorCode` values; each constant is checked
//! against the Rust enum at compile time, and a test checks that every variant
//! of the enum has its constant here, so the two cannot drift apart.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use hydra_rs::ErrorCode;

/// Success.
pub const HYDRA_OK: i32 = 0;
/// A configuration value is invalid (the message names the field, as in Node's
/// JSON config: `serviceName`, `redis.url`, ...).
pub const HYDRA_INVALID_CONFIG: i32 = 1;
/// An argument is invalid: bad JSON, a bad route, a message without `to`, ...
/// (HTTP-style 400).
pub const HYDRA_BAD_REQUEST: i32 = 2;
/// Redis could not be reached or answered with an error (HTTP-style 500).
pub const HYDRA_REDIS: i32 = 3;
/// The thing asked for does not exist (HTTP-style 404).
pub const HYDRA_NOT_FOUND: i32 = 4;
/// No instance can serve the call, e.g. `Unavailable billing instances`
/// (HTTP-style 503).
pub const HYDRA_SERVICE_UNAVAILABLE: i32 = 5;
/// A deadline passed (e.g. no reply to `hydra_request` in time).
pub const HYDRA_TIMEOUT: i32 = 6;
/// The call needs a state the handle is not in: not registered, already
/// registered, or shut down.
pub const HYDRA_INVALID_STATE: i32 = 7;
/// Data read from Redis is not what Hydra writes.
pub const HYDRA_MALFORMED: i32 = 8;
/// The Redis user lacks an ACL permission the call needs; the message names
/// the command and the key or channel (HTTP-style 403).
pub const HYDRA_PERMISSION_DENIED: i32 = 9;
/// A required pointer argument was NULL (the message names it).
pub const HYDRA_NULL_ARGUMENT: i32 = 100;
/// A string argument is not valid UTF-8 (the message names it).
pub const HYDRA_INVALID_UTF8: i32 = 101;
/// A handle argument is not a live handle of this library: never issued,
/// already freed, or a handle of another kind.
pub const HYDRA_INVALID_HANDLE: i32 = 102;
/// The library panicked inside the call; the panic was caught and the process
/// lives on. The message carries the panic's text. Please report it.
pub const HYDRA_PANIC: i32 = 103;
/// Returned by a callback (message, HTTP route, queue) to say that it failed,
/// after `hydra_set_last_error_message` with the reason; the library passes
/// that reason on (dead-letter reason, 500 envelope `result.reason`, the
/// logged message-handler failure). Library functions never return it.
pub const HYDRA_CALLBACK_FAILED: i32 = 104;

// The numeric codes of the Rust enum, checked when this crate compiles.
const _: () = {
    assert!(HYDRA_OK == ErrorCode::Ok as i32);
    assert!(HYDRA_INVALID_CONFIG == ErrorCode::InvalidConfig as i32);
    assert!(HYDRA_BAD_REQUEST == ErrorCode::BadRequest as i32);
    assert!(HYDRA_REDIS == ErrorCode::Redis as i32);
    assert!(HYDRA_NOT_FOUND == ErrorCode::NotFound as i32);
    assert!(HYDRA_SERVICE_UNAVAILABLE == ErrorCode::ServiceUnavailable as i32);
    assert!(HYDRA_TIMEOUT == ErrorCode::Timeout as i32);
    assert!(HYDRA_INVALID_STATE == ErrorCode::InvalidState as i32);
    assert!(HYDRA_MALFORMED == ErrorCode::Malformed as i32);
    assert!(HYDRA_PERMISSION_DENIED == ErrorCode::PermissionDenied as i32);
};

/// Every status code and its C name, in order.
pub(crate) const STATUS_NAMES: [(i32, &str); 15] = [
    (HYDRA_OK, "HYDRA_OK"),
    (HYDRA_INVALID_CONFIG, "HYDRA_INVALID_CONFIG"),
    (HYDRA_BAD_REQUEST, "HYDRA_BAD_REQUEST"),
    (HYDRA_REDIS, "HYDRA_REDIS"),
    (HYDRA_NOT_FOUND, "HYDRA_NOT_FOUND"),
    (HYDRA_SERVICE_UNAVAILABLE, "HYDRA_SERVICE_UNAVAILABLE"),
    (HYDRA_TIMEOUT, "HYDRA_TIMEOUT"),
    (HYDRA_INVALID_STATE, "HYDRA_INVALID_STATE"),
    (HYDRA_MALFORMED, "HYDRA_MALFORMED"),
    (HYDRA_PERMISSION_DENIED, "HYDRA_PERMISSION_DENIED"),
    (HYDRA_NULL_ARGUMENT, "HYDRA_NULL_ARGUMENT"),
    (HYDRA_INVALID_UTF8, "HYDRA_INVALID_UTF8"),
    (HYDRA_INVALID_HANDLE, "HYDRA_INVALID_HANDLE"),
    (HYDRA_PANIC, "HYDRA_PANIC"),
    (HYDRA_CALLBACK_FAILED, "HYDRA_CALLBACK_FAILED"),
];

/// The C name of a status code, or `None`.
pub(crate) fn status_name(status: i32) -> Option<&'static str> {
    STATUS_NAMES
        .iter()
        .find(|(code, _)| *code == status)
        .map(|(_, name)| *name)
}

/// A failed call: a status code and the message `hydra_last_error_message`
/// will return.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub code: i32,
    pub message: String,
    /// Prefix the message with the function's name (errors found by this
    /// crate; the core's messages are passed on verbatim, as Node words them).
    pub named: bool,
}

impl FfiError {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> FfiError {
        FfiError {
            code,
            message: message.into(),
            named: true,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> FfiError {
        FfiError::new(HYDRA_BAD_REQUEST, message)
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> FfiError {
        FfiError::new(HYDRA_INVALID_STATE, message)
    }
}

impl From<hydra_rs::Error> for FfiError {
    fn from(e: hydra_rs::Error) -> FfiError {
        FfiError {
            code: e.code() as i32,
            message: e.to_string(),
            named: false,
        }
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, FfiError>;

thread_local! {
    /// The message of the last failed call on this thread ("" after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot cross as a C string; show them escaped.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = text);
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if !cell.as_bytes().is_empty() {
            *cell = CString::default();
        }
    });
}

/// This thread's last error message ("" when none).
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|cell| cell.borrow().to_string_lossy().into_owned())
}

/// Records `error` as this thread's last error (for void functions that fail
/// quietly, like freeing a stale handle).
pub(crate) fn note_error(function: &str, error: &FfiError) {
    set_last_error(&format!("{function}: {}", error.message));
}

/// Runs `body` behind a `catch_unwind` boundary and turns its outcome into a
/// status code, setting or clearing this thread's last error message.
pub(crate) fn call(function: &'static str, body: impl FnOnce() -> FfiResult) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            HYDRA_OK
        }
        Ok(Err(error)) => {
            if error.named {
                set_last_error(&format!("{function}: {}", error.message));
            } else {
                set_last_error(&error.message);
            }
            error.code
        }
        Err(payload) => {
            set_last_error(&format!("{function}: panic: {}", panic_text(payload.as_ref())));
            HYDRA_PANIC
        }
    }
}

/// Runs `body` behind a `catch_unwind` boundary for functions that return a
/// value rather than a status; a panic gives `fallback`.
pub(crate) fn call_or<T>(function: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            set_last_error(&format!("{function}: panic: {}", panic_text(payload.as_ref())));
            fallback
        }
    }
}

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// The message of the last call on this thread that returned a status other
/// than `HYDRA_OK` (or the one set by `hydra_set_last_error_message`); `""`
/// when the last such call succeeded. Never NULL. The pointer belongs to the
/// library and stays valid until the next call into the library on this
/// thread; copy the text to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_last_error_message() -> *const c_char {
    call_or("hydra_last_error_message", c"".as_ptr(), || {
        LAST_ERROR.with(|cell| cell.borrow().as_ptr())
    })
}

/// Sets this thread's last error message to `message` (NULL: clears it), for
/// a callback to say why it fails: set it just before returning a status
/// other than `HYDRA_OK` (best `HYDRA_CALLBACK_FAILED`), and the library uses
/// it as the reason of the failure: the dead-letter reason of a queue
/// message, `result.reason` of the HTTP 500 envelope, the logged failure of
/// a message handler. Any library call made after it on the same thread
/// replaces it. The library clears it before calling a callback, so a
/// callback that sets none fails with just its status. `HYDRA_INVALID_UTF8`
/// (and that error as the message) when `message` is not UTF-8.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_set_last_error_message(message: *const c_char) -> i32 {
    // Not through `call`: its success path would clear the message set here.
    let result = catch_unwind(AssertUnwindSafe(|| -> FfiResult<Option<String>> {
        // SAFETY: the caller's contract.
        Ok(unsafe { crate::args::optional_text(message, "message") }?.map(str::to_owned))
    }));
    match result {
        Ok(Ok(Some(text))) => {
            set_last_error(&text);
            HYDRA_OK
        }
        Ok(Ok(None)) => {
            clear_last_error();
            HYDRA_OK
        }
        Ok(Err(error)) => {
            set_last_error(&format!("hydra_set_last_error_message: {}", error.message));
            error.code
        }
        Err(payload) => {
            set_last_error(&format!(
                "hydra_set_last_error_message: panic: {}",
                panic_text(payload.as_ref())
            ));
            HYDRA_PANIC
        }
    }
}

/// The C name of a status code (`"HYDRA_NOT_FOUND"`), or
/// `"HYDRA_UNKNOWN_STATUS"`. A static string: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_status_name(status: i32) -> *const c_char {
    const NAMES: [&std::ffi::CStr; 15] = [
        c"HYDRA_OK",
        c"HYDRA_INVALID_CONFIG",
        c"HYDRA_BAD_REQUEST",
        c"HYDRA_REDIS",
        c"HYDRA_NOT_FOUND",
        c"HYDRA_SERVICE_UNAVAILABLE",
        c"HYDRA_TIMEOUT",
        c"HYDRA_INVALID_STATE",
        c"HYDRA_MALFORMED",
        c"HYDRA_PERMISSION_DENIED",
        c"HYDRA_NULL_ARGUMENT",
        c"HYDRA_INVALID_UTF8",
        c"HYDRA_INVALID_HANDLE",
        c"HYDRA_PANIC",
        c"HYDRA_CALLBACK_FAILED",
    ];
    call_or("hydra_status_name", c"HYDRA_UNKNOWN_STATUS".as_ptr(), || {
        STATUS_NAMES
            .iter()
            .position(|(code, _)| *code == status)
            .map_or(c"HYDRA_UNKNOWN_STATUS".as_ptr(), |i| NAMES[i].as_ptr())
    })
}

/// The version of this library (`"0.1.0"`). A static string: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn hydra_version() -> *const c_char {
    const VERSION: &std::ffi::CStr =
        match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("the package version has no interior NUL"),
        };
    call_or("hydra_version", VERSION.as_ptr(), || VERSION.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screaming_snake(camel: &str) -> String {
        let mut out = String::new();
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    /// Reads `ErrorCode` from the core crate's source and checks that every
    /// variant has a `HYDRA_<VARIANT>` constant with the same value (the
    /// compile-time asserts above catch changed values; this catches new
    /// variants, which `#[non_exhaustive]` hides from the compiler).
    #[test]
    fn every_error_code_of_the_core_crate_has_a_status_constant() {
        let source = include_str!("../../src/error.rs");
        let start = source.find("pub enum ErrorCode {").expect("ErrorCode in src/error.rs");
        let body = &source[start..];
        let body = &body[..body.find('}').expect("end of ErrorCode")];
        let variants: Vec<(String, i32)> = body
            .lines()
            .filter_map(|line| {
                let line = line.trim().trim_end_matches(',');
                let (name, value) = line.split_once(" = ")?;
                Some((name.trim().to_string(), value.trim().parse().ok()?))
            })
            .collect();
        assert!(variants.len() >= 9, "parsed too few variants: {variants:?}");
        for (variant, value) in variants {
            let expected = format!("HYDRA_{}", screaming_snake(&variant));
            assert_eq!(
                status_name(value),
                Some(expected.as_str()),
                "ErrorCode::{variant} = {value} has no {expected} constant in ffi/src/status.rs"
            );
        }
    }

    #[test]
    fn names_are_unique_and_match() {
        for (code, name) in STATUS_NAMES {
            let c = unsafe { std::ffi::CStr::from_ptr(hydra_status_name(code)) };
            assert_eq!(c.to_str().unwrap(), name);
        }
        let c = unsafe { std::ffi::CStr::from_ptr(hydra_status_name(-5)) };
        assert_eq!(c.to_str().unwrap(), "HYDRA_UNKNOWN_STATUS");
    }

    #[test]
    fn panics_become_a_status_and_a_message() {
        let status = call("test_fn", || panic!("boom {}", 7));
        assert_eq!(status, HYDRA_PANIC);
        let message = unsafe { std::ffi::CStr::from_ptr(hydra_last_error_message()) };
        assert_eq!(message.to_str().unwrap(), "test_fn: panic: boom 7");
        assert_eq!(call("test_fn", || Ok(())), HYDRA_OK);
        let message = unsafe { std::ffi::CStr::from_ptr(hydra_last_error_message()) };
        assert_eq!(message.to_str().unwrap(), "");
    }
}
