//! The `user_data` of a C callback and its finalizer.

use std::ffi::c_void;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::status::{HYDRA_OK, clear_last_error, last_error, status_name};

/// Called once with the `user_data` of a callback when the library will not
/// call that callback any more (after it was replaced, or the handle it was
/// given to was shut down and every running call of it has returned). It may
/// run on any thread, including a library thread. NULL: nothing to free.
pub type hydra_free_callback = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A callback's `user_data`, finalized when dropped (wherever the last
/// reference to the callback goes away).
pub(crate) struct UserData {
    ptr: *mut c_void,
    free: hydra_free_callback,
    /// Cleared when the registering call fails: the caller keeps ownership
    /// and the finalizer must not run.
    armed: AtomicBool,
}

// SAFETY: the C contract of every callback-taking function says callbacks and
// finalizers may run on any thread; `ptr` is only handed back to C.
unsafe impl Send for UserData {}
// SAFETY: as above; the pointer is never dereferenced by Rust.
unsafe impl Sync for UserData {}

impl UserData {
    /// Keep one `Arc` of it on the registering call's stack and
    /// [`disarm`](UserData::disarm) it if the registration fails; the
    /// finalizer then runs only when the library drops the callback.
    pub(crate) fn new(ptr: *mut c_void, free: hydra_free_callback) -> UserData {
        UserData {
            ptr,
            free,
            armed: AtomicBool::new(true),
        }
    }

    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// The registration failed: the caller still owns `user_data`.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let (true, Some(free)) = (self.armed.load(Ordering::SeqCst), self.free) {
            // SAFETY: the finalizer the caller gave for this pointer, run once.
            unsafe { free(self.ptr) };
        }
    }
}

/// A callback that returned a status other than `HYDRA_OK`, and why: the
/// message it left as this thread's last error (with
/// `hydra_set_last_error_message`, or from a library call that failed in it).
#[derive(Debug)]
pub(crate) struct CallbackFailure {
    pub status: i32,
    /// "" when the callback left none.
    pub detail: String,
}

impl CallbackFailure {
    /// The status's C name, or `status <n>` for a value that is none.
    pub(crate) fn status_text(&self) -> String {
        status_name(self.status).map_or_else(|| format!("status {}", self.status), str::to_string)
    }
}

impl fmt::Display for CallbackFailure {
    /// `HYDRA_CALLBACK_FAILED: <detail>`, or the bare name without a detail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_text())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Runs `invoke` (a call of a C callback) with this thread's last error
/// cleared first, so a message left by an earlier call cannot pass for this
/// callback's reason; a non-OK status comes back with the message the
/// callback left.
pub(crate) fn run_callback(invoke: impl FnOnce() -> i32) -> Result<(), CallbackFailure> {
    clear_last_error();
    let status = invoke();
    if status == HYDRA_OK {
        return Ok(());
    }
    let detail = last_error();
    clear_last_error();
    Err(CallbackFailure { status, detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{
        HYDRA_CALLBACK_FAILED, HYDRA_NOT_FOUND, hydra_last_error_message, hydra_set_last_error_message,
    };
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: never NULL, valid until the next call on this thread.
        unsafe { CStr::from_ptr(hydra_last_error_message()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn set_last_error_message_sets_clears_and_checks_utf8() {
        // SAFETY: NUL-terminated strings and NULL.
        unsafe {
            assert_eq!(hydra_set_last_error_message(c"disk full ✓".as_ptr()), HYDRA_OK);
            assert_eq!(last(), "disk full ✓");
            assert_eq!(hydra_set_last_error_message(std::ptr::null()), HYDRA_OK);
            assert_eq!(last(), "");
            let bad = [b'a', 0xff, 0];
            assert_eq!(
                hydra_set_last_error_message(bad.as_ptr().cast()),
                crate::status::HYDRA_INVALID_UTF8
            );
            assert!(last().starts_with("hydra_set_last_error_message: "), "{}", last());
            assert!(last().contains("message"), "{}", last());
        }
    }

    #[test]
    fn a_callback_reports_its_own_message_never_a_stale_one() {
        // SAFETY: NUL-terminated strings.
        let set = |text: &std::ffi::CStr| unsafe { hydra_set_last_error_message(text.as_ptr()) };
        set(c"stale, from an earlier call");
        let failure = run_callback(|| HYDRA_NOT_FOUND).unwrap_err();
        assert_eq!(failure.to_string(), "HYDRA_NOT_FOUND");
        let failure = run_callback(|| {
            set(c"ValueError: boom");
            HYDRA_CALLBACK_FAILED
        })
        .unwrap_err();
        assert_eq!(failure.to_string(), "HYDRA_CALLBACK_FAILED: ValueError: boom");
        assert_eq!(last(), "", "the reason was taken, not left behind");
        set(c"left by a callback that succeeded");
        assert!(run_callback(|| HYDRA_OK).is_ok());
        assert_eq!(run_callback(|| 77).unwrap_err().to_string(), "status 77");
    }
}
