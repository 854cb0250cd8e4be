#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The helper commands stage scripts call in a job environment the runner cannot reach (`artifacts-uploader`,
//! `artifacts-downloader`, `cache-archiver`, `cache-extractor`): the real binary against the fake GitLab, with the
//! job's credentials in the environment only, as a stage script passes them.

use crate::support as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fake_gitlab::{FakeGitlab, FakeOptions, JobSpec};
use oxrunner_api::{Client, ClientConfig, JobRequest, JobRequestOutcome};

fn options() -> FakeOptions {
    FakeOptions {
        long_poll: Duration::ZERO,
        ..FakeOptions::default()
    }
}

/// A job the fake considers running, with its id and token (a token only authenticates while its job runs).
async fn running_job(fake: &FakeGitlab, name: &str) -> (i64, String) {
    let runner = fake.create_runner_token("helpers");
    let id = fake.enqueue_job(JobSpec::new(name, &["true"]).variable("GIT_STRATEGY", "none"));
    let client = Client::new(ClientConfig {
        url: fake.url(),
        ..ClientConfig::default()
    })
    .unwrap();
    let request = JobRequest {
        token: runner,
        ..JobRequest::default()
    };
    match client.request_job(&request).await.unwrap() {
        JobRequestOutcome::Job(job) => {
            assert_eq!(job.id, id);
            (job.id, job.token.clone())
        }
        other => panic!("no job for the helper test: {other:?}"),
    }
}

