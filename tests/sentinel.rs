//! Redis Sentinel, against real processes: a master, a replica and three
//! `redis-sentinel`s (hydra_testkit::SentinelGroup). The master is killed with
//! SIGKILL while a service and a client work without pause; the work must go
//! on once Sentinel has promoted the replica, and no queue item that had
//! reached the replica may be lost.

mod common;
#[path = "common/failover.rs"]
mod failover;

use std::net::TcpListener;
use std::time::Duration;

use hydra::{ConfigBuilder, Error, Hydra};
use hydra_testkit::tls::TestCertificates;
use hydra_testkit::{SentinelGroup, SentinelOptions};
use serde_json::json;

use common::init_logging;
use failover::{Switch, Workload, run_failover, run_switch};

/// Generous: a failover takes a few seconds here, more on a loaded machine.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

fn secured() -> SentinelOptions {
    SentinelOptions {
        password: Some("data-s3cret".into()),
        sentinel_password: Some("sentinel-s3cret".into()),
        ..SentinelOptions::default()
    }
}

#[test]
fn work_goes_on_after_the_master_is_killed() {
    init_logging();
    let mut group = SentinelGroup::start(secured());
    let mut workload = Workload::start(&group);
    let started = std::time::Instant::now();
    assert!(
        workload.wait_flowing(started, FAILOVER_DEADLINE),
        "the work never flowed before the kill"
    );

    let recovery = run_failover(&mut group, &mut workload, FAILOVER_DEADLINE);
    eprintln!("{recovery:#?}");
    assert!(recovery.sentinel_promoted.is_some(), "Sentinel promoted no replica");
    assert!(recovery.presence.is_some(), "presence never came back");
    assert!(recovery.requests.is_some(), "request–reply never flowed again");
    assert!(recovery.http.is_some(), "HTTP calls never worked again");
    assert!(recovery.queue.is_some(), "no item queued after the kill was processed");
    assert!(
        recovery.queue_lost_required.is_empty(),
        "queue items that had reached the replica (or were queued after the kill) were lost: {:?}",
        recovery.queue_lost_required
    );

    // The new master has the service's HTTP routes (replicated, or re-created
    // by the heartbeat with the rest of the registration).
    let master = group.master_port().expect("a master after the failover");
    let mut conn = group.data_connection(master).unwrap();
    let _: () = redis::cmd("SELECT").arg(15).query(&mut conn).unwrap();
    let routes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("hydra:service:{}:service:routes", failover::SERVICE))
        .query(&mut conn)
        .unwrap();
    let route = format!("[get]/v1/{}/ping", failover::SERVICE);
    assert!(routes.contains(&route), "{route} missing on the new master: {routes:?}");

    // After the failover, messages flow as before: every one arrives.
    let before = workload.seen.messages.arrived.lock().unwrap().len();
    for n in 1_000_000..1_000_020u64 {
        let msg = workload
            .client
            .create_umf_message(&format!("{}:/", failover::SERVICE), json!({"n": n}));
        workload.client.send_message(&msg).expect("send after the failover");
    }
    let arrived = common::wait_for(FAILOVER_DEADLINE, || {
        let now = workload.seen.messages.arrived.lock().unwrap().len();
        (now >= before + 20).then_some(now)
    });
    assert!(arrived.is_some(), "messages sent after the failover did not all arrive");
    workload.shutdown();
}

/// Sentinel and TLS together: every data node and sentinel serves TLS (the
/// clients are given only the TLS ports); the service (Node's object form,
/// `tls` and `sentinelTLS`) and the client (the URL with the TLS settings
/// beside it) follow a killed master over TLS.
#[test]
fn work_goes_on_over_tls_after_the_master_is_killed() {
    init_logging();
    let certs = TestCertificates::generate();
    let mut group = SentinelGroup::start(SentinelOptions {
        tls: Some(certs.server_files()),
        ..secured()
    });
    follow_switch(&mut group, Switch::Kill, |workload| {
        assert!(workload.service.config().redis().is_tls());
    });
}

/// Starts the work, switches the master as `how` says, and checks that every
/// kind of work came back and no queue item that had to survive was lost.
/// `before` looks at the flowing work before the switch.
fn follow_switch(group: &mut SentinelGroup, how: Switch, before: impl FnOnce(&Workload)) {
    let mut workload = Workload::start(group);
    let started = std::time::Instant::now();
    assert!(
        workload.wait_flowing(started, FAILOVER_DEADLINE),
        "the work never flowed before the switch"
    );
    before(&workload);
    let recovery = run_switch(group, &mut workload, FAILOVER_DEADLINE, how);
    eprintln!("{recovery:#?}");
    assert!(recovery.sentinel_promoted.is_some(), "Sentinel promoted no replica");
    for (what, back) in [
        ("presence", recovery.presence),
        ("request–reply", recovery.requests),
        ("HTTP", recovery.http),
        ("the queue", recovery.queue),
    ] {
        assert!(back.is_some(), "{what} never came back");
    }
    assert!(
        recovery.queue_lost_required.is_empty(),
        "queue items lost: {:?}",
        recovery.queue_lost_required
    );
    workload.shutdown();
}

