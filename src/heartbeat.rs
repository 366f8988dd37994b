//! Registration writes and the heartbeat thread that keeps them alive
//! (spec §2.2–2.6, §2.10).
//!
//! Every second one pipelined round trip refreshes presence (`SET … EX 3 GET`,
//! the same key, value and TTL as Node's `SETEX … 3`) and the `nodes` entry;
//! every fifth second the same round trip also carries the health snapshot.
//! The `GET` tells us whether presence was there before our write: when it was
//! not (Redis restarted, was flushed, or we were cut off longer than the TTL)
//! the heartbeat re-creates the rest of the registration at once (the service
//! record, the routes registered with `register_routes`, health and our index
//! entries), at no cost in the steady state.
//!
//! With Redis Sentinel the thread also asks the sentinels where the master
//! is after every beat (on a kept connection), so that a switch that broke
//! no connection (a manual failover, a partition) is noticed within a
//! second, and it wakes when the sentinels name a new
//! master, and beats at once: presence is back on the new master as soon as
//! anyone in the process has found it, not up to a second later (and the GET
//! above re-creates whatever the new master lacks). While beats fail it
//! retries four times a second, so it is often the one that finds it.
//!
//! Beats and deregistration are fenced by one lock: a beat that is late (Redis
//! slow, the thread not joined in time) can never write presence after the
//! instance has deregistered. Between beats the same thread prunes long-dead
//! `nodes` entries a little at a time (see [`node_index`](crate::node_index)).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never, select};
use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::host;
use crate::keys;
use crate::node_index::{ADD_OWN_LUA, NodeIndex, PRUNE_BUDGET_PER_TICK, Pruner, REMOVE_OWN_LUA};
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
    /// `hydra:service:<svc>:nodeids`, our entry in the per-service index.
    instances_key: String,
    node: NodeTemplate,
    started: Instant,
    /// The routes last stored by `register_routes` (shared with the handle),
    /// re-created with the rest when Redis lost them.
    routes: Arc<Mutex<Vec<String>>>,
    /// Held by every beat and by `deregister`, which sets `retired` under it:
    /// no beat writes after deregistration, however late it runs.
    fence: Mutex<()>,
    retired: AtomicBool,
}

