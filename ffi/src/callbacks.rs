//! The `user_data` of a C callback and its finalizer.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

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
