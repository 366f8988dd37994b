//! Discovery and introspection against a private redis-server: services,
//! nodes, presence, health, the flight recorder and the config store, plus
//! garbage written by others.

mod common;

use std::time::Duration;

use common::{builder, command_calls, init, raw, register};
use hydra::{ConfigBuilder, Error, Hydra};
use hydra_testkit::RedisServer;
use redis::Commands;
use serde_json::json;

#[test]
fn two_services_discover_each_other() {
    let server = RedisServer::start();
    let alpha = Hydra::init(builder(&server, "alpha").service_type("api").build().unwrap()).unwrap();
    alpha.register_service().unwrap();
    let beta = register(&server, "beta");

    let services = alpha.get_services().unwrap();
    let mut names: Vec<&str> = services.iter().map(|s| s.service_name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(beta.find_service("alpha").unwrap().service_type, "api");

    let found = alpha.get_service_presence("beta").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, beta.get_instance_id());
    assert_eq!(found[0].ip, "127.0.0.1");
    assert_eq!(found[0].port, beta.service_info().service_port);
    assert!(found[0].updated_on_ts > 0);
    let found = beta.get_service_presence("ALPHA").unwrap(); // lookups are lowercased
    assert_eq!(found[0].instance_id, alpha.get_instance_id());
    assert!(alpha.has_service_presence("beta").unwrap());
    assert!(!alpha.has_service_presence("gamma").unwrap());
    assert!(alpha.get_service_presence("gamma").unwrap().is_empty());

    let nodes = alpha.get_service_nodes().unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.elapsed <= 2), "{nodes:?}");

    let err = alpha.find_service("xyxyx-service").unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(err.to_string(), "Can't find xyxyx-service service");
    assert_eq!(err.http_status(), 404);
}

#[test]
fn presence_lists_are_shuffled_and_complete() {
    let server = RedisServer::start();
    let instances: Vec<Hydra> = (0..5).map(|_| register(&server, "many")).collect();
    let reader = init(&server, "reader");
    let mut expected: Vec<String> = instances.iter().map(|h| h.get_instance_id().to_string()).collect();
    expected.sort();
    let mut orders = std::collections::HashSet::new();
    for _ in 0..40 {
        let list = reader.get_service_presence("many").unwrap();
        let order: Vec<String> = list.iter().map(|i| i.instance_id.clone()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, expected);
        orders.insert(order);
    }
    assert!(orders.len() > 1, "40 lookups gave the same order every time");
    // Instances of other services and stopped instances are not included.
    instances[0].shutdown().unwrap();
    assert_eq!(reader.get_service_presence("many").unwrap().len(), 4);
}

/// Now as JavaScript's toISOString() prints it (what the health log stores).
fn hydra_now_iso() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[test]
fn health_log_and_health_all() {
    let server = RedisServer::start();
    let a = register(&server, "recorder");
    let b = register(&server, "recorder");
    a.send_to_health_log("info", "hello health log").unwrap();
    // Timestamps have millisecond resolution: make the second entry newer.
    let first_ts = a.get_service_health_log("recorder").unwrap()[0].ts.clone();
    while hydra_now_iso() <= first_ts {
        std::thread::yield_now();
    }
    b.send_to_health_log("error", "something broke").unwrap();
    let log = a.get_service_health_log("recorder").unwrap();
    assert_eq!(log.len(), 2, "logs of both instances are returned: {log:?}");
    assert_eq!(log[0].msg, "something broke"); // newest first, across instances
    assert_eq!(log[0].entry_type, "error");
    assert_eq!(log[1].msg, "hello health log");
    assert_eq!(log[1].service_name, "recorder");
    assert_eq!(log[1].process_id, u64::from(std::process::id()));

    for n in 0..70 {
        a.send_to_health_log("debug", &format!("entry {n}")).unwrap();
    }
    let mut conn = raw(&server);
    let key = format!("hydra:service:recorder:{}:health:log", a.get_instance_id());
    let len: usize = conn.llen(&key).unwrap();
    assert_eq!(len, 64);
    let ttl: i64 = conn.ttl(&key).unwrap();
    assert!(ttl > 604_000, "{ttl}");

    let all = a.get_service_health_all().unwrap();
    assert_eq!(all.len(), 1);
    let recorder = &all[0];
    assert_eq!(recorder.service.service_name, "recorder");
    assert_eq!(recorder.presence.len(), 2);
    assert_eq!(recorder.health.len(), 2);
    assert!(recorder.health.iter().all(|h| h["serviceName"] == "recorder"));
    assert_eq!(recorder.log.len(), 65); // 64 of a + 1 of b
    assert!(recorder.log.windows(2).all(|w| w[0].ts >= w[1].ts), "not newest first");

    let health = a.get_health();
    assert_eq!(health["instanceID"], a.get_instance_id());
    assert!(health.get("updatedOn").is_none());
    assert!(health["uptimeSeconds"].as_f64().unwrap() >= 0.0);
}

