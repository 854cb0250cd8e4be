use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxrunner_api::RunnerInfo;
use oxrunner_api::trace::{FinalState, JobControl, TraceOptions, TraceSender, TraceSource};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::common::{Req, Server, resp, start};

/// Server-side view of one job's trace, with fault injection.
#[derive(Default)]
struct Gitlab {
    trace: Vec<u8>,
    /// (start, len, status) of every PATCH.
    patches: Vec<(u64, usize, u16)>,
    /// PATCH numbers whose data is stored but whose answer is a 502 (lost acknowledgement).
    lose_ack: Vec<usize>,
    /// PATCH numbers where the server "loses" its last 10 bytes and answers 416.
    truncate: Vec<usize>,
    /// Status codes for successive final updates (200 once empty).
    final_answers: VecDeque<u16>,
    /// Job-Status to send on PATCH n.
    job_status: Vec<(usize, &'static str, u16)>,
    puts: Vec<serde_json::Value>,
    /// A PATCH at offset 0 restarts the trace (what GitLab does after a 412).
    restart_on_zero: bool,
    /// Bytes thrown away by `truncate`.
    dropped: u64,
}

fn content_range(r: &Req) -> (u64, u64) {
    let (a, b) = r.header("Content-Range").unwrap().split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn handle(state: &Mutex<Gitlab>, r: &Req) -> axum::response::Response {
    let mut g = state.lock().unwrap();
    match r.method.as_str() {
        "PATCH" => {
            let n = g.patches.len();
            let (start, end) = content_range(r);
            assert_eq!(end - start + 1, r.body.len() as u64, "Content-Range is inclusive");
            if let Some((_, status, code)) = g.job_status.iter().find(|(i, _, _)| *i == n).copied() {
                g.patches.push((start, r.body.len(), code));
                return resp(code, &[("Job-Status", status)], "");
            }
            if g.restart_on_zero && start == 0 {
                g.trace.clear();
            }
            if g.truncate.contains(&n) {
                let keep = g.trace.len().saturating_sub(10);
                g.dropped += (g.trace.len() - keep) as u64;
                g.trace.truncate(keep);
                g.patches.push((start, r.body.len(), 416));
                return resp(416, &[("Range", &format!("0-{keep}"))], "");
            }
            if start != g.trace.len() as u64 {
                let len = g.trace.len();
                g.patches.push((start, r.body.len(), 416));
                return resp(416, &[("Range", &format!("0-{len}"))], "");
            }
            g.trace.extend_from_slice(&r.body);
            let len = g.trace.len();
            if g.lose_ack.contains(&n) {
                g.patches.push((start, r.body.len(), 502));
                return resp(502, &[], "");
            }
            g.patches.push((start, r.body.len(), 202));
            resp(
                202,
                &[("Range", &format!("0-{len}")), ("Job-Status", "running")],
                "",
            )
        }
        "PUT" => {
            let body = r.json();
            g.puts.push(body.clone());
            if body["state"] == "running" {
                return resp(200, &[("Job-Status", "running")], "");
            }
            let code = g.final_answers.pop_front().unwrap_or(200);
            resp(
                code,
                &[("Job-Status", "running"), ("X-GitLab-Trace-Update-Interval", "1")],
                "",
            )
        }
        _ => resp(404, &[], ""),
    }
}

async fn gitlab(g: Gitlab) -> (Server, Arc<Mutex<Gitlab>>) {
    let state = Arc::new(Mutex::new(g));
    let s2 = state.clone();
    (start(move |r: &Req, _| handle(&s2, r)).await, state)
}

fn fast() -> TraceOptions {
    TraceOptions {
        update_interval: Duration::from_millis(100),
        force_send_interval: Duration::from_secs(3600),
        dynamic_force_send: false,
        final_update_tries: 4,
        final_backoff_min: Duration::from_millis(10),
        final_backoff_max: Duration::from_millis(50),
    }
}

struct Spool {
    file: tokio::fs::File,
    tx: watch::Sender<u64>,
    all: Vec<u8>,
}

impl Spool {
    async fn new(path: &Path) -> (Spool, TraceSource) {
        let file = tokio::fs::File::create(path).await.unwrap();
        let (tx, rx) = watch::channel(0);
        (
            Spool {
                file,
                tx,
                all: Vec::new(),
            },
            TraceSource {
                path: path.to_path_buf(),
                committed: rx,
            },
        )
    }
    async fn write(&mut self, data: &[u8]) {
        self.file.write_all(data).await.unwrap();
        self.file.flush().await.unwrap();
        self.all.extend_from_slice(data);
        self.tx.send_replace(self.all.len() as u64);
    }
    fn crc(&self) -> u32 {
        crc32fast::hash(&self.all)
    }
}

async fn wait_for_patches(state: &Mutex<Gitlab>, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.lock().unwrap().patches.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} patches were sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i + seed as usize) % 26) as u8)
        .collect()
}

