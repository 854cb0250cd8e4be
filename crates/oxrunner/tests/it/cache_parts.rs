//! Large cache archives through a real three-node Garage cluster in parallel parts: a multipart upload and a
//! ranged download that come back byte-identical, a part that fails once retried on its own, and an upload whose
//! part keeps failing aborted so the bucket holds no object. The runners talk to Garage through a small HTTP
//! proxy on 127.0.0.1 (in this test) that records every request and fails the ones the test picks; it passes the
//! `Host` header through, so the signatures still match. It also counts part uploads in flight (the parts must
//! overlap) and holds part 2 of `stalled` forever, so a job can be cancelled mid-upload. It also holds one range of
//! the download of `many` until the test has seen the restore's first file in place: the extraction runs while
//! the archive is still arriving.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fake_gitlab::CacheSpec;

use crate::support::garage::{self, BUCKET, Cluster, REGION};
use crate::support::{Sandbox, cache_job as job, fake, finished, global_toml, shell_runner_toml};

const FINISH: Duration = Duration::from_secs(180);
/// `oxrunner-cache-digest:sha256:<64 hex>`, the zip comment closing each archive.
const DIGEST_COMMENT: usize = 29 + 64;
const PART: u64 = 5 * 1024 * 1024;
/// Archives above 8 MiB move in 5 MiB parts (S3's smallest part size).
const KNOB: &str = "8388608,5242880";

/// A request the proxy saw: method, path, query and `Range` header.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    range: String,
}

type Rule = dyn Fn(&Seen, &[Seen]) -> Option<StatusCode> + Send + Sync;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Whether to answer a request with an error instead of forwarding it (given the requests before it).
    fail: Arc<Rule>,
    http: reqwest::Client,
    /// Part uploads being forwarded now, and the most there ever were at once.
    parts_now: Arc<AtomicUsize>,
    parts_peak: Arc<AtomicUsize>,
    /// Set to true to let the held range of `many` through.
    release: tokio::sync::watch::Sender<bool>,
}

