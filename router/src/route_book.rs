//! The route table the router serves from, and when it is rebuilt.
//!
//! Rebuilt from Redis (every service's route set, read through the library's
//! `get_all_service_routes`, plus `externalRoutes`) at start, on every
//! `refresh` broadcast services send when they register routes, on
//! `/v1/router/refresh[/:service]`, and every `routeRefreshInterval`.
//! Rebuilds asked for while one runs are folded into one.
//!
//! Unlike Node's table, which only ever grows: a service with no live
//! instance for `routePruneAfter` leaves the table (its routes stay in Redis,
//! where a restart of the service replaces them; only this router's table
//! forgets them). A route set that changed in Redis replaces the service's
//! routes; one that is gone from Redis does not: the service keeps the routes
//! it had until it is pruned, as in Node's table. A Redis that restarted
//! without its data comes back without route sets, and Node services do not
//! register theirs again (their heartbeat brings back only presence and the
//! `nodes` entry), so dropping them would leave live services unreachable. The
//! absence is counted from when the presence of the newest heartbeat in
//! `hydra:service:nodes` expires (`PRESENCE_TTL_SECS` after it), or, once
//! that entry is gone too, from when this router first saw the service
//! without one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hydra::Hydra;

use crate::route_table::RouteTable;

/// The current table and the bookkeeping that decides what is in it.
pub struct RouteBook {
    table: RwLock<Arc<RouteTable>>,
    external: Vec<(String, Vec<String>)>,
    prune_after: Duration,
    /// Service → when it was last known alive (milliseconds since the epoch).
    last_alive: Mutex<HashMap<String, i64>>,
    /// The routes of every service in the table: kept for a service whose
    /// route set is gone from Redis.
    known_routes: Mutex<BTreeMap<String, Vec<String>>>,
    /// Services left out of the table by the last rebuild (logged once).
    pruned: Mutex<HashSet<String>>,
    /// Serialises rebuilds.
    rebuilding: Mutex<()>,
    /// When the last rebuild finished, and whether it worked.
    last_rebuild: Mutex<Option<(Instant, bool)>>,
}

impl RouteBook {
    /// An empty book; [`rebuild`](RouteBook::rebuild) fills it.
    pub fn new(external: Vec<(String, Vec<String>)>, prune_after: Duration) -> RouteBook {
        RouteBook {
            table: RwLock::new(Arc::new(RouteTable::new(external.clone()))),
            external,
            prune_after,
            last_alive: Mutex::new(HashMap::new()),
            known_routes: Mutex::new(BTreeMap::new()),
            pruned: Mutex::new(HashSet::new()),
            rebuilding: Mutex::new(()),
            last_rebuild: Mutex::new(None),
        }
    }

    /// The table to match a request against (cheap: an `Arc`).
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the routes from Redis and swaps the table in. On a Redis
    /// error the previous table stays.
    pub fn rebuild(&self, hydra: &Hydra) -> hydra::Result<()> {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.read_and_swap(hydra);
        *self.last_rebuild.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), result.is_ok()));
        result
    }

    fn read_and_swap(&self, hydra: &Hydra) -> hydra::Result<()> {
        let mut routes = hydra.get_all_service_routes()?;
        let nodes = hydra.get_service_nodes()?;
        let mut known = self.known_routes.lock().unwrap_or_else(|p| p.into_inner());
        for (service, patterns) in known.iter() {
            routes.entry(service.clone()).or_insert_with(|| patterns.clone());
        }
        let kept = self.prune(routes, &nodes, hydra.get_service_name(), now_millis());
        *known = kept.iter().cloned().collect();
        drop(known);
        let services = kept.into_iter().chain(self.external.iter().cloned());
        let table = Arc::new(RouteTable::new(services));
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
        Ok(())
    }

    /// The services whose routes stay in the table.
    fn prune(
        &self,
        routes: BTreeMap<String, Vec<String>>,
        nodes: &[hydra::Instance],
        own_service: &str,
        now: i64,
    ) -> Vec<(String, Vec<String>)> {
        let mut last_alive = self.last_alive.lock().unwrap_or_else(|p| p.into_inner());
        for node in nodes {
            let seen = last_alive
                .entry(node.service_name.clone())
                .or_insert(node.updated_on_ts);
            *seen = (*seen).max(node.updated_on_ts);
        }
        // Services with no heartbeat on record count from now: their absence
        // starts when this router first notices it.
        for service in routes.keys() {
            last_alive.entry(service.clone()).or_insert(now);
        }
        last_alive.retain(|service, _| routes.contains_key(service));
        // An instance is live until its presence key expires, a TTL after its
        // last heartbeat: absence starts then (counting from the heartbeat
        // itself would prune a live service whenever `routePruneAfter` is
        // shorter than the heartbeat period).
        let presence_ttl = i64::try_from(hydra::PRESENCE_TTL_SECS.saturating_mul(1000)).unwrap_or(i64::MAX);
        let window = i64::try_from(self.prune_after.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(presence_ttl);
        let mut pruned = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
        let mut now_pruned = HashSet::new();
        let kept = routes
            .into_iter()
            .filter(|(service, _)| {
                let seen = last_alive.get(service).copied().unwrap_or(now);
                let keep = service == own_service || now.saturating_sub(seen) <= window;
                if !keep {
                    if !pruned.contains(service) {
                        log::info!(
                            "routes of {service} left the route table: no live instance for {:?}",
                            self.prune_after
                        );
                    }
                    now_pruned.insert(service.clone());
                }
                keep
            })
            .collect();
        *pruned = now_pruned;
        kept
    }

    /// Seconds since the last rebuild and whether it worked (for health).
    pub fn last_rebuild(&self) -> Option<(Duration, bool)> {
        self.last_rebuild
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|(at, ok)| (at.elapsed(), ok))
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
