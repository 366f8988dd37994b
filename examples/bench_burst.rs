//! Burst benchmark: bursts of small requests published at once to an echo
//! service, hydra-rs's and Node hydra 1.9.3's side by side in the same run.
//!
//! ```text
//! cargo run --release --example bench_burst
//! ```
//!
//! Goal: every request answered, as Node's echo does, in less time. The
//! program is a report: it exits 0 whether or not the goal is met, and
//! non-zero only when a reply carried the wrong body (or set-up failed).
//!
//! It starts its own `redis-server` on a free loopback port (db 15) and a Node
//! peer (`interop/peer.js`, its `echo` method: `sendReplyMessage` with
//! `{"echo": body}` for every message). In this process: the hydra-rs echo (a
//! registered `Hydra` with the default settings whose handler replies
//! `{"echo": body}`), and a registered `burst-caller` whose presence lets
//! both echoes address their replies to it.
//!
//! A burst is sent by a plain redis-rs connection: `BURST` UMF messages
//! (`{"n": <i>, "pad": <64 bytes>}`, `from` = the caller instance), `PUBLISH`ed
//! to the echo instance's channel in pipelines of 500, as fast as Redis takes
//! them. A plain subscriber on the caller's instance channel counts the
//! replies whose `rmid` is one of the burst's `mid`s and checks their bodies.
//! A burst ends with its last reply, or when no reply has come for
//! `QUIET_END` (the rest are lost). `answered` is replies / requests; `last
//! reply` is the time from the first `PUBLISH` to the last reply; `dropped`
//! and `read pauses` are the hydra-rs echo's own counters (`overflow` and
//! `read_pauses` of its `MessageStats`) for that burst. A second hydra-rs
//! echo with a 1 MiB budget (`maxQueuedMessageBytes`) shows what happens when
//! a burst overruns the budget: the reader pauses and Redis buffers.

use std::collections::HashMap;
use std::error::Error;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, unbounded};
use hydra::umf::UMF_VERSION;
use hydra::{Config, Hydra, MessageStats};
use hydra_testkit::bench::{self, Table, padded_body};
use hydra_testkit::{NodePeer, RedisServer};
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const DB: u8 = 15;
const CALLER_SERVICE: &str = "burst-caller";
const RUST_ECHO: &str = "rust-echo";
/// A hydra-rs echo with a 1 MiB budget for waiting messages, so that bursts
/// overrun it: it shows the reader pausing (Redis buffers) instead of dropping.
const TIGHT_ECHO: &str = "tight-echo";
const TIGHT_BUDGET: usize = 1 << 20;
const NODE_ECHO: &str = "node-echo";
/// Messages per `PUBLISH` pipeline.
const PIPELINE: usize = 500;

fn main() -> ExitCode {
    bench::exit_code("bench_burst", run())
}

/// One echo under test.
struct Echo {
    label: &'static str,
    channel: String,
    to: String,
    stats: Option<Hydra>,
}

