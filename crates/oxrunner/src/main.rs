//! oxrunner: a drop-in GitLab Runner. This file only parses arguments, sets up logging and the runtime, and maps
//! the result to an exit code; everything else is in the library (`lib.rs`), each command in `commands/`.

use std::process::ExitCode;

use clap::Parser;
use oxrunner::stdio;

fn main() -> ExitCode {
    // Before any thread exists: every thread's first allocation picks its arena (see the module).
    oxrunner::malloc::tune();
    let cli = oxrunner::cli::Cli::parse();
    if cli.version {
        return match stdio::out(format_args!("{}", oxrunner::version::long_version())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => oxrunner::exit_for(&err),
        };
    }
    let Some(command) = cli.command else {
        stdio::err(format_args!(
            "oxrunner: no command given\nhint: run `oxrunner --help` to see the commands\n"
        ));
        return ExitCode::from(2);
    };
    oxrunner::logging::init(
        cli.debug.unwrap_or(false),
        cli.log_level.as_deref(),
        cli.log_format.as_deref(),
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            stdio::err(format_args!("FATAL: cannot start the async runtime: {err}\n"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oxrunner::commands::dispatch(command)) {
        Ok(code) => code,
        Err(err) => oxrunner::exit_for(&err),
    }
}
