//! What the job router (`FF_USE_JOB_ROUTER`) needs from the GitLab client: `GET /runners/router/discovery`, the
//! job request body as `POST /jobs/request` would send it, the job decoded from the router's bytes as from a
//! 201, the `last_update` the router relays, and the TLS settings of the router's host.

use bytes::Bytes;
use serde::Deserialize;

use super::transport::{RUNNER_TOKEN, decode_json, status_error};
use super::unreadable::decode_job;
use super::{Client, TlsFiles, read_file, tls};
use crate::error::ApiError;
use crate::outcome::JobRequestOutcome;
use crate::redact::redact_url;
use crate::wire::{JobRequest, JobResponse};

/// GitLab's answer to the discovery request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RouterDiscovery {
    /// Where the job router (KAS) listens: `grpc://`, `grpcs://`, `ws://` or `wss://`.
    pub server_url: String,
}

impl Client {
    /// `GET /runners/router/discovery`. 501 (no job router on this GitLab), 403 and every other status are
    /// errors ([`ApiError::Status`] or [`ApiError::Forbidden`]) for the caller to log.
    pub async fn router_discovery(&self, token: &str) -> Result<RouterDiscovery, ApiError> {
        let url = self.endpoint("runners/router/discovery")?;
        let shown = redact_url(url.as_str());
        let resp = self
            .send(&url, |http| {
                let b = http
                    .get(url.clone())
                    .header(RUNNER_TOKEN, token)
                    .header("Accept", "application/json");
                async move { Ok(b) }
            })
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(status_error(resp, &shown).await);
        }
        decode_json(resp, &shown).await
    }

    /// The JSON body `POST /jobs/request` would send for `req` (with the stored `last_update` filled in), which
    /// the router hands to GitLab unchanged.
    pub fn job_request_body(&self, req: &JobRequest) -> Result<Bytes, ApiError> {
        let mut body = req.clone();
        if body.last_update.is_empty() {
            body.last_update = self.last_update();
        }
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| ApiError::ClientSetup {
                detail: format!("cannot encode the job request: {e}"),
            })
    }

    /// The router's answer bytes as the outcome of a 201 (an empty answer is "no job"). `correlation_id` is the
    /// router's `x-request-id`, else the one sent.
    pub fn job_from_router(&self, body: &[u8], correlation_id: String) -> JobRequestOutcome {
        if body.is_empty() {
            return JobRequestOutcome::NoJob;
        }
        decode_job::<JobResponse>(body, true, |mut job| {
            job.job_request_correlation_id = correlation_id;
            JobRequestOutcome::Job(Box::new(job))
        })
    }

    /// Stores the queue state the router relayed (`x-gitlab-last-update`), so the next request echoes it as
    /// `last_update` as after a direct request. An empty value keeps the stored one, as gitlab-runner does.
    pub fn remember_last_update(&self, value: &str) {
        if !value.is_empty() {
            self.set_last_update(value);
        }
    }

    /// rustls settings for the router at `host`: the runner's `tls-ca-file`/`tls-cert-file`/`tls-key-file`, else
    /// `<host>.crt`, `<host>.auth.crt`, `<host>.auth.key` from the certificates directory (as gitlab-runner picks
    /// them for the router's host), offering only HTTP/2.
    pub(crate) fn router_tls(&self, host: &str) -> Result<rustls::ClientConfig, ApiError> {
        let files = TlsFiles::resolve(&self.inner.config, host);
        let trust = match &files.ca_file {
            Some(ca) => Some(tls::TrustFile::from_pem(ca, &read_file(ca)?)?),
            None => None,
        };
        let identity = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => Some((
                cert.as_path(),
                tls::Identity::from_pem(cert, &read_file(cert)?, key, &read_file(key)?)?,
            )),
            _ => None,
        };
        let mut config = tls::client_config_with(trust.as_ref(), identity, |v| v)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// What the router TLS settings for `host` are made of: the files in use and their modification times, so a
    /// reload that names other files or a renewed certificate shows as a change (gitlab-runner redials then).
    pub(crate) fn router_tls_stamp(
        &self,
        host: &str,
    ) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>)> {
        let files = TlsFiles::resolve(&self.inner.config, host);
        [files.ca_file, files.cert_file, files.key_file]
            .into_iter()
            .flatten()
            .map(|p| {
                let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                (p, modified)
            })
            .collect()
    }
}
