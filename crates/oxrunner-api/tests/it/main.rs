#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of oxrunner-api against small axum servers on 127.0.0.1.

mod artifact_header_timeout;
mod artifacts;
mod client;
mod common;
mod direct_redirect;
mod job_correlation;
mod self_signed;
mod tls;
mod trace_sender;
mod wire;
