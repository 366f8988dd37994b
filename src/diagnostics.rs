//! What an operator asks when something is wrong: what Redis is this (INFO),
//! how far away is it (PING round trips), may our Redis user run every command
//! Hydra sends (ACL), and what does the registry hold right now (every `nodes`
//! entry with whether its presence key still exists).
//!
//! [`redis_command_uses`] is the library's own list of the Redis commands it
//! sends, each with a representative key or channel. It is the one place that
//! list is kept: [`Hydra::check_acl`] checks it against the server's ACL with
//! `ACL DRYRUN`, and least-privilege ACL rules are derived from it. A test
//! (tests/diagnostics.rs) fails when a command appears in `src/` that the list
//! does not name.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::hydra::Hydra;
use crate::keys;
use crate::records::{Instance, ServiceRecord};

/// The service name used in the representative keys and channels of
/// [`redis_command_uses`].
pub const SAMPLE_SERVICE: &str = "example";
/// The instance ID used in the representative keys and channels.
pub const SAMPLE_INSTANCE: &str = "0123456789abcdef0123456789abcdef";

/// Redis's `INFO`, as sent and parsed into sections of `field: value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisInfo {
    /// The text Redis sent.
    pub raw: String,
    /// Sections in Redis's order, named in lower case (`server`, `memory`,
    /// …), each with its fields in Redis's order.
    pub sections: Vec<InfoSection>,
}

/// One section of `INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InfoSection {
    /// Its name in lower case, e.g. `server`.
    pub name: String,
    /// `(field, value)` pairs in Redis's order.
    pub fields: Vec<(String, String)>,
}

impl RedisInfo {
    /// Parses `INFO` text: `# Section` lines start sections, `field:value`
    /// lines fill them; anything else is skipped.
    pub fn parse(raw: &str) -> RedisInfo {
        let mut sections: Vec<InfoSection> = Vec::new();
        for line in raw.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('#') {
                sections.push(InfoSection {
                    name: name.trim().to_ascii_lowercase(),
                    fields: Vec::new(),
                });
            } else if let Some((field, value)) = line.split_once(':') {
                if sections.is_empty() {
                    sections.push(InfoSection {
                        name: String::new(),
                        fields: Vec::new(),
                    });
                }
                if let Some(section) = sections.last_mut() {
                    section.fields.push((field.to_string(), value.to_string()));
                }
            }
        }
        RedisInfo {
            raw: raw.to_string(),
            sections,
        }
    }

    /// The value of `field`, in whichever section it is.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.sections
            .iter()
            .flat_map(|s| s.fields.iter())
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.as_str())
    }

    /// `redis_version` as `(major, minor, patch)`, when it parses.
    pub fn version(&self) -> Option<(u32, u32, u32)> {
        let mut parts = self.get("redis_version")?.split('.').map(|p| p.trim().parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().and_then(|p| p.ok()).unwrap_or(0);
        let patch = parts.next().and_then(|p| p.ok()).unwrap_or(0);
        Some((major, minor, patch))
    }
}

/// Round-trip times of a few `PING`s on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Each round trip, in the order sent.
    pub samples: Vec<Duration>,
    /// The median.
    pub p50: Duration,
    /// The slowest.
    pub max: Duration,
}

/// The least-privilege ACL rules for a Hydra user, derived from
/// [`redis_command_uses`] (so they follow the library's code):
///
/// ```text
/// resetkeys ~hydra:* ~hydra-router:message:queue:* resetchannels &hydra:service:mc:* -@all +auth +eval …
/// ```
///
/// Keys: everything Hydra stores is under `hydra:`, except hydra-router's
/// offline mailboxes (`hydra-router:message:queue:*`, only the router needs
/// them). Channels: `hydra:service:mc:*` (service and instance channels,
/// hydra-router's included). Commands: every command in the list, required
/// or optional (but `CLIENT SETINFO`, which Redis before 7.2 cannot name in
/// a rule), with subcommands spelled `+client|id`. Use it as
/// `ACL SETUSER <name> on ><password> <rules>`.
pub fn least_privilege_acl_rules() -> String {
    let mut commands: Vec<String> = redis_command_uses()
        .iter()
        // Redis before 7.2 refuses a rule naming a command it lacks, and the
        // library copes without this one (it only names the client).
        .filter(|u| u.command != "CLIENT SETINFO")
        .map(|u| format!("+{}", u.command.to_ascii_lowercase().replace(' ', "|")))
        .collect();
    commands.sort();
    commands.dedup();
    format!(
        "resetkeys {} resetchannels &{}:* -@all {}",
        ACL_KEY_PATTERNS.map(|p| format!("~{p}")).join(" "),
        keys::CHANNEL_PREFIX,
        commands.join(" ")
    )
}

