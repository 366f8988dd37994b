//! Least privilege: a Redis user with exactly `least_privilege_acl_rules()`
//! runs the whole flow (registration, heartbeats, messaging, HTTP, queues,
//! discovery, health, configs, streams, mailboxes, shutdown), may do nothing
//! else, and a user lacking one permission gets an error naming the command
//! and its key or channel. Real Redis 7 ACLs.

mod common;

use std::time::Duration;

use common::{builder, raw};
use hydra::{
    DEFAULT_MAILBOX_TTL, Error, HttpResponse, HttpRoutes, Hydra, QueueOptions, RequestOptions,
    least_privilege_acl_rules,
};
use hydra_testkit::RedisServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn acl_setuser(server: &RedisServer, user: &str, rules: &str) {
    let mut conn = raw(server);
    let mut command = redis::cmd("ACL");
    command.arg("SETUSER").arg(user).arg("reset").arg("on").arg(">pw");
    for rule in rules.split(' ') {
        command.arg(rule);
    }
    let _: () = command.query(&mut conn).unwrap();
}

fn user_url(server: &RedisServer, user: &str) -> String {
    format!("redis://{user}:pw@127.0.0.1:{}/15", server.port())
}

fn as_user(server: &RedisServer, user: &str, name: &str) -> Hydra {
    let config = builder(server, name)
        .redis_url(&user_url(server, user))
        .build()
        .unwrap();
    Hydra::init(config).expect("init as the ACL user")
}

#[test]
fn the_documented_user_runs_the_whole_flow_and_nothing_else() {
    let server = RedisServer::start();
    acl_setuser(&server, "hydra-svc", &least_privilege_acl_rules());

    let responder = as_user(&server, "hydra-svc", "acl-responder");
    responder
        .on_message(|h, msg| {
            h.reply(&msg, json!({"echo": msg.body}))?;
            Ok(())
        })
        .unwrap();
    responder
        .serve_http(HttpRoutes::new().get("/v1/acl-responder/hello", |_, _| {
            HttpResponse::send_response(200, json!("hi"))
        }))
        .unwrap();
    responder
        .register_service()
        .expect("register as the least-privilege user");
    let caller = as_user(&server, "hydra-svc", "acl-caller");
    caller.register_service().unwrap();
    caller.register_routes(&["[get]/v1/acl-caller".to_string()]).unwrap();

    // Messaging.
    let reply = caller
        .request(&caller.create_umf_message("acl-responder:/", json!({"n": 1})), WAIT)
        .expect("request–reply");
    assert_eq!(reply.body, json!({"echo": {"n": 1}}));
    caller
        .send_broadcast_message(&caller.create_umf_message("acl-responder:/", json!({"all": true})))
        .unwrap();
    // HTTP.
    let answer = caller
        .make_api_request(
            &caller.create_umf_message("acl-responder:[get]/v1/acl-responder/hello", json!({})),
            RequestOptions::default(),
        )
        .expect("HTTP call");
    assert_eq!(answer.status, 200);
    // Discovery, health, configs, streams.
    assert!(
        caller
            .get_services()
            .unwrap()
            .iter()
            .any(|s| s.service_name == "acl-responder")
    );
    assert!(!caller.get_service_nodes().unwrap().is_empty());
    assert_eq!(caller.get_service_presence("acl-responder").unwrap().len(), 1);
    assert!(caller.get_all_service_routes().unwrap().contains_key("acl-caller"));
    caller.get_service_health_all().unwrap();
    caller.send_to_health_log("info", "least privilege").unwrap();
    assert!(!caller.get_service_health_log("acl-caller").unwrap().is_empty());
    caller.clear_stale_nodes(Duration::from_secs(60)).unwrap();
    caller.put_config("acl-caller:1.0.0", &json!({"a": 1})).unwrap();
    assert_eq!(caller.get_config("acl-caller:1.0.0").unwrap(), Some(json!({"a": 1})));
    assert_eq!(
        caller.list_config("acl-caller").unwrap(),
        vec!["acl-caller:1.0.0".to_string()]
    );
    caller
        .stream_message("acl-events", &caller.create_umf_message("acl-responder:/", json!({})))
        .unwrap();
    // Queues: untracked take and mark, a worker with retries, stats, peek, redrive.
    for n in 0..3 {
        caller
            .queue_message(&caller.create_umf_message("acl-jobs:/", json!({"n": n})))
            .unwrap();
    }
    assert_eq!(caller.peek_queue("acl-jobs", 10).unwrap().len(), 3);
    let taken = caller
        .get_queued_message("acl-jobs")
        .unwrap()
        .expect("a queued message");
    assert!(
        caller
            .mark_queue_message(&taken, false, Some("dead on purpose"))
            .unwrap()
    );
    let (done_tx, done) = crossbeam_channel::unbounded();
    let worker = responder
        .queue_worker_with(
            "acl-jobs",
            2,
            QueueOptions::default().with_max_deliveries(2),
            move |message| {
                let _ = done_tx.send(message.message.body["n"].clone());
                Ok(())
            },
        )
        .unwrap();
    for _ in 0..2 {
        done.recv_timeout(WAIT).expect("the worker ran a job");
    }
    assert_eq!(caller.redrive_dead_letters("acl-jobs").unwrap(), 1);
    done.recv_timeout(WAIT).expect("the redriven job ran");
    let stats = caller.queue_stats("acl-jobs").unwrap();
    assert_eq!((stats.waiting, stats.incomplete), (0, 0), "{stats:?}");
    worker.stop();
    // hydra-router's offline mailboxes.
    let mailboxes = caller.mailboxes(15).unwrap();
    mailboxes
        .push(
            "acl-client",
            &caller.create_umf_message("acl-client:/", json!({"m": 1})),
            DEFAULT_MAILBOX_TTL,
        )
        .unwrap();
    assert_eq!(mailboxes.take("acl-client", 10).unwrap().len(), 1);
    // The ACL check (run by an administrator: the user itself may not run ACL) agrees: nothing denied.
    let check = common::init(&server, "acl-admin").check_acl(Some("hydra-svc")).unwrap();
    assert_eq!(check.unavailable, None);
    assert_eq!(check.denied().count(), 0, "{:?}", check.denied().collect::<Vec<_>>());
    // Heartbeats keep going (presence is re-written every second).
    thread_sleep_beats();
    assert_eq!(caller.get_service_presence("acl-responder").unwrap().len(), 1);
    responder.shutdown().unwrap();
    caller.shutdown().unwrap();

    // And nothing else: other keys, other channels, dangerous commands.
    let mut conn = redis::Client::open(user_url(&server, "hydra-svc"))
        .unwrap()
        .get_connection()
        .unwrap();
    for refused in [
        redis::cmd("GET").arg("session:42").clone(),
        redis::cmd("PUBLISH").arg("payments").arg("x").clone(),
        redis::cmd("FLUSHALL").clone(),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        redis::cmd("DEL").arg("orders:1").clone(),
        redis::cmd("SWAPDB").arg(0).arg(15).clone(),
    ] {
        let outcome: redis::RedisResult<redis::Value> = refused.query(&mut conn);
        let error = outcome.expect_err(&format!(
            "{:?} refused",
            String::from_utf8_lossy(&refused.get_packed_command())
        ));
        assert!(error.to_string().to_ascii_lowercase().contains("noperm"), "{error}");
    }
}

