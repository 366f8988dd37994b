//! Diagnostics against a private redis-server: INFO, PING latency, the ACL
//! check of every command the library uses, and the registry snapshot.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{builder, init, raw, register};
use hydra::{Hydra, SAMPLE_SERVICE, redis_command_uses};
use hydra_testkit::RedisServer;

/// A handle logged in as `user` (password `pw`).
fn as_user(server: &RedisServer, user: &str) -> Hydra {
    let url = format!("redis://{user}:pw@127.0.0.1:{}/15", server.port());
    Hydra::init(builder(server, "diag").redis_url(&url).build().unwrap()).expect("init as the ACL user")
}

fn acl_setuser(server: &RedisServer, user: &str, rules: &[&str]) {
    let mut conn = raw(server);
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("on")
        .arg(">pw")
        .arg(rules)
        .query(&mut conn)
        .unwrap();
}

#[test]
fn info_parses_and_latency_is_measured() {
    let server = RedisServer::start();
    let hydra = init(&server, "diag");
    let info = hydra.redis_info().unwrap();
    let names: Vec<&str> = info.sections.iter().map(|s| s.name.as_str()).collect();
    for section in ["server", "clients", "memory", "persistence", "keyspace"] {
        assert!(names.contains(&section), "{section} missing from {names:?}");
    }
    assert!(info.version().unwrap() >= (6, 2, 0), "{:?}", info.get("redis_version"));
    assert!(info.get("maxmemory_policy").is_some());
    let latency = hydra.redis_latency(5).unwrap();
    assert_eq!(latency.samples.len(), 5);
    assert!(latency.p50 <= latency.max);
}

#[test]
fn the_default_user_may_run_every_command() {
    let server = RedisServer::start();
    let check = init(&server, "diag").check_acl(None).unwrap();
    assert_eq!(check.user, "default");
    assert_eq!(check.unavailable, None);
    assert_eq!(check.findings.len(), redis_command_uses().len());
    let denied: Vec<String> = check.denied().map(|f| f.usage.describe()).collect();
    assert!(denied.is_empty(), "denied to default: {denied:?}");
    // Only what this Redis does not have (CLIENT SETINFO came with 7.2), and it is optional.
    for finding in check.denied_optional() {
        assert_eq!(finding.usage.command, "CLIENT SETINFO", "{finding:?}");
        assert!(
            finding.reason.as_deref().unwrap().contains("does not know"),
            "{finding:?}"
        );
    }
}

#[test]
fn a_user_without_publish_is_told_which_channel() {
    let server = RedisServer::start();
    acl_setuser(&server, "nopub", &["~*", "&*", "+@all", "-publish"]);
    let check = as_user(&server, "nopub").check_acl(None).unwrap();
    assert_eq!(check.user, "nopub");
    assert_eq!(check.unavailable, None);
    let denied: Vec<_> = check.denied().collect();
    assert!(!denied.is_empty());
    for finding in &denied {
        assert_eq!(finding.usage.command, "PUBLISH", "{finding:?}");
        assert!(
            finding.reason.as_deref().unwrap_or("").contains("publish"),
            "{finding:?}"
        );
    }
    let channels: BTreeSet<String> = denied.iter().filter_map(|f| f.usage.channel.clone()).collect();
    assert!(
        channels.contains(&format!("hydra:service:mc:{SAMPLE_SERVICE}")),
        "{channels:?}"
    );
    assert!(channels.contains("hydra:service:mc:hydra-router"), "{channels:?}");

    // An administrator can check that user by name, too.
    let by_admin = init(&server, "diag").check_acl(Some("nopub")).unwrap();
    assert_eq!(by_admin.denied().count(), denied.len());
}

#[test]
fn channel_and_key_patterns_are_checked() {
    let server = RedisServer::start();
    // Keys only under hydra:service:, channels only the service's own.
    acl_setuser(
        &server,
        "narrow",
        &[
            "resetchannels",
            "~hydra:service:*",
            "&hydra:service:mc:example",
            "+@all",
        ],
    );
    let check = as_user(&server, "narrow").check_acl(None).unwrap();
    let denied: BTreeSet<String> = check.denied().map(|f| f.usage.describe()).collect();
    assert!(
        denied.contains(&format!(
            "SUBSCRIBE on channel hydra:service:mc:example:{}",
            hydra::SAMPLE_INSTANCE
        )),
        "{denied:?}"
    );
    assert!(
        !denied.contains("SUBSCRIBE on channel hydra:service:mc:example"),
        "{denied:?}"
    );
    assert!(
        denied
            .iter()
            .any(|d| d.starts_with("RPUSH on hydra-router:message:queue:")),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|d| d.starts_with("XADD on hydra:stream:")),
        "{denied:?}"
    );
}