#[test]
fn an_unregistered_handle_logs_locally_only() {
    let server = RedisServer::start();
    let hydra = init(&server, "quiet");
    hydra.send_to_health_log("info", "not stored").unwrap();
    let mut conn = raw(&server);
    let keys: Vec<String> = conn.keys("*").unwrap();
    assert!(keys.is_empty(), "an unregistered handle wrote {keys:?}");
    assert_eq!(hydra.get_health(), serde_json::Value::Null);
}

#[test]
fn config_store_round_trip_and_stored_config_startup() {
    let server = RedisServer::start();
    let admin = init(&server, "admin");
    let stored = json!({"hydra": {"serviceName": "stored-svc", "serviceType": "from-redis", "serviceVersion": "1.2.3"}, "app": {"color": "blue"}});
    admin.put_config("stored-svc:1.2.3", &stored).unwrap();
    admin
        .put_config("stored-svc:1.0.0", &json!({"hydra": {"serviceName": "stored-svc"}}))
        .unwrap();
    assert_eq!(admin.get_config("stored-svc:1.2.3").unwrap(), Some(stored));
    assert_eq!(admin.get_config("stored-svc:9.9.9").unwrap(), None);
    assert_eq!(
        admin.list_config("stored-svc").unwrap(),
        ["stored-svc:1.0.0", "stored-svc:1.2.3"]
    );
    assert!(matches!(
        admin.put_config("no-version", &json!({})),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(admin.get_config("a:b:c"), Err(Error::BadRequest(_))));

    // HYDRA_SERVICE=<label> with HYDRA_REDIS_URL: init loads the stored config.
    let url = server.url(15);
    let config_from_label = |label: &str| {
        let env = |name: &str| match name {
            "HYDRA_REDIS_URL" => Some(url.clone()),
            "HYDRA_SERVICE" => Some(label.to_string()),
            _ => None,
        };
        ConfigBuilder::default()
            .service_name("bootstrap")
            .apply_env_from(env)
            .unwrap()
            .build()
            .unwrap()
    };
    let config = config_from_label("stored-svc:1.2.3");
    let hydra = Hydra::init(config).unwrap();
    assert_eq!(hydra.get_service_name(), "stored-svc");
    assert_eq!(hydra.config().service_type(), "from-redis");
    assert_eq!(hydra.get_instance_version(), "1.2.3");
    assert_eq!(hydra.config().document()["app"]["color"], "blue");
    assert_eq!(hydra.config().redis().db(), 15);

    let config = config_from_label("stored-svc:4.0.0");
    let err = Hydra::init(config).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { field, .. } if field == "HYDRA_SERVICE"),
        "{err:?}"
    );
}

