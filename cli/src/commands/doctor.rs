//! `doctor`, `redis info` (scaffolding, being built).

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `doctor`.
pub fn doctor(_ctx: &Context) -> CliResult<Report> {
    not_built("doctor")
}
/// `redis info`.
pub fn redis_info(_ctx: &Context) -> CliResult<Report> {
    not_built("redis info")
}
