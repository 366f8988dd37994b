//! Profiles in `~/.hydra-cli`: `config <name>` (answers piped on stdin, as
//! scripts feed Node's), `config list`, `use`, `shell`; a file as Node's
//! hydra-cli 1.8 writes it used as is; ours read by real Node hydra the way
//! Node's hydra-cli connects; broken files naming the field.
//!
//! Node's hydra-cli itself cannot run here: the npm registry answers 404
//! for `hydra-cli` (every version). So the Node-written files below are byte
//! for byte what its `config` writes (`JSON.stringify` of the prompt answers,
//! all strings, `redisPassword` only when one was typed), and the reverse
//! direction hands real Node hydra 1.9.3 the `redis` options hydra-cli 1.8
//! builds from the file (`{url: redisUrl, port: redisPort || 0, db: redisDb || 0}`
//! plus `password`).

mod common;

use std::process::Stdio;

use common::{Home, command, finish, run};
use hydra::{Config, Hydra};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

fn rust_service(url: &str, name: &str) -> Hydra {
    let config = Config::builder()
        .service_name(name)
        .service_ip("127.0.0.1")
        .redis_url(url)
        .build()
        .unwrap();
    let hydra = Hydra::init(config).unwrap();
    hydra.register_service().unwrap();
    hydra
}

/// `hydra-cli <args>` with `answers` on stdin and no --redis.
fn run_with_stdin(home: &Home, args: &[&str], answers: &str) -> common::Run {
    let input = home.write("answers.txt", answers);
    let mut cmd = command(home, args);
    cmd.stdin(Stdio::from(std::fs::File::open(input).unwrap()));
    finish(cmd)
}

fn profile_file(home: &Home) -> Value {
    serde_json::from_str(&std::fs::read_to_string(home.profile_file()).unwrap()).unwrap()
}

fn service_names(doc: &Value) -> Vec<String> {
    doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_node_written_profile_is_used_as_is() {
    let server = RedisServer::start();
    let _rust = rust_service(&server.url(15), "rust-svc");
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let config = json!({"hydra": {"serviceName": "node-svc", "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": server.url(15)}}});
    node.call("init", json!([config])).unwrap();
    node.call("registerService", json!([])).unwrap();

    let home = Home::new();
    let port = server.port();
    // What Node's `hydra-cli config local` writes for the answers 127.0.0.1, <port>, 15, (blank).
    std::fs::write(
        home.profile_file(),
        format!(
            r#"{{"version":2,"redisUrl":"127.0.0.1","redisPort":"{port}","redisDb":"15","local":{{"redisUrl":"127.0.0.1","redisPort":"{port}","redisDb":"15"}}}}"#
        ),
    )
    .unwrap();

    let services = run(&home, None, &["services", "--json"]).ok().json();
    assert_eq!(service_names(&services), ["node-svc", "rust-svc"]);
    let nodes = run(&home, None, &["nodes"]).ok();
    assert!(nodes.stdout.contains("node-svc") && nodes.stdout.contains("rust-svc"));

    let listed = run(&home, None, &["config", "list", "--json"]).ok().json();
    assert_eq!(
        listed["profiles"],
        json!([{"name": "local", "host": "127.0.0.1", "port": port, "db": 15, "password": null, "active": true}])
    );
    let shell = run(&home, None, &["shell"]).ok();
    assert_eq!(shell.stdout.trim(), format!("redis-cli -h 127.0.0.1 -p {port} -n 15"));
}

