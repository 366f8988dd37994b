//! Every Redis key and pub/sub channel name Hydra uses, in one place (spec §2, §3).
//!
//! The shapes are Node Hydra's wire contract; do not change them.

/// Prefix of every key (`redisPreKey`).
pub const PREFIX: &str = "hydra:service";
/// Prefix of every pub/sub channel (`mcMessageKey`).
pub const CHANNEL_PREFIX: &str = "hydra:service:mc";
/// Hash of per-instance records, field = instance ID.
pub const NODES: &str = "hydra:service:nodes";
/// Set of service names registered by hydra-rs (our own index; Node never reads
/// or writes it, and none of Node's read globs match it). With the `nodes` hash it
/// lets `get_services` avoid scanning the keyspace.
pub const SERVICE_INDEX: &str = "hydra:service:services";
/// How many fields `hydra:service:nodes` had when every one of them was last
/// known to be in its service's instance index (see [`service_instances`]).
/// A lookup trusts the indexes only while this equals `HLEN nodes`. Ours only.
pub const NODES_INDEXED: &str = "hydra:service:nodes:indexed";
/// Short-lived lock (`SET NX PX`) that lets one instance at a time prune dead
/// entries from `hydra:service:nodes`. Ours only.
pub const NODES_PRUNER: &str = "hydra:service:nodes:pruner";

/// `hydra:service:<svc>:nodeids` — set of the instance IDs of `<svc>` that have
/// an entry in `hydra:service:nodes` (ours and Node's), so a lookup reads only
/// the instances of one service. Ours only; no Node read glob matches it.
pub fn service_instances(svc: &str) -> String {
    format!("{PREFIX}:{svc}:nodeids")
}

/// `hydra:service:<svc>:service` — the registration record.
pub fn service(svc: &str) -> String {
    format!("{PREFIX}:{svc}:service")
}

/// `hydra:service:<svc>:<id>:presence` — liveness, expires 3 s after the last beat.
pub fn presence(svc: &str, instance_id: &str) -> String {
    format!("{PREFIX}:{svc}:{instance_id}:presence")
}

/// `hydra:service:<svc>:<id>:health` — the latest health snapshot.
pub fn health(svc: &str, instance_id: &str) -> String {
    format!("{PREFIX}:{svc}:{instance_id}:health")
}

/// `hydra:service:<svc>:<id>:health:log` — the flight recorder.
pub fn health_log(svc: &str, instance_id: &str) -> String {
    format!("{PREFIX}:{svc}:{instance_id}:health:log")
}

/// `hydra:service:<svc>:service:routes` — the HTTP routes set.
pub fn routes(svc: &str) -> String {
    format!("{PREFIX}:{svc}:service:routes")
}

/// `hydra:stream:<name>` — a Redis stream hydra-router's
/// `/v1/router/stream/:name` appends messages to.
pub fn stream(name: &str) -> String {
    format!("hydra:stream:{name}")
}

/// `hydra:service:<svc>:configs` — stored configs, field = version.
pub fn configs(svc: &str) -> String {
    format!("{PREFIX}:{svc}:configs")
}

/// `hydra:service:mc:<svc>` — every instance of a service listens here.
pub fn service_channel(svc: &str) -> String {
    format!("{CHANNEL_PREFIX}:{svc}")
}

/// `hydra:service:mc:<svc>:<id>` — one instance listens here.
pub fn instance_channel(svc: &str, instance_id: &str) -> String {
    format!("{CHANNEL_PREFIX}:{svc}:{instance_id}")
}

/// `hydra:service:<svc>:mqrecieved` (sic) — messages waiting, newest at the
/// head (`LPUSH`), taken from the tail.
pub fn queue_received(svc: &str) -> String {
    format!("{PREFIX}:{svc}:mqrecieved")
}

/// `hydra:service:<svc>:mqinprogress` — messages being processed.
pub fn queue_in_progress(svc: &str) -> String {
    format!("{PREFIX}:{svc}:mqinprogress")
}

