//! Streaming masker: replaces secret values and token bodies with `[MASKED]`, whatever the write boundaries.
//!
//! Bytes that could still turn into a match are held back until the next write (or [`Masker::flush`]), so a
//! secret split over any number of writes is still found. Only the longest pending suffix that is a proper
//! prefix of some pattern is held, so ordinary output is not delayed.
//!
//! Cost is linear in the total length of the masked values: long values are cut into pieces of
//! [`CHUNK`]..2×[`CHUNK`] bytes (so the held-back tail and the work per write stay bounded whatever a value's
//! length), patterns are found through a hash of their first bytes ([`matcher`]: memory of a few bytes per
//! pattern plus the pattern bytes, work per log byte bounded), and the total is capped at [`MAX_MASK_BYTES`].
//! Above the cap the masker refuses to build: the caller then shows no job output at all rather than unmasked
//! output.
//!
//! Every byte covered by any occurrence of a masked value is masked (the union of all occurrences, overlapping
//! or adjacent ones merged into one `[MASKED]`), so the pieces of a long value cover it however they line up.

mod matcher;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use matcher::{Matcher, PassState};

/// Replacement text, as in gitlab-runner.
pub const MASKED: &[u8] = b"[MASKED]";

/// Token prefixes gitlab-runner masks by default (`glpat-` always, the others with `FF_MASK_ALL_DEFAULT_TOKENS`,
/// which defaults to true).
pub const DEFAULT_TOKEN_PREFIXES: &[&str] = &[
    "glpat-",
    "gloas-",
    "gldt-",
    "glrt-",
    "glcbt-",
    "glrtr-",
    "glptt-",
    "glft-",
    "glimt-",
    "glagent-",
    "glsoat-",
    "glffct-",
    "_gitlab_session=",
    "gltok-",
];

/// URL query parameters whose values gitlab-runner's URL sanitizer masks (`private_token=...`).
pub const SENSITIVE_URL_PARAMS: &[&str] = &[
    "private_token",
    "authenticity_token",
    "rss_token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The whole match is replaced.
    Value,
    /// The match is kept and the token body after it is replaced.
    Prefix,
    /// A `name=` URL parameter: the match is kept and the value up to the next separator is replaced.
    Param,
}

impl Kind {
    /// Whether `b` continues the masked body after a prefix or parameter name.
    fn continues_body(self, b: u8) -> bool {
        match self {
            Self::Value => false,
            Self::Prefix => b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'),
            Self::Param => {
                !(b.is_ascii_whitespace() || matches!(b, b'&' | b'"' | b'\'' | b'<' | b'>' | b'#'))
            }
        }
    }
}

/// The set of things to mask in one job's trace.
#[derive(Clone, Default)]
pub struct MaskSet {
    patterns: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
}

impl std::fmt::Debug for MaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskSet")
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl MaskSet {
    /// Masks each non-empty value (and its URL-encoded form) and the token bodies after each prefix
    /// (the default prefixes plus `token_prefixes`).
    pub fn new(values: impl IntoIterator<Item = String>, token_prefixes: &[String]) -> Self {
        Self::with_default_prefixes(values, token_prefixes, true)
    }

    /// [`new`](Self::new), with `FF_MASK_ALL_DEFAULT_TOKENS` as `all_defaults`: when false, only `glpat-` of
    /// the default token prefixes is masked, as in gitlab-runner.
    pub fn with_default_prefixes(
        values: impl IntoIterator<Item = String>,
        token_prefixes: &[String],
        all_defaults: bool,
    ) -> Self {
        let mut set = Self::default();
        for value in values {
            if value.is_empty() {
                continue;
            }
            let encoded = query_escape(&value);
            set.add(value.into_bytes(), Kind::Value);
            set.add(encoded.into_bytes(), Kind::Value);
        }
        let defaults = if all_defaults {
            DEFAULT_TOKEN_PREFIXES
        } else {
            &DEFAULT_TOKEN_PREFIXES[..1]
        };
        let prefixes = defaults
            .iter()
            .map(|p| (*p).to_owned())
            .chain(token_prefixes.iter().cloned());
        for prefix in prefixes {
            if !prefix.is_empty() {
                set.add(prefix.into_bytes(), Kind::Prefix);
            }
        }
        for param in SENSITIVE_URL_PARAMS {
            // Query parameter names are matched as commonly written: lower case and AWS's capitalisation.
            let capitalised = param
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-");
            for name in [param.to_string(), capitalised] {
                set.add(format!("{name}=").into_bytes(), Kind::Param);
            }
        }
        set
    }

    /// A set that masks nothing (not even token prefixes).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds one more masked value (e.g. discovered at run time).
    pub fn add_value(&mut self, value: &str) {
        if !value.is_empty() {
            self.add(value.as_bytes().to_vec(), Kind::Value);
            self.add(query_escape(value).into_bytes(), Kind::Value);
        }
    }

    /// Duplicates are dropped when the masker is built (in linear time), not here: a search per added
    /// pattern made thousands of masked values quadratic.
    fn add(&mut self, pattern: Vec<u8>, kind: Kind) {
        self.patterns.push(pattern);
        self.kinds.push(kind);
    }
}

