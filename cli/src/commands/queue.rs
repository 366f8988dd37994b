//! `queue stats|peek|redrive` (scaffolding, being built).

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `queue stats <svc>`.
pub fn stats(_ctx: &Context, _service: &str) -> CliResult<Report> {
    not_built("queue stats")
}
/// `queue peek <svc> [n]`.
pub fn peek(_ctx: &Context, _service: &str, _count: usize) -> CliResult<Report> {
    not_built("queue peek")
}
/// `queue redrive <svc>`.
pub fn redrive(_ctx: &Context, _service: &str) -> CliResult<Report> {
    not_built("queue redrive")
}