#[test]
fn a_user_who_may_not_run_acl_is_told_so() {
    let server = RedisServer::start();
    acl_setuser(&server, "noacl", &["~*", "&*", "+@all", "-acl"]);
    let check = as_user(&server, "noacl").check_acl(None).unwrap();
    assert_eq!(check.user, "noacl", "the URL's user when ACL WHOAMI is refused");
    let reason = check.unavailable.expect("unavailable");
    assert!(reason.contains("may not run ACL DRYRUN"), "{reason}");
    assert!(check.findings.is_empty());
}

#[test]
fn the_snapshot_tells_present_from_gone() {
    let server = RedisServer::start();
    let live = register(&server, "live-svc");
    live.register_routes(&["[get]/v1/live".to_string()]).unwrap();
    // A long-gone instance: its nodes entry stays, its presence is gone.
    let mut conn = raw(&server);
    let _: () = redis::cmd("HSET")
        .arg("hydra:service:nodes")
        .arg("deadbeefdeadbeefdeadbeefdeadbeef")
        .arg(
            r#"{"serviceName":"gone-svc","serviceDescription":"","version":"1.0.0","instanceID":"deadbeefdeadbeefdeadbeefdeadbeef","updatedOn":"2020-01-01T00:00:00.000Z","processID":1,"ip":"10.0.0.1","port":"80","hostName":"h"}"#,
        )
        .query(&mut conn)
        .unwrap();
    let snapshot = init(&server, "diag").registry_snapshot().unwrap();
    let states: Vec<(&str, bool)> = snapshot
        .instances
        .iter()
        .map(|s| (s.instance.service_name.as_str(), s.present))
        .collect();
    assert_eq!(states, vec![("gone-svc", false), ("live-svc", true)]);
    let services: Vec<&str> = snapshot.services.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(services, vec!["live-svc"], "gone-svc never registered a record");
    assert!(snapshot.routes["live-svc"].contains(&"[get]/v1/live".to_string()));
    live.shutdown().unwrap();
    let after = init(&server, "diag").registry_snapshot().unwrap();
    assert_eq!(after.instances.len(), 1, "shutdown removes its own nodes entry");

    // A Node service whose nodes entries were all pruned: only a scan finds
    // its record and routes (which Node's hydra-router still routes to).
    let _: () = redis::cmd("SET")
        .arg("hydra:service:pruned-svc:service")
        .arg(r#"{"serviceName":"pruned-svc","type":"node","registeredOn":"2020-01-01T00:00:00.000Z"}"#)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("hydra:service:pruned-svc:service:routes")
        .arg("[get]/v1/pruned")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("unrelated:service")
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let handle = init(&server, "diag");
    assert!(!handle.registry_snapshot().unwrap().routes.contains_key("pruned-svc"));
    let scanned = handle.registry_snapshot_scanned().unwrap();
    assert_eq!(scanned.routes["pruned-svc"], vec!["[get]/v1/pruned".to_string()]);
    let names: Vec<&str> = scanned.services.iter().map(|s| s.service_name.as_str()).collect();
    assert!(names.contains(&"pruned-svc"), "{names:?}");
    assert!(
        names.contains(&"live-svc"),
        "the record outlives the instance: {names:?}"
    );
}

/// Every command name written in the library's source (`cmd("X")`, Lua's
/// `redis.call('X'`) is in the list the ACL check uses: the list cannot
/// silently fall behind the code.
#[test]
fn the_list_names_every_command_in_the_source() {
    let listed: BTreeSet<String> = redis_command_uses()
        .iter()
        .map(|u| u.command.split(' ').next().unwrap().to_string())
        .collect();
    let mut found = BTreeSet::new();
    let mut files = Vec::new();
    collect_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests set up their servers with commands the library never sends.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for (open, close) in [("cmd(\"", '"'), ("redis.call('", '\'')] {
            for (at, _) in text.match_indices(open) {
                let rest = &text[at + open.len()..];
                let name: String = rest.chars().take_while(|c| *c != close).collect();
                if name.chars().all(|c| c.is_ascii_alphabetic()) && !name.is_empty() {
                    found.insert((name.to_ascii_uppercase(), file.display().to_string()));
                }
            }
        }
    }
    let missing: Vec<_> = found
        .iter()
        // The diagnostics' own commands are the operator's, not a service's.
        .filter(|(name, file)| {
            let operators_own = file.ends_with("diagnostics.rs") && (name == "ACL" || name == "SCAN");
            !listed.contains(name) && !operators_own
        })
        .collect();
    assert!(
        missing.is_empty(),
        "commands sent but not listed in redis_command_uses(): {missing:?}"
    );
}

fn collect_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
