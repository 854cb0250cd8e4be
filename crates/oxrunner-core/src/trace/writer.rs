//! `TraceWriter`: the job log pipeline (mask ▶ output limit ▶ spool file) with a running CRC32.
//!
//! A log that cannot be written completely is never passed off as complete: space for a final "log cut" line is
//! reserved in the spool ahead of the data (`fallocate`), so a full disk ends the log with a line saying why,
//! and [`TraceWriter::lost`] tells the driver not to report the job as successful.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::mask::{MaskSet, Masker};

/// Default `output_limit` (4096 KiB).
pub const DEFAULT_OUTPUT_LIMIT: u64 = 4096 * 1024;

/// gitlab-runner's line formats (`common/buildlogger`).
const PRINTLN_PREFIX: &str = "\x1b[0K";
const INFO_PREFIX: &str = "\x1b[32;1m";
const WARNING_PREFIX: &str = "\x1b[0;33mWARNING: ";
const ERROR_PREFIX: &str = "\x1b[31;1mERROR: ";
const HEADER_PREFIX: &str = "\x1b[0K\x1b[36;1m";
const RESET: &str = "\x1b[0;m";
const REPLACEMENT: &str = "\u{FFFD}";
/// gitlab-runner's `buildlogger.StreamExecutorLevel` and `StreamWorkLevel`.
const RUNNER_STREAM: u8 = 0;
const JOB_STREAM: u8 = 1;
const TIMESTAMP_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The message appended once when the output limit is reached (runner-api.md §1.10).
pub fn limit_message(limit: u64) -> String {
    format!(
        "\n\x1b[33;1mJob's log exceeded limit of {limit} bytes.\nJob execution will continue but no more output will be collected.\x1b[0;m\n"
    )
}

/// The line that ends a log that could not be written completely (`reason` names the error).
pub fn cut_message(reason: &str) -> String {
    format!(
        "\n\x1b[31;1mERROR: The job log was cut here: {reason}. The rest of the job's output is lost.\x1b[0;m\n"
    )
}

/// Spool space kept free ahead of the data for [`cut_message`].
const CUT_RESERVE: u64 = 4096;
/// Reservations grow in steps of this much, so most writes need no extra system call.
const RESERVE_STEP: u64 = 256 * 1024;

struct Inner {
    /// `None` when the masker could not be built: then nothing but the runner's own error reaches the log.
    masker: Option<Masker>,
    file: File,
    /// Keeps the spool file alive (and deletes it) with the last clone.
    _spool: tempfile::TempPath,
    written: u64,
    limit: u64,
    truncated: bool,
    crc: crc32fast::Hasher,
    committed: watch::Sender<u64>,
    /// Set by [`TraceHandle::finish`]: no more bytes will come.
    finished: watch::Sender<bool>,
    sections: bool,
    /// Why the log is incomplete (set once; nothing more is written after it).
    lost: Option<String>,
    /// The key of the environment the job suspended, for the final update (as gitlab-runner keeps it on its
    /// job trace).
    environment_key: Option<String>,
    /// The spool's blocks are allocated up to here (`fallocate` with `KEEP_SIZE`).
    reserved_end: u64,
    /// False on file systems without `fallocate`: writes then go out unreserved.
    reserving: bool,
    scratch: Vec<u8>,
    /// Start of a UTF-8 character whose remaining bytes have not arrived yet.
    utf8_pending: Vec<u8>,
    /// `FF_TIMESTAMPS`: prefix every line with a timestamp and stream id.
    timestamps: bool,
    /// Set by [`TraceWriter::plain`]: the log is read on a terminal, never stamped.
    plain: bool,
    /// The last byte emitted ended a line (or nothing was emitted yet).
    at_line_start: bool,
    /// gitlab-runner's stream number of the bytes being pushed: 00 for the runner's own lines, 01 for what the
    /// job's scripts print (`buildlogger.StreamExecutorLevel` / `StreamWorkLevel`).
    stream: u8,
    /// Per stream: its next line header carries `+`, its previous entry was cut at a carriage return.
    continuation: [bool; 2],
}

impl Inner {
    fn push(&mut self, bytes: &[u8]) {
        // Past the output limit nothing reaches the spool, so masking (the costly part) would be wasted work;
        // the executor still reads the bytes so the job does not block on a full pipe.
        if self.truncated || self.lost.is_some() {
            return;
        }
        let Some(masker) = self.masker.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        masker.write(bytes, &mut out);
        self.emit(&out);
        self.scratch = out;
    }

