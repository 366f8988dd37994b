//! One module per group of commands; [`run`] dispatches the parsed command line.

use clap::CommandFactory;
use serde_json::json;

use crate::args::{
    CfgCommand, Cli, Command, ConfigCommand, MessageCommand, QueueCommand, RedisCommand, RefreshCommand,
    RefreshNodeCommand, RoutesCommand,
};
use crate::context::Context;
use crate::error::CliResult;
use crate::output::Report;

mod cfg;
mod doctor;
mod inspect;
mod messages;
mod profiles;
mod queue;
mod routes_match;
mod watch;

/// Runs one command.
pub fn run(ctx: &Context, command: Command) -> CliResult<Report> {
    match command {
        Command::Config(config) => match config.list {
            Some(ConfigCommand::List) => profiles::config_list(ctx),
            None => profiles::config(ctx, &config),
        },
        Command::Use { name } => profiles::use_profile(ctx, &name),
        Command::Shell => profiles::shell(ctx),
        Command::Nodes { service } => inspect::nodes(ctx, service.as_deref()),
        Command::Services { service } => inspect::services(ctx, service.as_deref()),
        Command::Routes(routes) => match routes.matcher {
            Some(RoutesCommand::Match { path, method }) => routes_match::routes_match(ctx, &method, &path),
            None => inspect::routes(ctx, routes.service.as_deref()),
        },
        Command::Health { service } => inspect::health(ctx, service.as_deref()),
        Command::Healthlog { service } => inspect::healthlog(ctx, &service),
        Command::Refresh(RefreshCommand::Node {
            what: RefreshNodeCommand::List { older_than },
        }) => inspect::refresh_node_list(ctx, older_than),
        Command::Redis(RedisCommand::Info) => doctor::redis_info(ctx),
        Command::Cfg(CfgCommand::Push { label, file }) => cfg::push(ctx, &label, &file),
        Command::Cfg(CfgCommand::Pull { label }) => cfg::pull(ctx, &label),
        Command::Cfg(CfgCommand::List { service }) => cfg::list(ctx, &service),
        Command::Cfg(CfgCommand::Remove { label }) => cfg::remove(ctx, &label),
        Command::Message(MessageCommand::Create) => messages::create(ctx),
        Command::Message(MessageCommand::Send { file }) => messages::send(ctx, &file),
        Command::Message(MessageCommand::Queue { file }) => messages::queue(ctx, &file),
        Command::Rest { route, payload } => messages::rest(ctx, &route, payload.as_deref()),
        Command::Request { to, body, timeout } => messages::request(ctx, &to, &body, timeout),
        Command::Queue(QueueCommand::Stats { service }) => queue::stats(ctx, &service),
        Command::Queue(QueueCommand::Peek { service, count }) => queue::peek(ctx, &service, count),
        Command::Queue(QueueCommand::Redrive { service }) => queue::redrive(ctx, &service),
        Command::Watch { interval } => watch::watch(ctx, interval),
        Command::Doctor { acl_user } => doctor::doctor(ctx, acl_user.as_deref()),
        Command::Completions { shell } => Ok(completions(shell)),
    }
}

/// `completions <shell>`: the script clap_complete writes for our command line.
fn completions(shell: clap_complete::Shell) -> Report {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hydra-cli", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    Report::new(json!({"shell": shell.to_string(), "script": script})).text(script)
}
