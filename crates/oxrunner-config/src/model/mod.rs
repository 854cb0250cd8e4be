//! Typed `config.toml` sections, one file per section.

pub mod cache;
pub mod docker;
pub mod executor;
pub mod global;
pub mod kubernetes;
pub mod raw;
pub mod runner;
pub mod sections;
pub(crate) mod serde_helpers;
