//! Arguments in and out: C strings checked for NULL and UTF-8, JSON parsed
//! with the argument's name in the error, out-pointers cleared first and
//! written last, and owned strings handed to C (freed by `hydra_string_free`).

use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::status::{FfiError, FfiResult, HYDRA_BAD_REQUEST, HYDRA_INVALID_UTF8, HYDRA_NULL_ARGUMENT};

/// A required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn text<'a>(ptr: *const c_char, name: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::new(HYDRA_NULL_ARGUMENT, format!("argument {name} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        FfiError::new(
            HYDRA_INVALID_UTF8,
            format!("argument {name} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn optional_text<'a>(ptr: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { text(ptr, name) }.map(Some)
}

/// A required JSON argument.
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn json(ptr: *const c_char, name: &str) -> FfiResult<Value> {
    // SAFETY: forwarded contract.
    let text = unsafe { text(ptr, name) }?;
    parse_json(text, name)
}

/// An optional JSON object argument (NULL or `""` is an empty object).
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn optional_object(ptr: *const c_char, name: &str) -> FfiResult<Map<String, Value>> {
    // SAFETY: forwarded contract.
    match unsafe { optional_text(ptr, name) }? {
        None => Ok(Map::new()),
        Some(t) if t.trim().is_empty() => Ok(Map::new()),
        Some(t) => match parse_json(t, name)? {
            Value::Object(map) => Ok(map),
            other => Err(FfiError::bad_request(format!(
                "argument {name} must be a JSON object, got {other}"
            ))),
        },
    }
}

pub(crate) fn parse_json(text: &str, name: &str) -> FfiResult<Value> {
    serde_json::from_str(text)
        .map_err(|e| FfiError::new(HYDRA_BAD_REQUEST, format!("argument {name} is not valid JSON: {e}")))
}

/// A required out-pointer, set to its empty value at once so that it never
/// holds garbage after a failed call.
///
/// # Safety
/// `ptr` is NULL or valid for writes of `T`.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, name: &str, empty: T) -> FfiResult<&'a mut T> {
    if ptr.is_null() {
        return Err(FfiError::new(HYDRA_NULL_ARGUMENT, format!("argument {name} is NULL")));
    }
    // SAFETY: non-NULL and writable by the caller's contract.
    unsafe {
        ptr.write(empty);
        Ok(&mut *ptr)
    }
}

/// An optional out-pointer (NULL: the caller does not want the value).
///
/// # Safety
/// As [`out`].
pub(crate) unsafe fn optional_out<'a, T>(ptr: *mut T, empty: T) -> Option<&'a mut T> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL and writable by the caller's contract.
    unsafe {
        ptr.write(empty);
        Some(&mut *ptr)
    }
}

/// Hands `text` to C as an owned string (freed by `hydra_string_free`).
pub(crate) fn owned_string(text: String) -> FfiResult<*mut c_char> {
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|_| FfiError::bad_request("the result contains a NUL byte and cannot be a C string"))
}

/// Serializes `value` as compact JSON for C.
pub(crate) fn owned_json<T: serde::Serialize + ?Sized>(value: &T) -> FfiResult<*mut c_char> {
    let text = serde_json::to_string(value)
        .map_err(|e| FfiError::bad_request(format!("the result cannot be serialized as JSON: {e}")))?;
    owned_string(text)
}

/// Milliseconds from C as a `Duration`.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Frees a string this library returned (`out_json` and friends). NULL is a
/// no-op. Freeing a string twice, or one the library did not allocate, is
/// undefined behavior, as with `free`.
///
/// # Safety
/// `text` is NULL or a string returned by this library and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_string_free(text: *mut c_char) {
    crate::status::call_or("hydra_string_free", (), || {
        if !text.is_null() {
            // SAFETY: allocated by `CString::into_raw` in `owned_string`.
            drop(unsafe { CString::from_raw(text) });
        }
    })
}
