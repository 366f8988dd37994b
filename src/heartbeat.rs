//! Registration writes and the heartbeat thread that keeps them alive
//! (spec §2.2–2.6, §2.10).
//!
//! Every second one pipelined round trip refreshes presence (`SET … EX 3 GET`,
//! the same key, value and TTL as Node's `SETEX … 3`) and the `nodes` entry;
//! every fifth second the same round trip also carries the health snapshot.
//! The `GET` tells us whether presence was there before our write: when it was
//! not (Redis restarted, was flushed, or we were cut off longer than the TTL)
//! the heartbeat re-creates the rest of the registration at once, at no cost in
//! the steady state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::host;
use crate::keys;
use crate::records::{HealthLogEntry, NodeTemplate, ServiceRecord};
use crate::registry::HEALTH_LOG_ENTRIES;
use crate::store::Store;
use crate::threads::OwnedThread;
use crate::timestamp;

/// Presence refresh period (`PRESENCE_UPDATE_INTERVAL`).
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);
/// Presence TTL (`KEY_EXPIRATION_TTL`).
pub const PRESENCE_TTL_SECS: u64 = 3;
/// Health refresh period (`HEALTH_UPDATE_INTERVAL`).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Health TTL: longer than its refresh period, so a live instance's health is
/// always readable (Node's 3 s TTL leaves a 2 s gap every 5 s, spec §15.2).
pub const HEALTH_TTL_SECS: u64 = 10;
/// Flight-recorder expiry: one week.
pub const HEALTH_LOG_TTL_SECS: i64 = 604_800;
/// How long shutdown waits for the heartbeat thread.
const JOIN_DEADLINE: Duration = Duration::from_secs(5);

/// Everything one registered instance writes, and the writes themselves.
pub(crate) struct Registration {
    store: Arc<Store>,
    service_name: String,
    service_key: String,
    service_record: String,
    presence_key: String,
    health_key: String,
    health_log_key: String,
    instance_id: String,
    node: NodeTemplate,
    started: Instant,
    /// Set by `deregister`: a late beat (e.g. republishing a moved port while
    /// shutting down) must not bring the instance back.
    retired: std::sync::atomic::AtomicBool,
}

impl Registration {
    pub(crate) fn new(store: Arc<Store>, service_type: &str, node: NodeTemplate) -> Registration {
        let svc = node.service_name.clone();
        let id = node.instance_id.clone();
        let record = ServiceRecord {
            service_name: svc.clone(),
            service_type: service_type.to_string(),
            registered_on: timestamp::now_iso(),
        };
        Registration {
            store,
            service_key: keys::service(&svc),
            service_record: record.to_wire(),
            presence_key: keys::presence(&svc, &id),
            health_key: keys::health(&svc, &id),
            health_log_key: keys::health_log(&svc, &id),
            service_name: svc,
            instance_id: id,
            node,
            started: Instant::now(),
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Publishes another service port from the next write on.
    pub(crate) fn set_port(&self, port: u16) {
        self.node.port.store(port, std::sync::atomic::Ordering::SeqCst);
    }

    /// The first registration: the service record (last registrant wins, as in
    /// Node), presence, the `nodes` entry and health, in one round trip.
    pub(crate) fn register(&self) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.set(&self.service_key, &self.service_record).ignore();
        self.add_reassert(&mut pipe, false);
        self.add_beat(&mut pipe, true);
        self.store.run(|c| pipe.query::<()>(c))
    }

    /// One heartbeat. Returns `false` when presence had vanished before this
    /// write, in which case the rest of the registration has been re-created.
    pub(crate) fn beat(&self, with_health: bool) -> Result<bool> {
        if self.retired.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(true);
        }
        let mut pipe = redis::pipe();
        self.add_beat(&mut pipe, with_health);
        let (previous,): (Option<String>,) = self.store.run(|c| pipe.query(c))?;
        if previous.is_some() {
            return Ok(true);
        }
        let mut pipe = redis::pipe();
        self.add_reassert(&mut pipe, true);
        if !with_health {
            self.add_health(&mut pipe);
        }
        self.store.run(|c| pipe.query::<()>(c))?;
        Ok(false)
    }

    /// Presence (with the previous value returned) and the `nodes` entry,
    /// plus health when due.
    fn add_beat(&self, pipe: &mut redis::Pipeline, with_health: bool) {
        pipe.cmd("SET")
            .arg(&self.presence_key)
            .arg(&self.instance_id)
            .arg("EX")
            .arg(PRESENCE_TTL_SECS)
            .arg("GET");
        pipe.hset(keys::NODES, &self.instance_id, self.node.to_wire(&timestamp::now_iso()))
            .ignore();
        if with_health {
            self.add_health(pipe);
        }
    }

    fn add_health(&self, pipe: &mut redis::Pipeline) {
        let snapshot = self.health_snapshot(true).to_string();
        pipe.set_ex(&self.health_key, snapshot, HEALTH_TTL_SECS).ignore();
        pipe.expire(&self.health_log_key, HEALTH_LOG_TTL_SECS).ignore();
    }

