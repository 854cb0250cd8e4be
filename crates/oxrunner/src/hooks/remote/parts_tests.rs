//! Ranged downloads against small in-test servers: parts land at their offsets, a failing part is retried on
//! its own, a store that ignores `Range` is read as one stream, an object replaced mid-download is refused, and
//! parts of many write buffers survive an answer that breaks off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{PartPlan, download};
use crate::hooks::remote::s3::Presigned;
use crate::hooks::remote::transfer::{Fetched, client};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ranges,
    IgnoresRange,
    /// Every part after the first carries another ETag (the object was replaced).
    Replaced,
    /// Parts say `bytes a-b/*`: the object's size is not told.
    UnknownTotal,
    /// The first part is a part; later ones are answered with the whole object.
    WholeLater,
    /// The first answer for the range at `fail_once_at` breaks off after half its bytes (the connection drops).
    BreaksOnce,
}

#[derive(Clone)]
struct Server {
    data: Arc<Vec<u8>>,
    mode: Mode,
    /// The `Range` of every request, `-` for none.
    seen: Arc<Mutex<Vec<String>>>,
    /// Requests for this range start fail once with a 500.
    fail_once_at: Option<u64>,
}

fn answer(s: &Server, headers: &HeaderMap) -> Response {
    let range = headers.get(header::RANGE).map(|v| v.to_str().unwrap().to_owned());
    let mut seen = s.seen.lock().unwrap();
    seen.push(range.clone().unwrap_or_else(|| "-".into()));
    let Some(range) = range.filter(|_| s.mode != Mode::IgnoresRange) else {
        return (StatusCode::OK, s.data.as_ref().clone()).into_response();
    };
    let (a, b) = range.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    if Some(a) == s.fail_once_at
        && seen
            .iter()
            .filter(|r| r.starts_with(&format!("bytes={a}-")))
            .count()
            == 1
    {
        if s.mode == Mode::BreaksOnce {
            return broken_answer(s, a, b);
        }
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let total = s.data.len() as u64;
    if s.mode == Mode::WholeLater && a > 0 {
        return (StatusCode::OK, s.data.as_ref().clone()).into_response();
    }
    let b = b.min(total - 1);
    let shown_total = if s.mode == Mode::UnknownTotal {
        "*".to_owned()
    } else {
        total.to_string()
    };
    let etag = if s.mode == Mode::Replaced && a > 0 {
        "\"two\""
    } else {
        "\"one\""
    };
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_RANGE, format!("bytes {a}-{b}/{shown_total}")),
            (header::ETAG, etag.to_owned()),
        ],
        s.data[a as usize..=b as usize].to_vec(),
    )
        .into_response()
}

/// A `206` for `a..=b` whose body stops after half of it with an error, so the client sees the connection drop.
fn broken_answer(s: &Server, a: u64, b: u64) -> Response {
    let half = s.data[a as usize..(a + (b - a) / 2) as usize].to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = half
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .chain(std::iter::once(Err(std::io::Error::other("cut"))))
        .collect();
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_RANGE, format!("bytes {a}-{b}/{}", s.data.len())),
            (header::ETAG, "\"one\"".to_owned()),
        ],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

async fn serve(s: Server) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let s = s.clone();
        async move { answer(&s, &headers) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/bucket/key?X-Amz-Signature=abc"), task)
}

fn server(mode: Mode, fail_once_at: Option<u64>) -> Server {
    sized_server(10_000, mode, fail_once_at)
}

fn sized_server(len: u32, mode: Mode, fail_once_at: Option<u64>) -> Server {
    Server {
        data: Arc::new((0..len).map(|i| (i * 7 % 251) as u8).collect()),
        mode,
        seen: Arc::default(),
        fail_once_at,
    }
}

const PLAN: PartPlan = PartPlan {
    threshold: 3_000,
    part_size: 1_000,
    in_flight: 3,
};

async fn fetch(s: &Server) -> (Result<Fetched, String>, Vec<u8>, Vec<String>) {
    fetch_with(s, PLAN).await
}

async fn fetch_with(s: &Server, plan: PartPlan) -> (Result<Fetched, String>, Vec<u8>, Vec<String>) {
    let (url, task) = serve(s.clone()).await;
    let signed = Presigned {
        url: url.parse().unwrap(),
        headers: Vec::new(),
    };
    let http = client(std::time::Duration::from_secs(30)).unwrap();
    let dest = tempfile::NamedTempFile::new().unwrap();
    let warnings = Mutex::new(Vec::new());
    let warn = |m: &str| warnings.lock().unwrap().push(m.to_owned());
    let got = download(&http, &signed, dest.as_file(), plan, "S3 bucket", &warn, None).await;
    task.abort();
    let bytes = std::fs::read(dest.path()).unwrap();
    (got, bytes, warnings.into_inner().unwrap())
}

#[tokio::test]
async fn a_large_object_comes_in_parts_and_a_failed_part_is_retried_alone() {
    let s = server(Mode::Ranges, Some(4_000));
    let (got, bytes, warnings) = fetch(&s).await;
    assert_eq!(got, Ok(Fetched::Found { bytes: 10_000 }));
    assert!(bytes == *s.data, "the parts do not make the object");
    let seen = s.seen.lock().unwrap().clone();
    // Ten parts and one retry of the part at 4000; nothing else asked twice.
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert_eq!(seen[0], "bytes=0-999");
    assert_eq!(
        seen.iter().filter(|r| *r == "bytes=4000-4999").count(),
        2,
        "{seen:?}"
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("Retrying"), "{warnings:?}");
    assert!(!warnings[0].contains("X-Amz-Signature"), "{warnings:?}");
}

