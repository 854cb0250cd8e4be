//! Serde types 1:1 with the GitLab Runner API JSON, shared by the API client (which sends and receives them)
//! and the pipeline crate (which builds the job payload GitLab would send), so both speak one typed shape.
//!
//! This crate depends on serde only (plus `url` for redaction): any crate may use it without pulling in
//! HTTP, Docker or the core.

mod job;
pub mod redact;
mod runner;
mod secrets;

pub use job::*;
pub use runner::*;
pub use secrets::*;
