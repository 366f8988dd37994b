//! Reading the JSON this ABI hands out, for C code that has no JSON parser:
//! one value by JSON Pointer (RFC 6901).

use std::ffi::c_char;

use serde_json::Value;

use crate::args::{self, owned_json, owned_string};
use crate::status::{FfiError, FfiResult, HYDRA_NOT_FOUND, call};

unsafe fn lookup(json: *const c_char, pointer: *const c_char) -> FfiResult<Value> {
    // SAFETY: the caller's contract.
    let document = unsafe { args::json(json, "json") }?;
    // SAFETY: the caller's contract.
    let pointer = unsafe { args::text(pointer, "pointer") }?;
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(FfiError::bad_request(format!(
            "pointer {pointer:?} is not a JSON Pointer (\"\" or \"/key/0/...\")"
        )));
    }
    document
        .pointer(pointer)
        .cloned()
        .ok_or_else(|| FfiError::new(HYDRA_NOT_FOUND, format!("nothing at {pointer:?} in the JSON")))
}

/// The value at `pointer` (RFC 6901: `""` is the whole document,
/// `"/body/items/0"` a nested one) in the JSON text `json`, as compact JSON
/// text in `*out_value_json` (a string comes out quoted). `HYDRA_NOT_FOUND`
/// when there is nothing there. For C code reading what the library returns;
/// e.g. `hydra_json_get(message_json, "/body", &body)` in a message handler.
///
/// # Safety
/// `json` and `pointer` are NULL or NUL-terminated strings; `out_value_json`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_json_get(
    json: *const c_char,
    pointer: *const c_char,
    out_value_json: *mut *mut c_char,
) -> i32 {
    call("hydra_json_get", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_value_json, "out_value_json", std::ptr::null_mut()) }?;
        // SAFETY: forwarded contract.
        *out = owned_json(&unsafe { lookup(json, pointer) }?)?;
        Ok(())
    })
}

/// The string at `pointer` in `json`, unquoted and unescaped, in `*out_text`;
/// numbers and booleans come out as their JSON text. `HYDRA_NOT_FOUND` when
/// there is nothing there, `HYDRA_BAD_REQUEST` for an object, array or null.
///
/// # Safety
/// `json` and `pointer` are NULL or NUL-terminated strings; `out_text` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hydra_json_get_string(
    json: *const c_char,
    pointer: *const c_char,
    out_text: *mut *mut c_char,
) -> i32 {
    call("hydra_json_get_string", || {
        // SAFETY: the caller's contract.
        let out = unsafe { args::out(out_text, "out_text", std::ptr::null_mut()) }?;
        // SAFETY: forwarded contract.
        let text = match unsafe { lookup(json, pointer) }? {
            Value::String(s) => s,
            value @ (Value::Number(_) | Value::Bool(_)) => value.to_string(),
            other => {
                return Err(FfiError::bad_request(format!(
                    "the value is not a string, number or boolean: {other}"
                )));
            }
        };
        *out = owned_string(text)?;
        Ok(())
    })
}
