//! Test support for hydra-rs: a private `redis-server` per test and real Node
//! `hydra@1.9.3` peers. Used by the integration tests, the interop tests and the
//! benchmark programs (whose shared measurement helpers are in
//! [`bench`](mod@bench)); never by the library itself.
#![deny(missing_docs)]

pub mod bench;
mod child;
mod express_peer;
mod node_peer;
mod redis_server;

pub use express_peer::ExpressPeer;
pub use node_peer::{NodeError, NodePeer};
pub use redis_server::RedisServer;