#[test]
fn garbage_written_by_others_is_skipped() {
    common::init_logging();
    let server = RedisServer::start();
    let good = register(&server, "victim");
    let mut conn = raw(&server);
    // Garbage nodes entries, some with a live presence key, one that even
    // mentions the service name in the right shape but is not valid JSON.
    let _: () = conn.hset("hydra:service:nodes", "junk1", "not json at all").unwrap();
    let _: () = conn.hset("hydra:service:nodes", "junk2", "[1,2,3]").unwrap();
    let _: () = conn
        .hset(
            "hydra:service:nodes",
            "junk3",
            r#"{"serviceName":"victim","instanceID":"junk3","ip":"1.2.3.4","port":"http"}"#,
        )
        .unwrap();
    let _: () = conn
        .hset("hydra:service:nodes", "junk4", r#"{"serviceName":"victim", oops"#)
        .unwrap();
    let _: () = conn
        .hset("hydra:service:nodes", "junk5", "\u{0}\u{1}binary\u{ff}")
        .unwrap();
    for id in ["junk1", "junk2", "junk3", "junk4", "junk5", "nonode"] {
        let _: () = conn
            .set_ex(format!("hydra:service:victim:{id}:presence"), "garbage", 60)
            .unwrap();
    }
    // A presence key whose value is not even a string, and a bad service record.
    let _: () = conn.hset("hydra:service:victim:oddtype:presence", "a", "b").unwrap();
    let _: () = conn.set("hydra:service:broken:service", "{{{{").unwrap();
    let _: () = conn.sadd("hydra:service:services", "broken").unwrap();
    // A health log with garbage entries.
    let log_key = format!("hydra:service:victim:{}:health:log", good.get_instance_id());
    good.send_to_health_log("info", "still readable").unwrap();
    let _: () = conn.lpush(&log_key, "nonsense").unwrap();

    let reader = init(&server, "reader");
    let present = reader.get_service_presence("victim").unwrap();
    assert_eq!(present.len(), 1);
    assert_eq!(present[0].instance_id, good.get_instance_id());
    assert!(reader.has_service_presence("victim").unwrap());
    let nodes = reader.get_service_nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    let services = reader.get_services().unwrap();
    assert_eq!(services.len(), 1, "{services:?}");
    assert!(matches!(reader.find_service("broken"), Err(Error::Malformed(_))));
    let log = reader.get_service_health_log("victim").unwrap();
    assert_eq!(
        log.iter().filter(|e| e.msg == "still readable").count(),
        1,
        "the good entry is read past the garbage: {log:?}"
    );
    assert!(log.iter().all(|e| e.service_name == "victim"), "{log:?}");
    assert_eq!(reader.get_service_health_all().unwrap().len(), 1);
    // The heartbeat keeps going despite the garbage.
    assert!(good.is_registered());
}

#[test]
fn stale_nodes_entries_can_be_cleared() {
    let server = RedisServer::start();
    let live = register(&server, "live");
    let mut conn = raw(&server);
    let old = r#"{"serviceName":"gone","serviceDescription":"","version":"1","instanceID":"deadbeef","updatedOn":"2020-01-01T00:00:00.000Z","processID":1,"ip":"10.0.0.1","port":"80","hostName":"h"}"#;
    let _: () = conn.hset("hydra:service:nodes", "deadbeef", old).unwrap();
    // Old updatedOn but still present (e.g. clock skew): kept.
    let skewed = old.replace("deadbeef", "skewed00").replace("\"gone\"", "\"live\"");
    let _: () = conn.hset("hydra:service:nodes", "skewed00", &skewed).unwrap();
    let _: () = conn
        .set_ex("hydra:service:live:skewed00:presence", "skewed00", 60)
        .unwrap();
    let _: () = conn.hset("hydra:service:nodes", "garbage", "not json").unwrap();

    let removed = live.clear_stale_nodes(Duration::from_secs(60)).unwrap();
    assert_eq!(removed, 1);
    let mut fields: Vec<String> = conn.hkeys("hydra:service:nodes").unwrap();
    fields.sort();
    let mut expected = vec![
        "garbage".to_string(),
        "skewed00".to_string(),
        live.get_instance_id().to_string(),
    ];
    expected.sort();
    assert_eq!(fields, expected);
    // A live instance is never removed, however small the threshold.
    assert_eq!(live.clear_stale_nodes(Duration::ZERO).unwrap(), 0);

    // Thousands at once (several batches), after the script cache was flushed.
    let mut pipe = redis::pipe();
    for n in 0..2500 {
        let id = format!("dead{n:04}");
        pipe.hset("hydra:service:nodes", &id, old.replace("deadbeef", &id))
            .ignore();
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    assert_eq!(live.clear_stale_nodes(Duration::from_secs(60)).unwrap(), 2500);
    assert_eq!(conn.hlen::<_, usize>("hydra:service:nodes").unwrap(), 3);
}

/// A `nodes` entry in Node's format (what Node's heartbeat writes).
fn node_entry(service: &str, id: &str, updated_on: &str) -> String {
    json!({
        "serviceName": service, "serviceDescription": "", "version": "1", "instanceID": id,
        "updatedOn": updated_on, "processID": 1, "ip": "10.0.0.1", "port": 80, "hostName": "h"
    })
    .to_string()
}

#[test]
fn a_lookup_reads_only_the_instances_of_its_service() {
    let server = RedisServer::start();
    let wanted = register(&server, "wanted");
    let mut conn = raw(&server);
    // 3,000 dead entries of other services, recent enough not to be pruned.
    let now = hydra_now_iso();
    let mut pipe = redis::pipe();
    for n in 0..3000 {
        let id = format!("dead{n:05}");
        pipe.hset(
            "hydra:service:nodes",
            &id,
            node_entry(&format!("other{}", n % 7), &id, &now),
        )
        .ignore();
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let reader = init(&server, "reader");
    // The first lookup after foreign writers added entries walks the hash once.
    assert_eq!(reader.get_service_presence("wanted").unwrap().len(), 1);

    let before = command_calls(&mut conn);
    for _ in 0..10 {
        let found = reader.get_service_presence("wanted").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].instance_id, wanted.get_instance_id());
    }
    let after = command_calls(&mut conn);
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    // Whole-hash reads would cost Redis time per entry ever registered.
    for whole in ["hgetall", "hvals", "hkeys", "hscan", "scan", "keys"] {
        assert_eq!(delta(whole), 0, "{whole} on the lookup path");
    }
    // One instance of `wanted`: one HGET and one EXISTS per lookup.
    assert_eq!(delta("hget"), 10);
    assert_eq!(delta("exists"), 10);
}

#[test]
fn node_writers_are_found_at_once_even_when_the_indexes_are_trusted() {
    let server = RedisServer::start();
    let reader = init(&server, "reader");
    assert!(reader.get_service_presence("nodey").unwrap().is_empty());
    let mut conn = raw(&server);
    // What a Node instance writes each second: presence and its nodes field.
    for id in ["n1", "n2"] {
        let _: () = conn
            .hset("hydra:service:nodes", id, node_entry("nodey", id, &hydra_now_iso()))
            .unwrap();
        let _: () = conn
            .set_ex(format!("hydra:service:nodey:{id}:presence"), id, 3)
            .unwrap();
        let found = reader.get_service_presence("nodey").unwrap();
        assert!(found.iter().any(|i| i.instance_id == id), "{id} not found: {found:?}");
    }
    assert_eq!(reader.get_service_presence("nodey").unwrap().len(), 2);
    // Presence gone: no longer listed, though still in the hash.
    let _: () = conn.del("hydra:service:nodey:n1:presence").unwrap();
    let found = reader.get_service_presence("nodey").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, "n2");
    // After FLUSHDB a Node instance writes again: found again.
    let _: () = redis::cmd("FLUSHDB").query(&mut conn).unwrap();
    assert!(reader.get_service_presence("nodey").unwrap().is_empty());
    let _: () = conn
        .hset("hydra:service:nodes", "n3", node_entry("nodey", "n3", &hydra_now_iso()))
        .unwrap();
    let _: () = conn.set_ex("hydra:service:nodey:n3:presence", "n3", 3).unwrap();
    assert_eq!(reader.get_service_presence("nodey").unwrap()[0].instance_id, "n3");
}