    fn flush_masker(&mut self) {
        if self.truncated || self.lost.is_some() {
            return;
        }
        let Some(masker) = self.masker.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        masker.flush(&mut out);
        self.emit(&out);
        if !self.utf8_pending.is_empty() {
            // A character cut off at the end of the stream can never be completed.
            self.utf8_pending.clear();
            self.emit_valid(REPLACEMENT.as_bytes());
        }
    }

    /// Replaces invalid UTF-8 with U+FFFD (as gitlab-runner's trace buffer does), holding back an incomplete
    /// character at the end until the next write.
    fn emit(&mut self, data: &[u8]) {
        if self.truncated || data.is_empty() {
            return;
        }
        // Common case, valid UTF-8 with nothing held back: no copies.
        if self.utf8_pending.is_empty() && std::str::from_utf8(data).is_ok() {
            self.emit_valid(data);
            return;
        }
        let mut buf = std::mem::take(&mut self.utf8_pending);
        buf.extend_from_slice(data);
        let mut valid = Vec::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            match std::str::from_utf8(rest) {
                Ok(_) => {
                    valid.extend_from_slice(rest);
                    break;
                }
                Err(err) => {
                    let (good, bad) = rest.split_at(err.valid_up_to());
                    valid.extend_from_slice(good);
                    match err.error_len() {
                        Some(n) => {
                            valid.extend_from_slice(REPLACEMENT.as_bytes());
                            rest = &bad[n..];
                        }
                        None => {
                            self.utf8_pending = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        self.emit_valid(&valid);
    }

    /// Adds timestamps (if enabled), applies the output limit and appends to the spool.
    fn emit_valid(&mut self, data: &[u8]) {
        if self.truncated || data.is_empty() {
            return;
        }
        if self.timestamps {
            let stamped = self.stamp(data);
            self.limit_and_append(&stamped);
        } else {
            self.limit_and_append(data);
        }
    }

    /// gitlab-runner's timestamper format: `<RFC 3339 UTC, microseconds> <stream 2 hex>O<' '|'+'>` at the start
    /// of each line. A line written in several pieces gets its prefix once, with the time of its first piece, so
    /// GitLab never finds a prefix in the middle of a line. As upstream, a piece without a newline but with a
    /// carriage return (a progress bar, a section marker) is ended with a newline so the live log shows it, and
    /// the next line is marked `+` (a continuation GitLab joins back).
    fn stamp(&mut self, data: &[u8]) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        let ts = now
            .format(TIMESTAMP_FORMAT)
            .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned());
        let mut out = Vec::with_capacity(data.len() + 40);
        for line in data.split_inclusive(|b| *b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(ts.as_bytes());
                let hex = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b' ',
                    hex[usize::from(self.stream >> 4)],
                    hex[usize::from(self.stream & 0x0f)],
                    b'O',
                    if self.continuation[self.stream_index()] {
                        b'+'
                    } else {
                        b' '
                    },
                ]);
                self.continuation[self.stream_index()] = false;
            }
            out.extend_from_slice(line);
            self.at_line_start = line.last() == Some(&b'\n');
            if !self.at_line_start && line.contains(&b'\r') {
                out.push(b'\n');
                self.at_line_start = true;
                self.continuation[self.stream_index()] = true;
            }
        }
        out
    }

    fn stream_index(&self) -> usize {
        usize::from(self.stream != RUNNER_STREAM)
    }

    /// Switches the stream whose bytes come next. With timestamps, a line the other stream left open is ended
    /// first, as upstream's per-stream timestamper ends its buffered line when the stream closes.
    fn switch_stream(&mut self, stream: u8) {
        if self.stream == stream {
            return;
        }
        self.end_open_line();
        self.stream = stream;
    }

    fn end_open_line(&mut self) {
        if self.timestamps && !self.at_line_start && !self.truncated {
            self.limit_and_append(b"\n");
            self.at_line_start = true;
        }
    }

    fn limit_and_append(&mut self, data: &[u8]) {
        let room = self.limit.saturating_sub(self.written);
        if (data.len() as u64) <= room {
            self.append(data);
            return;
        }
        let mut cut = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        // Never cut a UTF-8 character in half: back up to its first byte.
        while cut > 0 && cut < data.len() && (data[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        self.append(&data[..cut]);
        self.append(limit_message(self.limit).as_bytes());
        self.truncated = true;
    }

    fn append(&mut self, data: &[u8]) {
        if self.lost.is_some() {
            return;
        }
        let need = self.written + data.len() as u64 + CUT_RESERVE;
        if let Err(err) = self.reserve(need).and_then(|()| self.file.write_all(data)) {
            self.cut(&err, "while writing the job log spool");
            return;
        }
        self.commit(data);
    }

    fn commit(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.written += data.len() as u64;
        self.committed.send_replace(self.written);
    }

    /// Makes sure the spool's blocks up to `need` are allocated, so that writing there cannot run out of space.
    fn reserve(&mut self, need: u64) -> io::Result<()> {
        if !self.reserving || need <= self.reserved_end {
            return Ok(());
        }
        let mode = nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        let from = self.reserved_end.max(self.written);
        // A generous step first; when the disk cannot give that much, exactly what this write needs.
        for end in [need.max(self.reserved_end + RESERVE_STEP), need] {
            let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(end - from)) else {
                return Err(io::Error::other("job log spool offset out of range"));
            };
            match nix::fcntl::fallocate(self.file.as_fd(), mode, offset, len) {
                Ok(()) => {
                    self.reserved_end = end;
                    return Ok(());
                }
                Err(nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT) if end > need => {}
                Err(err @ (nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT)) => {
                    return Err(io::Error::from(err));
                }
                Err(err) => {
                    // No reservations on this file system (EOPNOTSUPP and the like): a full disk then fails the
                    // write itself, and the cut line only gets in if dropping the partial write left room for it.
                    tracing::debug!(error = %err, "cannot reserve job log spool space; writing unreserved");
                    self.reserving = false;
                    return Ok(());
                }
            }
        }
        Err(io::Error::from(io::ErrorKind::StorageFull))
    }

    /// Ends the log after its last complete write with a line saying why, and marks it lost.
    fn cut(&mut self, err: &io::Error, doing: &str) {
        let reason = format!("{err} {doing}");
        tracing::error!(error = %err, "{doing}: the job log is cut and the job will be reported failed");
        // A failed write may have left part of its data after the committed bytes; that part is dropped so the
        // line below follows complete output (and the checksum covers exactly what is in the spool).
        let at_end = self.file.stream_position().is_ok_and(|pos| pos == self.written);
        let rewound = at_end
            || (self.file.set_len(self.written).is_ok()
                && self.file.seek(SeekFrom::Start(self.written)).is_ok());
        let line = cut_message(&reason);
        if rewound && self.file.write_all(line.as_bytes()).is_ok() {
            self.commit(line.as_bytes());
        }
        self.lost = Some(reason);
    }
}

