//! Owned, named threads that are joined with a deadline: every hydra-rs thread
//! (`hydra-heartbeat`, `hydra-msg-N`, `hydra-http-N`, …) is one of these.
//! A panic inside is caught and logged; a thread that does not stop in time is
//! logged and left detached rather than blocking shutdown forever.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

/// A running thread and a signal that fires when its body has returned.
pub(crate) struct OwnedThread {
    name: String,
    handle: JoinHandle<()>,
    exited: Receiver<()>,
}

impl OwnedThread {
    /// Starts `body` on a thread named `name`.
    pub(crate) fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<OwnedThread> {
        let (exited_tx, exited) = bounded::<()>(1);
        let thread_name = name.to_string();
        let handle = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
                log::error!("thread {thread_name} panicked and stopped");
            }
            let _ = exited_tx.send(());
        })?;
        Ok(OwnedThread {
            name: name.to_string(),
            handle,
            exited,
        })
    }

    /// Waits until the thread's body has returned, at most `deadline`, then
    /// joins it. Called from the thread itself (the last handle dropped inside
    /// a handler), it returns at once: a thread cannot join itself.
    pub(crate) fn join(self, deadline: Duration) {
        if std::thread::current().id() == self.handle.thread().id() {
            return;
        }
        match self.exited.recv_timeout(deadline) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.handle.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "thread {} did not stop within {deadline:?}; leaving it detached",
                    self.name
                );
            }
        }
    }
}