#[test]
fn a_node_profile_with_a_password_logs_in_and_never_shows_it() {
    let server = RedisServer::start_with_args(&["--requirepass", "s3cret"]);
    let port = server.port();
    let _rust = rust_service(&format!("redis://:s3cret@127.0.0.1:{port}/15"), "locked-svc");
    let home = Home::new();
    std::fs::write(
        home.profile_file(),
        format!(
            r#"{{"version":2,"redisUrl":"127.0.0.1","redisPort":"{port}","redisDb":"15","prod":{{"redisUrl":"127.0.0.1","redisPort":"{port}","redisDb":"15","redisPassword":"s3cret"}},"redisPassword":"s3cret"}}"#
        ),
    )
    .unwrap();

    let services = run(&home, None, &["services", "--json"]).ok().json();
    assert_eq!(service_names(&services), ["locked-svc"]);

    let listed = run(&home, None, &["config", "list"]).ok();
    let row = listed.stdout.lines().find(|l| l.contains("prod")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[cells.len() - 2..], ["***", "*"], "{row}");
    let listed_json = run(&home, None, &["config", "list", "--json"]).ok();
    assert_eq!(listed_json.json()["profiles"][0]["password"], "***");
    let shell = run(&home, None, &["shell", "--json"]).ok();
    assert_eq!(
        shell.json()["command"],
        format!("redis-cli -h 127.0.0.1 -p {port} -n 15 --askpass")
    );
    for out in [&listed.stdout, &listed_json.stdout, &shell.stdout] {
        assert!(!out.contains("s3cret"), "password shown: {out}");
    }

    // Without the password, Redis refuses: a connection error, exit 2.
    let open = format!("redis://127.0.0.1:{port}/15");
    let refused = run(&home, Some(&open), &["services"]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
}

#[test]
fn config_reads_piped_answers_and_node_hydra_reads_our_file() {
    let server = RedisServer::start();
    let _rust = rust_service(&server.url(15), "rust-svc");
    let home = Home::new();
    let port = server.port();
    // Unknown fields of an existing file survive.
    std::fs::write(home.profile_file(), r#"{"version":2,"editor":"vim"}"#).unwrap();

    let answers = format!("127.0.0.1\n{port}\n15\n\n");
    let written = run_with_stdin(&home, &["config", "local"], &answers).ok();
    assert!(written.stdout.contains("profile local saved"), "{}", written.stdout);
    assert!(
        !written.stdout.contains("redisUrl"),
        "no prompts when stdin is not a terminal"
    );

    let file = profile_file(&home);
    assert_eq!(file["version"], 2);
    assert_eq!(file["editor"], "vim");
    assert_eq!(file["redisUrl"], "127.0.0.1");
    assert_eq!(file["redisPort"], port);
    assert_eq!(file["redisDb"], 15);
    assert!(file.get("redisPassword").is_none());
    assert_eq!(
        file["local"],
        json!({"redisUrl": "127.0.0.1", "redisPort": port, "redisDb": 15})
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.profile_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let services = run(&home, None, &["services", "--json"]).ok().json();
    assert_eq!(service_names(&services), ["rust-svc"]);

    // Blank answers take the defaults shown (Hydra's 127.0.0.1:6379/15), except the port here.
    let defaults = run_with_stdin(&home, &["config", "other", "--json"], &format!("\n{port}\n\n\n"))
        .ok()
        .json();
    assert_eq!(
        defaults["connection"],
        json!({"host": "127.0.0.1", "port": port, "db": 15, "password": null})
    );

    // Node hydra connects with the options hydra-cli 1.8 builds from our file.
    let node = NodePeer::spawn().expect("start the Node hydra peer");
    let file = profile_file(&home);
    let redis = json!({"url": file["redisUrl"], "port": file["redisPort"], "db": file["redisDb"]});
    let conf = json!({"hydra": {"serviceName": "hydra-cli", "serviceDescription": "Not a service",
        "serviceIP": "", "servicePort": 0, "serviceType": "non", "redis": redis}});
    node.call("init", json!([conf]))
        .expect("Node hydra init from our profile");
    let seen = node.call("getServices", json!([])).unwrap();
    let names: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["serviceName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rust-svc"], "{seen}");
}

#[test]
fn use_switches_profiles_without_leaking_a_password() {
    let home = Home::new();
    let flags = |name: &str, port: &str, password: &str| {
        run(
            &home,
            None,
            &[
                "config",
                name,
                "--host",
                "10.1.2.3",
                "--port",
                port,
                "--db",
                "3",
                "--password",
                password,
            ],
        )
        .ok();
    };
    flags("secure", "7001", "pw1");
    flags("open", "7002", "");
    let file = profile_file(&home);
    assert_eq!(file["redisPort"], 7002);
    assert!(file.get("redisPassword").is_none());
    assert_eq!(file["secure"]["redisPassword"], "pw1");

    let used = run(&home, None, &["use", "secure", "--json"]).ok().json();
    assert_eq!(used["profile"], "secure");
    assert_eq!(used["connection"]["password"], "***");
    assert_eq!(profile_file(&home)["redisPassword"], "pw1");
    // Node's `use` kept the previous password at the top level; ours drops it.
    let text = run(&home, None, &["use", "open"]).ok();
    assert!(
        text.stdout.contains("now using open: 10.1.2.3:7002/3"),
        "{}",
        text.stdout
    );
    let file = profile_file(&home);
    assert!(file.get("redisPassword").is_none(), "{file}");
    assert_eq!(file["redisPort"], 7002);

    let listed = run(&home, None, &["config", "list"]).ok();
    let active: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().last() == Some("*"))
        .collect();
    assert_eq!(active.len(), 1, "{}", listed.stdout);
    assert!(active[0].contains("open"));

    let unknown = run(&home, None, &["use", "staging"]);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown.stderr.contains("no profile named staging") && unknown.stderr.contains("secure, open"),
        "{}",
        unknown.stderr
    );
    let reserved = run(
        &home,
        None,
        &[
            "config",
            "redisUrl",
            "--host",
            "h",
            "--port",
            "1",
            "--db",
            "0",
            "--password",
            "",
        ],
    );
    assert_eq!(reserved.code, Some(2), "{reserved:?}");
}

#[test]
fn broken_profiles_and_answers_exit_2_naming_the_problem() {
    let home = Home::new();
    std::fs::write(
        home.profile_file(),
        r#"{"version":2,"redisUrl":"127.0.0.1","redisPort":"http","redisDb":"15"}"#,
    )
    .unwrap();
    for args in [&["nodes"][..], &["config", "list"], &["shell"]] {
        let broken = run(&home, None, args);
        assert_eq!(broken.code, Some(2), "{args:?}: {broken:?}");
        assert!(
            broken.stderr.contains("`redisPort` is missing or has the wrong type")
                && broken.stderr.contains(".hydra-cli"),
            "{}",
            broken.stderr
        );
    }

    std::fs::write(home.profile_file(), "{not json").unwrap();
    let garbage = run(&home, None, &["services", "--json"]);
    assert_eq!(garbage.code, Some(2));
    assert!(
        garbage.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a JSON object")
    );

    std::fs::remove_file(home.profile_file()).unwrap();
    let ended = run_with_stdin(&home, &["config", "local"], "127.0.0.1\n");
    assert_eq!(ended.code, Some(2), "{ended:?}");
    assert!(ended.stderr.contains("no answer for redisPort"), "{}", ended.stderr);
    let bad_port = run_with_stdin(&home, &["config", "local"], "127.0.0.1\nhttp\n15\n\n");
    assert_eq!(bad_port.code, Some(2));
    assert!(bad_port.stderr.contains("redisPort"), "{}", bad_port.stderr);
    assert!(!home.profile_file().exists(), "nothing written after a bad answer");

    let none = run(&home, None, &["config", "list", "--json"]).ok().json();
    assert_eq!(none["profiles"], json!([]));
    let use_none = run(&home, None, &["use", "local"]);
    assert_eq!(use_none.code, Some(2));
}
