#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Trace pipeline: masking across arbitrary write boundaries, output limit, checksum.

use oxrunner_core::trace::{MaskSet, Masker, TraceWriter, limit_message};

const SECRETS: &[&str] = &["s3cr3t-value", "s3cr3t", "tok€n-ünïcode", "a b&c/d"];

fn mask_set() -> MaskSet {
    MaskSet::new(SECRETS.iter().map(|s| (*s).to_owned()), &["custom_".to_owned()])
}

fn sample() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..40 {
        s.push_str(&format!(
            "line {i}: s3cr3t-value and s3cr3t, s3cr3 (partial), glpat-AbC_12-x9 end, custom_zzz9; tok€n-ünïcode q=a+b%26c%2Fd u?private_token=xyz/1%2F&a=1\n"
        ));
    }
    s.into_bytes()
}

fn expected() -> String {
    let mut s = String::new();
    for i in 0..40 {
        s.push_str(&format!(
            "line {i}: [MASKED] and [MASKED], s3cr3 (partial), glpat-[MASKED] end, custom_[MASKED]; [MASKED] q=[MASKED] u?private_token=[MASKED]&a=1\n"
        ));
    }
    s
}

fn run_chunks(chunks: &[&[u8]]) -> String {
    let mut masker = Masker::new(&mask_set()).unwrap();
    let mut out = Vec::new();
    for c in chunks {
        masker.write(c, &mut out);
    }
    masker.flush(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn masks_whole_input() {
    let data = sample();
    assert_eq!(run_chunks(&[&data]), expected());
}

#[test]
fn masks_one_byte_at_a_time() {
    let data = sample();
    let chunks: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(run_chunks(&chunks), expected());
}

/// A tiny deterministic generator so failures are reproducible from the seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound
    }
}

#[test]
fn masks_randomized_splits() {
    let data = sample();
    for seed in 0..300u64 {
        let mut rng = Lcg(seed);
        let mut chunks = Vec::new();
        let mut rest: &[u8] = &data;
        while !rest.is_empty() {
            let n = 1 + rng.next(rest.len().min(24));
            let (a, b) = rest.split_at(n);
            chunks.push(a);
            rest = b;
        }
        assert_eq!(run_chunks(&chunks), expected(), "seed {seed}");
    }
}

#[test]
fn partial_secret_at_end_is_emitted_unmasked_on_flush() {
    assert_eq!(run_chunks(&[b"abc s3cr", b"3"]), "abc s3cr3");
    assert_eq!(run_chunks(&[b"x glpat-"]), "x glpat-");
    assert_eq!(
        run_chunks(&[b"x glpat-", b"abc", b"def", b" y"]),
        "x glpat-[MASKED] y"
    );
}

#[tokio::test]
async fn writer_masks_counts_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), mask_set(), 0).unwrap();
    let data = sample();
    for c in data.chunks(7) {
        w.clone().write(c);
    }
    w.info("done s3cr3t");
    let (crc, size) = handle.finish().await;
    let bytes = handle.read_all().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(text, format!("{}\x1b[32;1mdone [MASKED]\x1b[0;m\n", expected()));
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(crc, crc32fast::hash(&bytes));
    assert_eq!(*handle.committed.borrow(), size);
}

#[tokio::test]
async fn output_limit_appends_message_once_and_never_splits_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::empty(), 10).unwrap();
    // "abcdefghi" is 9 bytes; "€" is 3 bytes and would straddle the 10-byte limit.
    w.write("abcdefghi€tail".as_bytes());
    w.write(b"more output that is dropped");
    w.error("also dropped");
    assert!(w.is_truncated());
    let (_, size) = handle.finish().await;
    let text = String::from_utf8(handle.read_all().unwrap()).unwrap();
    assert_eq!(text, format!("abcdefghi{}", limit_message(10)));
    assert_eq!(
        limit_message(10),
        "\n\x1b[33;1mJob's log exceeded limit of 10 bytes.\nJob execution will continue but no more output will be collected.\x1b[0;m\n"
    );
    assert_eq!(size, text.len() as u64);
}

