//! Integration tests of oxrunner-pipeline: .gitlab-ci.yml parsing and evaluation.
//!
//! One test program per crate: every file of this folder is a module of it, `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod composition;
mod context;
mod gitlab_semantics;
mod job_inputs;
mod limits;
mod output;
mod payload_shape;
mod rules;
mod structure;
mod support;
mod variables;
mod yaml;
