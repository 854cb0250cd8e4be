//! End-to-end tests of the oxrunner binary and library against fake-gitlab on 127.0.0.1 (real git, bash, Docker).
//!
//! One test program per crate: every file of this folder is a module of it, `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod artifacts_flow;
mod cache_concurrency;
mod cache_fleet;
mod clone_url_hint;
mod completion_man;
mod custom_executor;
mod daemon_inprocess;
mod docker_cleanup;
mod docker_daemon;
mod docker_in_container;
mod docker_seed;
mod docs_commands;
mod doctor;
mod doctor_s3;
mod doctor_tls;
mod e2e_daemon;
mod e2e_feature_flags;
mod e2e_procs;
mod e2e_register;
mod e2e_settings;
mod e2e_tls;
mod e2e_tls_self_signed;
mod e2e_trace_limits;
mod exec_dag;
mod exec_docker;
mod exec_flow;
mod exec_live;
mod exec_semantics;
mod exec_sources;
mod exec_speed;
mod exec_status;
mod flags_compat;
mod helper_commands;
mod identity;
mod logs_format;
mod metrics_server;
mod register_sections;
mod reset_token;
mod robustness;
mod service;
mod support;
mod unregister_flags;
mod web_terminal;
