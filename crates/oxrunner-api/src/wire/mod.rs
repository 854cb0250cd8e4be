//! Serde types 1:1 with the Runner API JSON.

mod job;
mod runner;

pub use job::*;
pub use runner::*;