#[test]
fn long_dead_entries_are_pruned_automatically() {
    common::init_logging();
    let server = RedisServer::start();
    let mut conn = raw(&server);
    let mut pipe = redis::pipe();
    for n in 0..5000 {
        let id = format!("gone{n:05}");
        pipe.hset(
            "hydra:service:nodes",
            &id,
            node_entry(&format!("old{}", n % 5), &id, "2020-01-01T00:00:00.000Z"),
        )
        .ignore();
    }
    // Dead but recent: kept (its instance may be cut off for a moment).
    pipe.hset(
        "hydra:service:nodes",
        "recent",
        node_entry("old0", "recent", &hydra_now_iso()),
    )
    .ignore();
    let _: () = pipe.query(&mut conn).unwrap();

    let live = register(&server, "live");
    let pruned = common::wait_for(Duration::from_secs(30), || {
        let left: usize = conn.hlen("hydra:service:nodes").ok()?;
        (left == 2).then_some(())
    });
    assert!(
        pruned.is_some(),
        "the pruner did not remove the long-dead entries within 30 s"
    );
    let mut fields: Vec<String> = conn.hkeys("hydra:service:nodes").unwrap();
    fields.sort();
    let mut expected = vec!["recent".to_string(), live.get_instance_id().to_string()];
    expected.sort();
    assert_eq!(fields, expected);
    assert!(live.get_service_presence("old0").unwrap().is_empty());
    assert_eq!(live.get_service_presence("live").unwrap().len(), 1);
}