fn success() -> FinalState {
    FinalState {
        state: "success".into(),
        failure_reason: None,
        exit_code: None,
        runtime_environment_key: None,
    }
}

#[tokio::test]
async fn streams_every_byte_once_in_order_despite_416_and_lost_acks() {
    let (srv, state) = gitlab(Gitlab {
        lose_ack: vec![1],
        truncate: vec![4],
        final_answers: VecDeque::from([202, 200]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let info = RunnerInfo::oxrunner("shell", "bash");
    let (sender, _ctl) =
        TraceSender::start_with_options(srv.client(), 7, "jt".into(), src, false, info, fast());

    for i in 0..12u8 {
        // A mix of small lines and large bursts (more than 1 MiB pending triggers an early send).
        let len = if i % 4 == 3 {
            700_000
        } else {
            3_000 + i as usize * 10
        };
        spool.write(&pattern(len, i)).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let total = spool.all.len() as u64;
    tokio::time::timeout(
        Duration::from_secs(30),
        sender.finish(success(), spool.crc(), total),
    )
    .await
    .unwrap()
    .unwrap();

    let g = state.lock().unwrap();
    assert_eq!(g.trace.len(), spool.all.len());
    assert!(g.trace == spool.all, "server trace differs from the spool");
    assert!(
        g.patches
            .iter()
            .all(|(_, len, _)| *len as u64 <= 1024 * 1024 && *len > 0)
    );
    assert!(g.patches.iter().any(|(_, _, s)| *s == 416), "{:?}", g.patches);
    // The server stores a patch only at its exact length, so the stored bytes add up to the trace
    // plus what it deliberately dropped: nothing was accepted twice.
    let stored: u64 = g
        .patches
        .iter()
        .filter(|p| p.2 == 202 || p.2 == 502)
        .map(|p| p.1 as u64)
        .sum();
    assert_eq!(stored, total + g.dropped, "{:?}", g.patches);
    let finals: Vec<_> = g.puts.iter().filter(|p| p["state"] == "success").collect();
    assert_eq!(finals.len(), 2, "202 is followed by another final update");
    let f = finals[1];
    let want = format!("crc32:{:08x}", spool.crc());
    assert_eq!(f["output"]["checksum"], want.as_str());
    assert_eq!(f["checksum"], want.as_str());
    assert_eq!(f["output"]["bytesize"], total);
    assert_eq!(f["token"], "jt");
    assert!(f.get("exit_code").is_none());
    assert!(f.get("runtime_environment_key").is_none());
}

#[tokio::test]
async fn final_412_resends_the_whole_trace() {
    let (srv, state) = gitlab(Gitlab {
        final_answers: VecDeque::from([412, 200]),
        restart_on_zero: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        8,
        "jt".into(),
        src,
        true,
        RunnerInfo::default(),
        fast(),
    );
    spool.write(b"line one\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    spool.write(&pattern(50_000, 3)).await;
    let failed = FinalState {
        state: "failed".into(),
        failure_reason: Some("script_failure".into()),
        exit_code: Some(2),
        runtime_environment_key: Some("5/s_1/build-container-id=abc".into()),
    };
    let total = spool.all.len() as u64;
    tokio::time::timeout(Duration::from_secs(20), sender.finish(failed, spool.crc(), total))
        .await
        .unwrap()
        .unwrap();
    let g = state.lock().unwrap();
    assert!(g.trace == spool.all);
    let restarts = g
        .patches
        .iter()
        .filter(|(start, _, status)| *start == 0 && *status == 202)
        .count();
    assert_eq!(restarts, 2, "{:?}", g.patches);
    let last = g.puts.last().unwrap();
    assert_eq!(last["state"], "failed");
    assert_eq!(last["failure_reason"], "script_failure");
    assert_eq!(last["exit_code"], 2);
    assert_eq!(last["runtime_environment_key"], "5/s_1/build-container-id=abc");
}

#[tokio::test]
async fn job_status_becomes_job_control() {
    let (srv, state) = gitlab(Gitlab {
        job_status: vec![(1, "canceling", 202), (2, "canceled", 403)],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let (sender, mut ctl) = TraceSender::start_with_options(
        srv.client(),
        9,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        fast(),
    );
    spool.write(b"first\n").await;
    let wait = Duration::from_secs(10);
    // Patch 0 is accepted; write more only once it happened so patches 1 and 2 exist.
    wait_for_patches(&state, 1).await;
    spool.write(b"second\n").await;
    assert_eq!(
        tokio::time::timeout(wait, ctl.recv()).await.unwrap(),
        Some(JobControl::CancelRequested)
    );
    spool.write(b"third\n").await;
    assert_eq!(
        tokio::time::timeout(wait, ctl.recv()).await.unwrap(),
        Some(JobControl::Abort)
    );
    let total = spool.all.len() as u64;
    sender.finish(success(), spool.crc(), total).await.unwrap();
    let g = state.lock().unwrap();
    assert!(g.puts.is_empty(), "no final update after an abort: {:?}", g.puts);
}

#[tokio::test]
async fn quiet_jobs_get_keep_alive_updates() {
    let (srv, state) = gitlab(Gitlab::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let opts = TraceOptions {
        force_send_interval: Duration::from_millis(300),
        ..fast()
    };
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        10,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        opts,
    );
    spool.write(b"hello keep-alive\n").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = state.lock().unwrap().puts.iter().any(|p| p["state"] == "running");
        if found {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keep-alive update was sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = spool.all.len() as u64;
    sender.finish(success(), spool.crc(), total).await.unwrap();
    let g = state.lock().unwrap();
    let ka = g.puts.iter().find(|p| p["state"] == "running").unwrap();
    assert_eq!(ka["output"]["bytesize"], 17);
    assert_eq!(
        ka["output"]["checksum"],
        format!("crc32:{:08x}", crc32fast::hash(b"hello keep-alive\n")).as_str()
    );
    assert_eq!(g.puts.last().unwrap()["state"], "success");
}

#[tokio::test]
async fn a_full_mebibyte_is_sent_without_waiting_for_the_interval() {
    let (srv, state) = gitlab(Gitlab::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let opts = TraceOptions {
        update_interval: Duration::from_secs(3600),
        ..fast()
    };
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        11,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        opts,
    );
    spool.write(&pattern(1_500_000, 1)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.lock().unwrap().trace.len() < 1024 * 1024 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no early send with 1 MiB pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = spool.all.len() as u64;
    sender.finish(success(), spool.crc(), total).await.unwrap();
    assert!(state.lock().unwrap().trace == spool.all);
}

#[tokio::test]
async fn dropping_the_sender_stops_it() {
    let (srv, state) = gitlab(Gitlab::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        12,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        fast(),
    );
    drop(sender);
    spool.write(b"written after the job side gave up\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(state.lock().unwrap().patches.is_empty());
}

/// The daemon spawns these futures; they must stay `Send`.
#[allow(dead_code)]
fn futures_are_send(c: &oxrunner_api::Client, r: &oxrunner_api::JobRequest, s: TraceSender, p: &Path) {
    fn is_send<T: Send>(_: T) {}
    is_send(c.request_job(r));
    is_send(c.upload_artifacts(1, "t", p, &oxrunner_api::ArtifactUpload::default()));
    is_send(c.download_artifacts(1, "t", p, true));
    is_send(s.finish(success(), 0, 0));
}

#[tokio::test]
async fn final_update_is_retried_after_a_refusal() {
    let (srv, state) = gitlab(Gitlab {
        final_answers: VecDeque::from([400, 400, 200]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        13,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        fast(),
    );
    spool.write(b"done\n").await;
    let total = spool.all.len() as u64;
    sender.finish(success(), spool.crc(), total).await.unwrap();
    let g = state.lock().unwrap();
    assert_eq!(g.puts.iter().filter(|p| p["state"] == "success").count(), 3);
    assert!(g.trace == spool.all);
}

#[tokio::test]
async fn final_update_gives_up_after_the_configured_tries() {
    let (srv, state) = gitlab(Gitlab {
        final_answers: VecDeque::from([400; 10]),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        14,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        fast(),
    );
    spool.write(b"x").await;
    let err = sender.finish(success(), spool.crc(), 1).await.unwrap_err();
    assert!(err.to_string().contains("final job update"), "{err}");
    assert_eq!(state.lock().unwrap().puts.len(), 4, "fast() allows 4 tries");
}

#[tokio::test]
async fn trace_404_stops_patches_but_not_the_final_update() {
    let (srv, state) = gitlab(Gitlab {
        job_status: vec![(0, "running", 404)],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, src) = Spool::new(&dir.path().join("trace.log")).await;
    let (sender, _ctl) = TraceSender::start_with_options(
        srv.client(),
        15,
        "jt".into(),
        src,
        false,
        RunnerInfo::default(),
        fast(),
    );
    spool.write(b"first\n").await;
    wait_for_patches(&state, 1).await;
    spool.write(b"second\n").await;
    let total = spool.all.len() as u64;
    sender.finish(success(), spool.crc(), total).await.unwrap();
    let g = state.lock().unwrap();
    assert_eq!(g.patches.len(), 1, "{:?}", g.patches);
    assert_eq!(g.puts.last().unwrap()["state"], "success");
}

/// `FF_USE_DYNAMIC_TRACE_FORCE_SEND_INTERVAL`: four update intervals, never below 30 s nor above 30 min.
#[test]
fn dynamic_force_send_interval_follows_the_update_interval_within_bounds() {
    use oxrunner_api::trace::dynamic_force_send;
    let s = Duration::from_secs;
    assert_eq!(dynamic_force_send(s(1)), s(30));
    assert_eq!(dynamic_force_send(s(3)), s(30));
    assert_eq!(dynamic_force_send(s(10)), s(40));
    assert_eq!(dynamic_force_send(s(60)), s(240));
    assert_eq!(dynamic_force_send(s(15 * 60)), s(30 * 60));
}