impl Registration {
    pub(crate) fn new(
        store: Arc<Store>,
        service_type: &str,
        node: NodeTemplate,
        routes: Arc<Mutex<Vec<String>>>,
    ) -> Registration {
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
            instances_key: keys::service_instances(&svc),
            service_name: svc,
            instance_id: id,
            node,
            started: Instant::now(),
            routes,
            fence: Mutex::new(()),
            retired: AtomicBool::new(false),
        }
    }

    /// Publishes another service port from the next write on.
    pub(crate) fn set_port(&self, port: u16) {
        self.node.port.store(port, Ordering::SeqCst);
    }

    /// The first registration: the service record (last registrant wins, as in
    /// Node), presence, the `nodes` entry and health, in one round trip.
    pub(crate) fn register(&self) -> Result<()> {
        let _fence = self.lock_fence();
        let mut pipe = redis::pipe();
        pipe.set(&self.service_key, &self.service_record).ignore();
        self.add_reassert(&mut pipe, false);
        // Our nodes field is new: add it so that trusted indexes stay trusted.
        pipe.cmd("EVAL")
            .arg(ADD_OWN_LUA)
            .arg(3)
            .arg(keys::NODES)
            .arg(keys::NODES_INDEXED)
            .arg(&self.instances_key)
            .arg(&self.instance_id)
            .arg(self.node.to_wire(&timestamp::now_iso()))
            .ignore();
        self.add_beat(&mut pipe, true);
        self.store.run(|c| pipe.query::<()>(c))
    }

    fn lock_fence(&self) -> std::sync::MutexGuard<'_, ()> {
        self.fence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One heartbeat. Returns `false` when presence had vanished before this
    /// write, in which case the rest of the registration has been re-created.
    pub(crate) fn beat(&self, with_health: bool) -> Result<bool> {
        let _fence = self.lock_fence();
        if self.retired.load(Ordering::SeqCst) {
            return Ok(true);
        }
        // A beat in flight: the test holds it here while deregistering.
        #[cfg(test)]
        tests::pause_point(&self.instance_id);
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
        pipe.sadd(&self.instances_key, &self.instance_id).ignore();
        if with_health {
            self.add_health(pipe);
        }
    }

    fn add_health(&self, pipe: &mut redis::Pipeline) {
        let snapshot = self.health_snapshot(true).to_string();
        pipe.set_ex(&self.health_key, snapshot, HEALTH_TTL_SECS).ignore();
        pipe.expire(&self.health_log_key, HEALTH_LOG_TTL_SECS).ignore();
    }

    /// The service record (kept if present, so `registeredOn` survives), our
    /// entry in the service index, and (when re-creating) the routes.
    fn add_reassert(&self, pipe: &mut redis::Pipeline, keep_existing: bool) {
        if keep_existing {
            pipe.cmd("SET")
                .arg(&self.service_key)
                .arg(&self.service_record)
                .arg("NX")
                .ignore();
            // Added to whatever another instance of the service re-created:
            // instances of one service register the same routes.
            let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if !routes.is_empty() {
                pipe.sadd(keys::routes(&self.service_name), routes).ignore();
            }
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
    ///
    /// Waits for a beat in flight (bounded by the command timeouts), and no
    /// beat writes anything afterwards.
    pub(crate) fn deregister(&self) -> Result<()> {
        let _fence = self.lock_fence();
        self.retired.store(true, Ordering::SeqCst);
        let logged = self.log("info", "Service is shutting down.");
        let mut pipe = redis::pipe();
        pipe.expire(&self.health_key, PRESENCE_TTL_SECS as i64)
            .ignore()
            .expire(&self.health_log_key, HEALTH_LOG_TTL_SECS)
            .ignore()
            .del(&self.presence_key)
            .ignore();
        pipe.cmd("EVAL")
            .arg(REMOVE_OWN_LUA)
            .arg(3)
            .arg(keys::NODES)
            .arg(keys::NODES_INDEXED)
            .arg(&self.instances_key)
            .arg(&self.instance_id)
            .ignore();
        self.store.run(|c| pipe.query::<()>(c))?;
        logged
    }

    /// How long `shutdown` waits for the heartbeat thread: one round trip that
    /// connects and retries once on a fresh connection (a beat in flight), plus
    /// the pruner's time budget. Correctness does not depend on it: a beat
    /// still running after this is fenced (it cannot write once `deregister`
    /// ran), so a Redis that hangs delays shutdown by one round trip, not by
    /// every round trip a tick could make.
    fn join_deadline(&self) -> Duration {
        2 * (self.store.connect_timeout() + self.store.command_timeout()) + PRUNE_BUDGET_PER_TICK
    }
}

/// The heartbeat thread (`hydra-heartbeat`).
pub(crate) struct Heartbeat {
    stop: Sender<()>,
    thread: OwnedThread,
    join_deadline: Duration,
}

impl Heartbeat {
    pub(crate) fn spawn(registration: Arc<Registration>) -> std::io::Result<Heartbeat> {
        let (stop, stop_rx) = bounded::<()>(1);
        let join_deadline = registration.join_deadline() + Duration::from_secs(1);
        let thread = OwnedThread::spawn("hydra-heartbeat", move || run(&registration, &stop_rx))?;
        Ok(Heartbeat {
            stop,
            thread,
            join_deadline,
        })
    }

    /// Stops the thread and joins it, waiting at most one worst-case round trip
    /// (see `Registration::join_deadline`). Should it still be running, the
    /// fence in `Registration` keeps it from writing after deregistration.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join(self.join_deadline);
    }
}

