#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The masker's candidate search (a packed finder of pattern heads, with the hash filter where candidates
//! crowd or there are too many heads): what is masked must not depend on which path found it, nor on where
//! the writes are cut.

use oxrunner_core::trace::{MASKED, MaskSet, Masker};

fn set(values: &[&str]) -> MaskSet {
    MaskSet::new(values.iter().map(|v| (*v).to_owned()), &[])
}

fn stream(set: &MaskSet, chunks: &[&[u8]]) -> Vec<u8> {
    let mut masker = Masker::new(set).unwrap();
    let mut out = Vec::new();
    for c in chunks {
        masker.write(c, &mut out);
    }
    masker.flush(&mut out);
    out
}

/// `text` written as two writes cut at every position, and as three cut at every pair of adjacent positions.
fn assert_every_cut(set: &MaskSet, text: &[u8], want: &[u8]) {
    for cut in 0..=text.len() {
        let got = stream(set, &[&text[..cut], &text[cut..]]);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "cut at {cut}"
        );
        if cut < text.len() {
            let got = stream(set, &[&text[..cut], &text[cut..cut + 1], &text[cut + 1..]]);
            assert_eq!(got, want, "cut at {cut} and {}", cut + 1);
        }
    }
}

#[test]
fn secret_split_across_writes_at_every_position_is_masked() {
    let secrets = [
        "s3cr3t-value-42",
        "glpat-lookalike-value",
        // Regex metacharacters and multi-byte UTF-8 are plain bytes to the masker.
        "a.b*c+(d)?[e]$^|\\{2}",
        "ünïcødé-pässwörd-€",
        "short",
    ];
    for secret in secrets {
        let text = format!("plain text before {secret} and {secret}{secret} after");
        let want = format!("plain text before {m} and {m} after", m = "[MASKED]");
        assert_every_cut(&set(&[secret]), text.as_bytes(), want.as_bytes());
    }
}

#[test]
fn token_prefix_at_the_end_of_a_write_keeps_its_body_masked() {
    let s = set(&[]);
    assert_every_cut(
        &s,
        b"token glpat-abc_D-9.x end, _gitlab_session=f00 and ?private_token=p%2F1&x=1",
        b"token glpat-[MASKED] end, _gitlab_session=[MASKED] and ?private_token=[MASKED]&x=1",
    );
    // A prefix that ends the stream has no body.
    assert_eq!(stream(&s, &[b"tail glpat-"]), b"tail glpat-");
    assert_eq!(stream(&s, &[b"tail glp", b"at-"]), b"tail glpat-");
}

#[test]
fn overlapping_and_adjacent_secrets_are_masked_as_one() {
    let s = set(&["abcdefgh", "efghijkl", "klmnopqr"]);
    assert_every_cut(&s, b"xx abcdefghijklmnopqr yy", b"xx [MASKED] yy");
    assert_every_cut(&s, b"xx abcdefghklmnopqr yy", b"xx [MASKED] yy");
    assert_every_cut(&s, b"xx abcdefgzefghijkl yy", b"xx abcdefgz[MASKED] yy");
    // Cut after `abcde`, the tail `bcde` is held back (it may start the second value): the first value's
    // match starts before the held bytes but its head reaches into them.
    let s = set(&["abcde", "bcdeXYZW"]);
    assert_every_cut(&s, b"xx abcde yy bcdeXYZW", b"xx [MASKED] yy [MASKED]");
}

#[test]
fn secret_after_a_crowd_of_near_candidates_is_masked() {
    // Text full of pattern heads that never complete makes the search switch between the packed finder and
    // the filter; a secret anywhere in or after such a stretch must still be found.
    let secret = "glpaSECRETglpa";
    let s = set(&[secret]);
    for at in [0, 1, 15, 16, 17, 255, 256, 257, 258, 300, 511, 512, 1000, 1999] {
        let mut text = b"glpa".repeat(500);
        text.splice(at..at, secret.bytes());
        let mut want = b"glpa".repeat(500);
        want.splice(at..at, MASKED.iter().copied());
        assert_eq!(stream(&s, &[&text]), want, "secret at {at}");
        let half = text.len() / 2;
        assert_eq!(
            stream(&s, &[&text[..half], &text[half..]]),
            want,
            "secret at {at}, split"
        );
    }
}

#[test]
fn secret_overlapping_a_failed_candidate_is_masked() {
    // The head `aaaa` occurs at every position of the run; only the last five `a`s start the secret, so the
    // search must go on one byte after each candidate that fails, not past it.
    let s = set(&["aaaaaSECRET"]);
    for run in 5..40 {
        let text = format!("{}{} tail", "x".repeat(100), "a".repeat(run) + "SECRET");
        let want = format!("{}{}[MASKED] tail", "x".repeat(100), "a".repeat(run - 5));
        assert_eq!(stream(&s, &[text.as_bytes()]), want.as_bytes(), "run of {run}");
    }
}

/// Small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The union of all occurrences of `values` in `text`, each maximal run as `[MASKED]`.
fn reference(values: &[String], text: &[u8]) -> Vec<u8> {
    let mut covered = vec![false; text.len()];
    for v in values {
        for start in 0..text.len() {
            if text[start..].starts_with(v.as_bytes()) {
                covered[start..start + v.len()].fill(true);
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

/// Random values and text over an alphabet rich in the default prefixes' and parameters' heads (`glpa`,
/// `priv`, `glrt`...) but without `-` and `=`, so no default prefix or parameter completes and the reference
/// holds.
fn random_case(rng: &mut Rng, value_count: usize) -> (Vec<String>, Vec<u8>) {
    const ALPHABET: &[u8] = b"glpatrivx_ PAXme\xc3\xbc";
    let word = |rng: &mut Rng, len: usize| -> Vec<u8> {
        (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect()
    };
    let values: Vec<String> = (0..value_count)
        .map(|_| {
            let len = 3 + rng.below(12);
            String::from_utf8_lossy(&word(rng, len)).into_owned()
        })
        .collect();
    let mut text = Vec::new();
    while text.len() < 3000 {
        if rng.below(4) == 0 {
            text.extend_from_slice(values[rng.below(values.len())].as_bytes());
        } else {
            let len = 1 + rng.below(200);
            let filler = if rng.below(2) == 0 {
                word(rng, len)
            } else {
                b"lorem ipsum dolor sit amet 0123456789 ".repeat(len / 10 + 1)
            };
            text.extend_from_slice(&filler);
        }
    }
    (values, text)
}

#[test]
fn few_and_many_heads_agree_with_the_reference() {
    let mut rng = Rng(0x5EED_CAFE);
    // 2 values stay well under the packed finder's 64 heads; 80 (and their URL-encoded forms) exceed it.
    for value_count in [1, 2, 8, 80] {
        for round in 0..20 {
            let (values, text) = random_case(&mut rng, value_count);
            let mut all = values.clone();
            // The masker also masks each value's URL-encoded form; the reference must know them too.
            all.extend(values.iter().map(|v| {
                v.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        b' ' => "+".to_owned(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            }));
            let want = reference(&all, &text);
            let s = MaskSet::new(values.clone(), &[]);
            let whole = stream(&s, &[&text]);
            assert_eq!(whole, want, "{value_count} values, round {round}, one write");
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < text.len() {
                let end = (at + 1 + rng.below(300)).min(text.len());
                chunks.push(&text[at..end]);
                at = end;
            }
            assert_eq!(
                stream(&s, &chunks),
                want,
                "{value_count} values, round {round}, {} writes",
                chunks.len()
            );
        }
    }
}