/// `hydra:service:<svc>:mqincomplete` — messages marked not completed (Node),
/// and hydra-rs's dead letters.
pub fn queue_incomplete(svc: &str) -> String {
    format!("{PREFIX}:{svc}:mqincomplete")
}

/// `hydra:service:<svc>:mqconsumers` — sorted set of hydra-rs queue consumer
/// slots, scored by the time (ms, Redis clock) their lease runs out. Ours
/// only; no Node read glob matches it.
pub fn queue_consumers(svc: &str) -> String {
    format!("{PREFIX}:{svc}:mqconsumers")
}

/// `hydra:service:<svc>:mqstaging:<slot>` — a message a slot has taken with a
/// blocking move and not yet recorded as in progress. Ours only.
pub fn queue_staging(svc: &str, slot: &str) -> String {
    format!("{PREFIX}:{svc}:mqstaging:{slot}")
}

/// `hydra:service:<svc>:mqclaimed:<slot>` — the messages in `mqinprogress` a
/// hydra-rs slot holds. Ours only.
pub fn queue_claimed(svc: &str, slot: &str) -> String {
    format!("{PREFIX}:{svc}:mqclaimed:{slot}")
}

/// `hydra:service:<svc>:mqtake:<take>` — a copy of the message one
/// `get_queued_message` call took, kept for a few seconds so that a retry of
/// the same take (after a dropped connection) returns it instead of taking
/// another. Ours only.
pub fn queue_take(svc: &str, take: &str) -> String {
    format!("{PREFIX}:{svc}:mqtake:{take}")
}

/// `hydra:service:<svc>:mqdeliveries` — hash: SHA-1 of a message's JSON →
/// deliveries that ended without completion. Ours only.
pub fn queue_deliveries(svc: &str) -> String {
    format!("{PREFIX}:{svc}:mqdeliveries")
}

/// `hydra:service:<svc>:mqreaper` — short-lived lock (`SET NX PX`) that lets
/// one consumer at a time look for the messages of dead consumers. Ours only.
pub fn queue_reaper(svc: &str) -> String {
    format!("{PREFIX}:{svc}:mqreaper")
}

/// `hydra-router:message:queue:<recipient>:queued` — a mailbox (hydra-router's
/// offline queue of a WebSocket client, Node's key; see [`crate::Mailboxes`]).
pub fn mailbox(recipient: &str) -> String {
    format!("hydra-router:message:queue:{recipient}:queued")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes_match_node_hydra() {
        assert_eq!(service("alpha"), "hydra:service:alpha:service");
        assert_eq!(presence("alpha", "abc"), "hydra:service:alpha:abc:presence");
        assert_eq!(health("alpha", "abc"), "hydra:service:alpha:abc:health");
        assert_eq!(health_log("alpha", "abc"), "hydra:service:alpha:abc:health:log");
        assert_eq!(routes("alpha"), "hydra:service:alpha:service:routes");
        assert_eq!(configs("alpha"), "hydra:service:alpha:configs");
        assert_eq!(service_channel("alpha"), "hydra:service:mc:alpha");
        assert_eq!(instance_channel("alpha", "abc"), "hydra:service:mc:alpha:abc");
        assert_eq!(mailbox("k3x9"), "hydra-router:message:queue:k3x9:queued");
    }

    #[test]
    fn our_own_keys_match_no_node_read_glob() {
        // Node reads `*:service`, `*:routes`, `*:<svc>:*:presence`,
        // `*:<svc>:*:health` and `*:<svc>:*:health:log` (spec §2.11).
        for key in [
            service_instances("alpha"),
            NODES_INDEXED.to_string(),
            NODES_PRUNER.to_string(),
        ] {
            for suffix in [":service", ":routes", ":presence", ":health", ":health:log"] {
                assert!(!key.ends_with(suffix), "{key} ends with {suffix}");
            }
        }
    }
}
