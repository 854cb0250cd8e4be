//! Integration tests of the Docker executor against a real engine.
//!
//! One test program per crate: every file of this folder is a module of it, `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connect;
mod executor;
mod feature_flags;
mod gpus;
mod hints;
mod hostconfig;
mod images;
mod in_container;
mod job;
mod leftovers;
mod native_stop;
mod permissions;
mod readiness;
mod registry;
mod services;
mod stages;
mod support;
mod suspend;
mod terminal;
mod tls;