/// The job log. Cheap to clone; all clones write to the same spool.
#[derive(Clone)]
pub struct TraceWriter {
    inner: Arc<Mutex<Inner>>,
    /// Told when a section opens and closes (the daemon's job metrics); shared by all clones.
    stages: Arc<std::sync::OnceLock<Arc<dyn crate::StageObserver>>>,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter").finish_non_exhaustive()
    }
}

/// Reader side of the spool: the daemon's sender reads `path` up to `committed` bytes.
pub struct TraceHandle {
    /// Spool file (deleted when the handle and all writers are dropped).
    pub path: PathBuf,
    /// Bytes written to the spool so far.
    pub committed: watch::Receiver<u64>,
    inner: Arc<Mutex<Inner>>,
    stages: Arc<std::sync::OnceLock<Arc<dyn crate::StageObserver>>>,
}

impl std::fmt::Debug for TraceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceHandle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves consistent bytes on disk; keep logging.
    inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TraceWriter {
    /// Creates a spool file in `spool_dir`. `limit_bytes == 0` means the default limit (4 MiB).
    pub fn new(spool_dir: &Path, masks: MaskSet, limit_bytes: u64) -> io::Result<(TraceWriter, TraceHandle)> {
        // Building the masker is linear in the masked values but can take a while for large ones: async callers
        // use `create`, which runs this on a blocking thread.
        let masker = Masker::new(&masks);
        let spool = tempfile::Builder::new()
            .prefix("oxrunner-trace-")
            .suffix(".log")
            .tempfile_in(spool_dir)?;
        let (file, spool) = spool.into_parts();
        let path = spool.to_path_buf();
        let (tx, rx) = watch::channel(0);
        let refusal = masker.as_ref().err().map(ToString::to_string);
        let mut inner = Inner {
            masker: masker.ok(),
            file,
            _spool: spool,
            written: 0,
            limit: if limit_bytes == 0 {
                DEFAULT_OUTPUT_LIMIT
            } else {
                limit_bytes
            },
            truncated: false,
            crc: crc32fast::Hasher::new(),
            committed: tx,
            finished: watch::channel(false).0,
            sections: true,
            lost: None,
            environment_key: None,
            reserved_end: 0,
            reserving: true,
            scratch: Vec::new(),
            utf8_pending: Vec::new(),
            timestamps: false,
            plain: false,
            at_line_start: true,
            stream: RUNNER_STREAM,
            continuation: [false; 2],
        };
        // The cut line's space is taken now: a disk too full for it cannot hold a job log either.
        inner.reserve(CUT_RESERVE)?;
        if let Some(err) = refusal {
            inner.append(
                format!(
                    "{ERROR_PREFIX}{err}{RESET}\n{ERROR_PREFIX}hint: keep masked variables to short secrets (tokens, \
                     keys) and pass large ones as unmasked file variables{RESET}\n"
                )
                .as_bytes(),
            );
            inner.lost = Some(err);
        }
        let inner = Arc::new(Mutex::new(inner));
        let stages: Arc<std::sync::OnceLock<Arc<dyn crate::StageObserver>>> = Arc::default();
        Ok((
            TraceWriter {
                inner: Arc::clone(&inner),
                stages: Arc::clone(&stages),
            },
            TraceHandle {
                path,
                committed: rx,
                inner,
                stages,
            },
        ))
    }

    /// [`new`](Self::new) on a blocking thread: building the masker for large masked values must not hold up
    /// an async worker (other jobs' traces, polling, signal handling).
    pub async fn create(
        spool_dir: PathBuf,
        masks: MaskSet,
        limit_bytes: u64,
    ) -> io::Result<(TraceWriter, TraceHandle)> {
        tokio::task::spawn_blocking(move || Self::new(&spool_dir, masks, limit_bytes))
            .await
            .map_err(io::Error::other)?
    }

    /// Why the log is incomplete (a write to the spool failed, or the masker could not be built), if it is.
    /// A job with an incomplete log must not be reported successful.
    pub fn lost(&self) -> Option<String> {
        lock(&self.inner).lost.clone()
    }

    /// Records the key of the environment the job suspended; the front end sends it with the final update.
    pub fn set_runtime_environment_key(&self, key: String) {
        lock(&self.inner).environment_key = Some(key);
    }

    /// Appends the job's output (masked; partial secrets are held until the next write or [`flush`](Self::flush)).
    pub fn write(&self, bytes: &[u8]) {
        let mut inner = lock(&self.inner);
        inner.switch_stream(JOB_STREAM);
        inner.push(bytes);
    }

    /// Emits bytes held back by the masker (end of a stage's output).
    pub fn flush(&self) {
        lock(&self.inner).flush_masker();
    }

    /// Turns `section_start`/`section_end` markers on or off (GitLab's `features.trace_sections`).
    pub fn set_sections(&self, enabled: bool) {
        lock(&self.inner).sections = enabled;
    }

    /// Turns per-line timestamps on or off (gitlab-runner's `FF_TIMESTAMPS`).
    pub fn set_timestamps(&self, enabled: bool) {
        let mut inner = lock(&self.inner);
        inner.timestamps = enabled && !inner.plain;
    }

    /// A log for a terminal (`oxrunner exec`), not for GitLab's viewer: `FF_TIMESTAMPS` is not applied.
    pub fn plain(&self) {
        let mut inner = lock(&self.inner);
        inner.plain = true;
        inner.timestamps = false;
    }

    /// True once the output limit was hit.
    pub fn is_truncated(&self) -> bool {
        lock(&self.inner).truncated
    }

    /// Bytes in the spool so far.
    pub fn bytes_written(&self) -> u64 {
        lock(&self.inner).written
    }

    /// A plain line: `\x1b[0K<text>\x1b[0;m`.
    pub fn println(&self, msg: &str) {
        self.line(PRINTLN_PREFIX, msg);
    }

    /// A green info line.
    pub fn info(&self, msg: &str) {
        self.line(INFO_PREFIX, msg);
    }

    /// A yellow `WARNING:` line.
    pub fn warning(&self, msg: &str) {
        self.line(WARNING_PREFIX, msg);
    }

    /// A red `ERROR:` line.
    pub fn error(&self, msg: &str) {
        self.line(ERROR_PREFIX, msg);
    }

    fn line(&self, prefix: &str, msg: &str) {
        let mut inner = lock(&self.inner);
        // Held-back stage output must precede the message.
        inner.flush_masker();
        inner.switch_stream(RUNNER_STREAM);
        inner.push(format!("{prefix}{msg}{RESET}\n").as_bytes());
    }

    /// Opens a collapsible section (marker only with sections enabled) and prints its bold cyan header.
    pub fn section_start(&self, name: &str, header: &str) {
        {
            let mut inner = lock(&self.inner);
            inner.flush_masker();
            inner.switch_stream(RUNNER_STREAM);
            if inner.sections {
                inner.push(format!("section_start:{}:{name}\r\x1b[0K", unix_now()).as_bytes());
            }
            inner.push(format!("{HEADER_PREFIX}{header}{RESET}\n").as_bytes());
        }
        if let Some(observer) = self.stages.get() {
            observer.stage_started(name);
        }
    }

    /// Closes a section.
    pub fn section_end(&self, name: &str) {
        {
            let mut inner = lock(&self.inner);
            inner.flush_masker();
            inner.switch_stream(RUNNER_STREAM);
            if inner.sections {
                inner.push(format!("section_end:{}:{name}\r\x1b[0K", unix_now()).as_bytes());
            }
        }
        if let Some(observer) = self.stages.get() {
            observer.stage_ended(name);
        }
    }

    /// Reports this log's sections, which are the job's stages, to `observer`; the first one installed stays.
    pub fn observe_stages(&self, observer: Arc<dyn crate::StageObserver>) {
        let _ = self.stages.set(observer);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TraceHandle {
    /// Flushes held-back bytes and syncs the spool; returns the CRC32 and size of everything written.
    pub async fn finish(&self) -> (u32, u64) {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let mut inner = lock(&inner);
            inner.flush_masker();
            inner.end_open_line();
            if let Err(err) = inner.file.sync_data() {
                inner.cut(&err, "while syncing the job log spool");
            }
            inner.finished.send_replace(true);
            (inner.crc.clone().finalize(), inner.written)
        })
        .await;
        match result {
            Ok(v) => v,
            Err(_) => {
                let inner = lock(&self.inner);
                (inner.crc.clone().finalize(), inner.written)
            }
        }
    }

    /// See [`TraceWriter::lost`].
    pub fn lost(&self) -> Option<String> {
        lock(&self.inner).lost.clone()
    }

    /// The key recorded by [`TraceWriter::set_runtime_environment_key`], if the job suspended its environment.
    pub fn runtime_environment_key(&self) -> Option<String> {
        lock(&self.inner).environment_key.clone()
    }

    /// A new writer for the same spool.
    pub fn writer(&self) -> TraceWriter {
        TraceWriter {
            inner: Arc::clone(&self.inner),
            stages: Arc::clone(&self.stages),
        }
    }

    /// A reader that yields new spool bytes as they are committed and ends after [`finish`](Self::finish)
    /// (for local mode, which prints the trace live).
    pub fn follow(&self) -> io::Result<TraceFollower> {
        let file = File::open(&self.path)?;
        Ok(TraceFollower {
            file,
            offset: 0,
            committed: self.committed.clone(),
            finished: lock(&self.inner).finished.subscribe(),
        })
    }

    /// Reads the whole spool (for tests and local mode).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }
}

