//! The masker's pattern matcher: finds, from a position on, the leftmost occurrence of any masked pattern that
//! can still change the output, the longest one at that position.
//!
//! Two tiers. Patterns of at least [`SHORT_KEY`] bytes are indexed by their first [`LONG_KEY`] (or, if shorter,
//! [`SHORT_KEY`]) bytes: at every second log position the scan tests one bit of a filter addressed by a
//! multiplicative hash of the next [`SHORT_KEY`] bytes (each pattern enters those at its offsets 0 and 1), and
//! only on a hit looks the keys of the positions nearby up in an open-addressing table and compares the few
//! patterns that start with them. This keeps the scan at a few instructions per byte of log and the build
//! at a sort of the keys, with memory of a few bytes per pattern. Patterns shorter than [`MIN_HASHED`] bytes, and
//! the patterns of any key shared by more than [`MAX_BUCKET`] patterns, go to an aho-corasick automaton.
//!
//! When the hashed patterns have at most 64 distinct heads (the usual job: the job token, a few masked
//! variables, the default token prefixes and URL parameters), a packed SIMD finder (aho-corasick's Teddy) jumps
//! from one occurrence of a head to the next instead, and the filter scan is used only where heads crowd: log
//! text without a candidate then costs a fraction of an instruction per byte instead of several.
//!
//! Work per log byte is bounded whatever the log holds: half a filter probe, and on a hit two table probes and
//! at most [`MAX_BUCKET`] candidates per tier. Candidates that could not extend the already masked bytes are
//! not compared. The others are compared as in Knuth-Morris-Pratt: after a compare, the pattern's failure
//! function tells the next position it can start at and how much of it is known to match there, so text that
//! nearly repeats a pattern costs a few bytes of compare per candidate, not the pattern's length; a pattern
//! repeated back to back (a secret of one repeated character, printed) is taken as one match after one pass
//! over the repeats. The automaton tier scans each byte about once plus, per match, at most the longest
//! pattern's length ahead. Measured worst case (`worst` in `benches/mask.rs`): tens of MiB/s.

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind, Span as HaySpan};

use super::{Kind, MaskError};

/// Bytes of the key of a long pattern.
const LONG_KEY: usize = 8;
/// Bytes of the key of a short pattern; shorter patterns go to the automaton.
const SHORT_KEY: usize = 4;
/// Shortest pattern the hashed tiers take: the scan probes the filter at every second position only, so each
/// pattern puts the [`SHORT_KEY`] bytes at its offsets 0 and 1 into the filter.
const MIN_HASHED: usize = SHORT_KEY + 1;
/// Patterns sharing one key beyond this many are matched by the automaton instead (bounds the compares per
/// position whatever the masked values look like).
const MAX_BUCKET: usize = 4;
/// Up to this many automaton pattern bytes a DFA is used (fastest scan; its memory grows with bytes × alphabet).
const DFA_MAX_BYTES: usize = 16 * 1024;
/// Where the head finder reports candidates closer together than this, the filter scan takes over for
/// [`DENSE_STRETCH`] bytes: a call into the finder per candidate would cost more than a probe per position.
const DENSE_GAP: usize = 16;
const DENSE_STRETCH: usize = 256;
/// Fibonacci hashing multiplier (2^64 / golden ratio): spreads keys over the filter and table indices.
const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// An occurrence of pattern `id` at `start..end` of the haystack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Found {
    pub start: usize,
    pub end: usize,
    pub id: usize,
}

/// Slots of [`PassState::recent`].
const RECENT: usize = 16;

/// What one pass over an unchanged haystack remembers between searches.
pub(super) struct PassState {
    /// The position the last automaton search started from, if any, and what it found: searching again from a
    /// later position does not scan the same bytes again.
    auto_from: Option<usize>,
    auto_next: Option<Found>,
    /// What the last compare of each of a few patterns (by id modulo [`RECENT`]) showed about where it can
    /// occur next: text that nearly repeats a pattern (a secret of one repeated character, printed) then costs
    /// a few bytes of compare per position, as in Knuth-Morris-Pratt, not the pattern's length.
    recent: [Recent; RECENT],
}