/// One part upload in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let seen = Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or_default().to_owned(),
        range: req
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    };
    let is_part = seen.method == "PUT" && seen.has("partNumber");
    let stall = is_part && seen.path.ends_with("/stalled") && seen.param("partNumber") == Some("2");
    let held = seen.method == "GET"
        && seen.path.ends_with("/many")
        && seen.range.starts_with(&format!("bytes={}-", 2 * PART));
    let _in_flight = is_part.then(|| {
        let now = p.parts_now.fetch_add(1, Ordering::SeqCst) + 1;
        p.parts_peak.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(&p.parts_now))
    });
    let verdict = {
        let mut log = p.seen.lock().unwrap();
        let verdict = (p.fail)(&seen, &log);
        log.push(seen);
        verdict
    };
    if let Some(status) = verdict {
        // Read first, as a store does: an answer sent while the runner still writes a part's body makes that write
        // fail with a broken pipe instead of the client reading the status.
        let _ = axum::body::to_bytes(req.into_body(), usize::MAX).await;
        return (status, "<Error><Code>InjectedByTest</Code></Error>").into_response();
    }
    if stall {
        // Until the runner gives up on the request (it drops the connection when the job is cancelled).
        std::future::pending::<()>().await;
    }
    if held {
        let mut released = p.release.subscribe();
        let _ = released.wait_for(|go| *go).await;
    }
    let (parts, body) = req.into_parts();
    let target = format!(
        "{}{}",
        p.upstream,
        parts.uri.path_and_query().map(|q| q.as_str()).unwrap_or("/")
    );
    let mut out = p
        .http
        .request(parts.method.clone(), target)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (k, v) in &parts.headers {
        if k != "connection" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    match out.send().await {
        Ok(resp) => {
            let mut answer = Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                if k != "connection" && k != "transfer-encoding" {
                    answer = answer.header(k, v);
                }
            }
            answer.body(Body::from_stream(resp.bytes_stream())).unwrap()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn start_proxy(upstream: String, fail: Arc<Rule>) -> (String, Proxy) {
    let proxy = Proxy {
        upstream: format!("http://{upstream}"),
        seen: Arc::default(),
        fail,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        parts_now: Arc::default(),
        parts_peak: Arc::default(),
        release: tokio::sync::watch::channel(false).0,
    };
    let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, proxy)
}

fn cache_toml(address: &str, cluster: &Cluster) -> String {
    format!(
        "  [runners.cache]\n    Type = \"s3\"\n    Shared = true\n  [runners.cache.s3]\n    ServerAddress = \"{address}\"\n    \
         AccessKey = \"{key}\"\n    SecretKey = \"{secret}\"\n    BucketName = \"{BUCKET}\"\n    \
         BucketLocation = \"{REGION}\"\n    Insecure = true\n",
        key = cluster.key_id,
        secret = cluster.secret,
    )
}

/// The failures this test injects: part 2 of `big` once (upload) and the second range of its download once; every
/// part 2 of `doomed` with a 403, which is not retried.
fn rule(s: &Seen, before: &[Seen]) -> Option<StatusCode> {
    let first = |pred: &dyn Fn(&Seen) -> bool| !before.iter().any(pred);
    let part2 = |r: &Seen| r.method == "PUT" && r.param("partNumber") == Some("2");
    if s.path.ends_with("/big") && part2(s) && first(&|r| r.path.ends_with("/big") && part2(r)) {
        return Some(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let second_range = format!("bytes={PART}-");
    let ranged = |r: &Seen| r.method == "GET" && r.range.starts_with(&second_range);
    if s.path.ends_with("/big") && ranged(s) && first(&|r| r.path.ends_with("/big") && ranged(r)) {
        return Some(StatusCode::SERVICE_UNAVAILABLE);
    }
    if s.path.ends_with("/doomed") && part2(s) {
        return Some(StatusCode::FORBIDDEN);
    }
    None
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    fn has(&self, name: &str) -> bool {
        self.param(name).is_some()
    }
}

fn of<'a>(seen: &'a [Seen], object: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|r| r.path.ends_with(object)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_archives_move_in_parts_through_garage() {
    let Some(bin) = garage::binary() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let (proxy_addr, proxy) = start_proxy(cluster.s3_address(0), Arc::new(rule)).await;
    let fake = fake(1, 1).await;
    let url = fake.url();
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let ta = fake.create_runner_token_with_tags("a", &["a"], false);
    let tb = fake.create_runner_token_with_tags("b", &["b"], false);
    let cache = cache_toml(&proxy_addr, &cluster);
    std::fs::write(
        a.config(),
        global_toml(1, "") + &shell_runner_toml("a", &url, &ta, &a.path("a"), &cache),
    )
    .unwrap();
    std::fs::write(
        b.config(),
        global_toml(1, "") + &shell_runner_toml("b", &url, &tb, &b.path("b"), &cache),
    )
    .unwrap();
    let env = [("OXRUNNER_TEST_CACHE_PARTS", KNOB)];
    let (a_cfg, b_cfg) = (a.config_str(), b.config_str());
    let da = a.spawn_with_env(&["run", "-c", &a_cfg], &env);
    let db = b.spawn_with_env(&["run", "-c", &b_cfg], &env);

    // 13 MB of noise: the archive cannot shrink below the threshold, and goes up in three parts.
    let push = job(
        "push big",
        "a",
        &["mkdir -p vendor && head -c 13000000 /dev/urandom > vendor/blob && sha256sum vendor/blob"],
        CacheSpec::new("big", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(push), FINISH, &da).await;
    let pushed = rec.trace_text();
    assert_eq!(rec.status, "success", "{pushed}");
    assert!(pushed.contains("Created cache"), "{pushed}");
    assert!(!pushed.contains("Failed to create cache"), "{pushed}");
    assert!(
        pushed.contains("Retrying") && !pushed.contains("X-Amz-Signature"),
        "{pushed}"
    );
    let seen = proxy.seen.lock().unwrap().clone();
    let big = of(&seen, "/big");
    assert!(
        big.iter().any(|r| r.method == "POST" && r.has("uploads")),
        "{big:#?}"
    );
    let parts: Vec<&str> = big
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.param("partNumber").unwrap())
        .collect();
    let mut sorted = parts.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["1", "2", "2", "3"], "{big:#?}");
    assert!(
        big.iter().any(|r| r.method == "POST" && r.has("uploadId")),
        "{big:#?}"
    );
    let peak = proxy.parts_peak.load(Ordering::SeqCst);
    assert!(peak > 1, "the parts went up one at a time (peak {peak})");

    let restore = job(
        "restore big",
        "b",
        &["sha256sum vendor/blob"],
        CacheSpec {
            policy: "pull".into(),
            ..CacheSpec::new("big", &["vendor/"])
        },
    );
    let before = proxy.seen.lock().unwrap().len();
    let rec = finished(&fake, fake.enqueue_job(restore), FINISH, &db).await;
    let restored = rec.trace_text();
    assert_eq!(rec.status, "success", "{restored}");
    assert!(restored.contains("Successfully extracted cache"), "{restored}");
    let digest = |t: &str| {
        t.lines()
            .find(|l| l.contains("vendor/blob") && !l.contains("sha256sum"))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
    };
    assert!(digest(&pushed).is_some(), "{pushed}");
    assert_eq!(digest(&pushed), digest(&restored), "{restored}");
    // The two machines' local copies of the archive are the same bytes, up to the digest in the zip comment that
    // B rewrote for the files as extracted there (`CacheStore::adopt_extracted`).
    let (in_a, in_b) = (archive(a.dir.path(), "big"), archive(b.dir.path(), "big"));
    let (in_a, in_b) = (
        in_a.expect("A keeps its archive"),
        in_b.expect("B keeps the download"),
    );
    assert_eq!(in_a.len(), in_b.len());
    assert!(in_a.len() > 12_000_000, "{}", in_a.len());
    let entries = |z: &[u8]| z[..z.len() - DIGEST_COMMENT].to_vec();
    assert!(entries(&in_a) == entries(&in_b), "the archives differ");
    let seen = proxy.seen.lock().unwrap().clone();
    let gets: Vec<&str> = of(&seen[before..], "/big")
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.range.as_str())
        .collect();
    // First the object's date (one byte: the download is dated with it), then the parts.
    assert_eq!(gets.first().copied(), Some("bytes=0-0"), "{gets:?}");
    assert_eq!(
        gets.get(1).copied(),
        Some(format!("bytes=0-{}", PART - 1)).as_deref(),
        "{gets:?}"
    );
    assert_eq!(gets.len(), 5, "the date, three parts and one retry: {gets:?}");
    assert!(restored.contains("Retrying"), "{restored}");

    extraction_overlaps_the_download(&fake, &proxy, (&da, &db), b.dir.path()).await;

    aborted_upload_leaves_no_object(&fake, &proxy, (&da, &db)).await;
    upload_is_gone(&cluster, &proxy, "/doomed").await;
    cancelled_upload_is_aborted(&fake, &proxy, &da).await;
    upload_is_gone(&cluster, &proxy, "/stalled").await;
    // The store itself holds two objects: `big` and `many`; nothing of `doomed`.
    let info = cluster.cli(0, &["bucket", "info", BUCKET]);
    let objects = info
        .lines()
        .find_map(|l| l.strip_prefix("Objects:"))
        .map(str::trim);
    assert_eq!(objects, Some("2"), "{info}");
    crate::support::quit_ok(da).await;
    crate::support::quit_ok(db).await;
}

/// Three 6 MB files in an 18 MB archive (parts of 5 MiB: the first, the tail with the central directory, then
/// the rest in order). The proxy holds the range at 10 MiB: the first entry must be extracted in B's project
/// directory before that range is let through (the other two reach into it), and the job then finds every file
/// whole.
async fn extraction_overlaps_the_download(
    fake: &fake_gitlab::FakeGitlab,
    proxy: &Proxy,
    (da, db): (&crate::support::Daemon, &crate::support::Daemon),
    b_dir: &std::path::Path,
) {
    let make = "mkdir -p many && for f in a b c; do head -c 6000000 /dev/urandom > many/$f.bin; done && \
                sha256sum many/*.bin";
    let push = job("push many", "a", &[make], CacheSpec::new("many", &["many/"]));
    let rec = finished(fake, fake.enqueue_job(push), FINISH, da).await;
    let pushed = rec.trace_text();
    assert_eq!(rec.status, "success", "{pushed}");
    let restore = job(
        "restore many",
        "b",
        &["sha256sum many/*.bin"],
        CacheSpec {
            policy: "pull".into(),
            ..CacheSpec::new("many", &["many/"])
        },
    );
    let id = fake.enqueue_job(restore);
    let deadline = tokio::time::Instant::now() + FINISH;
    let whole = || {
        ["a.bin", "b.bin", "c.bin"]
            .into_iter()
            .filter(|f| {
                find_file(b_dir, f).is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == 6_000_000))
            })
            .count()
    };
    while whole() == 0 {
        if tokio::time::Instant::now() >= deadline {
            let seen = proxy.seen.lock().unwrap().clone();
            let trace = fake.job(id).map(|j| j.trace_text()).unwrap_or_default();
            panic!(
                "no file was extracted while the download was held; requests: {:#?}\njob log:\n{trace}",
                of(&seen, "/many")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(whole() < 3, "every file was in place before the held range came");
    proxy.release.send_replace(true);
    let rec = finished(fake, id, FINISH, db).await;
    let restored = rec.trace_text();
    assert_eq!(rec.status, "success", "{restored}");
    assert!(restored.contains("Successfully extracted cache"), "{restored}");
    let sums = |t: &str| {
        let mut v: Vec<String> = t
            .lines()
            .filter(|l| l.contains("many/") && !l.contains("sha256sum"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(sums(&pushed).len(), 3, "{pushed}");
    assert_eq!(sums(&pushed), sums(&restored), "{restored}");
}

/// The first file called `name` below `dir`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_file() && path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if kind.is_dir()
            && let Some(found) = find_file(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// Part 2 keeps failing: the job still succeeds, the upload is aborted, and B finds no object under the key.
async fn aborted_upload_leaves_no_object(
    fake: &fake_gitlab::FakeGitlab,
    proxy: &Proxy,
    (da, db): (&crate::support::Daemon, &crate::support::Daemon),
) {
    let push = job(
        "push doomed",
        "a",
        &["mkdir -p vendor && head -c 13000000 /dev/urandom > vendor/blob"],
        CacheSpec::new("doomed", &["vendor/"]),
    );
    let rec = finished(fake, fake.enqueue_job(push), FINISH, da).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Failed to create cache"), "{trace}");
    assert!(trace.contains("403"), "{trace}");
    let seen = proxy.seen.lock().unwrap().clone();
    let doomed = of(&seen, "/doomed");
    assert!(
        doomed.iter().any(|r| r.method == "DELETE" && r.has("uploadId")),
        "{doomed:#?}"
    );
    assert!(
        !doomed.iter().any(|r| r.method == "POST" && r.has("uploadId")),
        "{doomed:#?}"
    );
    let miss = job(
        "restore doomed",
        "b",
        &["test ! -e vendor/blob"],
        CacheSpec {
            policy: "pull".into(),
            ..CacheSpec::new("doomed", &["vendor/"])
        },
    );
    let rec = finished(fake, fake.enqueue_job(miss), FINISH, db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Cache file does not exist"), "{trace}");
}

/// The job is force-cancelled while part 2 hangs: the runner drops the upload, and the abort still reaches the
/// store.
async fn cancelled_upload_is_aborted(
    fake: &fake_gitlab::FakeGitlab,
    proxy: &Proxy,
    da: &crate::support::Daemon,
) {
    let push = job(
        "push stalled",
        "a",
        &["mkdir -p vendor && head -c 13000000 /dev/urandom > vendor/blob"],
        CacheSpec::new("stalled", &["vendor/"]),
    );
    let id = fake.enqueue_job(push);
    let stalled = |r: &Seen| r.path.ends_with("/stalled") && r.param("partNumber") == Some("2");
    let deadline = tokio::time::Instant::now() + FINISH;
    while !proxy.seen.lock().unwrap().iter().any(stalled) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "part 2 never started: {:?}\n{}",
            fake.job(id),
            da.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // "Cancel" lets a job finish its cache upload (graceful); "Force cancel" then ends it: the runner learns from
    // GitLab's 403 to its next trace update and aborts the job's hooks, dropping the upload midway.
    fake.cancel_job(id);
    assert_eq!(fake.job(id).map(|j| j.status), Some("canceling".to_owned()));
    fake.cancel_job(id);
    let aborted = |r: &Seen| r.path.ends_with("/stalled") && r.method == "DELETE" && r.has("uploadId");
    while !proxy.seen.lock().unwrap().iter().any(aborted) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no abort after the cancel: {:#?}",
            of(&proxy.seen.lock().unwrap(), "/stalled")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Garage no longer knows the upload that the runner aborted on `object`: listing its parts is `NoSuchUpload`
/// (the parts sent so far are gone with it).
async fn upload_is_gone(cluster: &Cluster, proxy: &Proxy, object: &str) {
    let seen = proxy.seen.lock().unwrap().clone();
    let abort = of(&seen, object)
        .into_iter()
        .find(|r| r.method == "DELETE" && r.has("uploadId"))
        .expect("an abort was sent");
    let upload_id = abort.param("uploadId").unwrap();
    let key = abort.path.strip_prefix(&format!("/{BUCKET}/")).unwrap();
    let bucket = rusty_s3::Bucket::new(
        format!("http://{}", cluster.s3_address(0)).parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        BUCKET.to_owned(),
        REGION.to_owned(),
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new(cluster.key_id.clone(), cluster.secret.clone());
    let list = rusty_s3::actions::ListParts::new(&bucket, Some(&creds), key, upload_id);
    let url = rusty_s3::S3Action::sign(&list, Duration::from_secs(300));
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("NoSuchUpload"), "{body}");
}

/// The bytes of the local store's archive of `key` somewhere below `dir`.
fn archive(dir: &std::path::Path, key: &str) -> Option<Vec<u8>> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if !entry.file_type().ok()?.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == key) && path.join("cache.zip").is_file() {
            return std::fs::read(path.join("cache.zip")).ok();
        }
        if let Some(found) = archive(&path, key) {
            return Some(found);
        }
    }
    None
}
