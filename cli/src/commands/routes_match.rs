//! `routes match <path>` (scaffolding, being built).

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `routes match <path>`.
pub fn routes_match(_ctx: &Context, _method: &str, _path: &str) -> CliResult<Report> {
    not_built("routes match")
}
