//! Parallel, streaming zip creation.
//!
//! Files are cut into chunks; worker threads read a chunk, compute its CRC and deflate it on their own
//! (non-final chunks end with a full flush, so the concatenated pieces form one valid deflate stream, as
//! pigz does). The calling thread writes finished chunks strictly in order, so the output is a plain
//! sequential zip any reader accepts, and memory stays bounded by a window of in-flight chunks.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

use flate2::{Compress, Compression, FlushCompress, Status};
use oxrunner_fs::{Dir, Kind as FsKind, is_link_refusal};

use crate::zipfmt::{
    self, CentralRecord, LocalHeader, METHOD_DEFLATED, METHOD_STORED, S_IFDIR, S_IFLNK, S_IFREG,
};
use crate::{ArchiveError, FileSet, Level};

/// Input bytes per work item. Small enough that a handful per core keeps memory low, large enough that
/// the per-chunk flush costs nothing measurable in ratio.
const CHUNK: u64 = 1 << 20;
/// Work items in flight per worker thread.
const WINDOW_PER_WORKER: usize = 8;
/// Entries whose size could exceed 4 GiB once deflate framing is added get 64-bit descriptors.
const ZIP64_RAW_THRESHOLD: u64 = 0xF000_0000;

/// What [`create_zip`] produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZipStats {
    /// Entries written (files, directories, symlinks).
    pub entries: u64,
    /// Uncompressed bytes of file contents and link targets.
    pub bytes_in: u64,
    /// Bytes of the whole archive.
    pub bytes_out: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

struct Entry {
    rel: PathBuf,
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    mtime: i64,
    size: u64,
    chunks: u64,
}

struct Job {
    entry: usize,
    offset: u64,
    len: u64,
    first: bool,
    last: bool,
}

struct Chunk {
    data: Vec<u8>,
    crc: u32,
    raw_len: u64,
    method: u16,
}

/// Write `files` (relative to `project_dir`) as a zip to `out`, compressing on all cores.
/// `project_dir` itself is trusted (see [`oxrunner_fs`]); below it nothing is followed.
pub fn create_zip<W: Write + Send>(
    project_dir: &Path,
    files: &FileSet,
    level: Level,
    out: W,
) -> Result<ZipStats, ArchiveError> {
    create_zip_in(&open_root(project_dir)?, files, level, out)
}

/// [`create_zip`] with `files` relative to the directory `root`. Every file is opened beneath `root`,
/// following links on the way only while they stay beneath it; a listed symlink is archived as a link.
pub fn create_zip_in<W: Write + Send>(
    root: &Dir,
    files: &FileSet,
    level: Level,
    out: W,
) -> Result<ZipStats, ArchiveError> {
    let mut out = out;
    write_zip(root, files, level, &mut out, b"")
}

pub(crate) fn open_root(project_dir: &Path) -> Result<Dir, ArchiveError> {
    Dir::open_trusted(project_dir).map_err(|e| ArchiveError::io("opening project directory", project_dir, e))
}

/// Same as [`create_zip`], written atomically to `dest`: a temporary file beside it is filled, synced and
/// renamed over `dest`, so a reader never observes a partial archive.
pub fn create_zip_file(
    project_dir: &Path,
    files: &FileSet,
    level: Level,
    dest: &Path,
) -> Result<ZipStats, ArchiveError> {
    write_zip_atomically(&open_root(project_dir)?, files, level, dest, b"")
}

pub(crate) fn write_zip_atomically(
    root: &Dir,
    files: &FileSet,
    level: Level,
    dest: &Path,
    comment: &[u8],
) -> Result<ZipStats, ArchiveError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| ArchiveError::io("creating directory", &dir, e))?;
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{file_name}.tmp-"))
        .tempfile_in(&dir)
        .map_err(|e| ArchiveError::io("creating temporary file in", &dir, e))?;
    let stats = write_zip(root, files, level, tmp.as_file_mut(), comment)?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| ArchiveError::io("syncing", tmp.path(), e))?;
    // Archives are shared between jobs and users of the runner, like gitlab-runner's 0644 cache files.
    // Through the descriptor: a chmod by path would follow whatever stands at that name by now.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| ArchiveError::io("setting permissions of", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| ArchiveError::io("renaming temporary archive to", dest, e.error))?;
    // The rename is durable only once the directory entry is.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(stats)
}

