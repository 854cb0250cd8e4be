//! oxrunner: a drop-in GitLab Runner. This file only parses arguments, sets up logging and the runtime, and maps
//! the result to an exit code; each command lives in `commands/`.

// First, so that its `out!`/`outln!`/`errln!` macros are visible in every module below.
#[macro_use]
mod stdio;

mod cli;
mod commands;
mod daemon;
mod exec;
mod executors;
mod hooks;
mod logging;
mod plan;
mod prompt;
mod runner;
mod version;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.version {
        return match out!("{}", version::long_version()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => exit_for(&err),
        };
    }
    let Some(command) = cli.command else {
        errln!("oxrunner: no command given\nhint: run `oxrunner --help` to see the commands");
        return ExitCode::from(2);
    };
    logging::init(
        cli.debug.unwrap_or(false),
        cli.log_level.as_deref(),
        cli.log_format.as_deref(),
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            errln!("FATAL: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(command)) {
        Ok(code) => code,
        Err(err) => exit_for(&err),
    }
}

/// A closed stdout ends the command quietly, as it ends a Unix tool; anything else is reported.
fn exit_for(err: &anyhow::Error) -> ExitCode {
    if stdio::is_stdout_closed(err) {
        return ExitCode::from(stdio::CLOSED_PIPE_STATUS);
    }
    errln!("FATAL: {}", render_error(err));
    ExitCode::FAILURE
}

/// The error and its causes, skipping a cause whose text the message above it already contains (library errors
/// often embed their source), and keeping any `hint:` lines last so they stay visible.
fn render_error(err: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut hints = Vec::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if text.contains(msg.as_str()) {
            continue;
        }
        let mut body = Vec::new();
        for line in msg.lines() {
            if line.trim_start().starts_with("hint:") {
                hints.push(line.trim_start().to_string());
            } else {
                body.push(line);
            }
        }
        let body = body.join("\n");
        if body.is_empty() || text.contains(body.as_str()) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&body);
    }
    for h in hints {
        text.push('\n');
        text.push_str(&h);
    }
    text
}