/// The key patterns of [`least_privilege_acl_rules`]: every key in
/// [`redis_command_uses`] matches one (a unit test checks).
const ACL_KEY_PATTERNS: [&str; 2] = ["hydra:*", "hydra-router:message:queue:*"];

/// One use of a Redis command by the library: what Redis's ACL must allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandUse {
    /// What needs it: `registration`, `heartbeat`, `discovery`, `messaging`, …
    pub feature: &'static str,
    /// The Lua script it runs inside (Redis checks those commands against the
    /// caller's ACL too), or `None` when sent directly.
    pub script: Option<&'static str>,
    /// The command, with its subcommand when it has one (`SET`, `CLIENT ID`).
    pub command: String,
    /// Every argument after the command, as in a representative call (what
    /// `ACL DRYRUN` is given).
    pub args: Vec<String>,
    /// The keys it touches in that call.
    pub keys: Vec<String>,
    /// The pub/sub channel it uses, if any.
    pub channel: Option<String>,
    /// False when the library copes without it (it says so in `note`).
    pub required: bool,
    /// What happens without it, for the optional ones.
    pub note: &'static str,
}

impl CommandUse {
    /// "PUBLISH on channel hydra:service:mc:example", "LMOVE on key1, key2".
    pub fn describe(&self) -> String {
        let mut text = self.command.clone();
        if let Some(channel) = &self.channel {
            text.push_str(&format!(" on channel {channel}"));
        } else if !self.keys.is_empty() {
            text.push_str(&format!(" on {}", self.keys.join(", ")));
        }
        if let Some(script) = self.script {
            text.push_str(&format!(" (in script {script})"));
        }
        text
    }
}

