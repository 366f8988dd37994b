//! A service and a client working without pause against a Redis Sentinel group,
//! while the master is killed: shared by tests/sentinel.rs and
//! examples/bench_failover.rs (included by `#[path]`).
//!
//! The service answers requests, serves one HTTP route, counts one-way
//! messages and works its queue. The client, on five threads, sends numbered
//! one-way messages, makes requests, makes HTTP calls, queues numbered items
//! and reads the service's presence, noting the time and outcome of each try.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hydra::{ConfigBuilder, HttpResponse, HttpRoutes, Hydra, QueueWorker, RequestOptions};
use hydra_testkit::SentinelGroup;
use serde_json::{Value, json};

/// The service's name.
pub const SERVICE: &str = "failsafe";
/// Pause between two tries of each client loop.
const PACE: Duration = Duration::from_millis(5);
/// Timeout of each request and HTTP call.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// One try of a client loop.
type Step = Box<dyn Fn(&Hydra, &Observations, &AtomicU64) + Send>;

/// Outcomes of one kind of work, in time order.
#[derive(Default)]
pub struct Track {
    tries: Mutex<Vec<(Instant, bool)>>,
}

impl Track {
    fn note(&self, ok: bool) {
        self.tries.lock().unwrap().push((Instant::now(), ok));
    }

    /// Since when the work has succeeded without a failure, if it failed
    /// after `kill` (else `kill` itself): the moment it flows again.
    pub fn flowing_since(&self, kill: Instant) -> Option<Instant> {
        let tries = self.tries.lock().unwrap();
        let after: Vec<&(Instant, bool)> = tries.iter().filter(|(t, _)| *t >= kill).collect();
        match after.iter().rposition(|(_, ok)| !ok) {
            None => after.first().map(|_| kill),
            Some(last_failure) => after.get(last_failure + 1).map(|(t, _)| *t),
        }
    }

    /// Tries and failures after `since`.
    pub fn counts_since(&self, since: Instant) -> (usize, usize) {
        let tries = self.tries.lock().unwrap();
        let after = tries.iter().filter(|(t, _)| *t >= since);
        let failed = after.clone().filter(|(_, ok)| !ok).count();
        (after.count(), failed)
    }
}

/// Numbered items: which were acknowledged (sent or queued), and which arrived.
#[derive(Default)]
pub struct Numbered {
    /// Acknowledged, in order, with when.
    pub acked: Mutex<Vec<(u64, Instant)>>,
    /// Arrived at the service (a number may arrive more than once).
    pub arrived: Mutex<Vec<(u64, Instant)>>,
}

impl Numbered {
    /// How many were acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn arrived_set(&self) -> BTreeSet<u64> {
        self.arrived.lock().unwrap().iter().map(|(n, _)| *n).collect()
    }

    /// The acknowledged items (the first `before` acknowledgements, and every
    /// one at or after `after`) that never arrived.
    pub fn missing(&self, before: usize, after: Instant) -> Vec<u64> {
        let arrived = self.arrived_set();
        let acked = self.acked.lock().unwrap();
        acked
            .iter()
            .enumerate()
            .filter(|(i, (_, t))| *i < before || *t >= after)
            .map(|(_, (n, _))| *n)
            .filter(|n| !arrived.contains(n))
            .collect()
    }

    /// Acknowledged items that never arrived.
    pub fn lost(&self) -> Vec<u64> {
        let arrived = self.arrived_set();
        let acked = self.acked.lock().unwrap();
        acked.iter().map(|(n, _)| *n).filter(|n| !arrived.contains(n)).collect()
    }

    /// When the first item acknowledged at or after `after` arrived.
    pub fn first_arrival_of_one_acked_after(&self, after: Instant) -> Option<Instant> {
        let acked: BTreeSet<u64> = self
            .acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| *t >= after)
            .map(|(n, _)| *n)
            .collect();
        self.arrived
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| acked.contains(n))
            .map(|(_, t)| *t)
            .min()
    }
}

/// What the client saw.
#[derive(Default)]
pub struct Observations {
    pub presence: Track,
    pub requests: Track,
    pub http: Track,
    pub messages: Numbered,
    pub queue: Numbered,
}

