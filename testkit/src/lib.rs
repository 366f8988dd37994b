//! Test support for hydra-rs: a private `redis-server` per test, a Redis
//! Sentinel group (master, replicas, sentinels) for failover tests, and real
//! Node `hydra@1.9.3` peers. Used by the integration tests, the interop tests and the
//! benchmark programs (whose shared measurement helpers are in
//! [`bench`](mod@bench)); never by the library itself.
#![deny(missing_docs)]

pub mod bench;
mod child;
mod express_peer;
mod node_peer;
mod redis_server;
mod sentinel;
pub mod tls;

pub use express_peer::ExpressPeer;
pub use node_peer::{NodeError, NodePeer};
pub use redis_server::RedisServer;
pub use sentinel::{SentinelGroup, SentinelOptions, TlsFiles};

/// For a test binary re-run as a child process: exits the process as soon as
/// its stdin closes. The parent spawns it with `stdin(Stdio::piped())` and
/// keeps the handle; if the parent dies or drops the child (a failing test),
/// the child does not outlive it, sleeping on with the parent's stderr open.
pub fn exit_when_stdin_closes() {
    let _ = std::thread::Builder::new().name("exit-on-stdin-eof".into()).spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}