pub(crate) fn write_zip<W: Write>(
    root: &Dir,
    files: &FileSet,
    level: Level,
    out: &mut W,
    comment: &[u8],
) -> Result<ZipStats, ArchiveError> {
    let entries = scan(root, files)?;
    let jobs = plan(&entries);
    let workers = worker_count();
    let window = workers * WINDOW_PER_WORKER;

    let mut sink = Counting {
        inner: BufWriter::with_capacity(1 << 20, out),
        written: 0,
    };
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let gate = (Mutex::new(0usize), Condvar::new());
    let (tx, rx) = mpsc::channel::<(usize, Result<Chunk, ArchiveError>)>();

    let result = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, entries, next, abort, gate) = (&jobs, &entries, &next, &abort, &gate);
            handles.push(s.spawn(move || {
                let _stop_all_on_panic = AbortOnPanic { abort, gate };
                let mut deflate = level.deflate_level().map(|l| Compressors {
                    normal: Compress::new(Compression::new(l), false),
                    stored: Compress::new(Compression::none(), false),
                });
                loop {
                    if abort.load(Ordering::Relaxed) {
                        break;
                    }
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(idx) else { break };
                    {
                        let mut done = gate.0.lock().unwrap_or_else(|e| e.into_inner());
                        while idx >= *done + window && !abort.load(Ordering::Relaxed) {
                            done = gate.1.wait(done).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if abort.load(Ordering::Relaxed) {
                        break;
                    }
                    let chunk = process(root, &entries[job.entry], job, deflate.as_mut());
                    if tx.send((idx, chunk)).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        let mut r = assemble(&entries, &jobs, &rx, &mut sink, &gate, comment);
        if r.is_err() {
            stop_workers(&abort, &gate);
        }
        drop(rx);
        // Joining here keeps a worker panic from unwinding into the caller; it becomes an error.
        for h in handles {
            if h.join().is_err() && r.is_ok() {
                r = Err(ArchiveError::WorkerPanic);
            }
        }
        r
    });
    let (entries_written, bytes_in) = result?;
    sink.inner.flush().map_err(ArchiveError::Write)?;
    Ok(ZipStats {
        entries: entries_written,
        bytes_in,
        bytes_out: sink.written,
    })
}

fn stop_workers(abort: &AtomicBool, gate: &(Mutex<usize>, Condvar)) {
    abort.store(true, Ordering::Relaxed);
    let _guard = gate.0.lock().unwrap_or_else(|e| e.into_inner());
    gate.1.notify_all();
}

/// A panicking worker never delivers its chunk; without this the others would wait on the window
/// forever and the writer on them.
struct AbortOnPanic<'a> {
    abort: &'a AtomicBool,
    gate: &'a (Mutex<usize>, Condvar),
}

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            stop_workers(self.abort, self.gate);
        }
    }
}

fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .max(1)
}