    /// The service record (kept if present, so `registeredOn` survives) and our
    /// entry in the service index.
    fn add_reassert(&self, pipe: &mut redis::Pipeline, keep_existing: bool) {
        if keep_existing {
            pipe.cmd("SET")
                .arg(&self.service_key)
                .arg(&self.service_record)
                .arg("NX")
                .ignore();
        }
        pipe.sadd(keys::SERVICE_INDEX, &self.service_name).ignore();
    }

    /// Node's health object (spec §2.5), with `updatedOn` when written to Redis
    /// and without it for `get_health()`. `memory` holds what a Rust process
    /// has (`rss`); `runtime` replaces Node's `nodeVersion`.
    pub(crate) fn health_snapshot(&self, with_updated_on: bool) -> Value {
        let now = timestamp::now_iso();
        let mut map = Map::new();
        if with_updated_on {
            map.insert("updatedOn".into(), json!(now));
        }
        map.insert("serviceName".into(), json!(self.service_name));
        map.insert("instanceID".into(), json!(self.instance_id));
        map.insert("hostName".into(), json!(self.node.host_name));
        map.insert("sampledOn".into(), json!(now));
        map.insert("processID".into(), json!(self.node.process_id));
        map.insert("architecture".into(), json!(host::architecture()));
        map.insert("platform".into(), json!(host::platform()));
        map.insert("runtime".into(), json!(concat!("hydra-rs/", env!("CARGO_PKG_VERSION"))));
        map.insert("memory".into(), json!({ "rss": host::rss_bytes() }));
        map.insert("uptimeSeconds".into(), json!(self.started.elapsed().as_secs_f64()));
        Value::Object(map)
    }

    /// Appends to the flight recorder: newest first, 64 entries, one week.
    pub(crate) fn log(&self, entry_type: &str, msg: &str) -> Result<()> {
        let entry = HealthLogEntry {
            ts: timestamp::now_iso(),
            service_name: self.service_name.clone(),
            entry_type: entry_type.to_string(),
            process_id: u64::from(self.node.process_id),
            msg: msg.to_string(),
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .lpush(&self.health_log_key, entry.to_wire())
            .ignore()
            .ltrim(&self.health_log_key, 0, HEALTH_LOG_ENTRIES - 1)
            .ignore()
            .expire(&self.health_log_key, HEALTH_LOG_TTL_SECS)
            .ignore();
        self.store.run(|c| pipe.query::<()>(c))
    }

    /// Node's shutdown writes (spec §2.10 step 5), plus removing our own
    /// `nodes` entry, which Node leaves behind forever.
    pub(crate) fn deregister(&self) -> Result<()> {
        self.retired.store(true, std::sync::atomic::Ordering::SeqCst);
        let logged = self.log("info", "Service is shutting down.");
        let mut pipe = redis::pipe();
        pipe.expire(&self.health_key, PRESENCE_TTL_SECS as i64)
            .ignore()
            .expire(&self.health_log_key, HEALTH_LOG_TTL_SECS)
            .ignore()
            .del(&self.presence_key)
            .ignore()
            .hdel(keys::NODES, &self.instance_id)
            .ignore();
        self.store.run(|c| pipe.query::<()>(c))?;
        logged
    }
}

/// The heartbeat thread (`hydra-heartbeat`).
pub(crate) struct Heartbeat {
    stop: Sender<()>,
    thread: OwnedThread,
}

impl Heartbeat {
    pub(crate) fn spawn(registration: Arc<Registration>) -> std::io::Result<Heartbeat> {
        let (stop, stop_rx) = bounded::<()>(1);
        let thread = OwnedThread::spawn("hydra-heartbeat", move || run(&registration, &stop_rx))?;
        Ok(Heartbeat { stop, thread })
    }

    /// Stops the thread and joins it, waiting at most a few seconds (a beat in
    /// flight can take up to the command timeout).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join(JOIN_DEADLINE);
    }
}

fn run(registration: &Registration, stop: &Receiver<()>) {
    let mut next_beat = Instant::now() + PRESENCE_INTERVAL;
    let mut next_health = Instant::now() + HEALTH_INTERVAL;
    let mut failing_since: Option<Instant> = None;
    loop {
        match stop.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let with_health = now >= next_health;
        match registration.beat(with_health) {
            Ok(presence_was_there) => {
                if let Some(since) = failing_since.take() {
                    log::info!(
                        "heartbeat of {} reaches Redis again after {:.1}s",
                        registration.service_name,
                        since.elapsed().as_secs_f64()
                    );
                }
                if !presence_was_there {
                    log::info!(
                        "registration of {} ({}) was missing from Redis; re-created",
                        registration.service_name,
                        registration.instance_id
                    );
                }
                if with_health {
                    next_health = now + HEALTH_INTERVAL;
                }
            }
            Err(e) => {
                // Say it once per outage, not once per tick.
                if failing_since.is_none() {
                    log::warn!(
                        "heartbeat of {} failed at {}: {}; retrying every {:?}",
                        registration.service_name,
                        registration.store.target(),
                        crate::error::describe(&e),
                        PRESENCE_INTERVAL
                    );
                    failing_since = Some(now);
                }
            }
        }
        // Keep a steady 1 s rhythm, but never try to catch up on missed beats.
        next_beat += PRESENCE_INTERVAL;
        let now = Instant::now();
        if next_beat < now {
            next_beat = now + PRESENCE_INTERVAL / 4;
        }
    }
}