/// Every Redis command the library sends, each with a representative key or
/// channel (service [`SAMPLE_SERVICE`], instance [`SAMPLE_INSTANCE`]),
/// grouped by the feature that needs it. Commands that Lua scripts run are
/// listed with the script's name: Redis checks them against the caller's ACL
/// as if sent directly.
pub fn redis_command_uses() -> Vec<CommandUse> {
    let svc = SAMPLE_SERVICE;
    let id = SAMPLE_INSTANCE;
    let nodes = keys::NODES.to_string();
    let indexed = keys::NODES_INDEXED.to_string();
    let nodeids = keys::service_instances(svc);
    let presence = keys::presence(svc, id);
    let health = keys::health(svc, id);
    let health_log = keys::health_log(svc, id);
    let service = keys::service(svc);
    let routes = keys::routes(svc);
    let index = keys::SERVICE_INDEX.to_string();
    let configs = keys::configs(svc);
    let received = keys::queue_received(svc);
    let in_progress = keys::queue_in_progress(svc);
    let incomplete = keys::queue_incomplete(svc);
    let consumers = keys::queue_consumers(svc);
    let staging = keys::queue_staging(svc, "slot");
    let claimed = keys::queue_claimed(svc, "slot");
    let take = keys::queue_take(svc, "take");
    let deliveries = keys::queue_deliveries(svc);
    let reaper = keys::queue_reaper(svc);
    let mailbox = keys::mailbox("example-client");
    let stream = keys::stream(svc);
    let json = "{}";
    let sha = "0".repeat(40);

    let mut u = Uses::default();

    // Connections: what every new connection may send.
    u.feature("connection");
    u.plain("AUTH", &["user", "password"]);
    u.plain("SELECT", &["15"]);
    u.plain("PING", &[]);
    u.plain("INFO", &["server"])
        .optional("the Redis version goes unchecked at init (PING is used instead)");
    u.plain("CLIENT SETINFO", &["LIB-NAME", "hydra-rs"]).optional(
        "the client library goes unnamed in CLIENT LIST (redis-rs ignores the refusal; Redis before 7.2 has no SETINFO)",
    );
    u.plain("MULTI", &[]);
    u.plain("EXEC", &[]);
    u.plain("SCRIPT LOAD", &["return 1"]);

    // register_service: the first write.
    u.feature("registration");
    u.key("SET", &service, &[json]);
    u.key("SADD", &index, &[svc]);
    u.eval(&[&nodes, &indexed, &nodeids], &[id, json]);
    u.script("register (add own nodes entry)");
    u.key("GET", &indexed, &[]);
    u.key("HLEN", &nodes, &[]);
    u.key("HSET", &nodes, &[id, json]);
    u.key("SADD", &nodeids, &[id]);
    u.key("SET", &indexed, &["1"]);
    u.no_script();

    // The heartbeat: every second, health every fifth.
    u.feature("heartbeat");
    u.key("SET", &presence, &[id, "EX", "3", "GET"]);
    u.key("HSET", &nodes, &[id, json]);
    u.key("SADD", &nodeids, &[id]);
    u.key("SETEX", &health, &["10", json]);
    u.key("EXPIRE", &health_log, &["604800"]);
    u.key("SET", &service, &[json, "NX"]);
    u.key("SADD", &routes, &["[get]/example"]);
    u.key("SADD", &index, &[svc]);
    // Pruning dead `nodes` entries, one instance at a time.
    u.key("SET", keys::NODES_PRUNER, &[id, "NX", "PX", "10000"]);
    u.evalsha(&sha, &[keys::NODES_PRUNER], &[id, "10000"]);
    u.script("pruner lock");
    u.key("GET", keys::NODES_PRUNER, &[]);
    u.key("PEXPIRE", keys::NODES_PRUNER, &["10000"]);
    u.no_script();
    walk(&mut u, &sha, &nodes, &indexed, &nodeids, &presence);

    // The flight recorder (send_to_health_log, shutdown).
    u.feature("health log");
    u.key("LPUSH", &health_log, &[json]);
    u.key("LTRIM", &health_log, &["0", "63"]);
    u.key("EXPIRE", &health_log, &["604800"]);

    // shutdown.
    u.feature("shutdown");
    u.key("EXPIRE", &health, &["3"]);
    u.key("DEL", &presence, &[]);
    u.eval(&[&nodes, &indexed, &nodeids], &[id]);
    u.script("shutdown (remove own nodes entry)");
    u.key("GET", &indexed, &[]);
    u.key("HLEN", &nodes, &[]);
    u.key("HDEL", &nodes, &[id]);
    u.key("SREM", &nodeids, &[id]);
    u.key("SET", &indexed, &["1"]);
    u.no_script();

    // Reading the registry: services, instances, presence, health.
    u.feature("discovery");
    u.key("HVALS", &nodes, &[]);
    u.key("HGETALL", &nodes, &[]);
    u.key("SMEMBERS", &index, &[]);
    u.key("MGET", &service, &[]);
    u.key("GET", &service, &[]);
    u.key("EXISTS", &presence, &[]);
    u.key("GET", &health, &[]);
    u.key("LRANGE", &health_log, &["0", "63"]);
    u.evalsha(&sha, &[&nodes, &indexed, &nodeids], &[keys::PREFIX, svc]);
    u.script("presence lookup");
    u.key("GET", &indexed, &[]);
    u.key("HLEN", &nodes, &[]);
    u.key("SMEMBERS", &nodeids, &[]);
    u.key("HGET", &nodes, &[id]);
    u.key("SREM", &nodeids, &[id]);
    u.key("EXISTS", &presence, &[]);
    u.no_script();
    walk(&mut u, &sha, &nodes, &indexed, &nodeids, &presence);

    // Messages: listening, sending, replying, broadcasting.
    u.feature("messaging");
    u.channel("SUBSCRIBE", &keys::service_channel(svc));
    u.channel("SUBSCRIBE", &keys::instance_channel(svc, id));
    u.channel("PUBLISH", &keys::instance_channel(svc, id))
        .args
        .push(json.into());
    u.channel("PUBLISH", &keys::service_channel(svc)).args.push(json.into());

    // HTTP routes (register_routes, get_all_service_routes).
    u.feature("routes");
    u.key("DEL", &routes, &[]);
    u.key("SADD", &routes, &["[get]/example"]);
    u.key("SMEMBERS", &routes, &[]);
    u.channel("PUBLISH", &keys::service_channel("hydra-router"))
        .args
        .push(json.into());

    // Stored configs (put_config, get_config, list_config, HYDRA_SERVICE).
    u.feature("config store");
    u.key("HSET", &configs, &["1.0.0", json]);
    u.key("HGET", &configs, &["1.0.0"]);
    u.key("HKEYS", &configs, &[]);

    // Streams (hydra-router's /v1/router/stream).
    u.feature("streams");
    u.key("XADD", &stream, &["*", "message", json]);

    // Node-compatible queues (queue_message, get_queued_message, mark…).
    u.feature("queue");
    u.key("LPUSH", &received, &[json]);
    u.keys("BLMOVE", &[&received, &in_progress], &["RIGHT", "LEFT", "1"]);
    u.key("LREM", &in_progress, &["1", json]);
    u.key("RPUSH", &incomplete, &[json]);
    u.evalsha(&sha, &[&received, &in_progress, &take], &["5000"]);
    u.script("take");
    u.key("GET", &take, &[]);
    u.keys("LMOVE", &[&received, &in_progress], &["RIGHT", "LEFT"]);
    u.key("SET", &take, &[json, "PX", "5000"]);
    u.no_script();
    u.evalsha(&sha, &[&received, &in_progress, &incomplete, &consumers], &[]);
    u.script("queue stats");
    u.plain("TIME", &[]);
    u.key("LLEN", &received, &[]);
    u.key("LLEN", &in_progress, &[]);
    u.key("LLEN", &incomplete, &[]);
    u.key("ZCOUNT", &consumers, &["0", "+inf"]);
    u.key("LINDEX", &received, &["-1"]);
    u.no_script();
    u.evalsha(&sha, &[&incomplete, &received], &["100"]);
    u.script("redrive");
    u.keys("LMOVE", &[&incomplete, &received], &["LEFT", "LEFT"]);
    u.no_script();

    // Leased queue workers (queue_worker).
    u.feature("queue workers");
    u.keys("BLMOVE", &[&received, &staging], &["RIGHT", "LEFT", "1"]);
    u.plain("CLIENT ID", &[])
        .optional("stopping a worker waits out its blocking read (up to 1 s) instead of interrupting it");
    u.plain("CLIENT UNBLOCK", &["1"])
        .optional("stopping a worker waits out its blocking read (up to 1 s) instead of interrupting it");
    let worker_keys = [
        &received,
        &in_progress,
        &incomplete,
        &staging,
        &claimed,
        &consumers,
        &deliveries,
    ];
    u.evalsha(&sha, &worker_keys.map(String::as_str), &[]);
    u.script("worker (take, adopt, complete, fail, release, keep)");
    u.plain("TIME", &[]);
    u.keys("LMOVE", &[&received, &in_progress], &["RIGHT", "LEFT"]);
    for list in [&claimed, &in_progress, &received] {
        u.key("LPUSH", list, &[json]);
    }
    for list in [&staging, &claimed, &in_progress] {
        u.key("LREM", list, &["1", json]);
    }
    for list in [&claimed, &staging] {
        u.key("LPOP", list, &[]);
    }
    for list in [&received, &incomplete] {
        u.key("RPUSH", list, &[json]);
    }
    for list in [&received, &in_progress] {
        u.key("LLEN", list, &[]);
    }
    for list in [&received, &in_progress, &staging] {
        u.key("LRANGE", list, &["0", "-1"]);
    }
    u.key("ZADD", &consumers, &["GT", "1", "slot"]);
    u.key("ZREM", &consumers, &["slot"]);
    u.key("ZRANGEBYSCORE", &consumers, &["-inf", "1"]);
    u.key("ZRANGE", &consumers, &["0", "-1"]);
    u.key("HGET", &deliveries, &["sha"]);
    u.key("HINCRBY", &deliveries, &["sha", "1"]);
    u.key("HDEL", &deliveries, &["sha"]);
    u.key("HLEN", &deliveries, &[]);
    u.key("HRANDFIELD", &deliveries, &["10"]);
    u.key("SET", &reaper, &["token", "NX", "PX", "1000"]);
    u.no_script();

    // Mailboxes (hydra-router's offline queue).
    u.feature("mailboxes");
    u.key("RPUSH", &mailbox, &[json]);
    u.key("EXPIRE", &mailbox, &["86400"]);
    u.key("LPOP", &mailbox, &["10"]);
    u.key("LLEN", &mailbox, &[]);

    u.list
}