/// Receive chunks, put them back in order and write them; returns (entries, bytes in).
fn assemble<W: Write>(
    entries: &[Entry],
    jobs: &[Job],
    rx: &mpsc::Receiver<(usize, Result<Chunk, ArchiveError>)>,
    sink: &mut Counting<W>,
    gate: &(Mutex<usize>, Condvar),
    comment: &[u8],
) -> Result<(u64, u64), ArchiveError> {
    let mut pending: BTreeMap<usize, Result<Chunk, ArchiveError>> = BTreeMap::new();
    let mut records: Vec<CentralRecord> = Vec::with_capacity(entries.len());
    let mut next_write = 0usize;
    let mut bytes_in = 0u64;
    // State of the multi-chunk entry being written.
    let mut open: Option<(crc32fast::Hasher, u64, u64)> = None;

    while next_write < jobs.len() {
        let (idx, chunk) = rx.recv().map_err(|_| ArchiveError::WorkerPanic)?;
        pending.insert(idx, chunk);
        while let Some(chunk) = pending.remove(&next_write) {
            let chunk = chunk?;
            let job = &jobs[next_write];
            let entry = &entries[job.entry];
            bytes_in += chunk.raw_len;
            if job.first && job.last {
                let offset = sink.written;
                zipfmt::write_local_header(
                    sink,
                    &LocalHeader {
                        name: &entry.name,
                        method: chunk.method,
                        mtime: entry.mtime,
                        sizes: Some((chunk.crc, chunk.data.len() as u64, chunk.raw_len)),
                        zip64: false,
                    },
                )
                .map_err(ArchiveError::Write)?;
                sink.write_all(&chunk.data).map_err(ArchiveError::Write)?;
                records.push(CentralRecord {
                    name: entry.name.clone(),
                    method: chunk.method,
                    descriptor: false,
                    crc: chunk.crc,
                    compressed: chunk.data.len() as u64,
                    uncompressed: chunk.raw_len,
                    offset,
                    mode: entry.mode,
                    mtime: entry.mtime,
                });
            } else {
                let zip64 = entry.size >= ZIP64_RAW_THRESHOLD;
                if job.first {
                    records.push(CentralRecord {
                        name: entry.name.clone(),
                        method: chunk.method,
                        descriptor: true,
                        crc: 0,
                        compressed: 0,
                        uncompressed: 0,
                        offset: sink.written,
                        mode: entry.mode,
                        mtime: entry.mtime,
                    });
                    zipfmt::write_local_header(
                        sink,
                        &LocalHeader {
                            name: &entry.name,
                            method: chunk.method,
                            mtime: entry.mtime,
                            sizes: None,
                            zip64,
                        },
                    )
                    .map_err(ArchiveError::Write)?;
                    open = Some((crc32fast::Hasher::new(), 0, 0));
                }
                sink.write_all(&chunk.data).map_err(ArchiveError::Write)?;
                if let Some((hasher, compressed, uncompressed)) = open.as_mut() {
                    hasher.combine(&crc32fast::Hasher::new_with_initial_len(chunk.crc, chunk.raw_len));
                    *compressed += chunk.data.len() as u64;
                    *uncompressed += chunk.raw_len;
                }
                if job.last
                    && let Some((hasher, compressed, uncompressed)) = open.take()
                {
                    let crc = hasher.finalize();
                    zipfmt::write_data_descriptor(sink, crc, compressed, uncompressed, zip64)
                        .map_err(ArchiveError::Write)?;
                    if let Some(rec) = records.last_mut() {
                        rec.crc = crc;
                        rec.compressed = compressed;
                        rec.uncompressed = uncompressed;
                    }
                }
            }
            next_write += 1;
            let mut done = gate.0.lock().unwrap_or_else(|e| e.into_inner());
            *done = next_write;
            gate.1.notify_all();
        }
    }
    let cd_offset = sink.written;
    zipfmt::write_central_directory(sink, &records, cd_offset, comment).map_err(ArchiveError::Write)?;
    Ok((records.len() as u64, bytes_in))
}

