//! hydra-router: the one public door in front of a set of Hydra services.
//!
//! A Hydra service named `hydra-router` (type `router`) that forwards HTTP
//! calls to the services registered in Redis, balancing and failing over,
//! answers the router API (`/v1/router/...`), keeps per-service stats and
//! metrics, and serves a dashboard. It behaves like Node's hydra-router
//! 1.9.15 where users rely on it and fixes its known faults (see README).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod api;
pub mod config;
pub mod dashboard;
pub mod external;
pub mod forward;
pub mod gateway;
pub mod lanes;
pub mod log_ring;
pub mod messages;
pub mod route_book;
pub mod route_table;
pub mod short_id;
pub mod stats;
pub mod ws;