/// The walk of the `nodes` hash (discovery when the indexes cannot be
/// trusted, and the pruner): batches, then the settling step.
fn walk(u: &mut Uses, sha: &str, nodes: &str, indexed: &str, nodeids: &str, presence: &str) {
    u.key("HLEN", nodes, &[]);
    u.evalsha(sha, &[nodes, indexed], &["0", "100", keys::PREFIX, "", ""]);
    u.script("nodes walk");
    u.key("GET", indexed, &[]);
    u.key("HLEN", nodes, &[]);
    u.key("HSCAN", nodes, &["0", "COUNT", "100"]);
    u.key("EXISTS", presence, &[]);
    u.key("SADD", nodeids, &[SAMPLE_INSTANCE]);
    u.key("HDEL", nodes, &[SAMPLE_INSTANCE]);
    u.key("SREM", nodeids, &[SAMPLE_INSTANCE]);
    u.key("SET", indexed, &["1"]);
    u.no_script();
}

/// Builds the list: a current feature and script, and one entry per call.
#[derive(Default)]
struct Uses {
    list: Vec<CommandUse>,
    feature: &'static str,
    script: Option<&'static str>,
}

impl Uses {
    fn feature(&mut self, feature: &'static str) {
        self.feature = feature;
        self.script = None;
    }

