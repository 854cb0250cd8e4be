use std::sync::{Arc, Mutex};

use oxrunner_api::{ApiError, ArtifactUpload};

use crate::common::{Req, resp, start};

fn archive(dir: &std::path::Path, len: usize) -> std::path::PathBuf {
    let p = dir.join("artifacts.zip");
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, data).unwrap();
    p
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn upload_is_multipart_with_query_params() {
    let srv = start(|_r: &Req, _| resp(201, &[], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = archive(dir.path(), 300_000);
    let opts = ArtifactUpload {
        filename: ArtifactUpload::file_name_for("my-artifacts", "zip"),
        artifact_format: "zip".into(),
        artifact_type: "archive".into(),
        expire_in: Some("7d".into()),
        timeout: None,
        response_header_timeout: None,
    };
    srv.client()
        .upload_artifacts(42, "job-tok", &file, &opts)
        .await
        .unwrap();
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v4/jobs/42/artifacts")
    );
    assert_eq!(r.query, "expire_in=7d&artifact_format=zip&artifact_type=archive");
    assert_eq!(r.header("JOB-TOKEN"), Some("job-tok"));
    assert!(
        r.header("Content-Type")
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
    assert!(
        contains(&r.body, b"name=\"file\"; filename=\"my-artifacts.zip\""),
        "multipart header missing"
    );
    let data = std::fs::read(&file).unwrap();
    assert!(contains(&r.body, &data), "archive bytes missing from the body");
}

#[tokio::test]
async fn upload_follows_307_to_the_new_host() {
    let target = start(|_r: &Req, _| resp(201, &[], "")).await;
    let location = format!("{}api/v4/jobs/42/artifacts?x=1", target.url);
    let origin = start(move |_r: &Req, _| resp(307, &[("Location", location.as_str())], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = archive(dir.path(), 1000);
    origin
        .client()
        .upload_artifacts(42, "jt", &file, &ArtifactUpload::default())
        .await
        .unwrap();
    assert_eq!(origin.requests().len(), 1);
    let moved = target.requests();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].path, "/api/v4/jobs/42/artifacts");
    assert_eq!(moved[0].query, "artifact_format=zip&artifact_type=archive");
    assert!(contains(&moved[0].body, &std::fs::read(&file).unwrap()));
}

#[tokio::test]
async fn upload_413_is_too_large_and_not_retried() {
    let srv = start(|_r: &Req, _| resp(413, &[], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = archive(dir.path(), 4096);
    let err = srv
        .client()
        .upload_artifacts(1, "jt", &file, &ArtifactUpload::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::TooLarge { size: 4096 }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn upload_retries_with_the_whole_file_each_time() {
    let srv = start(|_r: &Req, n| {
        if n == 0 {
            resp(400, &[], "")
        } else {
            resp(201, &[], "")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = archive(dir.path(), 70_000);
    srv.client()
        .upload_artifacts(1, "jt", &file, &ArtifactUpload::default())
        .await
        .unwrap();
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    let data = std::fs::read(&file).unwrap();
    assert!(reqs.iter().all(|r| contains(&r.body, &data)));
}

#[test]
fn upload_file_names() {
    assert_eq!(ArtifactUpload::file_name_for("", "zip"), "default.zip");
    assert_eq!(ArtifactUpload::file_name_for(".", "gzip"), "default.gz");
    assert_eq!(ArtifactUpload::file_name_for("junit", "gzip"), "junit.gz");
    assert_eq!(ArtifactUpload::file_name_for("dir/x", "tarzstd"), "x.tar.zst");
    assert_eq!(ArtifactUpload::file_name_for("raw.txt", "raw"), "raw.txt");
    assert_eq!(ArtifactUpload::file_name_for("artifacts", ""), "artifacts.zip");
}

#[tokio::test]
async fn download_follows_redirect_without_job_token() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let body = payload.clone();
    let srv = start(move |r: &Req, _| match r.path.as_str() {
        "/api/v4/jobs/9/artifacts" => resp(307, &[("Location", "/storage/blob?X-Amz-Signature=sig")], ""),
        "/storage/blob" => resp(200, &[], body.clone()),
        _ => resp(500, &[], ""),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("artifacts.zip");
    srv.client()
        .download_artifacts(9, "dep-token", &dest, true)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].query, "direct_download=true");
    assert_eq!(reqs[0].header("JOB-TOKEN"), Some("dep-token"));
    assert_eq!(
        reqs[1].header("JOB-TOKEN"),
        None,
        "job token must not go to object storage"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[tokio::test]
async fn download_404_is_not_found_and_leaves_no_file() {
    let srv = start(|_r: &Req, _| resp(404, &[], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.zip");
    let err = srv
        .client()
        .download_artifacts(9, "t", &dest, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound), "{err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(srv.requests().len(), 1, "404 is final");
    assert_eq!(srv.requests()[0].query, "");
}

#[tokio::test]
async fn download_retries_without_direct_download() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let srv = start(move |r: &Req, n| {
        seen2.lock().unwrap().push(r.query.clone());
        if n == 0 {
            resp(400, &[], "")
        } else {
            resp(200, &[], "zipdata")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.zip");
    srv.client()
        .download_artifacts(3, "t", &dest, true)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"zipdata");
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["direct_download=true".to_string(), String::new()]
    );
}

#[tokio::test]
async fn errors_never_show_signed_urls() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let location = format!("http://127.0.0.1:{closed_port}/blob?X-Amz-Signature=topsecret");
    let srv = start(move |_r: &Req, _| resp(302, &[("Location", location.as_str())], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let err = srv
        .client()
        .download_artifacts(1, "t", &dir.path().join("a.zip"), true)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Connect { .. }), "{err:?}");
    assert!(!err.to_string().contains("topsecret"), "{err}");
    assert!(!format!("{err:?}").contains("topsecret"), "{err:?}");
}
