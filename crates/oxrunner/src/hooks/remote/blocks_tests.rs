//! Block ids, the block list body, and the plan cut to Azure's limits; the requests of an upload against a stand-in
//! blob service on 127.0.0.1 (their bodies, lengths, escaped ids and the block list).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use base64::Engine as _;
use oxrunner_config::{CacheAzureConfig, Secret};

use super::{BlockUpload, MAX_BLOCK_SIZE, MAX_BLOCKS, block_ids, block_list_xml};
use crate::hooks::remote::azure::AzureStore;
use crate::hooks::remote::parts::PartPlan;
use crate::hooks::remote::transfer::client;

const MIB: u64 = 1024 * 1024;

fn decode(id: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(id).unwrap()
}

/// The block number of a decoded id: a big-endian `u32` after the nonce, as the Go SDK lays it out.
fn number(raw: &[u8]) -> u32 {
    u32::from_be_bytes(raw[16..20].try_into().unwrap())
}

#[test]
fn block_ids_are_64_bytes_as_the_go_sdks_in_order() {
    // The largest upload Azure takes: every id of it (and of any other upload) has one length.
    let nonce = [0xab; 16];
    let ids = block_ids(nonce, MAX_BLOCKS as usize);
    assert_eq!(ids.len(), 50_000);
    let other = block_ids([7; 16], 3);
    let len = ids[0].len();
    assert!(ids.iter().chain(&other).all(|id| id.len() == len), "{other:?}");
    // 64 bytes before encoding, as gitlab-runner's ids (GoCloud's azblob `[64]byte`): 88 base64 characters.
    assert_eq!(len, 88);
    assert!(ids.iter().chain(&other).all(|id| decode(id).len() == 64));
    let mut want = vec![7u8; 16];
    want.extend_from_slice(&[0, 0, 0, 2]);
    want.resize(64, 0);
    assert_eq!(decode(&other[2]), want);
    // Numbered in order, the same prefix throughout one upload, zeros after the number.
    let decoded: Vec<Vec<u8>> = ids.iter().map(|id| decode(id)).collect();
    for (i, d) in decoded.iter().enumerate() {
        assert_eq!(d[..16], nonce);
        assert_eq!(number(d) as usize, i);
        assert!(d[20..].iter().all(|b| *b == 0));
    }
    let mut sorted = decoded.clone();
    sorted.sort();
    assert_eq!(sorted, decoded);
    // Two uploads (two prefixes) never share an id, and two calls draw two prefixes.
    assert!(
        block_ids([1; 16], 5)
            .iter()
            .all(|id| !block_ids([2; 16], 5).contains(id))
    );
    assert_ne!(super::nonce(), super::nonce());
}

#[test]
fn the_block_list_names_every_block_in_order() {
    let ids = block_ids([7; 16], 3);
    let xml = block_list_xml(&ids);
    assert_eq!(
        xml,
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest>\
             <Latest>{}</Latest></BlockList>",
            ids[0], ids[1], ids[2]
        )
    );
}

#[test]
fn the_plan_is_cut_to_azures_block_limits() {
    let plan = PartPlan {
        threshold: 64 * MIB,
        part_size: 16 * MIB,
        in_flight: 4,
    };
    // Within the limits the plan's own part size holds.
    let r = plan.ranges_within(40 * MIB, MAX_BLOCKS, MAX_BLOCK_SIZE).unwrap();
    assert_eq!(r, [(0, 16 * MIB), (16 * MIB, 32 * MIB), (32 * MIB, 40 * MIB)]);
    // 1 TiB in 16 MiB parts would be 65,536 blocks: the parts grow so that 50,000 suffice.
    let total = 1024 * 1024 * MIB;
    let r = plan.ranges_within(total, MAX_BLOCKS, MAX_BLOCK_SIZE).unwrap();
    assert!(r.len() as u64 <= MAX_BLOCKS, "{}", r.len());
    assert!(r.len() > 40_000, "{}", r.len());
    assert_eq!(r.last().unwrap().1, total);
    assert!(r.windows(2).all(|w| w[0].1 == w[1].0));
    // A part size above Azure's largest block is cut down to it.
    let huge = PartPlan {
        part_size: 5000 * MIB,
        ..plan
    };
    let r = huge
        .ranges_within(9000 * MIB, MAX_BLOCKS, MAX_BLOCK_SIZE)
        .unwrap();
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|(s, e)| e - s <= MAX_BLOCK_SIZE), "{r:?}");
    // More than 50,000 blocks of 4000 MiB can hold: no plan.
    let beyond = MAX_BLOCKS * MAX_BLOCK_SIZE + 1;
    assert_eq!(plan.ranges_within(beyond, MAX_BLOCKS, MAX_BLOCK_SIZE), None);
    assert!(
        plan.ranges_within(MAX_BLOCKS * MAX_BLOCK_SIZE, MAX_BLOCKS, MAX_BLOCK_SIZE)
            .is_some_and(|r| r.len() as u64 == MAX_BLOCKS)
    );
}

