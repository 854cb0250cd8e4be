//! Integration tests of fake-gitlab over real sockets on 127.0.0.1.
//!
//! One test program per crate: every file of this folder is a module of it, `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod artifacts;
mod binary_admin;
mod faults;
mod git_http;
mod job_router;
mod jobs_request;
mod reset_by_id;
mod runners;
mod support;
mod tls;
mod update_trace;
