#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The streaming masker against a plain reference: every byte covered by an occurrence of a masked value is
//! masked, touching or overlapping occurrences as one `[MASKED]`, whatever the write boundaries.

use oxrunner_core::trace::{MASKED, MaskSet, Masker};

/// Small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn stream(set: &MaskSet, text: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut masker = Masker::new(set).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    for &len in splits.iter().cycle() {
        if at >= text.len() {
            break;
        }
        let end = (at + len).min(text.len());
        masker.write(&text[at..end], &mut out);
        at = end;
    }
    masker.flush(&mut out);
    out
}

/// The union of all occurrences of `values` in `text`, each maximal run (touching runs merged) as `[MASKED]`.
fn reference(values: &[Vec<u8>], text: &[u8]) -> Vec<u8> {
    let mut covered = vec![false; text.len()];
    for v in values {
        for start in 0..text.len() {
            if text[start..].starts_with(v) {
                covered[start..start + v.len()].iter_mut().for_each(|c| *c = true);
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if covered[i] {
            out.extend_from_slice(MASKED);
            while i < text.len() && covered[i] {
                i += 1;
            }
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Values over a two-letter alphabet (periodic ones, ones sharing their first 8 bytes, ones shorter than 8
/// bytes) in text that repeats and overlaps them: the masker's output equals the reference for every split.
#[test]
fn random_values_and_text_match_the_reference() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        let count = 1 + rng.below(if round % 10 == 0 { 40 } else { 6 });
        let mut values: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let len = if rng.below(4) == 0 {
                    4 + rng.below(4)
                } else {
                    8 + rng.below(40)
                };
                let period = 1 + rng.below(len);
                let unit: Vec<u8> = (0..period).map(|_| b"ab"[rng.below(2)]).collect();
                unit.iter().copied().cycle().take(len).collect()
            })
            .collect();
        values.sort();
        values.dedup();
        let mut text = Vec::new();
        while text.len() < 600 {
            match rng.below(3) {
                0 => text.extend_from_slice(&values[rng.below(values.len())]),
                1 => {
                    let v = &values[rng.below(values.len())];
                    text.extend_from_slice(&v[..rng.below(v.len())]);
                }
                _ => (0..rng.below(6)).for_each(|_| text.push(b"abx"[rng.below(3)])),
            }
        }
        let mut set = MaskSet::empty();
        for v in &values {
            set.add_value(std::str::from_utf8(v).unwrap());
        }
        let want = reference(&values, &text);
        for splits in [vec![text.len()], vec![1], vec![7, 3, 64], vec![1 + rng.below(50)]] {
            let got = stream(&set, &text, &splits);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "round {round}, values {:?}, text {:?}, splits {splits:?}",
                values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&text)
            );
        }
    }
}

/// A masked value that a longer token prefix starts with, found where an earlier value's mask already began:
/// the value's bytes past that mask are masked too (the prefix match hid them, showing the value's end).
#[test]
fn value_hidden_by_a_longer_prefix_at_the_same_position_is_masked() {
    let set = MaskSet::new(
        vec!["key:tok_li".to_owned(), "tok_live".to_owned()],
        &["tok_live_".to_owned()],
    );
    for split in [1, 3, 5, 100] {
        let got = stream(&set, b"key:tok_live_abc\n", &[split]);
        assert_eq!(String::from_utf8_lossy(&got), "[MASKED]_abc\n", "split {split}");
    }
}

/// More values sharing their first 8 bytes than one hash bucket takes: all are still masked.
#[test]
fn many_values_with_one_common_start_are_all_masked() {
    let values: Vec<String> = (0..40).map(|i| format!("AKIAAAAA{i:04}xyz")).collect();
    let text: String = values.iter().rev().map(|v| format!("k={v};")).collect();
    let set = MaskSet::new(values, &[]);
    for split in [1, 13, 4096] {
        let got = stream(&set, text.as_bytes(), &[split]);
        assert_eq!(
            String::from_utf8_lossy(&got),
            "k=[MASKED];".repeat(40),
            "split {split}"
        );
    }
}

/// A token prefix printed twice in a row is one prefix and a token body, as for any other body.
#[test]
fn repeated_token_prefix_keeps_its_body_masked() {
    let set = MaskSet::new(Vec::new(), &[]);
    for split in [1, 5, 100] {
        let got = stream(&set, b"x glpat-glpat-abc y\n", &[split]);
        assert_eq!(
            String::from_utf8_lossy(&got),
            "x glpat-[MASKED] y\n",
            "split {split}"
        );
    }
}