/// Two heartbeats' worth of time (the presence TTL is 3 s, beats every 1 s).
fn thread_sleep_beats() {
    std::thread::sleep(Duration::from_millis(3500));
}

#[test]
fn a_user_lacking_publish_is_told_the_command_and_the_channel() {
    let server = RedisServer::start();
    acl_setuser(
        &server,
        "no-publish",
        &format!("{} -publish", least_privilege_acl_rules()),
    );
    acl_setuser(&server, "hydra-svc", &least_privilege_acl_rules());
    let target = as_user(&server, "hydra-svc", "acl-target");
    target.register_service().unwrap();
    let sender = as_user(&server, "no-publish", "acl-sender");
    sender.register_service().expect("registration needs no PUBLISH");
    let error = sender
        .send_message(&sender.create_umf_message("acl-target:/", json!({})))
        .expect_err("PUBLISH is refused");
    match &error {
        Error::PermissionDenied(text) => {
            assert!(text.contains("PUBLISH"), "{text}");
            assert!(
                text.contains(&format!("hydra:service:mc:acl-target:{}", target.get_instance_id())),
                "{text}"
            );
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let check = common::init(&server, "acl-admin")
        .check_acl(Some("no-publish"))
        .unwrap();
    assert_eq!(check.unavailable, None);
    let denied: Vec<String> = check.denied().map(|f| f.usage.command.clone()).collect();
    assert_eq!(denied, vec!["PUBLISH".to_string(); denied.len()]);
    assert!(!denied.is_empty());
}
