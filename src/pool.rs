//! The unit of work handed to hydra-rs's worker threads (the message
//! handlers' threads; the HTTP server has its own workers, fed complete
//! requests by its readiness loop).

/// A unit of work.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;
