use std::path::PathBuf;

/// Errors of the fake GitLab itself (not HTTP answers: those are part of the fake's behaviour).
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("cannot listen on {addr}: {source}\nhint: pick a free 127.0.0.1 port or use port 0")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {addr}: not a loopback address\nhint: the fake is for local tests; use 127.0.0.1:<port> or [::1]:<port>"
    )]
    NotLoopback { addr: String },
    #[error(
        "invalid TLS certificate or key: {source}\nhint: pass a PEM certificate chain and a PEM (PKCS#8/PKCS#1/SEC1) private key"
    )]
    Tls {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "client_ca is set without tls: a client certificate needs HTTPS\nhint: set FakeOptions::tls too, or drop client_ca"
    )]
    ClientCaWithoutTls,
    #[error("cannot generate a test certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    #[error("`git {args}` failed in {}: {stderr}\nhint: the fake needs a working `git` on PATH", dir.display())]
    Git {
        args: String,
        dir: PathBuf,
        stderr: String,
    },
    #[error("I/O error at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "invalid project path {path:?}\nhint: use \"group/project\" (letters, digits, '.', '_', '-' and '/' only)"
    )]
    ProjectPath { path: String },
    #[error(
        "project {path:?} already exists\nhint: every project path can be created once per fake instance"
    )]
    ProjectExists { path: String },
    #[error("unknown project id {id}\nhint: create it first with FakeGitlab::create_project")]
    UnknownProject { id: i64 },
}

impl FakeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FakeError::Io {
            path: path.into(),
            source,
        }
    }
}
