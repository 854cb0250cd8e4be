//! Where artifact archives go to and come from. The daemon talks to GitLab; `oxrunner exec` keeps archives in a
//! local directory, so the same hooks serve both.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use oxrunner_api::{ApiError, ArtifactUpload, Client};
use oxrunner_core::{Dependency, Secret};

/// A boxed future, so the transport trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a transfer failed, in the terms the hooks act on.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server refused the upload as too large (HTTP 413).
    #[error("too large archive ({size} bytes)")]
    TooLarge {
        /// Size of the rejected archive.
        size: u64,
    },
    /// The archive does not exist (HTTP 404, expired or never uploaded).
    #[error("not found: {detail}")]
    NotFound {
        /// What was looked for.
        detail: String,
    },
    /// The credentials were refused; retrying cannot help.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// Server message.
        detail: String,
    },
    /// Anything else (network, 5xx, local I/O); worth another attempt.
    #[error("{detail}")]
    Failed {
        /// What went wrong, without secrets.
        detail: String,
    },
}

impl From<ApiError> for TransportError {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::TooLarge { size } => TransportError::TooLarge { size },
            ApiError::NotFound => TransportError::NotFound {
                detail: err.to_string(),
            },
            ApiError::Forbidden { .. } => TransportError::Forbidden {
                detail: err.to_string(),
            },
            ApiError::Status {
                status: 401 | 403, ..
            } => TransportError::Forbidden {
                detail: err.to_string(),
            },
            other => TransportError::Failed {
                detail: other.to_string(),
            },
        }
    }
}

/// How a dependency's archive may be fetched, from the job's feature flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownloadMode {
    /// `FF_USE_DIRECT_DOWNLOAD`: GitLab may redirect the request to object storage.
    pub direct: bool,
    /// `FF_USE_PARALLEL_ARTIFACT_TRANSFER`: a redirected download may come in parallel ranged GETs.
    pub parallel: bool,
}

/// Where a transfer's progress lines for the job log go.
pub type Note<'a> = &'a (dyn Fn(&str) + Sync);

/// Moves artifact archives. Returned `Ok` strings complete gitlab-runner's progress lines
/// (`... 201 Created  id=1 responseStatus=201 Created token=abcd1234`).
pub trait ArtifactTransport: Send + Sync {
    /// Stores `file` as this job's artifact described by `opts`.
    fn upload<'a>(
        &'a self,
        file: &'a Path,
        opts: &'a ArtifactUpload,
    ) -> BoxFuture<'a, Result<String, TransportError>>;

    /// Fetches the archive artifact of `dependency` into `dest` (complete or absent afterwards), as `mode`
    /// allows. `note` takes the lines gitlab-runner's downloader logs on the way (the object store's host, how a
    /// parallel transfer went), for the job log.
    fn download<'a>(
        &'a self,
        dependency: &'a Dependency,
        dest: &'a Path,
        mode: DownloadMode,
        note: Note<'a>,
    ) -> BoxFuture<'a, Result<String, TransportError>>;

    /// The fields of a log line about this job's upload, around `status` (`id=.. <status> token=..`, the order
    /// gitlab-runner prints).
    fn upload_fields(&self, status: &str) -> String;

    /// The same for a dependency's download.
    fn download_fields(&self, dependency: &Dependency, status: &str) -> String;

    /// Arguments that point the `artifacts-uploader` helper command at this transport's store for this job. Never
    /// a secret: the token reaches the helper through `CI_JOB_TOKEN` in its environment.
    fn helper_upload_args(&self) -> Vec<String>;

    /// The same for `artifacts-downloader` and `dependency`.
    fn helper_download_args(&self, dependency: &Dependency) -> Vec<String>;

    /// Where `dependency`'s archive already is on this machine, when the store is local (`oxrunner exec`), with
    /// the status `download` would report: it is then extracted in place, not copied to a temporary file first.
    fn local_archive<'a>(&'a self, _dependency: &'a Dependency) -> BoxFuture<'a, Option<(PathBuf, String)>> {
        Box::pin(async { None })
    }
}

/// The GitLab URL for a helper command's `--url`: the client's API base without `api/v4/`. `None` when the URL
/// carries credentials, which must not reach a command line; the helper then uses `CI_SERVER_URL`.
fn helper_url(client: &Client) -> Option<String> {
    let base = client.base_url();
    if oxrunner_api::redact::redact_url(base) != base {
        return None;
    }
    let trimmed = base.trim_end_matches('/');
    Some(trimmed.strip_suffix("/api/v4").unwrap_or(trimmed).to_owned())
}

/// gitlab-runner's `ShortenToken`: job tokens lose their `glcbt-` prefix so the shown part is not the masked
/// value, and at most 8 characters of the rest are shown.
pub fn short_token(token: &str) -> String {
    let rest = ["glcbt-", "glrt-", "glrtr-"]
        .iter()
        .find_map(|p| token.strip_prefix(p))
        .unwrap_or(token);
    rest.chars().take(8).collect()
}

