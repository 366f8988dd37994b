//! `hydra-router --config config.json`: see the crate docs.

fn main() {}
