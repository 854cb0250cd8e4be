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