fn run() -> BoxResult<bool> {
    let bursts: Vec<usize> = bench::scaled(vec![2_000, 50_000], vec![200, 2_000]);
    let rounds = bench::scaled(3, 1);
    let quiet_end = bench::scaled(Duration::from_secs(10), Duration::from_secs(5));

    let server = RedisServer::start();
    let url = server.url(DB);
    let builder = |name: &str| {
        Config::builder()
            .service_name(name)
            .service_ip("127.0.0.1")
            .redis_url(&url)
    };
    let config = |name: &str| -> BoxResult<Config> { Ok(builder(name).build()?) };

    let echo_service = |config: Config| -> BoxResult<Hydra> {
        let echo = Hydra::init(config)?;
        echo.on_message(|h, msg| {
            h.reply(&msg, json!({ "echo": msg.body }))?;
            Ok(())
        })?;
        echo.register_service()?;
        Ok(echo)
    };
    let rust_echo = echo_service(config(RUST_ECHO)?)?;
    let tight_echo = echo_service(builder(TIGHT_ECHO).max_queued_message_bytes(TIGHT_BUDGET).build()?)?;

    let node = NodePeer::spawn()?;
    let node_config = json!({"hydra": {
        "serviceName": NODE_ECHO, "serviceIP": "127.0.0.1", "servicePort": 0,
        "redis": {"url": url}
    }});
    node.call("init", json!([node_config]))?;
    node.call("registerService", json!([]))?;
    node.call("echo", json!([]))?;
    let node_id = node
        .call("getInstanceID", json!([]))?
        .as_str()
        .ok_or("no Node instance ID")?
        .to_string();

    let caller = Hydra::init(config(CALLER_SERVICE)?)?;
    caller.register_service()?;
    let from = format!("{}@{CALLER_SERVICE}:/", caller.get_instance_id());

    let echoes = [
        Echo {
            label: "hydra-rs echo",
            channel: hydra::keys::instance_channel(RUST_ECHO, rust_echo.get_instance_id()),
            to: format!("{}@{RUST_ECHO}:/", rust_echo.get_instance_id()),
            stats: Some(rust_echo.clone()),
        },
        Echo {
            label: "hydra-rs echo, 1 MiB budget",
            channel: hydra::keys::instance_channel(TIGHT_ECHO, tight_echo.get_instance_id()),
            to: format!("{}@{TIGHT_ECHO}:/", tight_echo.get_instance_id()),
            stats: Some(tight_echo.clone()),
        },
        Echo {
            label: "Node hydra 1.9.3 echo",
            channel: hydra::keys::instance_channel(NODE_ECHO, &node_id),
            to: format!("{node_id}@{NODE_ECHO}:/"),
            stats: None,
        },
    ];
    let client = redis::Client::open(url.as_str())?;
    wait_subscribed(&client, &echoes)?;

    let replies = Replies::start(
        &client,
        &hydra::keys::instance_channel(CALLER_SERVICE, caller.get_instance_id()),
    )?;
    let mut publisher = client.get_connection()?;
    // A warm-up burst each, untimed, so both sides have their connections.
    for echo in &echoes {
        burst(&mut publisher, &replies, echo, &from, 100, quiet_end)?;
    }

    let mut table = Table::new(&[
        "burst",
        "echo",
        "run",
        "answered",
        "last reply",
        "dropped",
        "read pauses",
    ]);
    let mut all_right = true;
    for &size in &bursts {
        for run in 1..=rounds {
            for echo in &echoes {
                let outcome = burst(&mut publisher, &replies, echo, &from, size, quiet_end)?;
                all_right &= outcome.wrong == 0;
                let counters = |s: &MessageStats| (s.overflow, s.read_pauses);
                let (dropped, pauses) = match (&outcome.before, &outcome.after) {
                    (Some(b), Some(a)) => {
                        let (b, a) = (counters(b), counters(a));
                        ((a.0 - b.0).to_string(), (a.1 - b.1).to_string())
                    }
                    _ => ("n/a".into(), "n/a".into()),
                };
                table.row([
                    size.to_string(),
                    echo.label.to_string(),
                    run.to_string(),
                    format!(
                        "{:.1} % ({} of {size})",
                        100.0 * outcome.answered as f64 / size as f64,
                        outcome.answered
                    ),
                    outcome
                        .last_reply
                        .map_or("—".into(), |t| format!("{:.2} s", t.as_secs_f64())),
                    dropped,
                    pauses,
                ]);
                if outcome.wrong > 0 {
                    eprintln!("{}: {} replies with a wrong body", echo.label, outcome.wrong);
                }
            }
        }
    }
    println!(
        "Bursts of small requests to an echo (the requests PUBLISHed in pipelines of {PIPELINE}, then the replies awaited; dropped and read pauses: the hydra-rs echo's counters):"
    );
    table.print();
    replies.stop()?;
    drop(node);
    rust_echo.shutdown()?;
    tight_echo.shutdown()?;
    caller.shutdown()?;
    Ok(all_right)
}