/// Pattern `id` was compared at `checked`: none of its occurrences starts in `checked + 1..next`, and the
/// text at `next` starts with its first `known` bytes.
#[derive(Clone, Copy)]
struct Recent {
    id: usize,
    checked: usize,
    next: usize,
    known: usize,
}

impl Default for PassState {
    fn default() -> Self {
        Self {
            auto_from: None,
            auto_next: None,
            recent: [Recent {
                id: usize::MAX,
                checked: 0,
                next: 0,
                known: 0,
            }; RECENT],
        }
    }
}

/// One hashed tier: a table from key to the patterns that start with it.
struct Tier {
    /// Open addressing, linear probing; `count == 0` marks an empty slot.
    slots: Vec<Slot>,
    slot_shift: u32,
    /// Pattern ids grouped by key, longest first within a group.
    ids: Vec<u32>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    first: u32,
    count: u32,
}

/// `log2` of the smallest power of two ≥ `n` (at least `min_bits`).
fn bits_for(n: usize, min_bits: u32) -> u32 {
    n.max(2).next_power_of_two().trailing_zeros().max(min_bits)
}

impl Tier {
    /// Builds the tier from `(key, length, id)` entries; returns it and the ids of over-full keys.
    fn build(mut entries: Vec<(u64, u32, u32)>) -> (Self, Vec<u32>) {
        // Longest first within a key: the first pattern that matches is the longest.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut groups: Vec<(u64, usize, usize)> = Vec::new();
        let mut overflow = Vec::new();
        let mut ids = Vec::with_capacity(entries.len());
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            if group.len() > MAX_BUCKET {
                overflow.extend(group.iter().map(|e| e.2));
            } else {
                groups.push((group[0].0, ids.len(), group.len()));
                ids.extend(group.iter().map(|e| e.2));
            }
        }
        let slot_bits = bits_for(groups.len() * 2, 1);
        let mut tier = Self {
            slots: vec![Slot::default(); 1 << slot_bits],
            slot_shift: 64 - slot_bits,
            ids,
        };
        let mask = tier.slots.len() - 1;
        for (key, first, count) in groups {
            let mut s = tier.slot_index(key);
            while tier.slots[s].count != 0 {
                s = (s + 1) & mask;
            }
            // Both fit: at most MAX_MASK_BYTES patterns.
            tier.slots[s] = Slot {
                key,
                first: u32::try_from(first).unwrap_or(u32::MAX),
                count: u32::try_from(count).unwrap_or(u32::MAX),
            };
        }
        (tier, overflow)
    }

    fn slot_index(&self, key: u64) -> usize {
        // A different part of the product than the filter's, so filter and table collisions are independent.
        (key.wrapping_mul(MUL).rotate_left(17) >> self.slot_shift) as usize
    }

    /// The patterns whose key is `key`, longest first.
    fn bucket(&self, key: u64) -> &[u32] {
        let mask = self.slots.len() - 1;
        let mut s = self.slot_index(key);
        loop {
            let slot = self.slots[s];
            if slot.count == 0 {
                return &[];
            }
            if slot.key == key {
                let first = slot.first as usize;
                return &self.ids[first..first + slot.count as usize];
            }
            s = (s + 1) & mask;
        }
    }
}

/// One bit per hash of a pattern's first [`SHORT_KEY`] bytes: most log positions are passed over after one
/// multiply and one bit test, for both tiers. A size fixed at compile time lets the scan index it without
/// bounds checks.
struct Filter<const WORDS: usize> {
    bits: Box<[u64; WORDS]>,
}

/// 2^15 bits (4 KiB, in L1 cache) for the usual job's few dozen patterns, up to [`SMALL_FILTER_KEYS`] keys.
const SMALL_WORDS: usize = 1 << (15 - 6);
const SMALL_FILTER_KEYS: usize = 256;
/// 2^20 bits (128 KiB) keep the chance that a log position passes by accident at ~2% for 10,000 patterns.
const LARGE_WORDS: usize = 1 << (20 - 6);