/// Percent-encoding like Go's `url.QueryEscape` (space becomes `+`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Values of at least 2×`CHUNK` bytes are matched as pieces of `CHUNK`..2×`CHUNK` bytes.
pub const CHUNK: usize = 256;

/// Largest total of (deduplicated) pattern bytes the masker accepts: the matcher needs 5 bytes per pattern
/// byte plus ~40 per pattern (8-byte values: ~10 per byte), so a few tens of MiB per job at most.
pub const MAX_MASK_BYTES: usize = 4 * 1024 * 1024;

/// Why a [`Masker`] could not be built.
#[derive(Debug)]
pub enum MaskError {
    /// The masked values are larger than [`MAX_MASK_BYTES`].
    TooLarge { bytes: usize, limit: usize },
    /// The automaton could not be built.
    Build(aho_corasick::BuildError),
}

impl std::fmt::Display for MaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { bytes, limit } => write!(
                f,
                "the job's masked variables add up to {bytes} bytes (with their URL-encoded forms), more than the \
                 {limit} bytes the log masker accepts; no job output can be shown without risking a leak"
            ),
            Self::Build(err) => write!(f, "cannot build the log masker: {err}"),
        }
    }
}

impl std::error::Error for MaskError {}

/// The pieces a pattern is matched as: short patterns whole, long values cut into near-equal pieces of
/// `CHUNK`..2×`CHUNK` bytes (a short last piece would mask unrelated text).
fn pieces(pattern: &[u8], kind: Kind) -> impl Iterator<Item = &[u8]> {
    let count = if kind == Kind::Value && pattern.len() >= 2 * CHUNK {
        pattern.len() / CHUNK
    } else {
        1
    };
    let (base, extra) = (pattern.len() / count, pattern.len() % count);
    let mut start = 0;
    (0..count).map(move |i| {
        let len = base + usize::from(i < extra);
        let piece = &pattern[start..start + len];
        start += len;
        piece
    })
}

/// The streaming state for one [`MaskSet`].
pub struct Masker {
    matcher: Option<Matcher>,
    /// Pattern indices in byte order: finds the patterns a held suffix could start.
    sorted: Vec<usize>,
    /// Bytes not yet emitted, preceded by `done` bytes that were (as part of a mask) but are kept so that a
    /// match overlapping them is still found.
    pending: Vec<u8>,
    done: usize,
    /// End (in `pending`) of the last masked range: a value match touching it extends it.
    mask_end: Option<usize>,
    /// Inside a token or parameter body that continues into the next write.
    skipping_body: Option<Kind>,
    /// Bytes some pattern starts with: a quick filter for the held-suffix search.
    first_bytes: [bool; 256],
    /// Longest possible held suffix (longest pattern minus one).
    max_hold: usize,
}