/// Uploads to and downloads from GitLab's Runner API with the job's token.
#[derive(Clone)]
pub struct GitlabTransport {
    client: Client,
    job_id: i64,
    job_token: Secret,
    /// `[runners.artifact] upload_timeout`.
    upload_timeout: Option<std::time::Duration>,
    /// `[runners.artifact] response_header_timeout`.
    response_header_timeout: Option<std::time::Duration>,
}

impl fmt::Debug for GitlabTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabTransport")
            .field(
                "base_url",
                &oxrunner_api::redact::redact_url(self.client.base_url()),
            )
            .field("job_id", &self.job_id)
            .field("job_token", &self.job_token)
            .finish()
    }
}

impl GitlabTransport {
    /// A transport for job `job_id`, authenticated with its token.
    pub fn new(client: Client, job_id: i64, job_token: Secret) -> Self {
        Self {
            client,
            job_id,
            job_token,
            upload_timeout: None,
            response_header_timeout: None,
        }
    }

    /// Bounds the wait for GitLab's answer once an upload is written (`[runners.artifact]
    /// response_header_timeout`).
    pub fn with_response_header_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.response_header_timeout = timeout;
        self
    }

    /// Bounds each artifact upload request (`[runners.artifact] upload_timeout`).
    pub fn with_upload_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.upload_timeout = timeout;
        self
    }
}

impl ArtifactTransport for GitlabTransport {
    fn upload<'a>(
        &'a self,
        file: &'a Path,
        opts: &'a ArtifactUpload,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let opts = ArtifactUpload {
                timeout: self.upload_timeout.or(opts.timeout),
                response_header_timeout: self.response_header_timeout.or(opts.response_header_timeout),
                ..opts.clone()
            };
            self.client
                .upload_artifacts(self.job_id, self.job_token.expose(), file, &opts)
                .await?;
            Ok(format!(
                "201 Created  id={} responseStatus=201 Created token={}",
                self.job_id,
                short_token(self.job_token.expose())
            ))
        })
    }

    fn download<'a>(
        &'a self,
        dependency: &'a Dependency,
        dest: &'a Path,
        mode: DownloadMode,
        note: Note<'a>,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            // GitLab may hand out an empty per-dependency token; the running job's token works then.
            let token = if dependency.token.is_empty() {
                &self.job_token
            } else {
                &dependency.token
            };
            if mode.direct && mode.parallel {
                super::artifact_parts::download(&self.client, dependency.id, token.expose(), dest, note)
                    .await?;
            } else {
                self.client
                    .download_artifacts(dependency.id, token.expose(), dest, mode.direct)
                    .await?;
            }
            Ok(format!(
                "ok  id={} responseStatus=200 OK token={}",
                dependency.id,
                short_token(token.expose())
            ))
        })
    }

    fn upload_fields(&self, status: &str) -> String {
        format!(
            "id={} {status} token={}",
            self.job_id,
            short_token(self.job_token.expose())
        )
    }

    fn helper_upload_args(&self) -> Vec<String> {
        let mut args: Vec<String> = helper_url(&self.client)
            .map(|u| vec![format!("--url={u}")])
            .unwrap_or_default();
        args.push(format!("--id={}", self.job_id));
        args
    }

    fn helper_download_args(&self, dependency: &Dependency) -> Vec<String> {
        let mut args: Vec<String> = helper_url(&self.client)
            .map(|u| vec![format!("--url={u}")])
            .unwrap_or_default();
        args.push(format!("--id={}", dependency.id));
        args
    }

    fn download_fields(&self, dependency: &Dependency, status: &str) -> String {
        let token = if dependency.token.is_empty() {
            &self.job_token
        } else {
            &dependency.token
        };
        format!(
            "id={} {status} token={}",
            dependency.id,
            short_token(token.expose())
        )
    }
}

/// Keeps archives under `<root>/<job>/<artifact type>/<file name>` for `oxrunner exec`, where `<job>` is the job
/// name (or `job-<id>` when the name cannot be a directory name).
// `oxrunner exec` is its user; the daemon never builds one.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Debug)]
pub struct LocalTransport {
    root: PathBuf,
    job_id: i64,
    job_name: String,
}

#[cfg_attr(not(test), allow(dead_code))]
impl LocalTransport {
    /// A store under `root` (e.g. `.oxrunner/artifacts`) for the job `job_name` / `job_id`.
    pub fn new(root: impl Into<PathBuf>, job_id: i64, job_name: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            job_id,
            job_name: job_name.into(),
        }
    }

    /// The store's root for a helper command, which runs in the project directory: relative roots (exec's
    /// `.oxrunner/artifacts`) are made absolute against the runner's working directory.
    fn absolute_root(&self) -> String {
        std::path::absolute(&self.root)
            .unwrap_or_else(|_| self.root.clone())
            .to_string_lossy()
            .into_owned()
    }

    /// The directory holding a job's archives.
    pub fn job_dir(&self, job_id: i64, job_name: &str) -> PathBuf {
        self.root.join(job_dir_name(job_id, job_name))
    }

    /// The stored `archive` artifact of `dependency`: the file GitLab would name, else the only one there.
    async fn stored_archive(&self, dependency: &Dependency) -> Option<PathBuf> {
        let dir = self.job_dir(dependency.id, &dependency.name).join("archive");
        let wanted = dependency
            .artifacts_file
            .as_ref()
            .map(|f| safe_component(&f.filename, "artifacts.zip"));
        let mut found = None;
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name().to_string_lossy().into_owned();
                if found.is_none() || wanted.as_deref() == Some(name.as_str()) {
                    found = Some(entry.path());
                }
            }
        }
        found
    }
}