/// Follows a spool while it grows; see [`TraceHandle::follow`].
pub struct TraceFollower {
    file: File,
    offset: u64,
    committed: watch::Receiver<u64>,
    finished: watch::Receiver<bool>,
}

/// Largest chunk [`TraceFollower::next_chunk`] returns at once.
const FOLLOW_CHUNK: u64 = 1024 * 1024;

impl TraceFollower {
    /// The next committed bytes (at most 1 MiB), waiting for them if needed; `None` once the trace is finished
    /// and everything was returned.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            // Read `finished` first: bytes committed before it was set are then visible below.
            let finished = *self.finished.borrow_and_update();
            let committed = *self.committed.borrow_and_update();
            if committed > self.offset {
                let len = (committed - self.offset).min(FOLLOW_CHUNK);
                return self.read_committed(len).map(Some);
            }
            if finished {
                return Ok(None);
            }
            tokio::select! {
                res = self.committed.changed() => if res.is_err() { return Ok(None) },
                res = self.finished.changed() => if res.is_err() { return Ok(None) },
            }
        }
    }

    /// The next `len` spool bytes, read into the spare capacity of a new buffer: `read_to_end` does not zero it
    /// first, where `vec![0; len]` cleared up to 1 MiB per chunk only to overwrite it (5% of `exec`'s
    /// instructions on a 50 MiB log).
    fn read_committed(&mut self, len: u64) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        self.file.seek(SeekFrom::Start(self.offset))?;
        Read::take(&self.file, len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the trace spool ends before its committed length ({} of {len} bytes at offset {})",
                    buf.len(),
                    self.offset
                ),
            ));
        }
        self.offset += len;
        Ok(buf)
    }
}
