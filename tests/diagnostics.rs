//! Diagnostics against a private redis-server: INFO, PING latency, the ACL
//! check of every command the library uses, and the registry snapshot.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

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

/// Every command Redis sees while the library does everything it does
/// (registration, heartbeats, discovery, messages, request–reply, routes and
/// HTTP, queues and workers, configs, streams, mailboxes, the health log,
/// pruning, shutdown), scripts' commands included (`MONITOR` shows those
/// too), is in the list the ACL check uses.
#[test]
fn every_command_redis_sees_is_in_the_list() {
    use hydra::{HttpResponse, HttpRoutes, QueueOptions, QueuedMessage, RequestOptions};
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    const WAIT: Duration = Duration::from_secs(20);
    let server = RedisServer::start();
    let seen = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        std::io::Write::write_all(&mut stream, b"MONITOR\r\n").unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stream)) {
                let Ok(line) = line else { return };
                if let Some(args) = monitor_args(&line) {
                    sink.lock().unwrap().push(args);
                }
            }
        });
    }
    let monitor_saw = |text: &str| {
        let mut conn = raw(&server);
        let _: String = redis::cmd("ECHO").arg(text).query(&mut conn).unwrap();
        common::wait_for(WAIT, || {
            seen.lock()
                .unwrap()
                .iter()
                .any(|c| c[0] == "echo" && c.get(1).is_some_and(|a| a == text))
                .then_some(())
        })
        .expect("the monitor saw the marker");
    };
    monitor_saw("start");

    let responder = register(&server, "responder");
    common::echo(&responder);
    responder
        .serve_http(HttpRoutes::new().get("/v1/responder/hello", |_, _| {
            HttpResponse::send_response(200, json!("hi"))
        }))
        .unwrap();
    let caller = register(&server, "caller");
    caller.register_routes(&["[get]/v1/caller".to_string()]).unwrap();
    caller
        .send_message(&caller.create_umf_message("responder:/", json!({"n": 1})))
        .unwrap();
    caller
        .request(&caller.create_umf_message("responder:/", json!({"n": 2})), WAIT)
        .unwrap();
    caller
        .make_api_request(
            &caller.create_umf_message("responder:[get]/v1/responder/hello", json!({})),
            RequestOptions::default(),
        )
        .unwrap();
    caller
        .send_broadcast_message(&caller.create_umf_message("responder:/", json!({"all": true})))
        .unwrap();
    caller.get_services().unwrap();
    caller.get_service_nodes().unwrap();
    caller.find_service("responder").unwrap();
    caller.get_service_presence("responder").unwrap();
    caller.has_service_presence("responder").unwrap();
    caller.get_all_service_routes().unwrap();
    caller.get_service_health_all().unwrap();
    caller.send_to_health_log("info", "hello").unwrap();
    caller.get_service_health_log("caller").unwrap();
    caller.clear_stale_nodes(Duration::from_secs(60)).unwrap();
    caller.put_config("caller:1.0.0", &json!({"hydra": {}})).unwrap();
    caller.get_config("caller:1.0.0").unwrap();
    caller.list_config("caller").unwrap();
    caller
        .stream_message("events", &caller.create_umf_message("responder:/", json!({})))
        .unwrap();
    for db in [15, 3] {
        let mailboxes = caller.mailboxes(db).unwrap();
        let message = caller.create_umf_message("client:/", json!({}));
        mailboxes.push("client-1", &message, Duration::from_secs(60)).unwrap();
        mailboxes.len("client-1").unwrap();
        mailboxes.take("client-1", 10).unwrap();
    }
    // Queues: Node's take and mark (both ways), the blocking take, stats,
    // redrive, and a worker that completes some and fails some.
    for n in 0..6 {
        caller
            .queue_message(&caller.create_umf_message("jobs:/", json!({"n": n})))
            .unwrap();
    }
    let taken = caller.get_queued_message("jobs").unwrap().unwrap();
    caller.mark_queue_message(&taken, true, None).unwrap();
    let taken = caller
        .get_queued_message_timeout("jobs", Duration::from_millis(200))
        .unwrap()
        .unwrap();
    caller.mark_queue_message(&taken, false, Some("failed")).unwrap();
    caller.queue_stats("jobs").unwrap();
    caller.redrive_dead_letters("jobs").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let worker = responder
        .queue_worker_with(
            "jobs",
            2,
            QueueOptions::new().with_max_deliveries(1),
            move |_m: &QueuedMessage| {
                if counter.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    Ok(())
                } else {
                    Err("no".into())
                }
            },
        )
        .unwrap();
    common::wait_for(WAIT, || (calls.load(Ordering::SeqCst) >= 5).then_some(())).expect("the worker ran");
    worker.stop();
    // A second beat with health (every fifth) and the pruner's first walk.
    let presence = hydra::keys::health("caller", caller.get_instance_id());
    common::wait_for(WAIT, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|c| c[0] == "setex" && c.get(1) == Some(&presence))
            .then_some(())
    })
    .expect("a health beat");
    caller.shutdown().unwrap();
    responder.shutdown().unwrap();
    monitor_saw("end");

    let listed: BTreeSet<String> = redis_command_uses()
        .iter()
        .map(|u| u.command.to_ascii_lowercase())
        .collect();
    let mut unlisted = BTreeSet::new();
    for command in seen.lock().unwrap().iter() {
        let name = &command[0];
        if ["monitor", "echo"].contains(&name.as_str()) {
            continue;
        }
        let full = match name.as_str() {
            "client" | "script" | "acl" | "config" => {
                format!(
                    "{name} {}",
                    command.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default()
                )
            }
            _ => name.clone(),
        };
        if !listed.contains(&full) {
            unlisted.insert(full);
        }
    }
    assert!(unlisted.is_empty(), "Redis saw commands the list lacks: {unlisted:?}");
}

/// The command and arguments of a `MONITOR` line
/// (`<time> [<db> <client>] "cmd" "arg" …`), command name lower-cased.
fn monitor_args(line: &str) -> Option<Vec<String>> {
    let close = line.find(']')?;
    let mut args = Vec::new();
    let mut chars = line[close + 1..].chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        arg.push(escaped);
                    }
                }
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
    let first = args.first_mut()?;
    *first = first.to_ascii_lowercase();
    Some(args)
}
