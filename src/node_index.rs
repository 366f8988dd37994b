//! Instance lookup that costs O(instances of one service), and pruning of the
//! `hydra:service:nodes` hash, which Node never prunes.
//!
//! Node writers (Node Hydra, HydraPy) only write `hydra:service:nodes` (one
//! field per instance, rewritten every second) and the presence keys; every
//! instance that ever ran stays in the hash. Reading the whole hash per lookup
//! made a lookup cost, and block Redis for, time proportional to every instance
//! ever registered (49 ms at 20k dead entries, 543 ms at 200k).
//!
//! So we keep, next to Node's records, a set of instance IDs per service
//! ([`keys::service_instances`]) and a watermark ([`keys::NODES_INDEXED`]): the
//! number of fields the hash had when every field was known to be indexed.
//!
//! - A lookup is one script: when the watermark equals `HLEN nodes`, it reads
//!   the set of the wanted service and, for each ID, the presence key and the
//!   `nodes` field; O(instances of that service).
//! - When it does not (a Node instance appeared: its first `HSET` adds a field;
//!   after `FLUSHDB`; the first lookup ever), the lookup walks the hash with
//!   `HSCAN` in bounded batches, each a short script that indexes the entries
//!   it sees and prunes the long-dead ones, then sets the watermark if nothing
//!   changed the hash meanwhile. Redis is never blocked for more than one
//!   batch (~[`SCAN_BATCH`] entries).
//! - Our own instances index themselves every beat and keep the watermark
//!   exact when they add or remove their `nodes` field, so they never cause a
//!   walk.
//! - One instance at a time (a lock in Redis) walks the hash every
//!   [`PRUNE_INTERVAL`] from its heartbeat thread, a few batches per beat, and
//!   removes entries whose presence is gone and whose last heartbeat is older
//!   than [`STALE_NODE_AGE`]: dead instances stop costing anything.
//!
//! An instance that comes back after its entry was pruned rewrites it on its
//! next beat (a new field, so the next lookup walks and finds it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use redis::Script;

use crate::error::Result;
use crate::keys;
use crate::store::Store;
use crate::timestamp;

/// Entries of `nodes` whose presence is gone and whose `updatedOn` is older
/// than this are removed by the automatic pruner (hydra-cli's `refresh node
/// list` uses the same 60 s).
pub(crate) const STALE_NODE_AGE: Duration = Duration::from_secs(60);
/// How often (at most, across all instances) the hash is walked for pruning.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_secs(30);
/// `HSCAN … COUNT` per batch script: about a millisecond of Redis time on an
/// idle machine (250 measured up to 9 ms on a loaded one).
pub(crate) const SCAN_BATCH: usize = 100;
/// Time the pruner may spend per heartbeat tick (it resumes on the next).
pub(crate) const PRUNE_BUDGET_PER_TICK: Duration = Duration::from_millis(100);
/// The pruner lock lives this long without being refreshed.
const PRUNER_LOCK_TTL: Duration = Duration::from_secs(10);

/// `KEYS[1]` nodes, `KEYS[2]` watermark, `KEYS[3]` the service's ID set;
/// `ARGV[1]` key prefix, `ARGV[2]` service name. Returns nil when the
/// indexes cannot be trusted, else the JSON of the present instances.
const LOOKUP_LUA: &str = r#"
local indexed = redis.call('GET', KEYS[2])
if not indexed or tonumber(indexed) ~= redis.call('HLEN', KEYS[1]) then
  return false
