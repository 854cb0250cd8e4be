//! The session server over real TLS on 127.0.0.1 with a real WebSocket client (as Workhorse connects) and a real
//! bash on a pty (the shell executor's terminal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cert_files;
mod server;
mod support;