/// Waits until both echoes are subscribed to their instance channels.
fn wait_subscribed(client: &redis::Client, echoes: &[Echo]) -> BoxResult<()> {
    let mut conn = client.get_connection()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for echo in echoes {
        loop {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(&echo.channel).query(&mut conn)?;
            if counts.first().is_some_and(|c| c.1 >= 1) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{} never subscribed to {}", echo.label, echo.channel).into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

struct Outcome {
    answered: usize,
    wrong: usize,
    last_reply: Option<Duration>,
    before: Option<MessageStats>,
    after: Option<MessageStats>,
}

fn burst(
    publisher: &mut redis::Connection,
    replies: &Replies,
    echo: &Echo,
    from: &str,
    size: usize,
    quiet_end: Duration,
) -> BoxResult<Outcome> {
    let before = echo.stats.as_ref().map(Hydra::message_stats);
    let mut expected: HashMap<String, Value> = HashMap::with_capacity(size);
    let messages: Vec<String> = (0..size)
        .map(|n| {
            let mid = uuid::Uuid::new_v4().to_string();
            let body = padded_body(n as u64);
            let message = json!({
                "to": echo.to, "frm": from, "mid": mid, "ts": now_iso(),
                "ver": UMF_VERSION, "bdy": body,
            });
            expected.insert(mid, json!({ "echo": body }));
            message.to_string()
        })
        .collect();
    let started = Instant::now();
    for chunk in messages.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for message in chunk {
            pipe.cmd("PUBLISH").arg(&echo.channel).arg(message).ignore();
        }
        pipe.query::<()>(publisher)?;
    }
    let (mut answered, mut wrong, mut last_reply) = (0, 0, None);
    while answered < size {
        let Ok((at, rmid, body)) = replies.received.recv_timeout(quiet_end) else {
            break; // quiet for too long: the rest are lost
        };
        let Some(want) = expected.remove(&rmid) else {
            continue; // a late reply of an earlier burst
        };
        answered += 1;
        if body != want {
            wrong += 1;
        }
        last_reply = Some(at.saturating_duration_since(started));
    }
    // Let the echo's counters settle (a drop is counted after the read).
    let after = echo.stats.as_ref().map(|h| {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stats = h.message_stats();
            let seen = stats.received - before.map_or(0, |b| b.received);
            if seen >= size as u64 || Instant::now() > deadline {
                return stats;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    Ok(Outcome {
        answered,
        wrong,
        last_reply,
        before,
        after,
    })
}

/// A plain subscriber on the caller's channel: (arrival, rmid, body) of every
/// reply. It reads without a timeout (redis-rs skips a frame after a read
/// timeout) and stops at the payload `STOP`.
struct Replies {
    received: Receiver<(Instant, String, Value)>,
    client: redis::Client,
    channel: String,
    thread: thread::JoinHandle<()>,
}

const STOP: &str = "stop";

impl Replies {
    fn start(client: &redis::Client, channel: &str) -> BoxResult<Replies> {
        let mut conn = client.get_connection()?;
        let (tx, received) = unbounded();
        let (ready_tx, ready) = unbounded::<Result<(), String>>();
        let subscribed = channel.to_string();
        let thread = thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            if let Err(e) = pubsub.subscribe(&subscribed) {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            while let Ok(msg) = pubsub.get_message() {
                let at = Instant::now();
                if msg.get_payload_bytes() == STOP.as_bytes() {
                    return;
                }
                let Ok(reply) = serde_json::from_slice::<Value>(msg.get_payload_bytes()) else {
                    continue;
                };
                let rmid = reply["rmid"].as_str().unwrap_or_default().to_string();
                let _ = tx.send((at, rmid, reply["bdy"].clone()));
            }
        });
        ready.recv_timeout(Duration::from_secs(5))??;
        Ok(Replies {
            received,
            client: client.clone(),
            channel: channel.to_string(),
            thread,
        })
    }

    fn stop(self) -> BoxResult<()> {
        let mut conn = self.client.get_connection()?;
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(STOP)
            .query::<()>(&mut conn)?;
        let _ = self.thread.join();
        Ok(())
    }
}

fn now_iso() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