/// The running service, client and client loops.
pub struct Workload {
    pub service: Hydra,
    pub client: Hydra,
    pub seen: Arc<Observations>,
    worker: Option<QueueWorker>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A config for `name`: the Node object form when `object_form`, else the URL
/// (in a TLS group with the TLS settings beside it, which a URL cannot carry).
pub fn config(group: &SentinelGroup, name: &str, object_form: bool) -> ConfigBuilder {
    let redis = if object_form {
        group.redis_json(15)
    } else if let Some(tls) = &group.options().tls {
        json!({"url": group.url(15), "tls": {"ca": tls.ca}, "sentinelTLS": {"ca": tls.ca}})
    } else {
        json!({"url": group.url(15)})
    };
    let doc = json!({"hydra": {
        "serviceName": name, "serviceIP": "127.0.0.1", "redis": redis,
        "connectTimeout": 1000, "commandTimeout": 1000,
    }});
    ConfigBuilder::from_value(doc).expect("a valid document")
}

impl Workload {
    /// Starts the service (Node's object form) and the client (the URL form)
    /// and waits until every kind of work has succeeded once.
    pub fn start(group: &SentinelGroup) -> Workload {
        let seen = Arc::new(Observations::default());
        let service = Hydra::init(config(group, SERVICE, true).build().expect("config")).expect("service init");
        let arrivals = seen.clone();
        service
            .on_message(move |h, msg| {
                if let Some(n) = msg.body.get("n").and_then(Value::as_u64) {
                    arrivals.messages.arrived.lock().unwrap().push((n, Instant::now()));
                } else {
                    h.reply(&msg, json!({"pong": msg.body}))?;
                }
                Ok(())
            })
            .expect("on_message");
        service.register_service().expect("register");
        let route = format!("/v1/{SERVICE}/ping");
        service
            .serve_http(HttpRoutes::new().get(&route, |_, _| HttpResponse::json(200, &json!({"pong": true}))))
            .expect("serve_http");
        let processed = seen.clone();
        let worker = service
            .queue_worker(SERVICE, 2, move |queued| {
                if let Some(n) = queued.message.body.get("n").and_then(Value::as_u64) {
                    processed.queue.arrived.lock().unwrap().push((n, Instant::now()));
                }
                Ok(())
            })
            .expect("queue_worker");
        let client = Hydra::init(config(group, "failclient", false).build().expect("config")).expect("client init");
        client.register_service().expect("client register");
        let mut workload = Workload {
            service,
            client,
            seen,
            worker: Some(worker),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        workload.spawn_loops();
        workload
    }

    fn spawn_loops(&mut self) {
        let numbers = Arc::new(AtomicU64::new(0));
        let mut spawn = |name: &str, step: Step| {
            let (client, seen, stop, numbers) = (
                self.client.clone(),
                self.seen.clone(),
                self.stop.clone(),
                numbers.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("failover-{name}"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        step(&client, &seen, &numbers);
                        std::thread::sleep(PACE);
                    }
                })
                .expect("spawn a client loop");
            self.threads.push(thread);
        };
        spawn(
            "presence",
            Box::new(|client, seen, _| {
                let ok = client.get_service_presence(SERVICE).is_ok_and(|list| !list.is_empty());
                seen.presence.note(ok);
            }),
        );
        spawn(
            "request",
            Box::new(|client, seen, _| {
                let msg = client.create_umf_message(&format!("{SERVICE}:/"), json!({"ping": 1}));
                let ok = client
                    .request(&msg, CALL_TIMEOUT)
                    .is_ok_and(|reply| reply.body.get("pong").is_some());
                seen.requests.note(ok);
            }),
        );
        spawn(
            "http",
            Box::new(|client, seen, _| {
                let msg = client.create_umf_message(&format!("{SERVICE}:[get]/v1/{SERVICE}/ping"), json!({}));
                let ok = client
                    .make_api_request(&msg, RequestOptions::timeout(CALL_TIMEOUT))
                    .is_ok_and(|r| r.status == 200);
                seen.http.note(ok);
            }),
        );
        spawn(
            "send",
            Box::new(|client, seen, numbers| {
                let n = numbers.fetch_add(1, Ordering::SeqCst);
                let msg = client.create_umf_message(&format!("{SERVICE}:/"), json!({"n": n}));
                if client.send_message(&msg).is_ok() {
                    seen.messages.acked.lock().unwrap().push((n, Instant::now()));
                }
            }),
        );
        spawn(
            "queue",
            Box::new(|client, seen, numbers| {
                let n = numbers.fetch_add(1, Ordering::SeqCst);
                let msg = client.create_umf_message(&format!("{SERVICE}:/"), json!({"n": n}));
                if client.queue_message(&msg).is_ok() {
                    seen.queue.acked.lock().unwrap().push((n, Instant::now()));
                }
            }),
        );
    }