/// What the stand-in saw of one request: raw query, the two content-type headers, the body.
#[derive(Debug, Clone)]
struct Got {
    query: String,
    content_type: Option<String>,
    blob_type: Option<String>,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Stand {
    got: Arc<Mutex<Vec<Got>>>,
    /// The answer (status, `x-ms-error-code`) to every Put Block, as Azure gives when foreign blocks refuse it.
    refuse: Option<(StatusCode, &'static str)>,
}

async fn serve(State(s): State<Stand>, req: Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (query, content_type, blob_type) = {
        let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        (
            req.uri().query().unwrap_or_default().to_owned(),
            header("content-type"),
            header("x-ms-blob-content-type"),
        )
    };
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let refused = s.refuse.filter(|_| query.contains("comp=block&"));
    s.got.lock().unwrap().push(Got {
        query,
        content_type,
        blob_type,
        body,
    });
    match refused {
        Some((status, code)) => {
            let xml = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code></Error>");
            (status, [("x-ms-error-code", code)], xml).into_response()
        }
        None => StatusCode::CREATED.into_response(),
    }
}

async fn stand(stand: Stand) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(serve).with_state(stand);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/devstoreaccount1"), server)
}

fn store(endpoint: &str) -> AzureStore {
    AzureStore::from_config(&CacheAzureConfig {
        account_name: Some("devstoreaccount1".into()),
        account_key: Some(Secret::new("a2V5LWZvci1ibG9jay10ZXN0cw==")),
        container_name: Some("oxrt-cache".into()),
        storage_domain: Some(endpoint.to_owned()),
    })
    .unwrap()
}

const PLAN: PartPlan = PartPlan {
    threshold: 1_000,
    part_size: 1_000,
    in_flight: 2,
};

/// 2,500 bytes whose every byte tells its block: three blocks of 1,000, 1,000 and 500 bytes.
fn archive(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("cache.zip");
    let bytes: Vec<u8> = (0..2_500u32).map(|i| (i / 1_000) as u8 + 1).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The nonce of an upload is random: ids are compared by what they decode to after it.
fn index_of(got: &Got) -> Option<usize> {
    let id = got.query.split('&').find_map(|kv| kv.strip_prefix("blockid="))?;
    let id = id.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=");
    Some(number(&decode(&id)) as usize)
}

#[tokio::test]
async fn blocks_go_up_by_offset_and_the_list_commits_them_in_order() {
    let seen = Stand::default();
    let (endpoint, server) = stand(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = archive(&dir);
    let store = store(&endpoint);
    let http = client(Duration::from_secs(30)).unwrap();
    let upload = BlockUpload {
        http: &http,
        store: &store,
        object: "project/1/k",
        src: &src,
        plan: PLAN,
        lifetime: Duration::from_secs(600),
        describe: "Azure container",
    };
    let sent = upload.run(&|m: &str| panic!("no warning expected: {m}")).await;
    server.abort();
    assert_eq!(sent, Ok(2_500));
    let mut got = seen.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "{got:#?}");
    let list = got.pop().unwrap();
    got.sort_by_key(index_of);
    for (i, block) in got.iter().enumerate() {
        assert!(block.query.contains("comp=block&blockid="), "{}", block.query);
        assert!(block.query.contains("sp=w"), "{}", block.query);
        // 64 bytes encode with `==`, which the query must escape.
        let raw = block.query.split('&').find_map(|kv| kv.strip_prefix("blockid="));
        assert!(
            raw.is_some_and(|id| id.ends_with("%3D%3D") && !id.contains('=')),
            "{}",
            block.query
        );
        assert_eq!(index_of(block), Some(i));
        let len = if i == 2 { 500 } else { 1_000 };
        assert_eq!(block.body, vec![i as u8 + 1; len]);
    }
    assert!(list.query.starts_with("comp=blocklist&") || list.query.contains("&comp=blocklist"));
    assert_eq!(list.content_type.as_deref(), Some("application/xml"));
    assert_eq!(list.blob_type.as_deref(), Some("application/zip"));
    let xml = String::from_utf8(list.body).unwrap();
    let named: Vec<usize> = xml
        .split("<Latest>")
        .skip(1)
        .map(|s| number(&decode(s.split_once("</Latest>").unwrap().0)) as usize)
        .collect();
    assert_eq!(named, [0, 1, 2], "{xml}");
}

/// An upload against a stand-in that refuses every block with `status`/`code`: what `run` returned, the lines it
/// warned, and the requests the stand-in saw.
async fn refused_upload(
    status: StatusCode,
    code: &'static str,
    src: &std::path::Path,
) -> (Result<u64, String>, Vec<String>, Vec<Got>) {
    let seen = Stand {
        refuse: Some((status, code)),
        ..Stand::default()
    };
    let (endpoint, server) = stand(seen.clone()).await;
    let store = store(&endpoint);
    let http = client(Duration::from_secs(30)).unwrap();
    let upload = BlockUpload {
        http: &http,
        store: &store,
        object: "project/1/k",
        src,
        plan: PLAN,
        lifetime: Duration::from_secs(600),
        describe: "Azure container",
    };
    let warned = Mutex::new(Vec::new());
    let sent = upload
        .run(&|m: &str| warned.lock().unwrap().push(m.to_owned()))
        .await;
    server.abort();
    let got = seen.got.lock().unwrap().clone();
    (sent, warned.into_inner().unwrap(), got)
}

#[tokio::test]
async fn foreign_blocks_make_the_archive_go_up_as_one_put_blob() {
    let dir = tempfile::tempdir().unwrap();
    let src = archive(&dir);
    for (status, code) in [
        (StatusCode::CONFLICT, "BlockCountExceedsLimit"),
        (StatusCode::BAD_REQUEST, "InvalidBlobOrBlock"),
    ] {
        let (sent, warned, got) = refused_upload(status, code, &src).await;
        assert_eq!(sent, Ok(2_500), "{warned:?}");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].contains("interrupted upload")
                && warned[0].contains(code)
                && !warned[0].contains("sig="),
            "{warned:?}"
        );
        // No block list; the last request is the whole archive as one Put Blob.
        assert!(
            !got.iter().any(|g| g.query.contains("comp=blocklist")),
            "{got:#?}"
        );
        let whole = got.last().unwrap();
        assert!(!whole.query.contains("comp="), "{}", whole.query);
        assert!(whole.query.contains("sp=w"), "{}", whole.query);
        assert_eq!(whole.body.len(), 2_500);
        assert_eq!(whole.content_type.as_deref(), Some("application/zip"));
    }
}

