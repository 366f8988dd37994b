//! The Lua scripts of the queue: every step that reads and then writes runs
//! as one script, so no other client can act between the read and the write.
//!
//! Scripts name the lists of consumer slots they derive from ARGV (a prefix
//! plus the slot ID) rather than KEYS; fine on a standalone Redis or Sentinel,
//! which is all Hydra supports (spec §13).

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers, prepended to the scripts that use them.
const HELPERS: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Moves every message a slot holds back to the end of mqrecieved that
-- consumers take from next: claimed ones also out of mqinprogress (and, when
-- `count` is set, with one more delivery counted), staged ones as they are.
local function requeue_slot(staging, claimed, queue, inprogress, deliveries, count, budget)
  local moved = 0
  while moved < budget do
    local raw = redis.call('LPOP', claimed)
    if not raw then break end
    redis.call('LREM', inprogress, 1, raw)
    if count then redis.call('HINCRBY', deliveries, redis.sha1hex(raw), 1) end
    redis.call('RPUSH', queue, raw)
    moved = moved + 1
  end
  while moved < budget do
    local raw = redis.call('LPOP', staging)
    if not raw then break end
    redis.call('RPUSH', queue, raw)
    moved = moved + 1
  end
  return moved
end
";

fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{HELPERS}\n{body}"))
}

/// Takes the oldest waiting message for a slot, without blocking: into
/// mqinprogress (as Node's RPOPLPUSH) and the slot's claimed list at once.
///
/// KEYS: mqrecieved, mqinprogress, claimed, consumers, deliveries.
/// ARGV: slot, lease ms. Returns nil, or {message, failed deliveries so far}.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r"
local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if not raw then return false end
redis.call('LPUSH', KEYS[3], raw)
redis.call('ZADD', KEYS[4], 'GT', now_ms() + tonumber(ARGV[2]), ARGV[1])
return {raw, tonumber(redis.call('HGET', KEYS[5], redis.sha1hex(raw)) or 0)}
",
    )
});

/// `get_queued_message`'s take (Node's `RPOPLPUSH`), made idempotent: a
/// retry of the same take (same receipt key) returns the message the first
/// attempt moved, when its reply was lost, instead of moving another.
///
/// KEYS: mqrecieved, mqinprogress, receipt. ARGV: receipt TTL ms. Returns
/// the message, or nil when the queue is empty.
pub(crate) static TAKE_UNTRACKED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local taken = redis.call('GET', KEYS[3])
if taken then return taken end
local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if not raw then return false end
redis.call('SET', KEYS[3], raw, 'PX', ARGV[1])
return raw
",
    )
});

/// Records a message a slot took with `BLMOVE mqrecieved → staging` as in
/// progress: staging → claimed, and into mqinprogress.
///
/// KEYS: staging, claimed, mqinprogress, consumers, deliveries.
/// ARGV: message, slot, lease ms. Returns the failed deliveries so far, or nil
/// when the message is no longer staged (the slot was presumed dead and its
/// messages requeued).
pub(crate) static ADOPT: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return false end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], 'GT', now_ms() + tonumber(ARGV[3]), ARGV[2])
return tonumber(redis.call('HGET', KEYS[5], redis.sha1hex(ARGV[1])) or 0)
",
    )
});

/// A slot completed a message: out of claimed and mqinprogress, delivery
/// count forgotten.
///
/// KEYS: claimed, mqinprogress, deliveries. ARGV: message.
/// Returns 1, or 0 when the slot no longer held it (requeued meanwhile).
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('HDEL', KEYS[3], redis.sha1hex(ARGV[1]))
return 1
",
    )
});

/// [`COMPLETE`] the slot's message and [`TAKE`] the next one, in one round
/// trip: the path of a busy worker.
///
/// KEYS: claimed, mqinprogress, deliveries, mqrecieved, consumers.
/// ARGV: completed message, slot, lease ms.
/// Returns {held} when the queue is empty, else {held, message, failed
/// deliveries so far}; `held` as for [`COMPLETE`].
pub(crate) static COMPLETE_AND_TAKE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r"
local held = redis.call('LREM', KEYS[1], 1, ARGV[1])
if held == 1 then
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  redis.call('HDEL', KEYS[3], redis.sha1hex(ARGV[1]))
end
local raw = redis.call('LMOVE', KEYS[4], KEYS[2], 'RIGHT', 'LEFT')
if not raw then return {held} end
redis.call('LPUSH', KEYS[1], raw)
redis.call('ZADD', KEYS[5], 'GT', now_ms() + tonumber(ARGV[3]), ARGV[2])
return {held, raw, tonumber(redis.call('HGET', KEYS[3], redis.sha1hex(raw)) or 0)}
",
    )
});

/// A delivery failed: count it; below the limit the message goes back to the
/// far end of mqrecieved (after everything waiting), at the limit it goes to
/// mqincomplete as the given dead letter.
///
/// KEYS: claimed, mqinprogress, deliveries, mqrecieved, mqincomplete.
/// ARGV: message, max deliveries (0: dead-letter now), dead-letter JSON.
/// Returns {'retry'|'dead'|'lost', failed deliveries}.
pub(crate) static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return {'lost', 0} end
redis.call('LREM', KEYS[2], 1, ARGV[1])
local sha = redis.sha1hex(ARGV[1])
local failures = redis.call('HINCRBY', KEYS[3], sha, 1)
if failures >= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[3], sha)
  redis.call('RPUSH', KEYS[5], ARGV[3])
  return {'dead', failures}
