//! `config`, `config list`, `use`, `shell`: profiles in ~/.hydra-cli (scaffolding, being built).

use crate::args::ConfigArgs;
use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::Report;

fn not_built(command: &str) -> CliResult<Report> {
    Err(CliError::failed(format!("`{command}` is being built"), ""))
}

/// `config <name>`.
pub fn config(_ctx: &Context, _args: &ConfigArgs) -> CliResult<Report> {
    not_built("config")
}
/// `config list`.
pub fn config_list(_ctx: &Context) -> CliResult<Report> {
    not_built("config list")
}
/// `use <name>`.
pub fn use_profile(_ctx: &Context, _name: &str) -> CliResult<Report> {
    not_built("use")
}
/// `shell`.
pub fn shell(_ctx: &Context) -> CliResult<Report> {
    not_built("shell")
}