/// lstat every listed path; paths that vanished since collection are skipped, as gitlab-runner does, and
/// so are paths that now lead out of the project through a symlink (a job swapping directories while we
/// archive).
fn scan(root: &Dir, files: &FileSet) -> Result<Vec<Entry>, ArchiveError> {
    let mut entries = Vec::with_capacity(files.files.len());
    for rel in &files.files {
        // Names become archive entries; a hand-built FileSet must not produce `../` or absolute names.
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            tracing::warn!(path = %rel.display(), "file ignored: not a plain relative path");
            continue;
        }
        let meta = match root.lstat_path_in_tree(rel) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %rel.display(), "file ignored: it no longer exists");
                continue;
            }
            Err(e) if is_link_refusal(&e) => {
                tracing::warn!(path = %rel.display(), "file ignored: a symlink on its path leads outside the project");
                continue;
            }
            Err(e) => return Err(ArchiveError::io("reading metadata of", root.path().join(rel), e)),
        };
        let foreign = root
            .is_foreign_hard_link(&meta)
            .map_err(|e| ArchiveError::io("reading metadata of", root.path().join(rel), e))?;
        if foreign {
            tracing::warn!(
                path = %rel.display(),
                uid = meta.uid,
                "file ignored: it is a hard link to a file of another user; the runner does not archive it"
            );
            continue;
        }
        let (kind, type_bits) = match meta.kind {
            FsKind::Symlink => (Kind::Symlink, S_IFLNK),
            FsKind::Dir => (Kind::Dir, S_IFDIR),
            FsKind::File => (Kind::File, S_IFREG),
            FsKind::Other => {
                tracing::warn!(path = %rel.display(), "file ignored: not a regular file, directory or symlink");
                continue;
            }
        };
        let mut name = rel.as_os_str().as_bytes().to_vec();
        if kind == Kind::Dir {
            name.push(b'/');
        }
        let size = if kind == Kind::File { meta.size } else { 0 };
        let mode = if kind == Kind::Symlink {
            S_IFLNK | 0o777
        } else {
            type_bits | (meta.mode & 0o7777)
        };
        entries.push(Entry {
            rel: rel.clone(),
            name,
            kind,
            mode,
            mtime: meta.mtime,
            size,
            chunks: size.div_ceil(CHUNK).max(1),
        });
    }
    Ok(entries)
}

fn plan(entries: &[Entry]) -> Vec<Job> {
    let mut jobs = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        for c in 0..e.chunks {
            let offset = c * CHUNK;
            jobs.push(Job {
                entry: i,
                offset,
                len: if e.kind == Kind::File {
                    (e.size - offset).min(CHUNK)
                } else {
                    0
                },
                first: c == 0,
                last: c + 1 == e.chunks,
            });
        }
    }
    jobs
}

/// One compressor per worker at the archive's level, plus a level-0 one that frames incompressible
/// chunks of multi-chunk entries as deflate stored blocks (a chunk cannot switch the entry's method).
struct Compressors {
    normal: Compress,
    stored: Compress,
}

fn process(
    root: &Dir,
    entry: &Entry,
    job: &Job,
    deflate: Option<&mut Compressors>,
) -> Result<Chunk, ArchiveError> {
    let full = root.path().join(&entry.rel);
    match entry.kind {
        Kind::Dir => Ok(Chunk {
            data: Vec::new(),
            crc: 0,
            raw_len: 0,
            method: METHOD_STORED,
        }),
        Kind::Symlink => {
            let target = root
                .open_parent_in_tree(&entry.rel)
                .and_then(|(parent, name)| parent.read_link(name))
                .map_err(|e| ArchiveError::io("reading link", &full, e))?;
            let data = target.into_vec();
            Ok(Chunk {
                crc: crc32fast::hash(&data),
                raw_len: data.len() as u64,
                data,
                method: METHOD_STORED,
            })
        }
        Kind::File => {
            let input = read_chunk(root, &entry.rel, job.offset, job.len)?;
            let crc = crc32fast::hash(&input);
            let raw_len = input.len() as u64;
            let single = job.first && job.last;
            let stored = |data| Chunk {
                data,
                crc,
                raw_len,
                method: METHOD_STORED,
            };
            let Some(c) = deflate else {
                return Ok(stored(input));
            };
            // Deflating an empty file only adds framing bytes; random-looking data (already compressed
            // files, binaries with packed sections) would burn CPU to grow slightly.
            let incompressible = looks_incompressible(&input);
            if single && (input.is_empty() || incompressible) {
                return Ok(stored(input));
            }
            let flush = if job.last {
                FlushCompress::Finish
            } else {
                FlushCompress::Full
            };
            let compressor = if incompressible {
                &mut c.stored
            } else {
                &mut c.normal
            };
            let data = deflate_chunk(compressor, &input, flush)
                .map_err(|e| ArchiveError::io("compressing", &full, e))?;
            // A one-chunk entry that did not shrink is cheaper to store, for writer and reader.
            if single && data.len() >= input.len() {
                return Ok(stored(input));
            }
            Ok(Chunk {
                data,
                crc,
                raw_len,
                method: METHOD_DEFLATED,
            })
        }
    }
}

