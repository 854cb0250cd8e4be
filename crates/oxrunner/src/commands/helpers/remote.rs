//! Cache archives to and from a shared cache server through pre-signed URLs (`cache-archiver --url`,
//! `cache-extractor --url`), as gitlab-runner's helpers move them: a `PUT` of the archive, a `GET` into the local
//! file. A pre-signed URL's query is its signature, so only the URL without it is ever printed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

use super::{info, warning};

/// gitlab-runner's cache helpers retry twice, a second apart, on network errors and 5xx answers.
const RETRIES: u32 = 2;
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// The URL as it may be shown: no query (the signature), no user info.
pub(super) fn clean_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

fn client(timeout_minutes: u64) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(30));
    if timeout_minutes > 0 {
        builder = builder.timeout(Duration::from_secs(timeout_minutes.saturating_mul(60)));
    }
    builder.build().context("cannot set up the HTTP client")
}

/// Why one attempt failed, and whether another may help.
struct Failure {
    message: String,
    retry: bool,
}

/// reqwest's message names the full URL, signature included; it is dropped for the shown one.
fn network(err: reqwest::Error, shown: &str) -> Failure {
    let retry = !err.is_builder();
    Failure {
        message: format!("request to {shown} failed: {}", err.without_url()),
        retry,
    }
}

fn status_failure(status: reqwest::StatusCode, shown: &str) -> Failure {
    Failure {
        message: format!("{shown} answered {status}"),
        retry: status.is_server_error(),
    }
}

async fn with_retries<F, Fut>(mut attempt: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(f) if f.retry && retries < RETRIES => {
                retries += 1;
                warning(&format!("Retrying...  error={}", f.message))?;
                tokio::time::sleep(RETRY_WAIT).await;
            }
            Err(f) => bail!(f.message),
        }
    }
}

/// `"Key: Value"` pairs from `--header`; anything without a colon is ignored, as upstream does.
fn headers(raw: &[String]) -> Vec<(String, String)> {
    raw.iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Uploads the archive at `file` with `PUT url`.
pub(super) async fn upload(
    file: &Path,
    url: &str,
    raw_headers: &[String],
    timeout_minutes: u64,
) -> anyhow::Result<()> {
    let shown = clean_url(url);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    info(&format!("Uploading {name} to {shown}"))?;
    let http = client(timeout_minutes)?;
    let extra = headers(raw_headers);
    with_retries(|| async {
        // Opened per attempt: a retry must send the archive from its start.
        let f = tokio::fs::File::open(file).await.map_err(|e| Failure {
            message: format!("cannot read {}: {e}", file.display()),
            retry: false,
        })?;
        let len = f.metadata().await.map(|m| m.len()).unwrap_or_default();
        let mut req = http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f)));
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        }
        for (k, v) in &extra {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| network(e, &shown))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_failure(resp.status(), &shown))
        }
    })
    .await
}

/// Downloads `GET url` into `file`: a temporary file beside it is renamed into place once complete.
pub(super) async fn download(file: &Path, url: &str, timeout_minutes: u64) -> anyhow::Result<()> {
    let shown = clean_url(url);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let http = client(timeout_minutes)?;
    with_retries(|| async {
        let resp = http.get(url).send().await.map_err(|e| network(e, &shown))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Failure {
                message: format!("no cache at {shown} (404 Not Found)"),
                retry: false,
            });
        }
        if !status.is_success() {
            return Err(status_failure(status, &shown));
        }
        // As upstream's cache-extractor: a local copy at least as new as the object is kept, and the answer
        // dropped unread.
        let modified = last_modified(&resp);
        if let Some(date) = modified
            && local_is_up_to_date(file, date)
        {
            info(&format!("{name} is up to date")).map_err(|e| Failure {
                message: e.to_string(),
                retry: false,
            })?;
            return Ok(());
        }
        info(&format!("Downloading {name} from {shown}")).map_err(|e| Failure {
            message: e.to_string(),
            retry: false,
        })?;
        fetch_into(resp, &dir, file, &shown, modified).await
    })
    .await
}

fn last_modified(resp: &reqwest::Response) -> Option<std::time::SystemTime> {
    let date = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)?
        .to_str()
        .ok()?;
    httpdate::parse_http_date(date.trim()).ok()
}

/// Whether the file at `file` (the name itself, not a link's target) was written no earlier than `date`.
fn local_is_up_to_date(file: &Path, date: std::time::SystemTime) -> bool {
    std::fs::symlink_metadata(file)
        .and_then(|m| m.modified())
        .is_ok_and(|local| date <= local)
}

async fn fetch_into(
    mut resp: reqwest::Response,
    dir: &Path,
    file: &Path,
    shown: &str,
    modified: Option<std::time::SystemTime>,
) -> Result<(), Failure> {
    let local = |e: std::io::Error| Failure {
        message: format!("writing {}: {e}", file.display()),
        retry: false,
    };
    let tmp = tempfile::Builder::new()
        .prefix("cache.zip.download-")
        .tempfile_in(dir)
        .map_err(local)?;
    let mut out = tokio::fs::File::from_std(tmp.as_file().try_clone().map_err(local)?);
    while let Some(chunk) = resp.chunk().await.map_err(|e| network(e, shown))? {
        out.write_all(&chunk).await.map_err(local)?;
    }
    out.sync_all().await.map_err(local)?;
    // The object's date, as upstream sets it: the next extraction compares against the store's clock, not ours.
    if let Some(date) = modified {
        tmp.as_file().set_modified(date).map_err(local)?;
    }
    tmp.persist(file).map_err(|e| local(e.error))?;
    Ok(())
}