/// Runs `oxrunner <args>` in `dir` with a cleared environment plus `env` (what the job script exported).
fn helper(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn job_env<'a>(fake_url: &'a str, id: &'a str, token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CI_SERVER_URL", fake_url),
        ("CI_JOB_ID", id),
        ("CI_JOB_TOKEN", token),
    ]
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxrunner-helpers-")
        .tempdir()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_round_trip_with_untracked_and_exclude() {
    let fake = FakeGitlab::start(options()).await.unwrap();
    let (producer, producer_token) = running_job(&fake, "build").await;
    let (_, consumer_token) = running_job(&fake, "test").await;

    let src = tempdir();
    git(src.path(), &["init", "-q"]);
    write(src.path(), "tracked.txt", "in git\n");
    git(src.path(), &["add", "tracked.txt"]);
    git(src.path(), &["commit", "-q", "-m", "first"]);
    write(src.path(), "out/app.bin", "binary\n");
    write(src.path(), "out/debug.log", "noise\n");
    write(src.path(), "notes.txt", "untracked\n");

    let url = fake.url();
    let id = producer.to_string();
    let out = helper(
        src.path(),
        &[
            "artifacts-uploader",
            "--path",
            "out/",
            "--untracked",
            "--exclude",
            "out/*.log",
            "--name",
            "bundle",
            "--expire-in",
            "1 day",
        ],
        &job_env(&url, &id, &producer_token),
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("Uploading artifacts as \"archive\" to coordinator... 201 Created"),
        "{shown}"
    );
    assert!(
        !shown.contains(&producer_token),
        "the token leaked into the output: {shown}"
    );
    let stored = fake.job(producer).unwrap().artifacts;
    let archive = stored
        .iter()
        .find(|a| a.artifact_type == "archive")
        .expect("stored");
    assert_eq!(archive.filename, "bundle.zip");
    assert_eq!(archive.expire_in.as_deref(), Some("1 day"));

    let dest = tempdir();
    let out = helper(
        dest.path(),
        &["artifacts-downloader"],
        &job_env(&url, &id, &consumer_token),
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("Downloading artifacts from coordinator... ok"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_to_string(dest.path().join("out/app.bin")).unwrap(),
        "binary\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.path().join("notes.txt")).unwrap(),
        "untracked\n"
    );
    assert!(
        !dest.path().join("out/debug.log").exists(),
        "excluded file extracted"
    );
    assert!(
        !dest.path().join("tracked.txt").exists(),
        "tracked file is not untracked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_upload_exits_1_with_the_limits_explained() {
    let fake = FakeGitlab::start(FakeOptions {
        max_artifact_size: Some(64),
        ..options()
    })
    .await
    .unwrap();
    let (job, token) = running_job(&fake, "build").await;
    let src = tempdir();
    let big: String = (0..4096).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    write(src.path(), "out/big.txt", &big);
    let (url, id) = (fake.url(), job.to_string());
    let out = helper(
        src.path(),
        &["artifacts-uploader", "--path", "out/"],
        &job_env(&url, &id, &token),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("too large archive"), "{shown}");
    assert!(shown.contains("Maximum artifacts size"), "{shown}");
    assert!(shown.contains("client_max_body_size"), "{shown}");
    assert!(shown.contains("hint:"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dependency_archive_exits_1_with_a_hint() {
    let fake = FakeGitlab::start(options()).await.unwrap();
    let (without_artifacts, _) = running_job(&fake, "build").await;
    let (_, token) = running_job(&fake, "test").await;
    let dest = tempdir();
    let (url, id) = (fake.url(), without_artifacts.to_string());
    let out = helper(
        dest.path(),
        &["artifacts-downloader"],
        &job_env(&url, &id, &token),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("Downloading artifacts from coordinator... not found"),
        "{shown}"
    );
    assert!(shown.contains("hint: re-run job"), "{shown}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_refused_before_any_work() {
    let dir = tempdir();
    write(dir.path(), "out/a", "a");
    let out = helper(dir.path(), &["artifacts-uploader", "--path", "out/"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("Missing runner credentials"), "{shown}");
    assert!(shown.contains("hint:"), "{shown}");
}

#[test]
fn cache_archive_then_extract() {
    let src = tempdir();
    write(src.path(), "vendor/lib.rs", "pub fn f() {}\n");
    write(src.path(), "vendor/skip.tmp", "x");
    let store = tempdir();
    let file: PathBuf = store.path().join("group/project/main-key/cache.zip");
    let file_arg = file.to_str().unwrap();
    let args = [
        "cache-archiver",
        "--file",
        file_arg,
        "--path",
        "vendor/",
        "--exclude",
        "vendor/*.tmp",
    ];
    let out = helper(src.path(), &args, &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("found 2 matching files and directories"),
        "{shown}"
    );
    assert!(shown.contains("Cache will be stored only locally."), "{shown}");
    assert!(file.is_file());

    let again = helper(src.path(), &args, &[]);
    assert!(
        text(&again).contains("Archive is up to date!"),
        "{}",
        text(&again)
    );

    let dest = tempdir();
    let out = helper(dest.path(), &["cache-extractor", "--file", file_arg], &[]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("vendor/lib.rs")).unwrap(),
        "pub fn f() {}\n"
    );
    assert!(!dest.path().join("vendor/skip.tmp").exists());
}

#[test]
fn extracting_a_missing_cache_fails_so_the_script_tries_the_next_key() {
    let dest = tempdir();
    let missing = dest.path().join("nope/cache.zip");
    let out = helper(
        dest.path(),
        &["cache-extractor", "--file", missing.to_str().unwrap()],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("Cache file does not exist"), "{shown}");
}

#[test]
fn local_store_round_trip_for_exec() {
    let store = tempdir();
    let src = tempdir();
    write(src.path(), "dist/app", "built\n");
    let store_arg = store.path().to_str().unwrap();
    let out = helper(
        src.path(),
        &[
            "artifacts-uploader",
            "--local-artifacts-dir",
            store_arg,
            "--path",
            "dist/",
        ],
        &[("CI_JOB_ID", "5"), ("CI_JOB_NAME", "build")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let dest = tempdir();
    let out = helper(
        dest.path(),
        &[
            "artifacts-downloader",
            "--local-artifacts-dir",
            store_arg,
            "--id",
            "5",
            "--dependency-name",
            "build",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dest.path().join("dist/app")).unwrap(),
        "built\n"
    );
}

/// One object on 127.0.0.1 behind just enough HTTP/1.1 for a pre-signed `PUT` and `GET`; it records each request's
/// line and headers.
struct ObjectStore {
    url: String,
    object: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The object's `Last-Modified` (set by a `PUT`, or by the test).
    modified: std::sync::Arc<std::sync::Mutex<std::time::SystemTime>>,
}

async fn object_store() -> ObjectStore {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let object = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let modified = std::sync::Arc::new(std::sync::Mutex::new(std::time::SystemTime::now()));
    let (obj, reqs, date) = (object.clone(), requests.clone(), modified.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (obj, reqs, date) = (obj.clone(), reqs.clone(), date.clone());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).await.unwrap();
                reqs.lock().unwrap().push(head.clone());
                let response = if head.starts_with("PUT ") {
                    *obj.lock().unwrap() = Some(body);
                    *date.lock().unwrap() = std::time::SystemTime::now();
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                } else {
                    match obj.lock().unwrap().clone() {
                        Some(data) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nlast-modified: {}\r\n\
                                 connection: close\r\n\r\n",
                                data.len(),
                                httpdate::fmt_http_date(*date.lock().unwrap()),
                            )
                            .into_bytes();
                            r.extend(data);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec(),
                    }
                };
                let mut stream = reader.into_inner();
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    ObjectStore {
        url,
        object,
        requests,
        modified,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_moves_through_a_presigned_url_without_showing_its_signature() {
    let store = object_store().await;
    let url = format!("{}/bucket/project/key?X-Amz-Signature=sig-secret", store.url);
    let src = tempdir();
    write(src.path(), "vendor/lib.rs", "pub fn g() {}\n");
    let local = tempdir();
    let file = local.path().join("cache.zip");
    let file_arg = file.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking({
        let (dir, url, file_arg) = (src.path().to_path_buf(), url.clone(), file_arg.clone());
        move || {
            helper(
                &dir,
                &[
                    "cache-archiver",
                    "--file",
                    &file_arg,
                    "--path",
                    "vendor/",
                    "--url",
                    &url,
                    "--header",
                    "X-Test: yes",
                ],
                &[],
            )
        }
    })
    .await
    .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!(
            "Uploading cache.zip to {}/bucket/project/key",
            store.url
        )),
        "{shown}"
    );
    assert!(!shown.contains("sig-secret"), "{shown}");
    assert_eq!(
        store.object.lock().unwrap().as_deref(),
        Some(std::fs::read(&file).unwrap().as_slice())
    );
    let put = store.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        put.starts_with("put /bucket/project/key?x-amz-signature=sig-secret"),
        "{put}"
    );
    assert!(put.contains("x-test: yes"), "{put}");

    // Another machine: no local file yet, the archive comes from the server.
    let dest = tempdir();
    let remote_file = dest.path().join("fresh/cache.zip");
    let out = tokio::task::spawn_blocking({
        let (dir, url, file_arg) = (
            dest.path().to_path_buf(),
            url.clone(),
            remote_file.to_str().unwrap().to_owned(),
        );
        move || {
            helper(
                &dir,
                &["cache-extractor", "--file", &file_arg, "--url", &url],
                &[],
            )
        }
    })
    .await
    .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("sig-secret"), "{shown}");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("vendor/lib.rs")).unwrap(),
        "pub fn g() {}\n"
    );
    assert!(shown.contains("Downloading cache.zip from"), "{shown}");
    up_to_date_until_the_object_changes(&store, dest.path(), &remote_file, &url).await;
}

/// As upstream's cache-extractor: the download keeps the object's date, a local copy no older than the object is
/// not downloaded again, and a newer object is.
async fn up_to_date_until_the_object_changes(store: &ObjectStore, dir: &Path, file: &Path, url: &str) {
    let extract = || {
        let (dir, url, file_arg) = (
            dir.to_path_buf(),
            url.to_owned(),
            file.to_str().unwrap().to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            helper(
                &dir,
                &["cache-extractor", "--file", &file_arg, "--url", &url],
                &[],
            )
        })
    };
    let object_date = *store.modified.lock().unwrap();
    let local = std::fs::metadata(file).unwrap().modified().unwrap();
    assert_eq!(
        httpdate::fmt_http_date(local),
        httpdate::fmt_http_date(object_date)
    );
    let out = extract().await.unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("cache.zip is up to date"), "{shown}");
    assert!(!shown.contains("Downloading"), "{shown}");

    // Another machine pushes a different archive a while later.
    let newer = std::fs::read(file).unwrap();
    let zip = tempdir();
    write(zip.path(), "vendor/lib.rs", "pub fn h() {}\n");
    let other = zip.path().join("other.zip");
    let out = helper(
        zip.path(),
        &[
            "cache-archiver",
            "--file",
            other.to_str().unwrap(),
            "--path",
            "vendor/",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    *store.object.lock().unwrap() = Some(std::fs::read(&other).unwrap());
    *store.modified.lock().unwrap() = object_date + std::time::Duration::from_secs(60);
    let out = extract().await.unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Downloading cache.zip from"), "{shown}");
    assert_ne!(std::fs::read(file).unwrap(), newer);
    assert_eq!(
        std::fs::read_to_string(dir.join("vendor/lib.rs")).unwrap(),
        "pub fn h() {}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_url_without_an_object_fails_the_extraction() {
    let store = object_store().await;
    let url = format!("{}/bucket/none?sig=x", store.url);
    let dest = tempdir();
    let file = dest.path().join("c/cache.zip");
    let out = tokio::task::spawn_blocking({
        let (dir, file_arg) = (dest.path().to_path_buf(), file.to_str().unwrap().to_owned());
        move || {
            helper(
                &dir,
                &["cache-extractor", "--file", &file_arg, "--url", &url],
                &[],
            )
        }
    })
    .await
    .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("404 Not Found"), "{shown}");
    assert!(!file.exists());
}

#[test]
fn an_unreachable_cache_server_is_named_without_the_signature() {
    let dest = tempdir();
    let file = dest.path().join("c/cache.zip");
    // Port 1 on loopback: nothing listens, the connection is refused.
    let url = "http://127.0.0.1:1/bucket/key?X-Amz-Signature=sig-secret";
    let out = helper(
        dest.path(),
        &["cache-extractor", "--file", file.to_str().unwrap(), "--url", url],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("http://127.0.0.1:1/bucket/key"), "{shown}");
    assert!(!shown.contains("sig-secret"), "{shown}");
}

/// A transient 5xx from GitLab does not fail the upload: as upstream's `artifacts-uploader`, it is retried (the
/// API client's upload: three tries, six for a 503, 1s..5s backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_server_error_on_upload_is_retried() {
    let fake = FakeGitlab::start(options()).await.unwrap();
    let (job, token) = running_job(&fake, "build").await;
    fake.faults()
        .fail_next(fake_gitlab::Endpoint::ArtifactUpload, 2, 502);
    let src = tempdir();
    write(src.path(), "out/app", "built\n");
    let (url, id) = (fake.url(), job.to_string());
    let out = helper(
        src.path(),
        &["artifacts-uploader", "--path", "out/"],
        &job_env(&url, &id, &token),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("retrying"), "{shown}");
    assert!(
        fake.job(job)
            .unwrap()
            .artifacts
            .iter()
            .any(|a| a.artifact_type == "archive"),
        "{shown}"
    );
}