fn run(registration: &Registration, stop: &Receiver<()>) {
    let index = NodeIndex::new();
    let mut pruner = Pruner::new(&registration.instance_id);
    let mut next_beat = Instant::now() + PRESENCE_INTERVAL;
    let mut next_health = Instant::now() + HEALTH_INTERVAL;
    let mut failing_since: Option<Instant> = None;
    let switches = registration.store.master_switches().unwrap_or_else(never);
    loop {
        select! {
            recv(stop) -> _ => return,
            // A new master: beat there now, then every second from now.
            recv(switches) -> _ => next_beat = Instant::now(),
            default(next_beat.saturating_duration_since(Instant::now())) => {}
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
                // With Sentinel: notice a switch that broke no connection.
                registration.store.check_master();
            }
            Err(e) => {
                // Say it once per outage, not once per tick.
                if failing_since.is_none() {
                    log::warn!(
                        "heartbeat of {} failed at {}: {}; retrying every {:?}",
                        registration.service_name,
                        registration.store.target(),
                        crate::error::describe(&e),
                        PRESENCE_INTERVAL / 4
                    );
                    failing_since = Some(now);
                }
            }
        }
        if failing_since.is_none() && stop.is_empty() {
            pruner.tick(&index, &registration.store);
        }
        // Keep a steady 1 s rhythm, but never try to catch up on missed beats;
        // while failing, try again sooner (presence outlives three beats).
        next_beat += PRESENCE_INTERVAL;
        let now = Instant::now();
        if next_beat < now || failing_since.is_some() {
            next_beat = now + PRESENCE_INTERVAL / 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;
    use crossbeam_channel::Sender;
    use hydra_testkit::RedisServer;
    use redis::Commands;
    use std::collections::HashMap;

    /// A beat of the instance named here stops between taking the fence and
    /// writing: it says so on the first channel and waits for the second.
    type Pause = (Sender<()>, Receiver<()>);
    static PAUSES: Mutex<Option<HashMap<String, Pause>>> = Mutex::new(None);

    pub(super) fn pause_point(instance_id: &str) {
        let pause = PAUSES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|m| m.remove(instance_id));
        if let Some((arrived, go)) = pause {
            let _ = arrived.send(());
            let _ = go.recv_timeout(Duration::from_secs(10));
        }
    }

    fn registration(server: &RedisServer, id: &str) -> Registration {
        let store = Arc::new(
            Store::new(
                &RedisConfig::from_url(&server.url(15)).unwrap(),
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let node = NodeTemplate {
            service_name: "fenced".into(),
            service_description: String::new(),
            version: "1".into(),
            instance_id: id.into(),
            process_id: 1,
            ip: "127.0.0.1".into(),
            port: 1.into(),
            port_is_fixed: true,
            host_name: "h".into(),
        };
        Registration::new(store, "test", node, Arc::new(Mutex::new(Vec::new())))
    }

    /// A beat that is already running when the instance deregisters (the
    /// heartbeat was not joined in time) must not write presence back.
    #[test]
    fn a_late_beat_cannot_resurrect_a_deregistered_instance() {
        let server = RedisServer::start();
        let registration = Arc::new(registration(&server, "latebeat"));
        registration.register().unwrap();

        let (arrived_tx, arrived) = bounded(1);
        let (go, go_rx) = bounded(1);
        PAUSES
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert("latebeat".into(), (arrived_tx, go_rx));
        let beating = registration.clone();
        let beat = std::thread::spawn(move || beating.beat(false));
        arrived.recv_timeout(Duration::from_secs(10)).expect("the beat started");

        let leaving = registration.clone();
        let (deregistered_tx, deregistered) = bounded(1);
        let deregister = std::thread::spawn(move || {
            let result = leaving.deregister();
            let _ = deregistered_tx.send(());
            result
        });
        // Deregistration either waits for the beat (fenced) or finishes
        // first; let the beat go either way once that is decided.
        let _ = deregistered.recv_timeout(Duration::from_millis(500));
        go.send(()).unwrap();
        beat.join().unwrap().unwrap();
        deregister.join().unwrap().unwrap();

        let mut conn = redis::Client::open(server.url(15)).unwrap().get_connection().unwrap();
        let presence: bool = conn.exists("hydra:service:fenced:latebeat:presence").unwrap();
        let node: bool = conn.hexists(keys::NODES, "latebeat").unwrap();
        assert!(
            !presence && !node,
            "presence {presence}, nodes entry {node} after deregistration"
        );
        // And later beats write nothing.
        registration.beat(true).unwrap();
        let presence: bool = conn.exists("hydra:service:fenced:latebeat:presence").unwrap();
        assert!(!presence);
    }

    #[test]
    fn the_join_deadline_covers_a_round_trip_in_flight() {
        let server = RedisServer::start();
        let registration = registration(&server, "deadline");
        // A beat in flight may connect and retry once, at 1 s + 1 s each time;
        // anything later is fenced (a_late_beat_cannot_resurrect_…).
        assert!(registration.join_deadline() >= Duration::from_secs(4));
        assert!(registration.join_deadline() < Duration::from_secs(5));
    }
}
