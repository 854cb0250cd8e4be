//! oxrunner as a library: every command, the daemon and `exec` live here so that tests can drive them in-process
//! (the daemon with scripted signals and a paused clock); `main.rs` only parses, sets up logging and the runtime,
//! and maps the result to an exit code.

// First, so that its `out!`/`outln!`/`errln!` macros are visible in every module below.
#[macro_use]
pub mod stdio;

pub mod cli;
pub mod commands;
pub mod daemon;
pub mod exec;
pub mod executors;
pub mod flags;
pub mod hooks;
pub mod inputs;
pub mod logging;
pub mod malloc;
pub mod metrics;
pub mod plan;
mod prompt;
pub mod runner;
pub mod secrets;
pub mod version;

use std::process::ExitCode;

/// A closed stdout ends the command quietly, as it ends a Unix tool; anything else is reported.
pub fn exit_for(err: &anyhow::Error) -> ExitCode {
    if stdio::is_stdout_closed(err) {
        return ExitCode::from(stdio::CLOSED_PIPE_STATUS);
    }
    errln!("FATAL: {}", render_error(err));
    ExitCode::FAILURE
}

/// The error and its causes, skipping a cause whose text the message above it already contains (library errors
/// often embed their source), and keeping any `hint:` lines last so they stay visible.
pub fn render_error(err: &anyhow::Error) -> String {
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
