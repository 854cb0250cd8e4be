//! Artifacts and caches for oxrunner.
//!
//! - [`collect`] turns `paths`/`exclude`/`untracked` into a [`FileSet`] with gitlab-runner's rules;
//! - [`create_zip`] streams a standard zip to any writer, compressing on all cores; [`extract_zip`]
//!   restores one without ever writing outside its target;
//! - [`create_gzip`] / [`create_raw`] produce the other artifact formats GitLab accepts;
//! - [`CacheStore`] keeps one archive per (project, cache key) shared by all concurrent jobs.

mod cache;
mod collect;
mod create;
mod error;
mod extract;
mod level;
mod simple;
mod zipfmt;

pub use cache::{CachePolicy, CacheStore, RestoreReport, SaveOutcome};
pub use collect::{FileSet, collect};
pub use create::{ZipStats, create_zip, create_zip_file};
pub use error::ArchiveError;
pub use extract::{ExtractStats, extract_zip};
pub use level::{Format, Level, sniff_format};
pub use simple::{create_gzip, create_raw, read_report};
