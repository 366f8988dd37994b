//! Handle tables: what a C `hydra *` (or `hydra_http_response *`) really is.
//!
//! A handle is not the address of a Rust object but a number, issued once and
//! never reused, looked up in a table for every call. So a freed, stale or
//! forged handle is recognised and refused with `HYDRA_INVALID_HANDLE` instead
//! of being dereferenced: double frees, use after free (`hydra_free` then
//! `hydra_shutdown`), or passing one kind of handle for another cannot crash
//! the process. A call holds an `Arc` to the object for its duration, so
//! `hydra_free` on another thread never pulls an object out from under a
//! running call; the object is dropped when the last call using it returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::status::{FfiError, FfiResult, HYDRA_INVALID_HANDLE, HYDRA_NULL_ARGUMENT};

/// One counter for every table, so a handle of one kind is never a valid
/// handle of another. Starts at 16 and steps by 16: handles look like (and are
/// as wide as) aligned pointers, and small integers are never valid.
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(16);

/// Live objects of one kind, by handle.
pub(crate) struct Table<T> {
    kind: &'static str,
    entries: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Table<T> {
    pub(crate) const fn new(kind: &'static str) -> Table<T> {
        Table {
            kind,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `object` and returns its new handle.
    pub(crate) fn insert(&self, object: Arc<T>) -> usize {
        let handle = NEXT_HANDLE.fetch_add(16, Ordering::Relaxed);
        self.lock().insert(handle, object);
        handle
    }

    /// The object behind `handle`.
    pub(crate) fn get<H>(&self, handle: *const H, name: &str) -> FfiResult<Arc<T>> {
        if handle.is_null() {
            return Err(FfiError::new(HYDRA_NULL_ARGUMENT, format!("argument {name} is NULL")));
        }
        self.lock()
            .get(&(handle as usize))
            .cloned()
            .ok_or_else(|| self.stale(name))
    }

    /// Removes `handle` from the table (the object lives on while calls use it).
    pub(crate) fn remove<H>(&self, handle: *const H) -> Option<Arc<T>> {
        self.lock().remove(&(handle as usize))
    }

    pub(crate) fn stale(&self, name: &str) -> FfiError {
        FfiError::new(
            HYDRA_INVALID_HANDLE,
            format!(
                "argument {name} is not a live {} handle (never issued, already freed, or of another kind)",
                self.kind
            ),
        )
    }
}
