//! Errors of the session server's start-up.

use std::path::PathBuf;

/// Why the session server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// `listen_address` / `advertise_address` are not `host:port`.
    #[error("[session_server] {key} = {value:?}: {reason}\nhint: {hint}")]
    Address {
        /// The config key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// Reading or writing the certificate files failed.
    #[error(
        "session server certificate {path}: {source}\nhint: the directory of config.toml must be writable by the runner, or remove the damaged files to have them generated again"
    )]
    CertFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Generating the certificate failed.
    #[error("cannot generate the session server certificate for {host}: {reason}")]
    CertGen {
        /// The host name or address.
        host: String,
        /// Cause.
        reason: String,
    },
    /// The TLS configuration was refused (a damaged certificate or key file).
    #[error(
        "the session server certificate or key in {dir} cannot be used: {source}\nhint: remove them to have a new pair generated"
    )]
    Tls {
        /// Where they are.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Binding `listen_address` failed.
    #[error(
        "[session_server] cannot listen on {addr}: {source}\nhint: use a free port, or an address of this host"
    )]
    Bind {
        /// The address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}