    fn script(&mut self, name: &'static str) {
        self.script = Some(name);
    }

    fn no_script(&mut self) {
        self.script = None;
    }

    fn push(
        &mut self,
        command: &str,
        args: Vec<String>,
        keys: Vec<String>,
        channel: Option<String>,
    ) -> &mut CommandUse {
        self.list.push(CommandUse {
            feature: self.feature,
            script: self.script,
            command: command.to_string(),
            args,
            keys,
            channel,
            required: true,
            note: "",
        });
        self.list.last_mut().expect("just pushed")
    }

    fn plain(&mut self, command: &str, args: &[&str]) -> &mut CommandUse {
        self.push(command, strings(args), Vec::new(), None)
    }

    fn key(&mut self, command: &str, key: &str, rest: &[&str]) -> &mut CommandUse {
        self.keys(command, &[key], rest)
    }

    fn keys(&mut self, command: &str, keys: &[&str], rest: &[&str]) -> &mut CommandUse {
        let mut args = strings(keys);
        args.extend(strings(rest));
        self.push(command, args, strings(keys), None)
    }

    fn channel(&mut self, command: &str, channel: &str) -> &mut CommandUse {
        self.push(
            command,
            vec![channel.to_string()],
            Vec::new(),
            Some(channel.to_string()),
        )
    }

    fn eval(&mut self, keys: &[&str], rest: &[&str]) -> &mut CommandUse {
        self.script_call("EVAL", "return 1", keys, rest)
    }

    fn evalsha(&mut self, sha: &str, keys: &[&str], rest: &[&str]) -> &mut CommandUse {
        self.script_call("EVALSHA", sha, keys, rest)
    }

    fn script_call(&mut self, command: &str, script: &str, keys: &[&str], rest: &[&str]) -> &mut CommandUse {
        let mut args = vec![script.to_string(), keys.len().to_string()];
        args.extend(strings(keys));
        args.extend(strings(rest));
        self.push(command, args, strings(keys), None)
    }
}

