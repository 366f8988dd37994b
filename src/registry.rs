//! The read side of Hydra's registry: services, instances, presence, health,
//! the flight recorder and the config store (spec §2, §8, §10).
//!
//! Discovery never scans the keyspace. Node finds instances with
//! `SCAN MATCH *:<svc>:*:presence` over the whole database, which costs one
//! round trip per 100 keys of *any* kind (hydra issue #192). Every Hydra writer,
//! Node or ours, also writes its record into the `hydra:service:nodes` hash
//! each second; we keep a per-service index of that hash, so a lookup is one
//! short script whose cost follows the instances of the wanted service, not the
//! size of the database nor every instance ever registered (see
//! [`node_index`](crate::node_index)).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::parse_label;
use crate::error::{Error, Result};
use crate::keys;
use crate::node_index::NodeIndex;
use crate::records::{HealthLogEntry, Instance, ServiceRecord};
use crate::store::Store;

/// Flight-recorder length (`MAX_ENTRIES_IN_HEALTH_LOG`).
pub(crate) const HEALTH_LOG_ENTRIES: isize = 64;

/// Health, recent log and present instances of one service
/// (`getServiceHealthAll`).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    /// The service's registration record.
    pub service: ServiceRecord,
    /// Latest health snapshot of each instance that has one.
    pub health: Vec<Value>,
    /// Flight-recorder entries of all its instances, newest first.
    pub log: Vec<HealthLogEntry>,
    /// Present instances.
    pub presence: Vec<Instance>,
}

/// Reads the registry. Shared by every clone of a `Hydra` handle.
pub(crate) struct Registry {
    store: Arc<Store>,
    node_index: NodeIndex,
    presence_cache: PresenceCache,
    warned: WarnOnce,
}

impl Registry {
    pub(crate) fn new(store: Arc<Store>, presence_cache_ttl: Duration) -> Registry {
        Registry {
            store,
            node_index: NodeIndex::new(),
            presence_cache: PresenceCache::new(presence_cache_ttl),
            warned: WarnOnce::default(),
        }
    }

    /// Every registered service (`getServices`): the services named in the
    /// `nodes` hash and in our own index, with their `:service` records.
    pub(crate) fn get_services(&self) -> Result<Vec<ServiceRecord>> {
        let names = self.service_names()?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let service_keys: Vec<String> = names.iter().map(|n| keys::service(n)).collect();
        let records: Vec<Option<String>> = self.store.run(|c| redis::cmd("MGET").arg(&service_keys).query(c))?;
        Ok(service_keys
            .iter()
            .zip(records)
            .filter_map(|(key, text)| {
                let text = text?;
                ServiceRecord::parse(&text)
                    .map_err(|reason| self.warned.warn(key, &text, &reason))
                    .ok()
            })
            .collect())
    }

