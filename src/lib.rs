//! # hydra-rs
//!
//! [Hydra](https://github.com/pnxtech/hydra), the light-weight microservice
//! toolkit built on Redis, as a synchronous Rust library that is wire-compatible
//! with Node's `hydra` 1.9.x: a Rust service and a Node service on the same
//! Redis find each other, see each other's presence and health, and share
//! configuration.
//!
//! Add it with `cargo add hydra-rs`; the library is imported as `hydra`. It
//! needs a Redis ≥ 6.2 to talk to, by default
//! `redis://127.0.0.1:6379/15`, as Node Hydra uses.
//!
//! ```no_run
//! use hydra::{Config, Hydra};
//!
//! # fn main() -> hydra::Result<()> {
//! // A service name is enough; Redis comes from HYDRA_REDIS_URL or the default
//! // redis://127.0.0.1:6379/15 that Node Hydra uses.
//! let hydra = Hydra::init(Config::new("billing")?)?;
//! hydra.register_service()?;
//! for instance in hydra.get_service_presence("invoices")? {
//!     println!("invoices at {}:{}", instance.ip, instance.port);
//! }
//! hydra.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! What it covers: registration, presence and health with a heartbeat;
//! discovery without keyspace scans; UMF messaging over pub/sub (send, reply,
//! broadcast, request–reply with a timeout); HTTP calls with load balancing and
//! failover, and an embedded HTTP server for a service's routes; Node-compatible
//! service queues plus leased, crash-safe queue workers. Every Redis
//! connection can use TLS (`rediss://`, the `redis.tls` settings: CA, client
//! certificate for mutual TLS), over rustls.
//!
//! Threads (all named, owned and joined on `shutdown`): `register_service`
//! starts `hydra-heartbeat` and `hydra-msg-0`, which reads the subscription;
//! `on_message` grows that group to `messageWorkers + 1` `hydra-msg-N` threads
//! (they take turns reading and run the handlers); `serve_http` starts
//! `hydra-http` and `hydra-http-N`; `queue_worker` starts `hydra-queue-N` and
//! `hydra-queue-keeper`. No async runtime is used.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod diagnostics;
mod error;
mod heartbeat;
mod host;
pub mod http;
mod hydra;
mod js_json;
pub mod keys;
mod listener;
mod mailbox;
mod messaging;
mod node_index;
mod pool;
mod queue;
mod records;
mod registry;
mod sentinel;
mod signing;
mod store;
mod subscription;
mod threads;
mod timestamp;
mod tls;
pub mod umf;

pub use config::{
    Config, ConfigBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_QUEUED_MESSAGE_BYTES, DEFAULT_MESSAGE_QUEUE_CAPACITY, DEFAULT_MESSAGE_WORKERS,
    DEFAULT_PRESENCE_CACHE_TTL, DEFAULT_REDIS_URL, PortSpec, RedisConfig,
};
pub use diagnostics::{
    AclCheck, AclFinding, CommandUse, InfoSection, InstanceState, Latency, RedisInfo, RegistrySnapshot,
    SAMPLE_INSTANCE, SAMPLE_SERVICE, least_privilege_acl_rules, redis_command_uses,
};
pub use error::{Error, ErrorCode, Result};
pub use heartbeat::{HEALTH_INTERVAL, HEALTH_LOG_TTL_SECS, HEALTH_TTL_SECS, PRESENCE_INTERVAL, PRESENCE_TTL_SECS};
pub use http::{
    ApiResponse, Balance, HttpRequest, HttpResponse, HttpRoutes, HttpSettings, RequestOptions, ServiceRequest,
};
pub use hydra::{Hydra, ServiceInfo};
pub use mailbox::{DEFAULT_MAILBOX_TTL, Mailboxes};
pub use messaging::{HandlerError, MessageStats};
pub use queue::{QueueOptions, QueueStats, QueueWorker, QueueWorkerStats, QueuedMessage, WaitingMessage};
pub use records::{HealthLogEntry, Instance, ServiceRecord};
pub use registry::ServiceHealth;
pub use sentinel::DEFAULT_SENTINEL_PORT;
pub use signing::DEFAULT_SIGNATURE_ALGORITHM;
pub use umf::{Route, Umf};

/// Compiles the README's example as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Compiles the crates.io README's example as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.crate.md")]
struct CrateReadmeDoctests;