    /// Waits until presence, requests and HTTP calls have succeeded since
    /// `since`, and one item queued after `since` has been processed.
    pub fn wait_flowing(&self, since: Instant, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let s = &self.seen;
            let flowing = [&s.presence, &s.requests, &s.http].iter().all(|t| {
                t.flowing_since(since)
                    .is_some_and(|at| at.elapsed() > Duration::from_millis(200))
            });
            if flowing && s.queue.first_arrival_of_one_acked_after(since).is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the client loops (the service keeps running).
    pub fn stop_loops(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// Waits until every item in `items` has arrived at the service's queue
    /// worker; the ones that have not, after `timeout`.
    pub fn wait_processed(&self, items: &[u64], timeout: Duration) -> Vec<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.seen.queue.arrived_set();
            let missing: Vec<u64> = items.iter().copied().filter(|n| !arrived.contains(n)).collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops everything.
    pub fn shutdown(mut self) {
        self.stop_loops();
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
        let _ = self.client.shutdown();
        let _ = self.service.shutdown();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop_loops();
    }
}

/// What one failover cost, measured from the kill.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub sentinel_promoted: Option<Duration>,
    pub presence: Option<Duration>,
    pub requests: Option<Duration>,
    pub http: Option<Duration>,
    pub queue: Option<Duration>,
    /// One-way messages acknowledged by Redis that never arrived.
    pub messages_lost: usize,
    pub messages_acked: usize,
    /// Queue items acknowledged before the replica caught up, or after a
    /// kill, that were never processed (must be none).
    pub queue_lost_required: Vec<u64>,
    /// Queue items acknowledged after the replica caught up (and, with a
    /// manual failover, by the old master before the switch was noticed)
    /// that were never processed: what asynchronous replication may lose.
    pub queue_lost_in_lag: usize,
    pub queue_acked: usize,
}

/// How the master goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// SIGKILL.
    Kill,
    /// `SENTINEL FAILOVER`: the old master lives on as a replica.
    Manual,
}

/// Runs one failover: waits until the replicas hold every queue item
/// acknowledged so far, kills the master, waits for the work to flow again
/// (at most `timeout`), then stops the client loops and checks what was lost.
pub fn run_failover(group: &mut SentinelGroup, workload: &mut Workload, timeout: Duration) -> Recovery {
    run_switch(group, workload, timeout, Switch::Kill)
}

/// [`run_failover`] with the master going as `how` says.
pub fn run_switch(group: &mut SentinelGroup, workload: &mut Workload, timeout: Duration, how: Switch) -> Recovery {
    let caught_up_count = workload.seen.queue.acked_count();
    let offset = group
        .replication_offset()
        .expect("read the master's replication offset");
    let deadline = Instant::now() + timeout;
    while !group.replicas_reached(offset) {
        assert!(
            Instant::now() < deadline,
            "the replica never caught up with offset {offset}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let old = group.master_port().expect("a master");
    let kill = match how {
        // From when the master is gone (killed and reaped): an item acknowledged
        // while the kill was on its way is not one "queued after the kill".
        Switch::Kill => {
            group.kill_master();
            Instant::now()
        }
        Switch::Manual => {
            let asked = Instant::now();
            group.failover();
            asked
        }
    };
    let new_master = group.wait_for_new_master(old, timeout);
    let promoted = new_master.map(|_| kill.elapsed());
    if how == Switch::Manual
        && let Some(port) = new_master
    {
        // The old master still answers, so the work never stops: wait until
        // the service writes its presence on the new master (a copy
        // replicated before the switch has expired 3 s later).
        let key = format!(
            "hydra:service:{SERVICE}:{}:presence",
            workload.service.get_instance_id()
        );
        let expired_copies = Instant::now() + Duration::from_millis(3500);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let written = group
                .data_connection(port)
                .and_then(|mut c| {
                    redis::pipe()
                        .cmd("SELECT")
                        .arg(15)
                        .ignore()
                        .cmd("EXISTS")
                        .arg(&key)
                        .query::<(bool,)>(&mut c)
                })
                .is_ok_and(|(exists,)| exists);
            if written && Instant::now() >= expired_copies {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let flowing = workload.wait_flowing(kill, timeout);
    // Let a few more items through on the new master, then stop sending.
    std::thread::sleep(Duration::from_millis(300));
    workload.stop_loops();
    let seen = workload.seen.clone();
    let since = |t: Option<Instant>| t.map(|at| at.saturating_duration_since(kill));
    // After a kill nothing can have gone to the old master; after a manual
    // failover it takes writes until its clients notice the switch (or
    // Sentinel converts it), and those are lost.
    let no_later = kill + Duration::from_secs(24 * 3600);
    let required = match how {
        Switch::Kill => seen.queue.missing(caught_up_count, kill),
        Switch::Manual => seen.queue.missing(caught_up_count, no_later),
    };
    let queue_lost_required = workload.wait_processed(&required, timeout);
    let lost_messages = {
        // Stragglers: a message read just before the stop may still be in a handler.
        std::thread::sleep(Duration::from_millis(200));
        seen.messages.lost().len()
    };
    let all_missing = seen.queue.lost();
    let queue_lost_in_lag = all_missing.len() - queue_lost_required.len();
    let _ = flowing;
    Recovery {
        sentinel_promoted: promoted,
        presence: since(seen.presence.flowing_since(kill)),
        requests: since(seen.requests.flowing_since(kill)),
        http: since(seen.http.flowing_since(kill)),
        queue: since(seen.queue.first_arrival_of_one_acked_after(kill)),
        messages_lost: lost_messages,
        messages_acked: seen.messages.acked_count(),
        queue_lost_required,
        queue_lost_in_lag,
        queue_acked: seen.queue.acked_count(),
    }
}