#[tokio::test]
async fn line_formats_and_sections() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::empty(), 0).unwrap();
    w.println("plain");
    w.warning("careful");
    w.error("broken");
    w.section_start("step_script", "Executing \"step_script\" stage of the job script");
    w.section_end("step_script");
    w.set_sections(false);
    w.section_start("after_script", "Running after_script");
    w.section_end("after_script");
    handle.finish().await;
    let text = String::from_utf8(handle.read_all().unwrap()).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines[0], "\x1b[0Kplain\x1b[0;m");
    assert_eq!(lines[1], "\x1b[0;33mWARNING: careful\x1b[0;m");
    assert_eq!(lines[2], "\x1b[31;1mERROR: broken\x1b[0;m");
    assert!(lines[3].starts_with("section_start:"));
    assert!(lines[3].ends_with(
        ":step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m"
    ));
    assert!(lines[4].starts_with("section_end:"));
    assert!(lines[4].contains(":step_script\r\x1b[0K"));
    assert!(lines[4].ends_with("\x1b[0K\x1b[36;1mRunning after_script\x1b[0;m"));
    assert!(!text.contains("after_script\r"));
}

#[tokio::test]
async fn timestamps_prefix_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::new(vec!["s3cr3t".into()], &[]), 0).unwrap();
    w.set_timestamps(true);
    w.println("runner");
    w.write(b"abc ");
    w.write(b"s3cr3t\nghi\n");
    w.write(b"open");
    w.section_end("step");
    w.write(b"progress 1%\r");
    w.write(b"progress 2%\n");
    w.write(b"tail");
    handle.finish().await;
    let text = String::from_utf8(handle.read_all().unwrap()).unwrap();
    let ts = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z";
    // As gitlab-runner's timestamper: runner lines are stream 00, the job's output stream 01; a line left open
    // when the other stream speaks (or at the end) is ended; a piece ended by a carriage return is flushed as
    // its own entry and the stream's next one is a `+` continuation.
    let re = regex::Regex::new(&format!(
        "^{ts} 00O \x1b\\[0Krunner\x1b\\[0;m\n{ts} 01O abc \\[MASKED\\]\n{ts} 01O ghi\n{ts} 01O open\n\
         {ts} 00O section_end:\\d+:step\r\x1b\\[0K\n{ts} 01O progress 1%\r\n{ts} 01O\\+progress 2%\n\
         {ts} 01O tail\n$"
    ))
    .unwrap();
    assert!(re.is_match(&text), "{text:?}");
}

#[tokio::test]
async fn invalid_utf8_is_replaced_and_split_characters_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::empty(), 0).unwrap();
    let euro = "€".as_bytes();
    w.write(&[b'a', euro[0]]);
    w.write(&euro[1..]);
    w.write(&[b'b', 0xff, b'c', 0xe2, 0x82]);
    w.println("end");
    handle.finish().await;
    let text = String::from_utf8(handle.read_all().unwrap()).unwrap();
    assert_eq!(text, "a€b\u{FFFD}c\u{FFFD}\x1b[0Kend\x1b[0;m\n");
}

#[tokio::test]
async fn follower_sees_bytes_as_they_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::new(vec!["s3cr3t".into()], &[]), 0).unwrap();
    let mut follower = handle.follow().unwrap();
    w.write(b"first s3cr3t\n");
    assert_eq!(follower.next_chunk().await.unwrap().unwrap(), b"first [MASKED]\n");
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(chunk) = follower.next_chunk().await.unwrap() {
            all.extend_from_slice(&chunk);
        }
        all
    });
    w.write(b"second");
    handle.finish().await;
    assert_eq!(reader.await.unwrap(), b"second");
}

#[tokio::test]
async fn follower_returns_a_large_log_exactly_in_chunks_of_at_most_one_mib() {
    let dir = tempfile::tempdir().unwrap();
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::new(Vec::new(), &[]), 0).unwrap();
    w.plain();
    let mut follower = handle.follow().unwrap();
    // Distinct lines, so a chunk read from the wrong offset or cut short shows.
    let mut want = Vec::new();
    for i in 0..40_000 {
        want.extend_from_slice(format!("line {i:08} of a log longer than three read chunks\n").as_bytes());
    }
    for part in want.chunks(100_000) {
        w.write(part);
    }
    handle.finish().await;
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = follower.next_chunk().await.unwrap() {
        assert!(
            !chunk.is_empty() && chunk.len() <= 1024 * 1024,
            "chunk of {} bytes",
            chunk.len()
        );
        got.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(chunks >= 2, "{chunks} chunks");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the followed bytes differ from the written log");
}
