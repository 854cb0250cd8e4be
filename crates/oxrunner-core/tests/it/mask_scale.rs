#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Masker scale: building and using the masker for very long masked values stays linear and bounded.

use std::sync::mpsc;
use std::time::Duration;

use oxrunner_core::trace::{MaskSet, Masker};

/// Liveness guard only (not a performance assertion): far above what a linear build needs on a loaded machine,
/// far below the minutes the quadratic build took.
const GUARD: Duration = Duration::from_secs(120);

/// Runs `f` on its own thread and fails the test if it does not finish within [`GUARD`].
fn within_guard<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(GUARD)
        .unwrap_or_else(|_| panic!("{what} did not finish within {GUARD:?}"))
}

fn mask(set: &MaskSet, chunks: &[&[u8]]) -> Vec<u8> {
    let mut masker = Masker::new(set).unwrap();
    let mut out = Vec::new();
    for c in chunks {
        masker.write(c, &mut out);
    }
    masker.flush(&mut out);
    out
}

#[test]
fn one_mib_single_character_value_is_built_and_masked() {
    let out = within_guard("masking a 1 MiB one-character value", || {
        let value = "a".repeat(1 << 20);
        let set = MaskSet::new(vec![value.clone()], &[]);
        let mut text = b"before ".to_vec();
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b" after\n");
        // Uneven writes so the value straddles many write boundaries.
        let chunks: Vec<&[u8]> = text.chunks(4093).collect();
        mask(&set, &chunks)
    });
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, "before [MASKED] after\n");
}

/// `len` bytes of hex that repeat nowhere (xorshift from `seed`).
fn distinct_hex(seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

#[test]
fn long_value_is_masked_whole_and_in_part_across_any_split() {
    let value = distinct_hex(42, 10_000);
    let set = MaskSet::new(vec![value.clone()], &[]);
    // The value, the value without its first byte (no longer a whole match, still secret), and two copies back
    // to back.
    let text = format!("a={value};\nb={};\nc={value}{value};\n", &value[1..]);
    for split in [7, 255, 256, 511, 4096, text.len()] {
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(split).collect();
        let out = String::from_utf8(mask(&set, &chunks)).unwrap();
        assert!(out.starts_with("a=[MASKED];\nb="), "split {split}: {out}");
        assert!(out.ends_with(";\nc=[MASKED];\n"), "split {split}: {out}");
        // Of the shortened copy at most the part before its first whole piece may show.
        let shown = out.len() - "a=[MASKED];\nb=;\nc=[MASKED];\n".len();
        assert!(
            shown <= 2 * oxrunner_core::trace::CHUNK + "[MASKED]".len(),
            "split {split}: {out}"
        );
        for window in value.as_bytes()[2 * oxrunner_core::trace::CHUNK..]
            .windows(32)
            .step_by(97)
        {
            let window = std::str::from_utf8(window).unwrap();
            assert!(!out.contains(window), "split {split}: {window} leaked in {out}");
        }
    }
}

#[test]
fn ten_thousand_values_are_all_masked() {
    let values: Vec<String> = (0..10_000u64).map(|i| distinct_hex(i + 1, 64)).collect();
    let text: String = values.iter().map(|v| format!("v={v}\n")).collect();
    let out = within_guard("masking 10,000 values", move || {
        let set = MaskSet::new(values, &[]);
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
        mask(&set, &chunks)
    });
    assert_eq!(String::from_utf8(out).unwrap(), "v=[MASKED]\n".repeat(10_000));
}