impl<const WORDS: usize> Filter<WORDS> {
    const SHIFT: u32 = 64 - (WORDS * 64).trailing_zeros();

    fn new(keys: &[u64]) -> Self {
        let mut filter = Self {
            bits: Box::new([0; WORDS]),
        };
        for &key in keys {
            let f = Self::index(key);
            filter.bits[f >> 6] |= 1 << (f & 63);
        }
        filter
    }

    #[inline]
    fn index(key: u64) -> usize {
        (key.wrapping_mul(MUL) >> Self::SHIFT) as usize
    }

    #[inline]
    fn maybe(&self, key: u64) -> bool {
        let f = Self::index(key);
        self.bits[f >> 6] >> (f & 63) & 1 != 0
    }
}

enum Filters {
    Small(Filter<SMALL_WORDS>),
    Large(Filter<LARGE_WORDS>),
}

/// Little-endian integer of the `len` (≤ 8) bytes of `bytes` from `at`.
#[inline]
fn key_at(bytes: &[u8], at: usize, len: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf[..len].copy_from_slice(&bytes[at..at + len]);
    u64::from_le_bytes(buf)
}

/// Where a pattern's bytes are, and its smallest period.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
    /// Smallest `p > 0` with `pattern[i] == pattern[i + p]` for all `i` (`len` if none is shorter): two
    /// occurrences less than this far apart cannot exist.
    period: usize,
}

/// Appends, for each prefix of `p`, the length of its longest proper prefix that is also its suffix (the
/// Knuth-Morris-Pratt failure function) to `out`; returns `p`'s smallest period.
fn borders(p: &[u8], out: &mut Vec<u32>) -> usize {
    let base = out.len();
    out.push(0);
    let mut k = 0;
    for &b in &p[1..] {
        while k > 0 && p[k] != b {
            k = out[base + k - 1] as usize;
        }
        if p[k] == b {
            k += 1;
        }
        out.push(k as u32);
    }
    p.len() - k
}