    /// Names of every service known to the registry, sorted: those with
    /// entries in the `nodes` hash and those in our own index.
    pub(crate) fn service_names(&self) -> Result<Vec<String>> {
        let (nodes, indexed): (Vec<String>, Vec<String>) = self
            .store
            .run(|c| redis::pipe().hvals(keys::NODES).smembers(keys::SERVICE_INDEX).query(c))?;
        let mut names: BTreeSet<String> = indexed.into_iter().collect();
        for text in &nodes {
            match Instance::parse(text) {
                Ok(instance) => {
                    names.insert(instance.service_name);
                }
                Err(reason) => self.warned.warn(keys::NODES, text, &reason),
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The `:service` record of `name` (`findService`).
    pub(crate) fn find_service(&self, name: &str) -> Result<ServiceRecord> {
        let name = lookup_name(name);
        let key = keys::service(&name);
        let text: Option<String> = self.store.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        let text = text.ok_or_else(|| Error::NotFound(format!("Can't find {name} service")))?;
        ServiceRecord::parse(&text).map_err(|reason| Error::Malformed(format!("{key}: {reason}")))
    }

    /// Every `nodes` entry, live or not, with `elapsed` (`getServiceNodes`).
    pub(crate) fn get_service_nodes(&self) -> Result<Vec<Instance>> {
        let entries: Vec<(String, String)> = self.store.run(|c| redis::cmd("HGETALL").arg(keys::NODES).query(c))?;
        Ok(entries
            .into_iter()
            .filter_map(|(field, text)| self.parse_instance(&field, &text))
            .collect())
    }

    /// Removes `nodes` entries of instances that are not present and whose last
    /// heartbeat is older than `older_than` (Node never removes them; hydra-cli's
    /// `refresh node list` uses 60 s, hydra-router's `clear` 5 s). Entries that
    /// do not parse are left alone. Returns how many were removed.
    pub(crate) fn clear_stale_nodes(&self, older_than: Duration) -> Result<usize> {
        // Bounded batches (HSCAN), each judging and removing atomically.
        Ok(self.node_index.walk(&self.store, Some(older_than), "")?.removed)
    }

    /// Present instances of `name`, in random order, read from Redis now
    /// (`getServicePresence`). The result also refreshes the routing cache.
    pub(crate) fn get_service_presence(&self, name: &str) -> Result<Vec<Instance>> {
        let name = lookup_name(name);
        let instances = self.present_instances(&name)?;
        self.presence_cache.put(&name, instances.clone().into());
        let mut instances = instances;
        fastrand::shuffle(&mut instances);
        Ok(instances)
    }

    /// Present instances of `name` for routing a message or request: served
    /// from a short cache (`presence_cache_ttl`) so a chatty sender does not
    /// ask Redis for every message. Each caller gets its own shuffled copy, so
    /// nothing one caller does to its list affects another (Node bug §6.4).
    pub(crate) fn cached_presence(&self, name: &str) -> Result<Vec<Instance>> {
        let mut copy = self.cached_instances(name)?.to_vec();
        fastrand::shuffle(&mut copy);
        Ok(copy)
    }

    /// The present instance `instance_id` of `name`, from the same cache
    /// (a reply's route: no copy of the whole list).
    pub(crate) fn cached_instance(&self, name: &str, instance_id: &str) -> Result<Option<Instance>> {
        Ok(self
            .cached_instances(name)?
            .iter()
            .find(|i| i.instance_id == instance_id)
            .cloned())
    }

    /// The cached present instances of `name` (filled from Redis when stale),
    /// shared, in cache order.
    pub(crate) fn cached_instances(&self, name: &str) -> Result<Arc<[Instance]>> {
        let name = lookup_name(name);
        if let Some(cached) = self.presence_cache.get(&name) {
            return Ok(cached);
        }
        let fresh: Arc<[Instance]> = self.present_instances(&name)?.into();
        self.presence_cache.put(&name, fresh.clone());
        Ok(fresh)
    }

    /// True iff an instance of `name` is present (`hasServicePresence`; never cached).
    pub(crate) fn has_service_presence(&self, name: &str) -> Result<bool> {
        // All hits, not the first: the first could be a garbage record.
        Ok(!self.present_instances(&lookup_name(name))?.is_empty())
    }

    /// Drops the cached presence of `name` (after a send to it failed).
    pub(crate) fn forget_presence(&self, name: &str) {
        self.presence_cache.forget(&lookup_name(name));
    }

    fn present_instances(&self, name: &str) -> Result<Vec<Instance>> {
        let texts = self.node_index.present(&self.store, name)?;
        Ok(texts
            .iter()
            .filter_map(|text| {
                let instance = Instance::parse(text)
                    .map_err(|reason| self.warned.warn(keys::NODES, text, &reason))
                    .ok()?;
                (instance.service_name == name).then_some(instance)
            })
            .collect())
    }

    /// Instance records of `name` in the `nodes` hash, present or not.
    fn known_instances(&self, name: &str) -> Result<Vec<Instance>> {
        Ok(self
            .get_service_nodes()?
            .into_iter()
            .filter(|i| i.service_name == name)
            .collect())
    }

    /// Flight-recorder entries of every instance of `name`, newest first
    /// (`getServiceHealthLog`; Node returns only its first instance's).
    pub(crate) fn get_service_health_log(&self, name: &str) -> Result<Vec<HealthLogEntry>> {
        let name = lookup_name(name);
        let ids: Vec<String> = self
            .known_instances(&name)?
            .into_iter()
            .map(|i| i.instance_id)
            .collect();
        self.health_logs(&name, &ids)
    }

    fn health_logs(&self, name: &str, ids: &[String]) -> Result<Vec<HealthLogEntry>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let log_keys: Vec<String> = ids.iter().map(|id| keys::health_log(name, id)).collect();
        let lists: Vec<Vec<String>> = self.store.run(|c| {
            let mut pipe = redis::pipe();
            for key in &log_keys {
                pipe.lrange(key, 0, HEALTH_LOG_ENTRIES - 1);
            }
            pipe.query(c)
        })?;
        Ok(self.parse_logs(log_keys.into_iter().zip(lists).collect()))
    }

    /// Flight-recorder lists (key, raw entries) merged newest first; bad
    /// entries skipped with a warning.
    fn parse_logs(&self, lists: Vec<(String, Vec<String>)>) -> Vec<HealthLogEntry> {
        let mut entries: Vec<HealthLogEntry> = lists
            .iter()
            .flat_map(|(key, list)| {
                list.iter().filter_map(move |text| {
                    HealthLogEntry::parse(text)
                        .map_err(|reason| self.warned.warn(key, text, &reason))
                        .ok()
                })
            })
            .collect();
        // ISO-8601 timestamps sort as text; stable, so each list keeps its order.
        entries.sort_by(|a, b| b.ts.cmp(&a.ts));
        entries
    }

    /// Health, log and presence of every service (`getServiceHealthAll`), in
    /// two round trips whatever the number of services: the `nodes` hash and
    /// our index, then one pipeline with every record, presence key, health
    /// snapshot and log.
    pub(crate) fn get_service_health_all(&self) -> Result<Vec<ServiceHealth>> {
        let (entries, indexed): (Vec<(String, String)>, Vec<String>) = self.store.run(|c| {
            redis::pipe()
                .hgetall(keys::NODES)
                .smembers(keys::SERVICE_INDEX)
                .query(c)
        })?;
        let instances: Vec<Instance> = entries
            .iter()
            .filter_map(|(field, text)| self.parse_instance(field, text))
            .collect();
        let names: Vec<String> = indexed
            .into_iter()
            .chain(instances.iter().map(|i| i.service_name.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let service_keys: Vec<String> = names.iter().map(|n| keys::service(n)).collect();
        let replies: Vec<redis::Value> = self.store.run(|c| {
            let mut pipe = redis::pipe();
            pipe.cmd("MGET").arg(&service_keys);
            for i in &instances {
                pipe.exists(keys::presence(&i.service_name, &i.instance_id));
                pipe.get(keys::health(&i.service_name, &i.instance_id));
                pipe.lrange(
                    keys::health_log(&i.service_name, &i.instance_id),
                    0,
                    HEALTH_LOG_ENTRIES - 1,
                );
            }
            pipe.query(c)
        })?;
        let mut replies = replies.into_iter();
        let records: Vec<Option<String>> = decode(replies.next())?;
        let mut per_instance = Vec::with_capacity(instances.len());
        for instance in instances {
            let present: bool = decode(replies.next())?;
            let health: Option<String> = decode(replies.next())?;
            let log: Vec<String> = decode(replies.next())?;
            per_instance.push((instance, present, health, log));
        }
        let mut result = Vec::new();
        for (key, record) in service_keys.iter().zip(records) {
            let Some(text) = record else { continue };
            let Ok(service) = ServiceRecord::parse(&text).map_err(|reason| self.warned.warn(key, &text, &reason))
            else {
                continue;
            };
            let mut health = Vec::new();
            let mut logs = Vec::new();
            let mut presence = Vec::new();
            for (instance, present, snapshot, log) in per_instance
                .iter()
                .filter(|(i, ..)| i.service_name == service.service_name)
            {
                if let Some(text) = snapshot {
                    let key = keys::health(&instance.service_name, &instance.instance_id);
                    if let Ok(value) =
                        serde_json::from_str::<Value>(text).map_err(|e| self.warned.warn(&key, text, &e.to_string()))
                    {
                        health.push(value);
                    }
                }
                logs.push((
                    keys::health_log(&instance.service_name, &instance.instance_id),
                    log.clone(),
                ));
                if *present {
                    presence.push(instance.clone());
                }
            }
            fastrand::shuffle(&mut presence);
            result.push(ServiceHealth {
                log: self.parse_logs(logs),
                presence,
                health,
                service,
            });
        }
        Ok(result)
    }

    /// Stores a config document under `svc:version` (`putConfig`).
    pub(crate) fn put_config(&self, label: &str, document: &Value) -> Result<()> {
        let (svc, version) = parse_label(label).map_err(Error::BadRequest)?;
        let text = serde_json::to_string(document).expect("a JSON value serializes");
        self.store.run(|c| {
            redis::cmd("HSET")
                .arg(keys::configs(svc))
                .arg(version)
                .arg(&text)
                .query::<()>(c)
        })
    }

    /// The config stored under `svc:version`, or `None` (`getConfig`).
    pub(crate) fn get_config(&self, label: &str) -> Result<Option<Value>> {
        let (svc, version) = parse_label(label).map_err(Error::BadRequest)?;
        let key = keys::configs(svc);
        let text: Option<String> = self.store.run(|c| redis::cmd("HGET").arg(&key).arg(version).query(c))?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| Error::Malformed(format!("{key} field {version}: {e}"))))
            .transpose()
    }

    /// Labels `svc:version` of the configs stored for `svc`, sorted (`listConfig`).
    pub(crate) fn list_config(&self, svc: &str) -> Result<Vec<String>> {
        let svc = lookup_name(svc);
        let mut versions: Vec<String> = self
            .store
            .run(|c| redis::cmd("HKEYS").arg(keys::configs(&svc)).query(c))?;
        versions.sort();
        Ok(versions.into_iter().map(|v| format!("{svc}:{v}")).collect())
    }

    /// Removes the config stored under `svc:version`; false when there was none.
    pub(crate) fn remove_config(&self, label: &str) -> Result<bool> {
        let (svc, version) = parse_label(label).map_err(Error::BadRequest)?;
        let removed: i64 = self
            .store
            .run(|c| redis::cmd("HDEL").arg(keys::configs(svc)).arg(version).query(c))?;
        Ok(removed > 0)
    }

    fn parse_instance(&self, field: &str, text: &str) -> Option<Instance> {
        Instance::parse(text)
            .map_err(|reason| {
                self.warned
                    .warn(&format!("{} field {field}", keys::NODES), text, &reason)
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Hydra};
    use hydra_testkit::RedisServer;

    fn hydra(server: &RedisServer, name: &str) -> Hydra {
        let config = Config::builder()
            .service_name(name)
            .service_ip("127.0.0.1")
            .redis_url(&server.url(15))
            .build()
            .unwrap();
        Hydra::init(config).unwrap()
    }

    #[test]
    fn routing_cache_is_short_lived_and_private_to_each_caller() {
        let server = RedisServer::start();
        let target = hydra(&server, "cached");
        target.register_service().unwrap();
        let store = Arc::new(
            Store::new(
                &crate::RedisConfig::from_url(&server.url(15)).unwrap(),
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let registry = Registry::new(store, Duration::from_millis(300));
        let mut first = registry.cached_presence("cached").unwrap();
        assert_eq!(first.len(), 1);
        first.clear(); // a caller emptying its copy must not empty anyone else's
        assert_eq!(registry.cached_presence("cached").unwrap().len(), 1);

        target.shutdown().unwrap();
        // Fresh reads see the change at once; the cache within its TTL may not.
        assert!(registry.get_service_presence("cached").unwrap().is_empty());
        assert!(
            registry.cached_presence("cached").unwrap().is_empty(),
            "a fresh read refreshes the cache"
        );

        let other = hydra(&server, "cached");
        other.register_service().unwrap();
        assert!(
            registry.cached_presence("cached").unwrap().is_empty(),
            "served from cache within the TTL"
        );
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(
            registry.cached_presence("cached").unwrap().len(),
            1,
            "re-read after the TTL"
        );
        registry.forget_presence("cached");
        other.shutdown().unwrap();
        assert!(
            registry.cached_presence("cached").unwrap().is_empty(),
            "forget drops the entry"
        );
    }
}

/// Converts one reply of a mixed pipeline.
fn decode<T: redis::FromRedisValue>(value: Option<redis::Value>) -> Result<T> {
    let value = value.ok_or_else(|| Error::Malformed("a pipelined reply is missing".into()))?;
    T::from_redis_value(value).map_err(|e| Error::Malformed(format!("unexpected reply from Redis: {e}")))
}

/// Names are stored lowercased by Node and by us; Node's lookups forget to
/// lowercase (spec §15.8). Ours do.
fn lookup_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// When a presence list was read, and the list.
type CachedPresence = (Instant, Arc<[Instance]>);

/// Short-lived presence lists, shared read-only (`Arc<[Instance]>`).
struct PresenceCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, CachedPresence>>,
}

impl PresenceCache {
    fn new(ttl: Duration) -> PresenceCache {
        PresenceCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, name: &str) -> Option<Arc<[Instance]>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (at, list) = entries.get(name)?;
        (at.elapsed() < self.ttl).then(|| list.clone())
    }

    fn put(&self, name: &str, list: Arc<[Instance]>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: drop expired entries before growing.
        if entries.len() >= 1024 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(name.to_string(), (Instant::now(), list));
    }

    fn forget(&self, name: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}

/// Logs a warning about a bad record once per (key, value), not on every read.
#[derive(Default)]
struct WarnOnce {
    seen: Mutex<HashSet<(String, String)>>,
}

impl WarnOnce {
    fn warn(&self, key: &str, value: &str, reason: &str) {
        let shown: String = value.chars().take(120).collect();
        let first_time = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() > 4096 {
                seen.clear();
            }
            seen.insert((key.to_string(), shown.clone()))
        };
        // Logged outside the lock: a logger may call back into the library.
        if first_time {
            log::warn!("skipping malformed record in {key}: {reason}; value: {shown:?}");
        }
    }
}
