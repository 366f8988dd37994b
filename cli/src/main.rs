//! `hydra-cli`: see and operate a Hydra system from the terminal.
//!
//! Every command of Node's hydra-cli 1.8 with the same names and arguments,
//! plus `request`, `queue`, `watch`, `routes match` and `doctor`. Each command
//! builds a [`output::Report`] (a JSON document and a human form); `main`
//! prints it and turns errors into exit codes with a one-line hint.

#![forbid(unsafe_code)]
// Scaffolding while the commands are being built: the lead removes this at merge.
#![allow(dead_code)]

mod args;
mod commands;
mod context;
mod error;
mod output;
mod profile;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::context::Context;
use crate::output::Style;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and exit 0; usage errors exit 2 (clap's own message says what to do).
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let style = Style::detect(cli.json);
    let context = Context::new(cli.redis.clone(), style, cli.connect_timeout);
    let outcome = commands::run(&context, cli.command);
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(report) => match output::print(&report, style, &mut stdout).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            // A closed pipe (`hydra-cli nodes | head`) is not worth a message.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hydra-cli: cannot write the output: {e}");
                ExitCode::from(1)
            }
        },
        Err(error) => {
            if let Some(report) = &error.report {
                let _ = output::print(report, style, &mut stdout);
            } else if style.json {
                let _ = serde_json::to_writer_pretty(&mut stdout, &error.to_json());
                let _ = writeln!(stdout);
            }
            eprintln!("hydra-cli: {error}");
            ExitCode::from(error.kind.exit_code())
        }
    }
}