/// Index of the first byte where `a` and `b` (of equal length) differ, eight bytes at a time.
fn mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    let mut i = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = key_at(x, 0, 8) ^ key_at(y, 0, 8);
        if diff != 0 {
            return Some(i + (diff.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    a[i..]
        .iter()
        .zip(&b[i..])
        .position(|(x, y)| x != y)
        .map(|k| i + k)
}

/// The packed finder of the distinct heads of the patterns the hashed tiers take, if it can be built.
fn head_finder(patterns: &[&[u8]]) -> Option<packed::Searcher> {
    let mut heads: Vec<&[u8]> = patterns
        .iter()
        .filter(|p| p.len() >= MIN_HASHED)
        .map(|p| &p[..SHORT_KEY])
        .collect();
    heads.sort_unstable();
    heads.dedup();
    // Teddy takes at most 64 patterns; it refuses more, and the filter scan is used instead.
    if heads.is_empty() || heads.len() > 64 {
        return None;
    }
    packed::Config::new()
        .match_kind(packed::MatchKind::LeftmostFirst)
        .builder()
        .extend(heads)
        .build()
}

pub(super) struct Matcher {
    /// All pattern bytes, one after another.
    bytes: Vec<u8>,
    /// For each pattern byte, the failure function of the prefix of its pattern that ends there.
    borders: Vec<u32>,
    spans: Vec<Span>,
    kinds: Vec<Kind>,
    filter: Filters,
    /// A packed (SIMD) finder of the hashed patterns' first [`SHORT_KEY`] bytes, when there are few enough
    /// of them: it passes over text holding no candidate at a fraction of an instruction per byte, where the
    /// filter costs a probe every second byte. `None` when too many or the CPU lacks the instructions.
    heads: Option<packed::Searcher>,
    long: Tier,
    short: Tier,
    automaton: Option<AhoCorasick>,
    /// Automaton pattern index → pattern id.
    automaton_ids: Vec<u32>,
}

impl Matcher {
    /// Builds the matcher for distinct, non-empty `patterns` (fewer than 2^32).
    pub fn new(patterns: &[&[u8]], kinds: Vec<Kind>) -> Result<Self, MaskError> {
        let total = patterns.iter().map(|p| p.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(patterns.len());
        let (mut long, mut short, mut small) = (Vec::new(), Vec::new(), Vec::new());
        let mut border = Vec::with_capacity(total);
        for (id, p) in patterns.iter().enumerate() {
            spans.push(Span {
                start: bytes.len(),
                len: p.len(),
                period: borders(p, &mut border),
            });
            bytes.extend_from_slice(p);
            let (id, len) = (id as u32, p.len() as u32);
            if p.len() >= LONG_KEY {
                long.push((key_at(p, 0, LONG_KEY), len, id));
            } else if p.len() >= MIN_HASHED {
                short.push((key_at(p, 0, SHORT_KEY), len, id));
            } else {
                small.push(id);
            }
        }
        let heads: Vec<u64> = patterns
            .iter()
            .filter(|p| p.len() >= MIN_HASHED)
            .flat_map(|p| [key_at(p, 0, SHORT_KEY), key_at(p, 1, SHORT_KEY)])
            .collect();
        let filter = if heads.len() <= SMALL_FILTER_KEYS {
            Filters::Small(Filter::new(&heads))
        } else {
            Filters::Large(Filter::new(&heads))
        };
        drop(heads);
        let heads = head_finder(patterns);
        let (long, over_long) = Tier::build(long);
        let (short, over_short) = Tier::build(short);
        small.extend(over_long);
        small.extend(over_short);
        let mut matcher = Self {
            bytes,
            borders: border,
            spans,
            kinds,
            filter,
            heads,
            long,
            short,
            automaton: None,
            automaton_ids: Vec::new(),
        };
        if !small.is_empty() {
            let texts: Vec<&[u8]> = small.iter().map(|&id| matcher.pattern(id as usize)).collect();
            let size: usize = texts.iter().map(|t| t.len()).sum();
            let kind = if size <= DFA_MAX_BYTES {
                AhoCorasickKind::DFA
            } else {
                AhoCorasickKind::ContiguousNFA
            };
            let automaton = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(kind))
                .build(&texts)
                .map_err(MaskError::Build)?;
            matcher.automaton = Some(automaton);
            matcher.automaton_ids = small;
        }
        Ok(matcher)
    }

    pub fn pattern(&self, id: usize) -> &[u8] {
        let span = self.spans[id];
        &self.bytes[span.start..span.start + span.len]
    }

    /// False if no pattern starts with `bytes` (cheap; true means maybe).
    pub fn may_start(&self, bytes: &[u8]) -> bool {
        // Every pattern of MIN_HASHED bytes or more has its head in the filter, whatever tier matches it.
        let head = || key_at(bytes, 0, SHORT_KEY);
        bytes.len() < MIN_HASHED
            || match &self.filter {
                Filters::Small(f) => f.maybe(head()),
                Filters::Large(f) => f.maybe(head()),
            }
    }

    pub fn kind(&self, id: usize) -> Kind {
        self.kinds[id]
    }

    /// Whether a match of `id` at `start..end` can change output of which the first `covered` bytes are
    /// already decided (emitted in clear or masked): a value must reach past them, a prefix start after them.
    fn useful(&self, id: usize, start: usize, end: usize, covered: usize) -> bool {
        start >= covered || (self.kinds[id] == Kind::Value && end > covered)
    }

    /// The leftmost match starting in `from..limit` and lying inside `hay`, the longest at its start, skipping
    /// matches of the hashed tiers that could not change the output (see [`useful`](Self::useful)). The
    /// automaton's matches are returned even then (rare; the caller passes over them).
    pub fn find(
        &self,
        hay: &[u8],
        from: usize,
        limit: usize,
        covered: usize,
        state: &mut PassState,
    ) -> Option<Found> {
        let auto = self.automaton_next(hay, from, state).filter(|m| m.start < limit);
        let scan_to = auto.map_or(limit, |m| m.start + 1);
        let hashed = self.scan(hay, from, scan_to, covered, state);
        match (hashed, auto) {
            (Some(h), Some(a)) if h.start == a.start => {
                let auto_useful = self.useful(a.id, a.start, a.end, covered);
                Some(if auto_useful && a.end >= h.end { a } else { h })
            }
            (Some(h), _) => Some(h),
            (None, a) => a,
        }
    }

    fn automaton_next(&self, hay: &[u8], from: usize, state: &mut PassState) -> Option<Found> {
        let automaton = self.automaton.as_ref()?;
        if let Some(searched) = state.auto_from
            && searched <= from
        {
            match state.auto_next {
                None => return None,
                Some(m) if m.start >= from => return Some(m),
                Some(_) => {}
            }
        }
        let next = automaton.find(&hay[from..]).map(|m| Found {
            start: from + m.start(),
            end: from + m.end(),
            id: self.automaton_ids[m.pattern().as_usize()] as usize,
        });
        state.auto_from = Some(from);
        state.auto_next = next;
        next
    }

    /// The first useful match of the hashed tiers starting in `from..to`.
    fn scan(
        &self,
        hay: &[u8],
        from: usize,
        to: usize,
        covered: usize,
        state: &mut PassState,
    ) -> Option<Found> {
        match (&self.filter, &self.heads) {
            (Filters::Small(f), Some(h)) => self.scan_heads(h, f, hay, from, to, covered, state),
            (Filters::Large(f), Some(h)) => self.scan_heads(h, f, hay, from, to, covered, state),
            (Filters::Small(f), None) => self.scan_with(f, hay, from, to, covered, state),
            (Filters::Large(f), None) => self.scan_with(f, hay, from, to, covered, state),
        }
    }

    /// [`scan_with`](Self::scan_with), jumping from one occurrence of a pattern head to the next with the packed
    /// finder: every match of a hashed pattern starts with its head, so no position between two is skipped.
    #[allow(clippy::too_many_arguments)]
    fn scan_heads<const W: usize>(
        &self,
        heads: &packed::Searcher,
        filter: &Filter<W>,
        hay: &[u8],
        from: usize,
        to: usize,
        covered: usize,
        state: &mut PassState,
    ) -> Option<Found> {
        let n = hay.len();
        // A head starting before `to` ends by `to + SHORT_KEY - 1`.
        let span_end = n.min(to.saturating_add(SHORT_KEY - 1));
        let wide_end = n.saturating_sub(LONG_KEY - 1);
        let mut i = from;
        while i < to {
            let at = heads
                .find_in(
                    hay,
                    HaySpan {
                        start: i,
                        end: span_end,
                    },
                )?
                .start();
            if at >= to {
                return None;
            }
            let found = if at < wide_end {
                self.wide_at(filter, hay, at, covered, state)
            } else {
                self.verify(&self.short, key_at(hay, at, SHORT_KEY), hay, at, covered, state)
            };
            if found.is_some() {
                return found;
            }
            if at - i < DENSE_GAP {
                let stop = to.min(at + 1 + DENSE_STRETCH);
                let found = self.scan_with(filter, hay, at + 1, stop, covered, state);
                if found.is_some() {
                    return found;
                }
                i = stop;
            } else {
                i = at + 1;
            }
        }
        None
    }

    fn scan_with<const W: usize>(
        &self,
        filter: &Filter<W>,
        hay: &[u8],
        from: usize,
        to: usize,
        covered: usize,
        state: &mut PassState,
    ) -> Option<Found> {
        let n = hay.len();
        // Positions whose 8-byte window fits: both tiers from one load.
        let wide_end = n.saturating_sub(LONG_KEY - 1).min(to);
        let mut i = from;
        // Eight positions per block: a pattern starting at `at` has its first bytes at `at` and its second ones
        // at `at + 1` in the filter, so probing at i+1, i+3, i+5 and i+7 (two 8-byte loads) finds every start in
        // i..i+8 that can match.
        while i + 8 <= wide_end {
            let w0 = key_at(hay, i + 1, LONG_KEY);
            let w1 = key_at(hay, i + 5, LONG_KEY);
            let any = filter.maybe(w0 & 0xFFFF_FFFF)
                | filter.maybe((w0 >> 16) & 0xFFFF_FFFF)
                | filter.maybe(w1 & 0xFFFF_FFFF)
                | filter.maybe((w1 >> 16) & 0xFFFF_FFFF);
            if any {
                for at in i..i + 8 {
                    if let Some(found) = self.wide_at(filter, hay, at, covered, state) {
                        return Some(found);
                    }
                }
            }
            i += 8;
        }
        while i < wide_end {
            if let Some(found) = self.wide_at(filter, hay, i, covered, state) {
                return Some(found);
            }
            i += 1;
        }
        // The last few positions can only hold short patterns.
        let short_end = n.saturating_sub(SHORT_KEY - 1).min(to);
        while i < short_end {
            let key = key_at(hay, i, SHORT_KEY);
            if filter.maybe(key)
                && let Some(found) = self.verify(&self.short, key, hay, i, covered, state)
            {
                return Some(found);
            }
            i += 1;
        }
        None
    }

    /// The longest useful match at `at`, where the 8-byte window fits.
    #[inline]
    fn wide_at<const W: usize>(
        &self,
        filter: &Filter<W>,
        hay: &[u8],
        at: usize,
        covered: usize,
        state: &mut PassState,
    ) -> Option<Found> {
        let window = key_at(hay, at, LONG_KEY);
        let head = window & 0xFFFF_FFFF;
        if !filter.maybe(head) {
            return None;
        }
        self.verify(&self.long, window, hay, at, covered, state)
            .or_else(|| self.verify(&self.short, head, hay, at, covered, state))
    }

    /// The longest useful pattern of `tier` with key `key` that occurs at `at`.
    #[inline(never)]
    fn verify(
        &self,
        tier: &Tier,
        key: u64,
        hay: &[u8],
        at: usize,
        covered: usize,
        state: &mut PassState,
    ) -> Option<Found> {
        for &id in tier.bucket(key) {
            let id = id as usize;
            let span = self.spans[id];
            let end = at + span.len;
            if at < covered && end <= covered {
                // Longest first: the rest end earlier still.
                return None;
            }
            if end > hay.len() || !self.useful(id, at, end, covered) {
                continue;
            }
            let pattern = &self.bytes[span.start..span.start + span.len];
            let slot = id % RECENT;
            let recent = state.recent[slot];
            let mut from = 0;
            if recent.id == id && recent.checked < at {
                if at < recent.next {
                    continue;
                }
                if at == recent.next {
                    from = recent.known;
                }
            }
            let Some(offset) = mismatch(&hay[at + from..end], &pattern[from..]) else {
                // A value repeated back to back (text continuing with its period) is one match: positions
                // inside it then cost a length check each instead of a compare. (Not a token prefix: what
                // follows it is its body.)
                let p = span.period;
                let repeats = if self.kinds[id] == Kind::Value {
                    hay[end..]
                        .iter()
                        .zip(&hay[end - p..])
                        .take_while(|(a, b)| a == b)
                        .count()
                        / p
                } else {
                    0
                };
                let last = at + repeats * p;
                state.recent[slot] = Recent {
                    id,
                    checked: last,
                    next: last + p,
                    known: span.len - p,
                };
                return Some(Found {
                    start: at,
                    end: end + repeats * p,
                    id,
                });
            };
            // The text matched the pattern's first `m` bytes: it can next occur where the longest border of
            // that prefix lines up, with that border known to match.
            let m = from + offset;
            let known = if m == 0 {
                0
            } else {
                self.borders[span.start + m - 1] as usize
            };
            state.recent[slot] = Recent {
                id,
                checked: at,
                next: at + m.max(1) - known,
                known,
            };
        }
        None
    }
}
