//! `watch` (scaffolding, being built).

use std::time::Duration;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `watch`.
pub fn watch(_ctx: &Context, _interval: Duration) -> CliResult<Report> {
    not_built("watch")
}
