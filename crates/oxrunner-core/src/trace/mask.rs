//! Streaming masker: replaces secret values and token bodies with `[MASKED]`, whatever the write boundaries.
//!
//! Bytes that could still turn into a match are held back until the next write (or [`Masker::flush`]), so a
//! secret split over any number of writes is still found. Only the longest pending suffix that is a proper
//! prefix of some pattern is held, so ordinary output is not delayed.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

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
        let mut set = Self::default();
        for value in values {
            if value.is_empty() {
                continue;
            }
            let encoded = query_escape(&value);
            set.add(value.into_bytes(), Kind::Value);
            set.add(encoded.into_bytes(), Kind::Value);
        }
        let prefixes = DEFAULT_TOKEN_PREFIXES
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

    fn add(&mut self, pattern: Vec<u8>, kind: Kind) {
        if let Some(i) = self.patterns.iter().position(|p| *p == pattern) {
            // A value that equals a prefix must be masked fully.
            if kind == Kind::Value {
                self.kinds[i] = Kind::Value;
            }
            return;
        }
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

/// The streaming state for one [`MaskSet`].
pub struct Masker {
    matcher: Option<AhoCorasick>,
    patterns: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
    pending: Vec<u8>,
    /// Inside a token or parameter body that continues into the next write.
    skipping_body: Option<Kind>,
    /// Bytes some pattern starts with: a quick filter for the held-suffix search.
    first_bytes: [bool; 256],
    /// Longest possible held suffix (longest pattern minus one).
    max_hold: usize,
}

impl Masker {
    /// Builds the matcher. Fails only if the automaton would be too large.
    pub fn new(set: &MaskSet) -> Result<Self, aho_corasick::BuildError> {
        let mut first_bytes = [false; 256];
        for p in &set.patterns {
            if let Some(b) = p.first() {
                first_bytes[usize::from(*b)] = true;
            }
        }
        let matcher = if set.patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&set.patterns)?,
            )
        };
        Ok(Self {
            matcher,
            patterns: set.patterns.clone(),
            kinds: set.kinds.clone(),
            pending: Vec::new(),
            skipping_body: None,
            first_bytes,
            max_hold: set
                .patterns
                .iter()
                .map(|p| p.len().saturating_sub(1))
                .max()
                .unwrap_or(0),
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
        self.process(out, true);
        out.append(&mut self.pending);
        self.skipping_body = None;
    }

    fn process(&mut self, out: &mut Vec<u8>, at_end: bool) {
        let Some(matcher) = &self.matcher else {
            out.append(&mut self.pending);
            return;
        };
        let n = self.pending.len();
        let mut pos = 0;
        if let Some(kind) = self.skipping_body {
            while pos < n && kind.continues_body(self.pending[pos]) {
                pos += 1;
            }
            if pos < n || at_end {
                self.skipping_body = None;
            }
        }
        // The held suffix only depends on the end of `pending`; it stays valid until `pos` passes its start.
        let mut hold_start = if at_end { n } else { n - self.held_suffix_len(pos) };
        while pos < n {
            if pos > hold_start {
                hold_start = n - self.held_suffix_len(pos);
            }
            let found = matcher.find(&self.pending[pos..]);
            let Some(m) = found.filter(|m| pos + m.start() < hold_start) else {
                out.extend_from_slice(&self.pending[pos..hold_start]);
                pos = hold_start;
                break;
            };
            let (start, end) = (pos + m.start(), pos + m.end());
            out.extend_from_slice(&self.pending[pos..start]);
            match self.kinds[m.pattern().as_usize()] {
                Kind::Value => {
                    out.extend_from_slice(MASKED);
                    pos = end;
                }
                kind @ (Kind::Prefix | Kind::Param) => {
                    if end == n && !at_end {
                        // Whether a token body follows is not known yet.
                        pos = start;
                        break;
                    }
                    out.extend_from_slice(&self.pending[start..end]);
                    pos = end;
                    if pos < n && kind.continues_body(self.pending[pos]) {
                        out.extend_from_slice(MASKED);
                        while pos < n && kind.continues_body(self.pending[pos]) {
                            pos += 1;
                        }
                        if pos == n && !at_end {
                            self.skipping_body = Some(kind);
                        }
                    }
                }
            }
        }
        self.pending.drain(..pos);
    }

    /// Length of the longest suffix of `pending[from..]` that is a proper prefix of some pattern.
    fn held_suffix_len(&self, from: usize) -> usize {
        let tail = &self.pending[from..];
        let max = self.max_hold.min(tail.len());
        for k in (1..=max).rev() {
            let suffix = &tail[tail.len() - k..];
            if !self.first_bytes[usize::from(suffix[0])] {
                continue;
            }
            if self.patterns.iter().any(|p| p.len() > k && p.starts_with(suffix)) {
                return k;
            }
        }
        0
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