end
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local json = redis.call('HGET', KEYS[1], id)
  if not json then
    redis.call('SREM', KEYS[3], id)
  elseif redis.call('EXISTS', ARGV[1] .. ':' .. ARGV[2] .. ':' .. id .. ':presence') == 1 then
    found[#found + 1] = json
  end
end
return found
"#;

/// One batch of a walk. `KEYS[1]` nodes, `KEYS[2]` watermark; `ARGV[1]`
/// cursor, `ARGV[2]` count, `ARGV[3]` key prefix, `ARGV[4]` cutoff (ISO
/// time: entries without presence last updated before it are removed; empty
/// = remove none), `ARGV[5]` a service whose present entries to return.
/// Returns `{next cursor, removed, {json…}}`. Entries without a readable
/// `serviceName` are left alone. Removals keep a trusted watermark exact.
const BATCH_LUA: &str = r#"
local trusted = tonumber(redis.call('GET', KEYS[2]) or '-1') == redis.call('HLEN', KEYS[1])
local reply = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local entries = reply[2]
local removed = 0
local wanted = {}
for i = 1, #entries, 2 do
  local id, json = entries[i], entries[i + 1]
  local svc = string.match(json, '"serviceName":"([^"\\]*)"')
  if svc then
    local ids = ARGV[3] .. ':' .. svc .. ':nodeids'
    if redis.call('EXISTS', ARGV[3] .. ':' .. svc .. ':' .. id .. ':presence') == 1 then
      redis.call('SADD', ids, id)
      if svc == ARGV[5] then wanted[#wanted + 1] = json end
    else
      local updated = string.match(json, '"updatedOn":"([^"]*)"')
      if ARGV[4] ~= '' and updated and updated < ARGV[4] then
        removed = removed + redis.call('HDEL', KEYS[1], id)
        redis.call('SREM', ids, id)
      else
        redis.call('SADD', ids, id)
      end
    end
  end
end
if trusted and removed > 0 then
  redis.call('SET', KEYS[2], redis.call('HLEN', KEYS[1]))
end
return {reply[1], removed, wanted}
"#;

/// End of a walk: `KEYS[1]` nodes, `KEYS[2]` watermark, `ARGV[1]` the field
/// count the walk expects. Trusts the indexes only if the hash has exactly
/// that many fields (nothing was added while walking).
const SETTLE_LUA: &str = r#"
if redis.call('HLEN', KEYS[1]) == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"#;

/// Writes our `nodes` field and indexes it, keeping a trusted watermark
/// exact. `KEYS[1]` nodes, `KEYS[2]` watermark, `KEYS[3]` ID set; `ARGV[1]`
/// instance ID, `ARGV[2]` JSON.
pub(crate) const ADD_OWN_LUA: &str = r#"
local trusted = tonumber(redis.call('GET', KEYS[2]) or '-1') == redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if trusted then redis.call('SET', KEYS[2], redis.call('HLEN', KEYS[1])) end
return 1
"#;

/// Removes our `nodes` field and index entry, keeping a trusted watermark
/// exact. `KEYS[1]` nodes, `KEYS[2]` watermark, `KEYS[3]` ID set; `ARGV[1]`
/// instance ID.
pub(crate) const REMOVE_OWN_LUA: &str = r#"
local trusted = tonumber(redis.call('GET', KEYS[2]) or '-1') == redis.call('HLEN', KEYS[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if trusted then redis.call('SET', KEYS[2], redis.call('HLEN', KEYS[1])) end
return 1
"#;

/// Refreshes the pruner lock if we hold it: `KEYS[1]` lock, `ARGV[1]` owner,
/// `ARGV[2]` TTL in ms. Returns 1 if held.
const REFRESH_LOCK_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// What a walk of the hash did.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Entries removed.
    pub(crate) removed: usize,
    /// Present entries of the wanted service, by instance ID.
    pub(crate) wanted: BTreeMap<String, String>,
}

/// The scripts, loaded once per handle.
pub(crate) struct NodeIndex {
    lookup: Script,
    batch: Script,
    settle: Script,
}

impl NodeIndex {
    pub(crate) fn new() -> NodeIndex {
        NodeIndex {
            lookup: Script::new(LOOKUP_LUA),
            batch: Script::new(BATCH_LUA),
            settle: Script::new(SETTLE_LUA),
        }
    }

    /// The JSON `nodes` entries of the present instances of `service`: one
    /// short script when the indexes are trusted, else a walk of the hash.
    pub(crate) fn present(&self, store: &Store, service: &str) -> Result<Vec<String>> {
        let indexed: Option<Vec<String>> = store.run(|c| {
            self.lookup
                .key(keys::NODES)
                .key(keys::NODES_INDEXED)
                .key(keys::service_instances(service))
                .arg(keys::PREFIX)
                .arg(service)
                .invoke(c)
        })?;
        if let Some(found) = indexed {
            return Ok(found);
        }
        let walk = self.walk(store, Some(STALE_NODE_AGE), service)?;
        Ok(walk.wanted.into_values().collect())
    }

    /// Walks the whole hash in batches: indexes every entry, removes entries
    /// without presence older than `prune_older_than` (none when `None`),
    /// collects the present entries of `wanted`, and trusts the indexes again
    /// if nothing was added meanwhile.
    pub(crate) fn walk(&self, store: &Store, prune_older_than: Option<Duration>, wanted: &str) -> Result<Walk> {
        let mut walk = WalkState::start(store, prune_older_than)?;
        while !walk.done() {
            walk.step(self, store, wanted)?;
        }
        walk.finish(self, store)
    }
}

/// A walk in progress (kept across heartbeat ticks by the pruner).
pub(crate) struct WalkState {
    cursor: String,
    started: bool,
    expected_fields: i64,
    cutoff: String,
    result: Walk,
}

impl WalkState {
    pub(crate) fn start(store: &Store, prune_older_than: Option<Duration>) -> Result<WalkState> {
        let fields: i64 = store.run(|c| redis::cmd("HLEN").arg(keys::NODES).query(c))?;
        let cutoff = prune_older_than
            .map(|age| timestamp::to_iso(SystemTime::now() - age))
            .unwrap_or_default();
        Ok(WalkState {
            cursor: "0".into(),
            started: false,
            expected_fields: fields,
            cutoff,
            result: Walk::default(),
        })
    }

    pub(crate) fn done(&self) -> bool {
        self.started && self.cursor == "0"
    }

    /// One batch: at most about `SCAN_BATCH` entries.
    pub(crate) fn step(&mut self, index: &NodeIndex, store: &Store, wanted: &str) -> Result<()> {
        let (cursor, removed, found): (String, usize, Vec<String>) = store.run(|c| {
            index
                .batch
                .key(keys::NODES)
                .key(keys::NODES_INDEXED)
                .arg(&self.cursor)
                .arg(SCAN_BATCH)
                .arg(keys::PREFIX)
                .arg(&self.cutoff)
                .arg(wanted)
                .invoke(c)
        })?;
        self.started = true;
        self.cursor = cursor;
        self.result.removed += removed;
        for json in found {
            // HSCAN may return an entry twice; keep one per instance.
            let id = serde_json::from_str::<serde_json::Value>(&json)
                .ok()
                .and_then(|v| v.get("instanceID").and_then(|i| i.as_str()).map(str::to_string))
                .unwrap_or_else(|| json.clone());
            self.result.wanted.insert(id, json);
        }
        Ok(())
    }

    pub(crate) fn finish(self, index: &NodeIndex, store: &Store) -> Result<Walk> {
        let expected = self.expected_fields - self.result.removed as i64;
        store.run(|c| {
            index
                .settle
                .key(keys::NODES)
                .key(keys::NODES_INDEXED)
                .arg(expected)
                .invoke::<i64>(c)
        })?;
        Ok(self.result)
    }
}

/// The automatic pruner, run from the heartbeat thread: at most one walk
/// every [`PRUNE_INTERVAL`] across all instances (a lock in Redis, left to
/// expire an interval after the walk), at most [`PRUNE_BUDGET_PER_TICK`] of
/// batches per beat.
pub(crate) struct Pruner {
    owner: String,
    next_try: Instant,
    walk: Option<WalkState>,
    refresh: Script,
}

impl Pruner {
    pub(crate) fn new(owner: &str) -> Pruner {
        // Soon after start, at a random moment so instances started together
        // do not all ask for the lock at once.
        let jitter = Duration::from_millis(fastrand::u64(1000..5000));
        Pruner {
            owner: owner.to_string(),
            next_try: Instant::now() + jitter,
            walk: None,
            refresh: Script::new(REFRESH_LOCK_LUA),
        }
    }

    /// Does a slice of pruning work if due. Errors end the walk; the next
    /// one starts an interval later.
    pub(crate) fn tick(&mut self, index: &NodeIndex, store: &Store) {
        if let Err(e) = self.try_tick(index, store) {
            log::debug!("pruning {} stopped: {e}", keys::NODES);
            self.walk = None;
            self.next_try = Instant::now() + PRUNE_INTERVAL;
        }
    }

    fn try_tick(&mut self, index: &NodeIndex, store: &Store) -> Result<()> {
        let started = Instant::now();
        let lock_ms = PRUNER_LOCK_TTL.as_millis() as u64;
        match self.walk {
            None if started < self.next_try => return Ok(()),
            None => {
                let acquired: Option<String> = store.run(|c| {
                    redis::cmd("SET")
                        .arg(keys::NODES_PRUNER)
                        .arg(&self.owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(lock_ms)
                        .query(c)
                })?;
                self.next_try = started + PRUNE_INTERVAL;
                if acquired.is_none() {
                    return Ok(());
                }
                self.walk = Some(WalkState::start(store, Some(STALE_NODE_AGE))?);
            }
            Some(_) => {
                let held: i64 = store.run(|c| {
                    self.refresh
                        .key(keys::NODES_PRUNER)
                        .arg(&self.owner)
                        .arg(lock_ms)
                        .invoke(c)
                })?;
                if held == 0 {
                    self.walk = None;
                    return Ok(());
                }
            }
        }
        let Some(walk) = self.walk.as_mut() else { return Ok(()) };
        while !walk.done() && started.elapsed() < PRUNE_BUDGET_PER_TICK {
            walk.step(index, store, "")?;
        }
        if walk.done() {
            let walk = self.walk.take().expect("a walk in progress");
            let result = walk.finish(index, store)?;
            if result.removed > 0 {
                log::info!(
                    "removed {} entries of long-gone instances from {}",
                    result.removed,
                    keys::NODES
                );
            }
            // Nobody walks again for an interval: the lock stays until then.
            let interval_ms = PRUNE_INTERVAL.as_millis() as u64;
            store.run(|c| {
                self.refresh
                    .key(keys::NODES_PRUNER)
                    .arg(&self.owner)
                    .arg(interval_ms)
                    .invoke::<i64>(c)
            })?;
            self.next_try = Instant::now() + PRUNE_INTERVAL;
        }
        Ok(())
    }
}