#[tokio::test]
async fn below_the_threshold_the_rest_is_one_range() {
    let s = server(Mode::Ranges, None);
    let plan = PartPlan {
        threshold: 20_000,
        ..PLAN
    };
    let (url, task) = serve(s.clone()).await;
    let signed = Presigned {
        url: url.parse().unwrap(),
        headers: Vec::new(),
    };
    let http = client(std::time::Duration::from_secs(30)).unwrap();
    let dest = tempfile::NamedTempFile::new().unwrap();
    let got = download(&http, &signed, dest.as_file(), plan, "S3 bucket", &|_| {}, None).await;
    task.abort();
    assert_eq!(got, Ok(Fetched::Found { bytes: 10_000 }));
    assert!(std::fs::read(dest.path()).unwrap() == *s.data);
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen, vec!["bytes=0-999", "bytes=1000-9999"]);
}

#[tokio::test]
async fn a_store_that_ignores_range_is_read_as_one_stream() {
    let s = server(Mode::IgnoresRange, None);
    let (got, bytes, warnings) = fetch(&s).await;
    assert_eq!(got, Ok(Fetched::Found { bytes: 10_000 }));
    assert!(bytes == *s.data);
    assert_eq!(s.seen.lock().unwrap().len(), 1);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn an_object_replaced_mid_download_is_refused() {
    let s = server(Mode::Replaced, None);
    let (got, _, _) = fetch(&s).await;
    let why = got.unwrap_err();
    assert!(why.contains("changed while it was downloaded"), "{why}");
    assert!(!why.contains("X-Amz-Signature"), "{why}");
}

#[test]
fn huge_archives_get_larger_parts_within_the_part_limit() {
    let plan = PartPlan::default();
    let total = 400 * 1024 * 1024 * 1024u64;
    let ranges = plan.ranges(0, total);
    assert!(ranges.len() <= 10_000, "{}", ranges.len());
    assert_eq!(ranges.last().unwrap().1, total);
    assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
    assert_eq!(plan.ranges(0, 0), Vec::<(u64, u64)>::new());
}

/// The test knob can never ask for parts S3 refuses, nor a threshold below one part; garbage is refused whole.
#[test]
fn the_test_knob_is_raised_to_what_s3_accepts_and_garbage_is_refused() {
    const MIB: u64 = 1024 * 1024;
    let plan = PartPlan::from_knob("8388608,5242880").unwrap();
    assert_eq!((plan.threshold, plan.part_size), (8 * MIB, 5 * MIB));
    let plan = PartPlan::from_knob("1000,1").unwrap();
    assert_eq!((plan.threshold, plan.part_size), (5 * MIB, 5 * MIB));
    let plan = PartPlan::from_knob(" 0 , 0 ").unwrap();
    assert_eq!((plan.threshold, plan.part_size), (5 * MIB, 5 * MIB));
    for bad in ["", "12", "a,b", "1,2,3", "-1,5242880"] {
        let err = PartPlan::from_knob(bad).unwrap_err();
        assert!(err.contains("<threshold>,<part size>"), "{bad:?}: {err}");
    }
}

/// A store that does not tell the object's size (`bytes 0-999/*`) is read as one plain stream.
#[tokio::test]
async fn a_part_without_the_total_size_falls_back_to_one_stream() {
    let s = server(Mode::UnknownTotal, None);
    let (got, bytes, _) = fetch(&s).await;
    assert_eq!(got, Ok(Fetched::Found { bytes: 10_000 }));
    assert!(bytes == *s.data, "the download is not the object");
    assert_eq!(*s.seen.lock().unwrap(), ["bytes=0-999", "-"]);
}

/// A store that answers a later part with the whole object: the parts stop and one plain stream replaces them.
#[tokio::test]
async fn a_whole_object_for_a_later_part_falls_back_to_one_stream() {
    let s = server(Mode::WholeLater, None);
    let (got, bytes, _) = fetch(&s).await;
    assert_eq!(got, Ok(Fetched::Found { bytes: 10_000 }));
    assert!(bytes == *s.data, "the download is not the object");
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("bytes=0-999"));
    assert_eq!(seen.last().map(String::as_str), Some("-"), "{seen:?}");
}

/// Parts of several write buffers each: a buffer is written while the next one fills, and a part whose answer
/// breaks off midway (with a write possibly still running) is fetched again and lands whole at its offset.
#[tokio::test]
async fn parts_of_many_write_buffers_survive_an_answer_that_breaks_off() {
    const MIB: u32 = 1024 * 1024;
    let plan = PartPlan {
        threshold: 4 * u64::from(MIB),
        part_size: 3 * u64::from(MIB),
        in_flight: 2,
    };
    let s = sized_server(10 * MIB + 12_345, Mode::BreaksOnce, Some(3 * u64::from(MIB)));
    let (got, bytes, warnings) = fetch_with(&s, plan).await;
    assert_eq!(
        got,
        Ok(Fetched::Found {
            bytes: u64::from(10 * MIB + 12_345)
        })
    );
    assert!(bytes == *s.data, "the parts do not make the object");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let seen = s.seen.lock().unwrap().clone();
    let second = format!("bytes={}-{}", 3 * MIB, 6 * MIB - 1);
    assert_eq!(seen.iter().filter(|r| **r == second).count(), 2, "{seen:?}");
    assert_eq!(seen.len(), 5, "{seen:?}");
}
