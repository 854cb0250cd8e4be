//! Bare repositories per project and smart HTTP through `git http-backend`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::TryStreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::FakeError;
use crate::http::header_str;
use crate::state::{SharedRef, is_processing, lock};

fn git_command(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.current_dir(dir)
        // Keep the developer's own git configuration out of the fake's repositories.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fake GitLab")
        .env("GIT_AUTHOR_EMAIL", "fake@example.invalid")
        .env("GIT_COMMITTER_NAME", "Fake GitLab")
        .env("GIT_COMMITTER_EMAIL", "fake@example.invalid");
    cmd
}

pub(crate) fn run_git(dir: &Path, args: &[&str]) -> Result<String, FakeError> {
    let out = git_command(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FakeError::io(dir, e))?;
    if !out.status.success() {
        return Err(FakeError::Git {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn valid_project_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && !p.ends_with(".git")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// Creates `<root>/<path>.git` and commits the files of `from_dir` on `main` without touching
/// `from_dir` (it is used as the work tree of the bare repository).
pub(crate) fn create_bare_repo(
    root: &Path,
    path: &str,
    from_dir: &Path,
) -> Result<(PathBuf, String), FakeError> {
    let git_dir = root.join(format!("{path}.git"));
    std::fs::create_dir_all(&git_dir).map_err(|e| FakeError::io(&git_dir, e))?;
    run_git(
        &git_dir,
        &["init", "--quiet", "--bare", "--initial-branch=main", "."],
    )?;
    commit_tree(&git_dir, from_dir, "Import project files")
}

/// Commits the content of `from_dir` as the next commit on `main`.
pub(crate) fn commit_tree(
    git_dir: &Path,
    from_dir: &Path,
    msg: &str,
) -> Result<(PathBuf, String), FakeError> {
    let from = from_dir.canonicalize().map_err(|e| FakeError::io(from_dir, e))?;
    let git_dir_s = git_dir.to_string_lossy().to_string();
    let from_s = from.to_string_lossy().to_string();
    let base = ["--git-dir", git_dir_s.as_str(), "--work-tree", from_s.as_str()];
    let with =
        |extra: &[&str]| -> Vec<String> { base.iter().chain(extra.iter()).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| -> Result<String, FakeError> {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_git(&from, &refs)
    };
    run(with(&["add", "--all", "--force", "."]))?;
    run(with(&[
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--allow-empty",
        "-m",
        msg,
    ]))?;
    let sha = run(with(&["rev-parse", "HEAD"]))?;
    Ok((git_dir.to_path_buf(), sha))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"GitLab\""),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        "HTTP Basic: Access denied\n",
    )
        .into_response()
}

fn basic_password(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, "authorization")?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Everything that is not an API route: smart HTTP for `<project>.git/...`, else 404.
pub(crate) async fn fallback(State(shared): State<SharedRef>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(idx) = path.find(".git/") else {
        return crate::http::bad_status(StatusCode::NOT_FOUND);
    };
    let project_path = path[1..idx].to_string();
    let service_path = path[idx + 4..].to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let project = {
        let inner = lock(&shared.inner);
        inner.projects.iter().find(|p| p.path == project_path).cloned()
    };
    let Some(project) = project else {
        return unauthorized();
    };
    let Some((user, password)) = basic_password(req.headers()) else {
        return unauthorized();
    };
    let allowed = user == "gitlab-ci-token" && {
        let inner = lock(&shared.inner);
        inner
            .job_by_token(&password)
            .is_some_and(|j| is_processing(&j.record.status) && j.record.project_id == Some(project.id))
    };
    if !allowed {
        return unauthorized();
    }
    // A CI job token may read the repository but never push to it.
    if service_path.ends_with("git-receive-pack") || query.contains("git-receive-pack") {
        return (StatusCode::FORBIDDEN, "You are not allowed to upload code.\n").into_response();
    }
    match cgi(&shared, &project_path, &service_path, &query, req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, "git http-backend failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed\n").into_response()
        }
    }
}

async fn cgi(
    shared: &SharedRef,
    project_path: &str,
    service_path: &str,
    query: &str,
    req: Request,
) -> std::io::Result<Response> {
    let (parts, body) = req.into_parts();
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", shared.repos.path())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        // Gitaly serves partial clones (`--filter`); a checkout then fetches missing blobs on demand.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "uploadpack.allowFilter")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("PATH_INFO", format!("/{project_path}.git{service_path}"))
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("REMOTE_USER", "gitlab-ci-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(ct) = header_str(&parts.headers, "content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(len) = header_str(&parts.headers, "content-length") {
        cmd.env("CONTENT_LENGTH", len);
    }
    if let Some(enc) = header_str(&parts.headers, "content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(proto) = header_str(&parts.headers, "git-protocol") {
        cmd.env("GIT_PROTOCOL", proto);
        cmd.env("HTTP_GIT_PROTOCOL", proto);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let body_stream = body.into_data_stream().map_err(std::io::Error::other);
    tokio::spawn(async move {
        let mut reader = StreamReader::new(body_stream);
        // Errors here mean the client went away; git sees EOF and stops.
        let _ = tokio::io::copy(&mut reader, &mut stdin).await;
        let _ = stdin.shutdown().await;
    });
    let mut reader = BufReader::new(stdout);
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
        } else {
            builder = builder.header(name, value);
        }
    }
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    builder
        .status(status)
        .body(Body::from_stream(ReaderStream::new(reader)))
        .map_err(std::io::Error::other)
}