impl CommandUse {
    fn optional(&mut self, note: &'static str) -> &mut CommandUse {
        self.required = false;
        self.note = note;
        self
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The result of [`Hydra::check_acl`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclCheck {
    /// The Redis user checked.
    pub user: String,
    /// Why the check could not be made (Redis older than 7.0, or the user may
    /// not run `ACL DRYRUN`); `None` when it was.
    pub unavailable: Option<String>,
    /// One finding per [`CommandUse`] (empty when unavailable).
    pub findings: Vec<AclFinding>,
}

impl AclCheck {
    /// The findings of required commands that are denied.
    pub fn denied(&self) -> impl Iterator<Item = &AclFinding> {
        self.findings.iter().filter(|f| !f.allowed && f.usage.required)
    }

    /// The findings of optional commands that are denied.
    pub fn denied_optional(&self) -> impl Iterator<Item = &AclFinding> {
        self.findings.iter().filter(|f| !f.allowed && !f.usage.required)
    }
}

/// Whether the ACL lets the user run one [`CommandUse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclFinding {
    /// The use checked.
    #[serde(flatten)]
    pub usage: CommandUse,
    /// True when `ACL DRYRUN` answered OK.
    pub allowed: bool,
    /// Redis's reason when denied.
    pub reason: Option<String>,
}

/// Every `nodes` entry, with whether its presence key exists, plus the
/// registered services and their routes: what the registry says right now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistrySnapshot {
    /// Every `nodes` entry that parses, sorted by service then instance ID.
    pub instances: Vec<InstanceState>,
    /// The registration records of every service known to the registry
    /// (named in `nodes` or in hydra-rs's index, and with
    /// [`Hydra::registry_snapshot_scanned`] found by a keyspace scan), sorted
    /// by name.
    pub services: Vec<ServiceRecord>,
    /// Each service's routes (services without routes left out).
    pub routes: BTreeMap<String, Vec<String>>,
}

/// One `nodes` entry and whether the instance is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceState {
    /// The entry.
    #[serde(flatten)]
    pub instance: Instance,
    /// True when its presence key exists (refreshed within the last 3 s).
    pub present: bool,
}

impl Hydra {
    /// Redis's `INFO` (all default sections), as text and parsed. Fails with
    /// [`Error::PermissionDenied`] when the user may not run `INFO`.
    pub fn redis_info(&self) -> Result<RedisInfo> {
        let raw: String = self.store().run(|c| redis::cmd("INFO").query(c))?;
        Ok(RedisInfo::parse(&raw))
    }

    /// Sends `pings` `PING`s one after another on one connection and returns
    /// their round-trip times (at least one is sent).
    pub fn redis_latency(&self, pings: usize) -> Result<Latency> {
        let samples: Vec<Duration> = self.store().run(|c| {
            let mut samples = Vec::with_capacity(pings.max(1));
            for _ in 0..pings.max(1) {
                let started = Instant::now();
                redis::cmd("PING").query::<()>(c)?;
                samples.push(started.elapsed());
            }
            Ok(samples)
        })?;
        let mut sorted = samples.clone();
        sorted.sort();
        Ok(Latency {
            p50: sorted[(sorted.len() - 1) / 2],
            max: *sorted.last().expect("at least one sample"),
            samples,
        })
    }

    /// Checks every [`redis_command_uses`] entry against the server's ACL with
    /// `ACL DRYRUN <user> <command> <args…>` (Redis 7.0 or newer), without
    /// running any of them.
    ///
    /// `user` is the Redis user to check; `None` checks this connection's own
    /// user (`ACL WHOAMI`, else the URL's user name, else `default`). Checking
    /// another user needs a connection whose user may run `ACL DRYRUN` for it
    /// (an administrator). When the check cannot be made (Redis 6.2, or the
    /// user may not run `ACL DRYRUN`), [`AclCheck::unavailable`] says why.
    pub fn check_acl(&self, user: Option<&str>) -> Result<AclCheck> {
        let uses = redis_command_uses();
        let user = match user {
            Some(user) => user.to_string(),
            None => self.acl_user()?,
        };
        let unavailable = |reason: String| AclCheck {
            user: user.clone(),
            unavailable: Some(reason),
            findings: Vec::new(),
        };
        let outcomes: Vec<std::result::Result<String, String>> = match self.store().run(|c| {
            // One DRYRUN per distinct call; many uses share one.
            let mut seen: HashMap<(String, Vec<String>), std::result::Result<String, String>> = HashMap::new();
            let mut outcomes = Vec::with_capacity(uses.len());
            for usage in &uses {
                let call = (usage.command.clone(), usage.args.clone());
                if let Some(outcome) = seen.get(&call) {
                    outcomes.push(outcome.clone());
                    continue;
                }
                let mut cmd = redis::cmd("ACL");
                cmd.arg("DRYRUN").arg(&user);
                for word in usage.command.split(' ') {
                    cmd.arg(word);
                }
                cmd.arg(&usage.args);
                let outcome = match cmd.query::<redis::Value>(c) {
                    Ok(redis::Value::Okay) => Ok(String::new()),
                    Ok(redis::Value::SimpleString(s)) if s == "OK" => Ok(String::new()),
                    Ok(other) => Err(reply_text(&other)),
                    // DRYRUN itself refused, or unknown: stop, say why.
                    Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => return Err(e),
                    Err(e) if is_dryrun_unknown(&e) => return Err(e),
                    Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => return Err(e),
                    Err(e) if e.to_string().contains("not found") => {
                        Err(format!("this Redis does not know {} ({e})", usage.command))
                    }
                    Err(e) => Err(e.to_string()),
                };
                seen.insert(call, outcome.clone());
                outcomes.push(outcome);
            }
            Ok(outcomes)
        }) {
            Ok(outcomes) => outcomes,
            Err(Error::PermissionDenied(reason)) => {
                return Ok(unavailable(format!(
                    "the Redis user may not run ACL DRYRUN ({reason}); run the check as an administrator \
                     naming this user, or grant +acl|dryrun"
                )));
            }
            Err(Error::Redis(e)) if is_dryrun_unknown(&e) => {
                let version = self
                    .redis_info()
                    .ok()
                    .and_then(|info| info.get("redis_version").map(str::to_string))
                    .unwrap_or_else(|| "older than 7.0".into());
                return Ok(unavailable(format!(
                    "ACL DRYRUN needs Redis 7.0 or newer; this server runs {version}"
                )));
            }
            Err(e) => return Err(e),
        };
        let findings = uses
            .into_iter()
            .zip(outcomes)
            .map(|(usage, outcome)| AclFinding {
                usage,
                allowed: outcome.is_ok(),
                reason: outcome.err(),
            })
            .collect();
        Ok(AclCheck {
            user,
            unavailable: None,
            findings,
        })
    }