/// Without the TLS settings, the TLS ports are not talked to in plain text
/// (nor is TLS skipped): `init` fails within its timeouts, and says where.
#[test]
fn tls_sentinels_without_tls_settings_fail_clearly() {
    init_logging();
    let certs = TestCertificates::generate();
    let group = SentinelGroup::start(SentinelOptions {
        tls: Some(certs.server_files()),
        ..SentinelOptions::default()
    });
    let tls_json = group.redis_json(15);
    let attempt = |redis: serde_json::Value| {
        let doc = json!({"hydra": {"serviceName": "tls-less", "serviceIP": "127.0.0.1", "redis": redis,
            "connectTimeout": 1000, "commandTimeout": 1000}});
        let started = std::time::Instant::now();
        let result = Hydra::init(ConfigBuilder::from_value(doc).unwrap().build().unwrap());
        let error = result.err().map(|e| e.to_string());
        eprintln!("after {:?}: {error:?}", started.elapsed());
        (error, started.elapsed())
    };
    // No sentinelTLS: no sentinel answers.
    let mut no_sentinel_tls = tls_json.clone();
    no_sentinel_tls.as_object_mut().unwrap().remove("sentinelTLS");
    let (error, took) = attempt(no_sentinel_tls);
    let error = error.expect("plain text to the sentinels' TLS ports must fail");
    assert!(error.contains("no sentinel named the master"), "{error}");
    assert!(error.contains("set redis.sentinelTLS"), "{error}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // No tls: the sentinels answer, the master's TLS port is not talked to in plain text.
    let mut no_data_tls = tls_json.clone();
    no_data_tls.as_object_mut().unwrap().remove("tls");
    let (error, took) = attempt(no_data_tls);
    let error = error.expect("plain text to the master's TLS port must fail");
    assert!(error.contains("set redis.tls"), "{error}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // The wrong CA: named.
    let mut wrong_ca = tls_json;
    wrong_ca["tls"] = json!({"ca": certs.other_ca()});
    let (error, _) = attempt(wrong_ca);
    let error = error.expect("a server certificate from another CA must be refused");
    assert!(error.contains("redis.tls.ca"), "{error}");
}

/// `SENTINEL FAILOVER`: the old master stays up and becomes a replica
/// (Sentinel disconnects its clients); the work moves to the new master.
#[test]
fn a_manual_failover_is_followed() {
    init_logging();
    let mut group = SentinelGroup::start(SentinelOptions::default());
    follow_switch(&mut group, Switch::Manual, |_| {});
}

#[test]
fn the_sentinels_are_asked_in_turn() {
    init_logging();
    let group = SentinelGroup::start(SentinelOptions {
        sentinels: 1,
        replicas: 0,
        ..SentinelOptions::default()
    });
    // A sentinel that is not there, listed first.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = group.redis_json(15);
    redis["sentinels"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"host": "127.0.0.1", "port": dead}));
    let doc = json!({"hydra": {"serviceName": "turns", "serviceIP": "127.0.0.1", "redis": redis,
        "connectTimeout": 500, "commandTimeout": 1000}});
    let hydra =
        Hydra::init(ConfigBuilder::from_value(doc).unwrap().build().unwrap()).expect("init past a dead sentinel");
    hydra.register_service().expect("register");
    assert_eq!(hydra.get_service_presence("turns").unwrap().len(), 1);
    // The data is on the master the sentinel names.
    let master = group.master_port().unwrap();
    let mut conn = group.data_connection(master).unwrap();
    let _: () = redis::cmd("SELECT").arg(15).query(&mut conn).unwrap();
    let services: Vec<String> = redis::cmd("SMEMBERS")
        .arg("hydra:service:services")
        .query(&mut conn)
        .unwrap_or_default();
    let registered: bool = redis::cmd("EXISTS")
        .arg("hydra:service:turns:service")
        .query(&mut conn)
        .unwrap();
    assert!(registered, "not registered on the master (services: {services:?})");
    hydra.shutdown().unwrap();
}

#[test]
fn no_master_known_by_that_name_is_a_clear_error() {
    let group = SentinelGroup::start(SentinelOptions {
        sentinels: 1,
        replicas: 0,
        ..SentinelOptions::default()
    });
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/nosuchmaster/15",
        group.sentinel_ports()[0]
    );
    let config = hydra::Config::builder()
        .service_name("lost")
        .redis_url(&url)
        .build()
        .unwrap();
    let err = Hydra::init(config).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Redis(_)), "{err:?}");
    assert!(text.contains("does not know a master named \"nosuchmaster\""), "{text}");
}

/// A node that the sentinels still name as the master but that has become a
/// replica (demoted behind their backs; their view is refreshed every 10 s and
/// a master claiming to be a replica is only called down after
/// `down-after-milliseconds`, here a minute) is refused, saying why.
#[test]
fn a_master_that_is_now_a_replica_is_refused() {
    let group = SentinelGroup::start(SentinelOptions {
        sentinels: 1,
        down_after: Duration::from_secs(60),
        failover_timeout: Duration::from_secs(180),
        ..SentinelOptions::default()
    });
    let ports = group.node_ports();
    let (old_master, replica) = (ports[0], ports[1]);
    let mut promote = group.data_connection(replica).unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut promote)
        .unwrap();
    let mut demote = group.data_connection(old_master).unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(replica)
        .query(&mut demote)
        .unwrap();
    assert_eq!(
        group.master_port(),
        Some(old_master),
        "the sentinel's view is still the old one"
    );

    let config = hydra::Config::builder()
        .service_name("stale")
        .redis_url(&group.url(15))
        .build()
        .unwrap();
    let err = Hydra::init(config).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("name 127.0.0.1:{old_master} as the master \"mymaster\"")) && text.contains("\"slave\""),
        "{text}"
    );
}