#[tokio::test]
async fn other_refusals_and_archives_above_put_blobs_limit_stay_failures() {
    let dir = tempfile::tempdir().unwrap();
    let src = archive(&dir);
    // A 400 that does not name foreign blocks is this upload's own problem: no Put Blob.
    let (sent, warned, got) = refused_upload(StatusCode::BAD_REQUEST, "InvalidHeaderValue", &src).await;
    let err = sent.unwrap_err();
    assert!(err.contains("no block list was committed"), "{err}");
    assert!(warned.is_empty(), "{warned:?}");
    assert!(got.iter().all(|g| g.query.contains("comp=block&")), "{got:#?}");
    // Past 5000 MiB (a sparse file) a Put Blob cannot replace the blocks: the failure says why and for how long.
    let big = dir.path().join("big.zip");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(super::MAX_PUT_BLOB + 1)
        .unwrap();
    let (sent, warned, got) = refused_upload(StatusCode::BAD_REQUEST, "InvalidBlobOrBlock", &big).await;
    let err = sent.unwrap_err();
    assert!(err.contains("earlier interrupted upload"), "{err}");
    assert!(err.contains("7 days"), "{err}");
    assert!(err.contains("\nhint: "), "{err}");
    assert!(!err.contains("sig="), "{err}");
    assert!(warned.is_empty(), "{warned:?}");
    assert!(got.iter().all(|g| g.query.contains("comp=block&")), "{got:#?}");
}