    /// This connection's Redis user: `ACL WHOAMI` when allowed, else the
    /// URL's user name, else `default`.
    fn acl_user(&self) -> Result<String> {
        match self.store().run(|c| redis::cmd("ACL").arg("WHOAMI").query::<String>(c)) {
            Ok(user) => Ok(user),
            Err(Error::Redis(e)) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
                Ok(self.url_user())
            }
            Err(Error::PermissionDenied(_)) => Ok(self.url_user()),
            Err(e) => Err(e),
        }
    }

    fn url_user(&self) -> String {
        self.config()
            .redis()
            .connection_info()
            .redis_settings()
            .username()
            .filter(|u| !u.is_empty())
            .unwrap_or("default")
            .to_string()
    }

    /// What the registry says right now, in two round trips: every `nodes`
    /// entry with whether its presence key exists, the services' records and
    /// their routes. What `hydra-cli watch` and `doctor` show.
    pub fn registry_snapshot(&self) -> Result<RegistrySnapshot> {
        self.snapshot_with(Vec::new())
    }

    /// [`registry_snapshot`](Hydra::registry_snapshot), plus the services
    /// that only a keyspace scan finds: those whose every `nodes` entry is
    /// gone but whose record or routes remain (Node's hydra-router finds and
    /// routes to them with `SCAN MATCH *:routes`). Walks the whole database
    /// with `SCAN … COUNT 1000` (one round trip per thousand keys): for a
    /// diagnosis, not for every refresh.
    pub fn registry_snapshot_scanned(&self) -> Result<RegistrySnapshot> {
        let pattern = format!("{}:*:service*", keys::PREFIX);
        let mut names = Vec::new();
        let mut cursor = String::from("0");
        loop {
            let (next, found): (String, Vec<String>) = self.store().run(|c| {
                redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)
            })?;
            for key in found {
                let parts: Vec<&str> = key.split(':').collect();
                // hydra:service:<svc>:service and hydra:service:<svc>:service:routes
                let is_registry_key = matches!(parts.as_slice(), [_, _, _, "service"] | [_, _, _, "service", "routes"]);
                if is_registry_key {
                    names.push(parts[2].to_string());
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        self.snapshot_with(names)
    }

    /// The snapshot of the services named in `nodes`, in hydra-rs's index and
    /// in `extra`.
    fn snapshot_with(&self, extra: Vec<String>) -> Result<RegistrySnapshot> {
        let (entries, indexed): (Vec<(String, String)>, Vec<String>) = self.store().run(|c| {
            redis::pipe()
                .hgetall(keys::NODES)
                .smembers(keys::SERVICE_INDEX)
                .query(c)
        })?;
        let mut instances: Vec<Instance> = entries
            .iter()
            .filter_map(|(_, text)| Instance::parse(text).ok())
            .collect();
        instances.sort_by(|a, b| (&a.service_name, &a.instance_id).cmp(&(&b.service_name, &b.instance_id)));
        let mut names: Vec<String> = indexed
            .into_iter()
            .chain(extra)
            .chain(instances.iter().map(|i| i.service_name.clone()))
            .collect();
        names.sort();
        names.dedup();
        let mut replies: Vec<redis::Value> = if instances.is_empty() && names.is_empty() {
            Vec::new()
        } else {
            self.store().run(|c| {
                let mut pipe = redis::pipe();
                for instance in &instances {
                    pipe.exists(keys::presence(&instance.service_name, &instance.instance_id));
                }
                for name in &names {
                    pipe.get(keys::service(name));
                    pipe.smembers(keys::routes(name));
                }
                pipe.query(c)
            })?
        }
        .into_iter()
        .rev()
        .collect();
        let mut next = || replies.pop().unwrap_or(redis::Value::Nil);
        let instances = instances
            .into_iter()
            .map(|instance| {
                let present = redis::from_redis_value::<bool>(next()).unwrap_or(false);
                InstanceState { instance, present }
            })
            .collect();
        let mut services = Vec::new();
        let mut routes = BTreeMap::new();
        for name in names {
            let record: Option<String> = redis::from_redis_value(next()).unwrap_or(None);
            let mut set: Vec<String> = redis::from_redis_value(next()).unwrap_or_default();
            if let Some(record) = record.and_then(|text| ServiceRecord::parse(&text).ok()) {
                services.push(record);
            }
            if !set.is_empty() {
                set.sort();
                routes.insert(name, set);
            }
        }
        Ok(RegistrySnapshot {
            instances,
            services,
            routes,
        })
    }
}

/// True when Redis does not know `ACL DRYRUN` (Redis 6.2) or `ACL` at all.
fn is_dryrun_unknown(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unknown subcommand") || text.contains("unknown command")
}

fn reply_text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_parses_into_sections() {
        let info = RedisInfo::parse(
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Memory\r\nused_memory:1024\r\nmaxmemory_policy:noeviction\r\n",
        );
        assert_eq!(info.sections.len(), 2);
        assert_eq!(info.sections[1].name, "memory");
        assert_eq!(info.get("maxmemory_policy"), Some("noeviction"));
        assert_eq!(info.version(), Some((7, 0, 15)));
        assert_eq!(RedisInfo::parse("junk").version(), None);
    }

    #[test]
    fn the_acl_rules_cover_every_key_channel_and_command_used() {
        let rules = least_privilege_acl_rules();
        let matches = |pattern: &str, name: &str| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        for usage in redis_command_uses() {
            for key in &usage.keys {
                assert!(
                    ACL_KEY_PATTERNS.iter().any(|p| matches(p, key)),
                    "{key} ({}) is outside {ACL_KEY_PATTERNS:?}",
                    usage.describe()
                );
            }
            if let Some(channel) = &usage.channel {
                assert!(channel.starts_with("hydra:service:mc:"), "{channel}");
            }
            let command = format!("+{}", usage.command.to_ascii_lowercase().replace(' ', "|"));
            let named = rules.split(' ').any(|r| r == command);
            assert!(named || !usage.required, "{command} missing from {rules}");
        }
        assert!(
            rules.starts_with(
                "resetkeys ~hydra:* ~hydra-router:message:queue:* resetchannels &hydra:service:mc:* -@all +"
            )
        );
    }

    #[test]
    fn every_use_names_a_target_or_is_keyless_on_purpose() {
        let uses = redis_command_uses();
        for usage in &uses {
            let keyless = [
                "AUTH",
                "SELECT",
                "PING",
                "INFO",
                "CLIENT SETINFO",
                "MULTI",
                "EXEC",
                "SCRIPT LOAD",
                "TIME",
                "CLIENT ID",
                "CLIENT UNBLOCK",
            ];
            assert!(
                !usage.keys.is_empty() || usage.channel.is_some() || keyless.contains(&usage.command.as_str()),
                "{usage:?}"
            );
            assert!(usage.required || !usage.note.is_empty(), "{usage:?}");
        }
        let publish = uses.iter().find(|u| u.command == "PUBLISH").unwrap();
        assert_eq!(
            publish.describe(),
            format!("PUBLISH on channel hydra:service:mc:{SAMPLE_SERVICE}:{SAMPLE_INSTANCE}")
        );
    }
}
