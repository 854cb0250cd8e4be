//! Integration tests of oxrunner-archive: zip, globs, caches and extraction safety on a real file system.
//!
//! One test program per crate: every file of this folder is a module of it, `support` holds the shared helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arriving;
mod cache_file;
mod cache_store;
mod collect_paths;
mod extract_safety;
mod intree_links;
mod race;
mod roots;
mod support;
mod untracked_user;
mod zip_roundtrip;
