//! Small driver for the benchmark and manual checks:
//!   oxzip create <dir> <out.zip> [level]   archive everything under <dir>
//!   oxzip extract <archive.zip> <dir>
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;

use oxrunner_archive::{Level, collect, create_zip_file, extract_zip};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create", dir, out, rest @ ..] => {
            let level = match rest.first().map(|l| Level::parse(l)).transpose() {
                Ok(l) => l.unwrap_or_default(),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            collect(Path::new(dir), &[".".to_owned()], &[], false).and_then(|set| {
                for w in &set.warnings {
                    eprintln!("WARNING: {w}");
                }
                create_zip_file(Path::new(dir), &set, level, Path::new(out)).map(|s| format!("{s:?}"))
            })
        }
        ["extract", archive, dir] => {
            extract_zip(Path::new(archive), Path::new(dir)).map(|s| format!("{s:?}"))
        }
        _ => {
            eprintln!("usage: oxzip create <dir> <out.zip> [level] | oxzip extract <archive.zip> <dir>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
