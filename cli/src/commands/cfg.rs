//! `cfg push|pull|list|remove` (scaffolding, being built).

use std::path::Path;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `cfg push <svc:ver> <file>`.
pub fn push(_ctx: &Context, _label: &str, _file: &Path) -> CliResult<Report> {
    not_built("cfg push")
}
/// `cfg pull <svc:ver>`.
pub fn pull(_ctx: &Context, _label: &str) -> CliResult<Report> {
    not_built("cfg pull")
}
/// `cfg list <svc>`.
pub fn list(_ctx: &Context, _service: &str) -> CliResult<Report> {
    not_built("cfg list")
}
/// `cfg remove <svc:ver>`.
pub fn remove(_ctx: &Context, _label: &str) -> CliResult<Report> {
    not_built("cfg remove")
}
