//! oxrunner-session: the interactive web terminal server (`[session_server]`), as GitLab Workhorse speaks to it.
//!
//! - [`SessionServer`]: a TLS listener on `listen_address` with a self-signed certificate kept beside config.toml
//!   ([`cert`]); it serves `/session/<id>/exec` only, upgrading an authorized request to a WebSocket that carries a
//!   job's terminal in the `terminal.gitlab.com` framing ([`frames`]).
//! - [`JobSession`]: one job's session (random id and token), created before each job request so its URL,
//!   certificate and token go into the request; it is the driver's [`oxrunner_core::TerminalSession`] and is
//!   unregistered (404) when dropped.
//!
//! The server never serves anything without the session's token (compared in constant time), holds at most one
//! terminal per job, and ends a terminal when the job ends (the driver closes the session at most `session_timeout`
//! after the scripts).

pub mod cert;
mod error;
pub mod frames;
mod proxy;
mod server;
mod session;

pub use error::SessionError;
pub use server::{SessionServer, SessionServerSettings};
pub use session::JobSession;
