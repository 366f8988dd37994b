//! `message create|send|queue`, `rest`, `request` (scaffolding, being built).

use std::path::Path;
use std::time::Duration;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `message create`.
pub fn create(_ctx: &Context) -> CliResult<Report> {
    not_built("message create")
}
/// `message send <file>`.
pub fn send(_ctx: &Context, _file: &Path) -> CliResult<Report> {
    not_built("message send")
}
/// `message queue <file>`.
pub fn queue(_ctx: &Context, _file: &Path) -> CliResult<Report> {
    not_built("message queue")
}
/// `rest <route> [payload]`.
pub fn rest(_ctx: &Context, _route: &str, _payload: Option<&Path>) -> CliResult<Report> {
    not_built("rest")
}
/// `request <to> <json>`.
pub fn request(_ctx: &Context, _to: &str, _body: &str, _timeout: Duration) -> CliResult<Report> {
    not_built("request")
}