/// Order-0 entropy of three 16 KiB samples. Above ~7.97 bits/byte deflate cannot win anything worth
/// its CPU time (its window is only 32 KiB, so longer-range repeats do not help it either).
fn looks_incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 16 * 1024;
    if data.len() < 2 * SAMPLE {
        return false;
    }
    let mut hist = [0u32; 256];
    let mid = data.len() / 2 - SAMPLE / 2;
    for range in [0..SAMPLE, mid..mid + SAMPLE, data.len() - SAMPLE..data.len()] {
        for &b in &data[range] {
            hist[usize::from(b)] += 1;
        }
    }
    let total = f64::from(hist.iter().sum::<u32>());
    let entropy: f64 = hist
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / total;
            -p * p.log2()
        })
        .sum();
    entropy > 7.97
}

/// Read up to `len` bytes at `offset`. A file that shrank since it was listed yields fewer bytes; the
/// archive then records what was actually read. Opened anew beneath `root`, as collection resolved it:
/// links on the way are followed only while the kernel confines them beneath `root`, and a link as the
/// file itself is refused, so a file or directory swapped for a symlink after listing must not make us
/// archive something outside.
fn read_chunk(root: &Dir, rel: &Path, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
    let path = &root.path().join(rel);
    let file = root
        .open_file_in_tree(rel)
        .map_err(|e| ArchiveError::io("opening", path, e))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; len];
    let mut got = 0usize;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::io("reading", path, e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

fn deflate_chunk(c: &mut Compress, input: &[u8], flush: FlushCompress) -> io::Result<Vec<u8>> {
    c.reset();
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    loop {
        let consumed = usize::try_from(c.total_in())
            .unwrap_or(usize::MAX)
            .min(input.len());
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize >= input.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // With a full flush, zlib is done once all input is consumed and output space was left over.
            Status::Ok | Status::BufError
                if !matches!(flush, FlushCompress::Finish) && all_in && out.len() < out.capacity() =>
            {
                return Ok(out);
            }
            Status::Ok | Status::BufError => {}
        }
    }
}

pub(crate) struct Counting<W: Write> {
    pub(crate) inner: W,
    pub(crate) written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_probe_separates_random_from_text() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let random: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        let text = b"the quick brown fox jumps over the lazy dog 0123456789\n".repeat(4000);
        assert!(!looks_incompressible(&text));
        assert!(
            !looks_incompressible(&random[..1000]),
            "small inputs are always tried"
        );
    }

    #[test]
    fn full_flushed_chunks_concatenate_into_one_deflate_stream() {
        let data = b"abcabcabc some text that repeats, some text that repeats\n".repeat(50_000);
        let (a, b) = data.split_at(data.len() / 3);
        let mut c = Compress::new(Compression::new(5), false);
        let mut stream = deflate_chunk(&mut c, a, FlushCompress::Full).unwrap();
        stream.extend(deflate_chunk(&mut c, b, FlushCompress::Finish).unwrap());
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&stream[..]), &mut out).unwrap();
        assert_eq!(out, data);
    }
}
