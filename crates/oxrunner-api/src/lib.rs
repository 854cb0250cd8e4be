//! GitLab Runner API client for oxrunner.
//!
//! Layout:
//! - [`wire`]: serde types 1:1 with the JSON GitLab sends and expects.
//! - [`Client`]: reqwest-based client with gitlab-runner's transport behaviour (base URL fix-up,
//!   retry layer, `X-GitLab-Last-Update`, custom CAs and client certificates).
//! - outcome types ([`JobRequestOutcome`], [`UpdateJobResult`], [`PatchTraceResult`]): what an
//!   answer means, so callers never interpret status codes.
//! - [`trace`]: the background sender that streams a job's trace spool and performs the final update.
//! - [`ApiError`]: every failure, with a redacted URL and a `hint:` where the user can fix it.
//!
//! Tokens never appear in `Debug` output or error messages.

mod client;
mod error;
mod observe;
mod outcome;
pub mod router;
mod tls_hint;
pub mod trace;

/// The wire types live in their own crate so the pipeline crate can build the typed payload too.
pub use oxrunner_wire as wire;
pub use oxrunner_wire::redact;

pub use client::probe;
pub use client::retry_signal::track_retries;
pub use client::{Client, ClientConfig, DirectDownload, RouterDiscovery, TlsClientPem};
pub use error::ApiError;
pub use observe::RequestObserver;
pub use outcome::{
    ArtifactUpload, JobRequestOutcome, PatchOutcome, PatchTraceResult, UnreadableJob, UpdateJobResult,
    UpdateOutcome,
};
pub use wire::*;
