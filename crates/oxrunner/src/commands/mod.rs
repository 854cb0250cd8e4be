//! One module per command; `dispatch` routes the parsed command line to it.

mod common;
pub mod completion;
pub mod doctor;
mod exec;
pub mod helpers;
mod lint;
mod list;
mod register;
pub mod reset_token;
mod run;
pub mod service;
mod unregister;
mod verify;

use std::process::ExitCode;

use crate::cli::Command;
use service::Action;

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Register(args) => register::run(*args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::List(args) => list::run(&args),
        Command::Lint(args) => lint::run(&args),
        Command::Unregister(args) => unregister::run(args).await,
        Command::ResetToken(args) => reset_token::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::RunSingle(args) => run::run_single(*args).await,
        Command::Exec(args) => exec::run(args).await,
        Command::Install(args) => service::install(*args).await,
        Command::Uninstall(args) => service::control(Action::Uninstall, args).await,
        Command::Start(args) => service::control(Action::Start, args).await,
        Command::Stop(args) => service::control(Action::Stop, args).await,
        Command::Restart(args) => service::control(Action::Restart, args).await,
        Command::Status(args) => service::control(Action::Status, args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Completion(args) => completion::completion(&args),
        Command::Man(args) => completion::man(&args),
        Command::ArtifactsUploader(args) => helpers::artifacts_uploader(*args).await,
        Command::ArtifactsDownloader(args) => helpers::artifacts_downloader(*args).await,
        Command::CacheArchiver(args) => helpers::cache_archiver(*args).await,
        Command::CacheExtractor(args) => helpers::cache_extractor(*args).await,
    }
}
