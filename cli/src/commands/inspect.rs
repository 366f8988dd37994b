//! `nodes`, `services`, `routes`, `health`, `healthlog`, `refresh node list` (scaffolding, being built).

use std::time::Duration;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `nodes [svc]`.
pub fn nodes(_ctx: &Context, _service: Option<&str>) -> CliResult<Report> {
    not_built("nodes")
}
/// `services [svc]`.
pub fn services(_ctx: &Context, _service: Option<&str>) -> CliResult<Report> {
    not_built("services")
}
/// `routes [svc]`.
pub fn routes(_ctx: &Context, _service: Option<&str>) -> CliResult<Report> {
    not_built("routes")
}
/// `health [svc]`.
pub fn health(_ctx: &Context, _service: Option<&str>) -> CliResult<Report> {
    not_built("health")
}
/// `healthlog <svc>`.
pub fn healthlog(_ctx: &Context, _service: &str) -> CliResult<Report> {
    not_built("healthlog")
}
/// `refresh node list`.
pub fn refresh_node_list(_ctx: &Context, _older_than: Duration) -> CliResult<Report> {
    not_built("refresh node list")
}
