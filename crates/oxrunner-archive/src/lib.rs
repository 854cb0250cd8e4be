//! Artifacts and caches for oxrunner.
//!
//! - [`collect`] turns `paths`/`exclude`/`untracked` into a [`FileSet`] with gitlab-runner's rules;
//! - [`create_zip`] streams a standard zip to any writer, compressing on all cores; [`extract_zip`]
//!   restores one without ever writing outside its target;
//! - every file operation in a project directory goes through an [`oxrunner_fs::Dir`] handle with no
//!   symlink followed at any component (the `*_in`/`*_into` variants take one; the path variants trust
//!   the path they are given and nothing below it);
//! - [`create_gzip`] / [`create_raw`] produce the other artifact formats GitLab accepts;
//! - [`CacheStore`] keeps one archive per (project, cache key) shared by all concurrent jobs.

mod arriving;
mod cache;
mod collect;
mod create;
mod error;
mod extract;
mod level;
mod simple;
mod untracked;
mod zipfmt;

pub use arriving::{Arrivals, Arriving, extract_arriving};
pub use cache::{
    ARCHIVE_NAME as CACHE_ARCHIVE_NAME, CachePolicy, CacheStore, RestoreReport, SaveOutcome, save_cache_file,
};
pub use collect::{FileSet, collect, collect_in};
pub use create::{ZipStats, create_zip, create_zip_file, create_zip_in};
pub use error::ArchiveError;
pub use extract::{ExtractStats, extract_zip, extract_zip_into};
pub use level::{Format, Level, sniff_format};
pub use simple::{create_gzip, create_gzip_in, create_raw, create_raw_in, read_report};