/// A job name as one safe path component: separators and traversal become `_`.
fn job_dir_name(job_id: i64, job_name: &str) -> String {
    let cleaned: String = job_name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        format!("job-{job_id}")
    } else {
        cleaned.to_owned()
    }
}

fn safe_component(name: &str, fallback: &str) -> String {
    match Path::new(name).file_name().and_then(|n| n.to_str()) {
        Some(n) if n != "." && n != ".." && !n.is_empty() => n.to_owned(),
        _ => fallback.to_owned(),
    }
}

fn io_failed(action: &str, path: &Path, err: &std::io::Error) -> TransportError {
    TransportError::Failed {
        detail: format!("{action} {}: {err}", path.display()),
    }
}

impl ArtifactTransport for LocalTransport {
    fn upload<'a>(
        &'a self,
        file: &'a Path,
        opts: &'a ArtifactUpload,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let kind = safe_component(&opts.artifact_type, "archive");
            let dir = self.job_dir(self.job_id, &self.job_name).join(&kind);
            // One archive per type, as GitLab keeps it: a re-run replaces the previous file.
            if dir.exists() {
                tokio::fs::remove_dir_all(&dir)
                    .await
                    .map_err(|e| io_failed("cannot clear", &dir, &e))?;
            }
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| io_failed("cannot create", &dir, &e))?;
            let dest = dir.join(safe_component(&opts.filename, "artifacts.zip"));
            tokio::fs::copy(file, &dest)
                .await
                .map_err(|e| io_failed("cannot store artifact at", &dest, &e))?;
            Ok(format!("stored  path={}", dest.display()))
        })
    }

    fn download<'a>(
        &'a self,
        dependency: &'a Dependency,
        dest: &'a Path,
        _mode: DownloadMode,
        _note: Note<'a>,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let Some(src) = self.stored_archive(dependency).await else {
                let dir = self.job_dir(dependency.id, &dependency.name).join("archive");
                return Err(TransportError::NotFound {
                    detail: format!("no archive in {}", dir.display()),
                });
            };
            tokio::fs::copy(&src, dest)
                .await
                .map_err(|e| io_failed("cannot copy artifact to", dest, &e))?;
            Ok(format!("ok  path={}", src.display()))
        })
    }

    fn upload_fields(&self, status: &str) -> String {
        format!("job={} {status}", job_dir_name(self.job_id, &self.job_name))
    }

    fn download_fields(&self, dependency: &Dependency, status: &str) -> String {
        format!("job={} {status}", job_dir_name(dependency.id, &dependency.name))
    }

    fn helper_upload_args(&self) -> Vec<String> {
        vec![
            format!("--local-artifacts-dir={}", self.absolute_root()),
            format!("--id={}", self.job_id),
            format!("--job-name={}", self.job_name),
        ]
    }

    fn local_archive<'a>(&'a self, dependency: &'a Dependency) -> BoxFuture<'a, Option<(PathBuf, String)>> {
        Box::pin(async move {
            let src = self.stored_archive(dependency).await?;
            let status = format!("ok  path={}", src.display());
            Some((src, status))
        })
    }

    fn helper_download_args(&self, dependency: &Dependency) -> Vec<String> {
        vec![
            format!("--local-artifacts-dir={}", self.absolute_root()),
            format!("--id={}", dependency.id),
            format!("--dependency-name={}", dependency.name),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tokens_drop_the_prefix() {
        assert_eq!(short_token("glcbt-64_zXbTZabcdef"), "64_zXbTZ");
        assert_eq!(short_token("abc"), "abc");
        assert_eq!(short_token("0123456789"), "01234567");
    }

    #[test]
    fn job_dirs_are_single_components() {
        assert_eq!(job_dir_name(3, "build"), "build");
        assert_eq!(job_dir_name(3, "a/../b"), "a_.._b");
        assert_eq!(job_dir_name(3, ".."), "job-3");
        assert_eq!(job_dir_name(3, "  "), "job-3");
        assert_eq!(job_dir_name(3, "."), "job-3");
    }

    #[test]
    fn api_errors_map_to_transport_errors() {
        assert!(matches!(
            TransportError::from(ApiError::TooLarge { size: 5 }),
            TransportError::TooLarge { size: 5 }
        ));
        assert!(matches!(
            TransportError::from(ApiError::NotFound),
            TransportError::NotFound { .. }
        ));
        let status = ApiError::Status {
            url_redacted: "http://h".into(),
            status: 502,
            message: "bad gateway".into(),
        };
        assert!(matches!(
            TransportError::from(status),
            TransportError::Failed { .. }
        ));
    }
}