impl Masker {
    /// Builds the matcher in time and memory linear in the pattern bytes; fails if they exceed
    /// [`MAX_MASK_BYTES`] or the automaton cannot be built.
    pub fn new(set: &MaskSet) -> Result<Self, MaskError> {
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let mut unique: Vec<&[u8]> = Vec::new();
        let mut kinds = Vec::new();
        let mut bytes = 0usize;
        for (pattern, kind) in set.patterns.iter().zip(&set.kinds) {
            for piece in pieces(pattern, *kind) {
                match index.entry(piece) {
                    // A value that equals a prefix must be masked fully.
                    Entry::Occupied(e) if *kind == Kind::Value => kinds[*e.get()] = Kind::Value,
                    Entry::Occupied(_) => {}
                    Entry::Vacant(e) => {
                        e.insert(unique.len());
                        unique.push(piece);
                        kinds.push(*kind);
                        bytes += piece.len();
                    }
                }
            }
            if bytes > MAX_MASK_BYTES {
                // Stop early: the rest would only make the refusal slower.
                return Err(MaskError::TooLarge {
                    bytes: set.patterns.iter().map(Vec::len).sum(),
                    limit: MAX_MASK_BYTES,
                });
            }
        }
        drop(index);
        let mut first_bytes = [false; 256];
        for p in &unique {
            if let Some(b) = p.first() {
                first_bytes[usize::from(*b)] = true;
            }
        }
        let max_hold = unique
            .iter()
            .map(|p| p.len().saturating_sub(1))
            .max()
            .unwrap_or(0);
        let mut sorted: Vec<usize> = (0..unique.len()).collect();
        sorted.sort_unstable_by(|a, b| unique[*a].cmp(unique[*b]));
        let matcher = if unique.is_empty() {
            None
        } else {
            Some(Matcher::new(&unique, kinds)?)
        };
        Ok(Self {
            matcher,
            sorted,
            pending: Vec::new(),
            done: 0,
            mask_end: None,
            skipping_body: None,
            first_bytes,
            max_hold,
        })
    }

