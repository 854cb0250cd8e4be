#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests for `oxrunner-config` against upstream fixtures and real files.

mod document;
mod fixtures;
mod ownership;
mod ranges;
mod support;
mod system_id;

use std::path::{Path, PathBuf};

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}