end
redis.call('LPUSH', KEYS[4], ARGV[1])
return {'retry', failures}
",
    )
});

/// Gives back whatever the slots hold (to be taken next, no delivery
/// counted) and, when asked, forgets the slots.
///
/// KEYS: mqrecieved, mqinprogress, deliveries, consumers.
/// ARGV: staging prefix, claimed prefix, '1' to forget, slot…
/// Returns how many messages went back.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r"
local moved = 0
for i = 4, #ARGV do
  local slot = ARGV[i]
  moved = moved + requeue_slot(ARGV[1] .. slot, ARGV[2] .. slot, KEYS[1], KEYS[2], KEYS[3], false, 1000000000)
  if ARGV[3] == '1' then redis.call('ZREM', KEYS[4], slot) end
end
return moved
",
    )
});

/// A consumer's periodic step. Renews the leases of its live slots; then, if
/// no consumer has done so in the last reap interval (the lock), requeues
/// the messages of every slot whose lease has run out, counting a delivery
/// for each, forgets slots dead for longer than the grace period, and prunes
/// stale delivery counters.
///
/// Counters go stale when a Node consumer completes or dead-letters a message
/// that failed here before: Node knows nothing of them. They are pruned only
/// when there are more counters than queued messages (so some must be stale)
/// and the queue is small enough to hash in one step (`PRUNE_QUEUED`), at
/// most `PRUNE_SAMPLE` counters a step: their number stays bounded by the
/// queue's length, and a big backlog is never scanned.
///
/// KEYS: consumers, reaper lock, mqrecieved, mqinprogress, deliveries.
/// ARGV: staging prefix, claimed prefix, lease ms, reap interval ms, grace ms,
/// lock token, slot…
/// Returns {slots newly (re)registered, messages requeued or -1 when another
/// consumer holds the lock, counters pruned}.
pub(crate) static KEEP: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r"
local now = now_ms()
local registered = 0
if #ARGV >= 7 then
  local args = {}
  for i = 7, #ARGV do
    args[#args + 1] = now + tonumber(ARGV[3])
    args[#args + 1] = ARGV[i]
  end
  registered = redis.call('ZADD', KEYS[1], unpack(args))
end
if not redis.call('SET', KEYS[2], ARGV[6], 'NX', 'PX', ARGV[4]) then return {registered, -1, 0} end
local budget = 10000
local moved = 0
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now), 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #dead, 2 do
  local slot = dead[i]
  moved = moved + requeue_slot(ARGV[1] .. slot, ARGV[2] .. slot, KEYS[3], KEYS[4], KEYS[5], true, budget - moved)
  if moved >= budget then break end
  if tonumber(dead[i + 1]) < now - tonumber(ARGV[5]) then redis.call('ZREM', KEYS[1], slot) end
end
local pruned = 0
local counters = redis.call('HLEN', KEYS[5])
local queued = redis.call('LLEN', KEYS[3]) + redis.call('LLEN', KEYS[4])
if counters > queued and queued <= 10000 then
  local live = {}
  local function mark(list)
    for _, raw in ipairs(redis.call('LRANGE', list, 0, -1)) do live[redis.sha1hex(raw)] = true end
  end
  mark(KEYS[3])
  mark(KEYS[4])
  -- Staged messages are in neither list for a moment.
  for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do mark(ARGV[1] .. slot) end
  for _, sha in ipairs(redis.call('HRANDFIELD', KEYS[5], 10000)) do
    if not live[sha] then
      pruned = pruned + redis.call('HDEL', KEYS[5], sha)
    end
  end
end
return {registered, moved, pruned}
",
    )
});

/// Queue lengths, live consumer slots and the oldest waiting message, in one
/// consistent read.
///
/// KEYS: mqrecieved, mqinprogress, mqincomplete, consumers.
/// Returns {waiting, in progress, incomplete, live slots, oldest or nil}.
pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| {
    with_helpers(
        r"
local now = now_ms()
return {
  redis.call('LLEN', KEYS[1]),
  redis.call('LLEN', KEYS[2]),
  redis.call('LLEN', KEYS[3]),
  redis.call('ZCOUNT', KEYS[4], string.format('%.0f', now), '+inf'),
  redis.call('LINDEX', KEYS[1], -1)
}
",
    )
});

/// Moves up to `ARGV[1]` messages from mqincomplete (oldest first) to the far
/// end of mqrecieved, keeping their order.
///
/// KEYS: mqincomplete, mqrecieved. Returns how many moved.
pub(crate) static REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local moved = 0
local budget = tonumber(ARGV[1])
while moved < budget do
  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'LEFT') then break end
  moved = moved + 1
end
return moved
",
    )
});

/// The next `ARGV[1]` waiting messages, in the order they will be taken
/// (from the far end of mqrecieved), each with its failed deliveries so far;
/// nothing moves.
///
/// KEYS: mqrecieved, deliveries. Returns {message, failed deliveries, …}.
pub(crate) static PEEK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local waiting = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local out = {}
for i = #waiting, 1, -1 do
  out[#out + 1] = waiting[i]
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], redis.sha1hex(waiting[i])) or 0)
end
return out
",
    )
});
