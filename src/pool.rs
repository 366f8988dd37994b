//! A fixed pool of worker threads fed by a bounded crossbeam channel.
//!
//! Backpressure is explicit: a [`WorkerPool::submitter`] never blocks and hands
//! the job back when the queue is full, so the caller decides (the HTTP
//! acceptor answers 503 rather than let connections pile up unseen).

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::threads::OwnedThread;

/// A unit of work.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Named worker threads (`hydra-<role>-<n>`) sharing one bounded queue.
pub(crate) struct WorkerPool {
    sender: Sender<Job>,
    receiver: Receiver<Job>,
    threads: Vec<OwnedThread>,
}

impl WorkerPool {
    /// Starts `threads` workers with a queue of `capacity` jobs.
    pub(crate) fn start(role: &str, threads: usize, capacity: usize) -> std::io::Result<WorkerPool> {
        let (sender, receiver) = bounded::<Job>(capacity.max(1));
        let threads = (0..threads.max(1))
            .map(|n| {
                let receiver = receiver.clone();
                OwnedThread::spawn(&format!("hydra-{role}-{n}"), move || {
                    for job in receiver.iter() {
                        // Jobs catch their own panics to count them; this keeps
                        // the worker alive whatever a job does.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            log::error!("a job panicked in a hydra worker; the worker continues");
                        }
                    }
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(WorkerPool {
            sender,
            receiver,
            threads,
        })
    }

    /// Queues a job, or gives it back when the queue is full; can live on
    /// another thread (e.g. an acceptor). Workers keep running until it is
    /// dropped too.
    pub(crate) fn submitter(&self) -> impl Fn(Job) -> Result<(), Job> + Send + 'static {
        let sender = self.sender.clone();
        move |job| {
            sender.try_send(job).map_err(|e| match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            })
        }
    }

    /// How many jobs are waiting, readable from anywhere.
    pub(crate) fn backlog_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let receiver = self.receiver.clone();
        move || receiver.len()
    }

    /// Lets queued jobs finish, then joins the workers, waiting at most
    /// `deadline` in all.
    pub(crate) fn shutdown(self, deadline: Duration) {
        drop(self.sender);
        drop(self.receiver);
        let until = std::time::Instant::now() + deadline;
        for thread in self.threads {
            thread.join(until.saturating_duration_since(std::time::Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_jobs_survives_panics_and_refuses_when_full() {
        let pool = WorkerPool::start("test", 2, 4).unwrap();
        let submit = pool.submitter();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::unbounded();
        for n in 0..4 {
            let done = done.clone();
            let tx = tx.clone();
            submit(Box::new(move || {
                if n == 1 {
                    panic!("job panics");
                }
                done.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            }))
            .unwrap_or_else(|_| panic!("queue has room"));
        }
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 3);

        // Block both workers, fill the queue, and the next job is handed back.
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started_rx) = crossbeam_channel::unbounded();
        for _ in 0..2 {
            let release_rx = release_rx.clone();
            let started_tx = started_tx.clone();
            submit(Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv();
            }))
            .unwrap_or_else(|_| panic!("queue has room"));
        }
        for _ in 0..2 {
            started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        for _ in 0..4 {
            submit(Box::new(|| {})).unwrap_or_else(|_| panic!("queue has room"));
        }
        assert!(submit(Box::new(|| {})).is_err(), "a full queue must refuse");
        drop(release_tx);
        drop(submit);
        pool.shutdown(Duration::from_secs(5));
    }
}
