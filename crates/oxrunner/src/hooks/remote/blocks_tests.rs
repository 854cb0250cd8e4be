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

fn decode(id: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD.decode(id).unwrap();
    String::from_utf8(raw).unwrap()
}

#[test]
fn block_ids_are_equal_length_base64_in_order() {
    // The largest upload Azure takes: every id of it (and of any other upload) has one length.
    let ids = block_ids(u64::MAX, MAX_BLOCKS as usize);
    assert_eq!(ids.len(), 50_000);
    let other = block_ids(0x1234, 3);
    let len = ids[0].len();
    assert!(ids.iter().chain(&other).all(|id| id.len() == len), "{other:?}");
    // 16 bytes before encoding, as the Azure SDKs' ids.
    assert_eq!(decode(&ids[0]).len(), 16);
    assert_eq!(decode(&other[2]), "0000001234000002");
    // Sorted by index, and the same prefix throughout one upload.
    let decoded: Vec<String> = ids.iter().map(|id| decode(id)).collect();
    let prefix = &decoded[0][..10];
    for (i, d) in decoded.iter().enumerate() {
        assert_eq!(&d[..10], prefix);
        assert_eq!(d[10..].parse::<usize>().unwrap(), i);
    }
    let mut sorted = decoded.clone();
    sorted.sort();
    assert_eq!(sorted, decoded);
    // Two uploads (two prefixes) never share an id.
    assert!(block_ids(1, 5).iter().all(|id| !block_ids(2, 5).contains(id)));
}

#[test]
fn the_block_list_names_every_block_in_order() {
    let ids = block_ids(7, 3);
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
}

async fn serve(State(s): State<Stand>, req: Request) -> StatusCode {
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
    s.got.lock().unwrap().push(Got {
        query,
        content_type,
        blob_type,
        body,
    });
    StatusCode::CREATED
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
    Some(decode(&id)[10..].parse().unwrap())
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
        // 16 bytes encode with `==`, which the query must escape.
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
        .map(|s| {
            decode(s.split_once("</Latest>").unwrap().0)[10..]
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(named, [0, 1, 2], "{xml}");
}