    /// Masks `input`, appending what is safe to emit to `out`.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.matcher.is_none() {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        self.process(out, false);
    }

    /// Emits everything still held back (end of stream).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if self.matcher.is_some() {
            self.process(out, true);
        }
        // `process` at the end emits everything; what is left are bytes already emitted as a mask.
        self.pending.clear();
        self.done = 0;
        self.mask_end = None;
        self.skipping_body = None;
    }

    fn process(&mut self, out: &mut Vec<u8>, at_end: bool) {
        let n = self.pending.len();
        let mut emitted = self.done;
        if let Some(kind) = self.skipping_body {
            while emitted < n && kind.continues_body(self.pending[emitted]) {
                emitted += 1;
            }
            self.mask_end = Some(emitted);
            if emitted < n || at_end {
                self.skipping_body = None;
            }
        }
        let hold_start = if at_end { n } else { n - self.held_suffix_len() };
        let mut keep_from = hold_start;
        // Matches starting in the kept (already masked) bytes are searched again: they were held back last
        // time because more bytes could still extend them.
        let mut search = 0;
        let mut state = PassState::default();
        while search < hold_start {
            let Some(matcher) = &self.matcher else { break };
            let Some(m) = matcher.find(&self.pending, search, hold_start, emitted, &mut state) else {
                break;
            };
            let (start, end) = (m.start, m.end);
            match matcher.kind(m.id) {
                Kind::Value => {
                    if end > emitted {
                        if start > emitted {
                            out.extend_from_slice(&self.pending[emitted..start]);
                            out.extend_from_slice(MASKED);
                        } else if self.mask_end != Some(emitted) {
                            // Overlaps text emitted in clear (a token prefix): mask the rest of it.
                            out.extend_from_slice(MASKED);
                        }
                        emitted = end;
                        self.mask_end = Some(end);
                    }
                    // Overlapping occurrences must be masked too (the pieces of a long value overlap that way).
                    search = start + 1;
                }
                Kind::Prefix | Kind::Param if start < emitted => search = start + 1,
                kind @ (Kind::Prefix | Kind::Param) => {
                    out.extend_from_slice(&self.pending[emitted..start]);
                    emitted = start;
                    if end == n && !at_end {
                        // Whether a token body follows is not known yet.
                        keep_from = start;
                        break;
                    }
                    emitted = self.emit_prefix(kind, start, end, at_end, out);
                    search = emitted;
                }
            }
        }
        if emitted < keep_from {
            out.extend_from_slice(&self.pending[emitted..keep_from]);
            emitted = keep_from;
        }
        self.pending.drain(..keep_from);
        self.done = emitted - keep_from;
        self.mask_end = self.mask_end.and_then(|e| e.checked_sub(keep_from));
    }

    /// Emits a token prefix or parameter name at `start..end` and masks the body after it; returns the end of
    /// what was consumed.
    fn emit_prefix(
        &mut self,
        kind: Kind,
        start: usize,
        end: usize,
        at_end: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        let n = self.pending.len();
        out.extend_from_slice(&self.pending[start..end]);
        let mut pos = end;
        if pos < n && kind.continues_body(self.pending[pos]) {
            out.extend_from_slice(MASKED);
            while pos < n && kind.continues_body(self.pending[pos]) {
                pos += 1;
            }
            self.mask_end = Some(pos);
            if pos == n && !at_end {
                self.skipping_body = Some(kind);
            }
        }
        pos
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of some pattern: at most
    /// `max_hold` binary searches over the sorted patterns.
    fn held_suffix_len(&self) -> usize {
        let n = self.pending.len();
        let from = n - self.max_hold.min(n);
        let Some(matcher) = &self.matcher else {
            return 0;
        };
        (from..n)
            .find(|&i| {
                let suffix = &self.pending[i..];
                self.first_bytes[usize::from(suffix[0])]
                    && matcher.may_start(suffix)
                    && self.starts_a_pattern(suffix)
            })
            .map_or(0, |i| n - i)
    }

    /// Whether `suffix` is a proper prefix of some pattern.
    fn starts_a_pattern(&self, suffix: &[u8]) -> bool {
        // Patterns starting with `suffix` sort right after it (after `suffix` itself, if it is a pattern).
        let Some(matcher) = &self.matcher else {
            return false;
        };
        let at = self.sorted.partition_point(|&i| matcher.pattern(i) < suffix);
        self.sorted[at..].iter().take(2).any(|&i| {
            let pattern = matcher.pattern(i);
            pattern.len() > suffix.len() && pattern.starts_with(suffix)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_all(set: &MaskSet, chunks: &[&[u8]]) -> String {
        let mut m = Masker::new(set).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            m.write(c, &mut out);
        }
        m.flush(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masks_values_and_prefixes() {
        let set = MaskSet::new(vec!["s3cr3t".to_owned(), "s3cr3tlong".to_owned()], &[]);
        assert_eq!(
            mask_all(&set, &[b"a s3cr3tlong b s3cr3t c glpat-abc_D-9 d"]),
            "a [MASKED] b [MASKED] c glpat-[MASKED] d"
        );
        assert_eq!(
            mask_all(&set, &[b"a s3cr", b"3tlo", b"ng glp", b"at-ab", b"c end"]),
            "a [MASKED] glpat-[MASKED] end"
        );
        assert_eq!(mask_all(&set, &[b"glpat-"]), "glpat-");
        assert_eq!(mask_all(&set, &[b"s3cr3tlo"]), "[MASKED]lo");
    }

    #[test]
    fn url_params() {
        let set = MaskSet::new(Vec::new(), &[]);
        assert_eq!(
            mask_all(
                &set,
                &[b"GET /x?private_token=abc%2F1&X-Amz-Credential=AK/2024/s3 ok"]
            ),
            "GET /x?private_token=[MASKED]&X-Amz-Credential=[MASKED] ok"
        );
        assert_eq!(
            mask_all(&set, &[b"?x-amz-signa", b"ture=dead", b"beef\n"]),
            "?x-amz-signature=[MASKED]\n"
        );
    }

    #[test]
    fn url_encoded_form() {
        let set = MaskSet::new(vec!["a b/c".to_owned()], &[]);
        assert_eq!(mask_all(&set, &[b"x=a+b%2Fc;"]), "x=[MASKED];");
    }
}
