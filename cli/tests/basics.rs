//! The command line itself: help, usage errors, completions, unreachable Redis.

mod common;

use common::{Home, run};

#[test]
fn help_is_on_every_command_and_usage_errors_exit_2() {
    let home = Home::new();
    let help = run(&home, None, &["--help"]).ok();
    for command in [
        "nodes", "services", "routes", "message", "queue", "watch", "doctor", "cfg",
    ] {
        assert!(
            help.stdout.contains(command),
            "{command} missing from --help:\n{}",
            help.stdout
        );
        let sub = run(&home, None, &[command, "--help"]).ok();
        assert!(sub.stdout.contains("Usage: hydra-cli"), "{}", sub.stdout);
    }
    let bogus = run(&home, None, &["bogus"]);
    assert_eq!(bogus.code, Some(2), "{bogus:?}");
    assert!(
        bogus.stderr.contains("unrecognized subcommand 'bogus'"),
        "{}",
        bogus.stderr
    );
    let missing = run(&home, None, &["healthlog"]);
    assert_eq!(missing.code, Some(2), "{missing:?}");
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let home = Home::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef hydra-cli"),
        ("fish", "complete -c hydra-cli"),
    ] {
        let script = run(&home, None, &["completions", shell]).ok();
        assert!(script.stdout.contains(marker), "{shell}: {}", script.stdout);
        assert!(script.stdout.contains("healthlog"), "{shell} script lacks commands");
    }
}
