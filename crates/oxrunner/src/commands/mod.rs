//! One module per command; `dispatch` routes the parsed command line to it.

mod common;
pub mod completion;
pub mod doctor;
mod exec;
pub mod helpers;
mod list;
mod register;
mod run;
mod unregister;
mod verify;

use std::process::ExitCode;

use crate::cli::Command;

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Register(args) => register::run(*args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::List(args) => list::run(&args),
        Command::Unregister(args) => unregister::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::RunSingle(args) => run::run_single(*args).await,
        Command::Exec(args) => exec::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Completion(args) => completion::completion(&args),
        Command::Man(args) => completion::man(&args),
        Command::ArtifactsUploader(args) => helpers::artifacts_uploader(*args).await,
        Command::ArtifactsDownloader(args) => helpers::artifacts_downloader(*args).await,
        Command::CacheArchiver(args) => helpers::cache_archiver(*args).await,
        Command::CacheExtractor(args) => helpers::cache_extractor(*args).await,
    }
}