#[test]
fn remove_config_deletes_one_version() {
    let server = RedisServer::start();
    let admin = init(&server, "admin");
    admin.put_config("cfg-svc:1.0.0", &json!({"a": 1})).unwrap();
    admin.put_config("cfg-svc:2.0.0", &json!({"a": 2})).unwrap();
    assert!(admin.remove_config("cfg-svc:1.0.0").unwrap());
    assert!(!admin.remove_config("cfg-svc:1.0.0").unwrap(), "already gone");
    assert_eq!(admin.get_config("cfg-svc:1.0.0").unwrap(), None);
    assert_eq!(admin.list_config("cfg-svc").unwrap(), ["cfg-svc:2.0.0"]);
    assert!(matches!(admin.remove_config("no-version"), Err(Error::BadRequest(_))));
}

/// The snapshot the listings read (`registry_snapshot`): services, every
/// nodes entry with its presence (a dead entry is listed, not present) and
/// the routes, in a constant number of commands (one HVALS, no SCAN, no
/// command per entry) however many services there are.
#[test]
fn registry_snapshot_lists_services_nodes_presence_and_routes_in_few_commands() {
    let server = RedisServer::start();
    let mut conn = raw(&server);
    let reader = init(&server, "reader");
    assert!(reader.registry_snapshot().unwrap().services.is_empty());

    let alive = register(&server, "snap-alive");
    alive.register_routes(&["[get]/v1/a".to_string()]).unwrap();
    // A crashed instance: its entry stays, its presence key is gone.
    let gone_id = "0854153e6e78488f94dc5209441c9921";
    let dead = r#"{"serviceName":"snap-gone","serviceDescription":"d","version":"1","instanceID":"0854153e6e78488f94dc5209441c9921","updatedOn":"2020-01-01T00:00:00.000Z","processID":1,"ip":"127.0.0.1","port":"1","hostName":"h"}"#;
    let _: () = conn.hset("hydra:service:nodes", gone_id, dead).unwrap();
    let record = r#"{"serviceName":"snap-gone","type":"t","registeredOn":"2020-01-01T00:00:00.000Z"}"#;
    let _: () = conn.set("hydra:service:snap-gone:service", record).unwrap();
    // Many entries, to see that the command count does not follow them.
    for i in 0..300 {
        let id = format!("{i:032x}");
        let entry = dead
            .replace(gone_id, &id)
            .replace("snap-gone", &format!("bulk-{}", i % 30));
        let _: () = conn.hset("hydra:service:nodes", &id, entry).unwrap();
    }

    let before = command_calls(&mut conn);
    let snapshot = reader.registry_snapshot().unwrap();
    let after = command_calls(&mut conn);
    let calls = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(calls("hvals"), 1, "the nodes hash is read once");
    assert_eq!(calls("scan"), 0, "a snapshot never scans the keyspace");
    assert_eq!(
        calls("exists"),
        0,
        "presence is read with MGET, not one command per entry"
    );
    assert!(calls("mget") <= 2, "{} MGETs", calls("mget"));

    let names: Vec<&str> = snapshot.services.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(names, ["snap-alive", "snap-gone"], "bulk-* have no records");
    assert_eq!(snapshot.instances.len(), 302);
    let status = |id: &str| {
        snapshot
            .instances
            .iter()
            .find(|n| n.instance.instance_id == id)
            .unwrap()
    };
    assert!(status(alive.get_instance_id()).present);
    assert!(
        !status(gone_id).present,
        "a dead instance's entry is listed, not present"
    );
    // Our route plus Node's three automatic ones.
    assert_eq!(snapshot.routes["snap-alive"].len(), 4);
    assert!(snapshot.routes["snap-alive"].contains(&"[get]/v1/a".to_string()));
    assert!(!snapshot.routes.contains_key("snap-gone"));
}
