//! Safe, parallel zip extraction.
//!
//! The whole central directory is checked before anything is written, so a hostile archive is refused
//! as a unit. Every write is relative to a directory handle of the target ([`oxrunner_fs::Dir`]), with
//! no symlink followed at any component: a job user who swaps a directory for a link while we extract
//! (the target usually belongs to them) makes the extraction fail, never write elsewhere. Writing goes
//! in phases: directories first (parents before children), regular files in parallel (existing entries
//! are unlinked, never opened, and new files are created with O_EXCL|O_NOFOLLOW), archive symlinks once
//! every file is in place, and directory modes/mtimes last so read-only directories do not block their
//! own children. Symlinks are restored with whatever target they have (a Python venv's
//! `bin/python -> /usr/bin/python3`): creating a link writes nothing through it.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs::{File, FileTimes};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use oxrunner_fs::{Dir, Kind, is_link_refusal};
use zip::ZipArchive;
use zip::extra_fields::ExtraField;

use crate::ArchiveError;
use crate::arriving::{Arrivals, Journal};
use crate::zipfmt::unix_from_dos;

/// Symlink targets longer than PATH_MAX are not real link targets.
const MAX_LINK_TARGET: u64 = 4096;

/// What [`extract_zip`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Uncompressed bytes of regular files.
    pub bytes: u64,
}

struct Item {
    index: usize,
    rel: PathBuf,
    mode: Option<u32>,
}

type UnsafeTarget<'a> = dyn Fn(&Path, &'static str) -> ArchiveError + Sync + 'a;

const LINK_ON_THE_WAY: &str = "a symlink (or file) where the archive needs a directory; it was not followed";

/// Extract `archive` into `target_dir` (created if missing). `target_dir` itself is trusted (see
/// [`oxrunner_fs`]); below it nothing is followed. Existing files are replaced.
pub fn extract_zip(archive: &Path, target_dir: &Path) -> Result<ExtractStats, ArchiveError> {
    let root =
        Dir::create_trusted(target_dir).map_err(|e| ArchiveError::io("opening directory", target_dir, e))?;
    extract_zip_into(archive, &root)
}

/// Opens an archive the runner itself wrote (a cache, a downloaded artifact) for reading. A link at that name was
/// not put there by the runner, so it is refused rather than followed.
pub(crate) fn open_archive(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Extract `archive` into the directory `root`; nothing outside it is ever created, modified or followed.
pub fn extract_zip_into(archive: &Path, root: &Dir) -> Result<ExtractStats, ArchiveError> {
    let file = open_archive(archive).map_err(|e| ArchiveError::io("opening", archive, e))?;
    let len = file
        .metadata()
        .map_err(|e| ArchiveError::io("reading metadata of", archive, e))?
        .len();
    extract_from(SharedFile::new(file, len, None), archive, root, None)
}

/// The extraction itself. With a `journal` (an archive still arriving, see [`crate::arriving`]) every path it
/// writes is recorded, and symlink targets are read when the links are made rather than up front (a link's target
/// may be the last bytes to arrive).
pub(crate) fn extract_from(
    reader: SharedFile,
    archive: &Path,
    root: &Dir,
    journal: Option<&Journal>,
) -> Result<ExtractStats, ArchiveError> {
    let zip_err = |source| ArchiveError::Zip {
        path: archive.to_path_buf(),
        source,
    };
    let mut zip = ZipArchive::new(reader).map_err(zip_err)?;
    let (dirs, files, links) = read_entries(&mut zip, archive, journal.is_some())?;
    let owner = owner_for(root);

    let unsafe_target = |path: &Path, reason: &'static str| ArchiveError::UnsafeTarget {
        archive: archive.to_path_buf(),
        path: root.path().join(path),
        reason,
    };
    let place_err = |rel: &Path, op: &'static str, e: io::Error| {
        if is_link_refusal(&e) {
            unsafe_target(rel, LINK_ON_THE_WAY)
        } else {
            ArchiveError::io(op, root.path().join(rel), e)
        }
    };

    // Phase 1: every directory the archive needs, parents first (BTreeSet order).
    let mut needed: BTreeSet<&Path> = dirs.iter().map(|i| i.rel.as_path()).collect();
    for item in files.iter().chain(links.iter().map(|(i, _)| i)) {
        for a in item.rel.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                needed.insert(a);
            }
        }
    }
    for rel in &needed {
        let (parent, name) = root
            .open_parent(rel)
            .map_err(|e| place_err(rel, "opening the parent of", e))?;
        if let Some(journal) = journal
            && parent.lstat(name).is_err()
        {
            journal.made_dir(rel.to_path_buf());
        }
        let dir = parent
            .create_dir(name, 0o755)
            .map_err(|e| place_err(rel, "creating directory", e))?;
        if let Some((uid, gid)) = owner {
            dir.chown(uid, gid)
                .map_err(|e| ArchiveError::io("changing the owner of", root.path().join(rel), e))?;
        }
    }

    // Phase 2: regular files, in parallel.
    let bytes = extract_files(&zip, archive, (root, owner, journal), &files, &unsafe_target)?;

    // Phase 3: symlinks, once nothing else will be written.
    for (item, target) in &links {
        let read;
        let target = if journal.is_some() {
            read = link_target(&mut zip, item.index, archive)?;
            &read
        } else {
            target
        };
        let (parent, name) = root
            .open_parent(&item.rel)
            .map_err(|e| place_err(&item.rel, "opening the parent of", e))?;
        make_room(&parent, name, &item.rel, journal).map_err(|reason| unsafe_target(&item.rel, reason))?;
        parent
            .symlink(OsStr::from_bytes(target), name)
            .map_err(|e| place_err(&item.rel, "creating symlink", e))?;
        if let Some((uid, gid)) = owner {
            parent
                .chown_entry(name, uid, gid)
                .map_err(|e| ArchiveError::io("changing the owner of", root.path().join(&item.rel), e))?;
        }
        let mut entry = zip.by_index(item.index).map_err(zip_err)?;
        // Best effort, like tar: a link's own mtime matters to nobody's build.
        let _ = parent.set_link_mtime(name, entry_mtime(&mut entry));
    }

    // Phase 4: directory modes and times, deepest first.
    for item in &dirs {
        let dir = root
            .open_dir(&item.rel)
            .map_err(|e| place_err(&item.rel, "opening directory", e))?;
        let mut entry = zip.by_index(item.index).map_err(zip_err)?;
        let mtime = entry_mtime(&mut entry);
        drop(entry);
        let mode = item.mode.map_or(0o755, |m| m & 0o777);
        let set_mode = |m| {
            dir.set_mode(m)
                .map_err(|e| ArchiveError::io("setting permissions of", root.path().join(&item.rel), e))
        };
        set_mode(mode | 0o700)?;
        let _ = dir.set_mtime(mtime);
        if mode | 0o700 != mode {
            set_mode(mode)?;
        }
    }

    Ok(ExtractStats {
        files: files.len() as u64,
        dirs: dirs.len() as u64,
        symlinks: links.len() as u64,
        bytes,
    })
}

type Entries = (Vec<Item>, Vec<Item>, Vec<(Item, Vec<u8>)>);

/// Where extraction writes, who gets what it creates, and where it records what it wrote.
type Target<'a> = (&'a Dir, Option<(u32, u32)>, Option<&'a Journal>);

/// The owner new entries get: root extracting into a directory another user owns (a `--user` job's
/// project) hands them to that user, as gitlab-runner does by extracting as the job user; otherwise the
/// job could not change or replace its own restored files.
fn owner_for(root: &Dir) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let m = root.meta().ok()?;
    (m.uid != 0).then_some((m.uid, m.gid))
}

/// The central directory sorted into directories (deepest first), files (one per path, last wins) and
/// symlinks with their targets (empty when `defer_links`: read by [`link_target`] later). Names that could
/// escape the target refuse the whole archive.
fn read_entries(
    zip: &mut ZipArchive<SharedFile>,
    archive: &Path,
    defer_links: bool,
) -> Result<Entries, ArchiveError> {
    let zip_err = |source| ArchiveError::Zip {
        path: archive.to_path_buf(),
        source,
    };
    let unsafe_entry = |name: &[u8], reason: &'static str| ArchiveError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: String::from_utf8_lossy(name).into_owned(),
        reason,
    };
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let mut links: Vec<(Item, Vec<u8>)> = Vec::new();
    for index in 0..zip.len() {
        let entry = zip.by_index_data(index).map_err(zip_err)?;
        let name = entry.name_raw().to_vec();
        if entry.encrypted() {
            return Err(unsafe_entry(&name, "is encrypted"));
        }
        let Some(rel) = safe_relative(&name).map_err(|r| unsafe_entry(&name, r))? else {
            continue;
        };
        let item = Item {
            index,
            rel,
            mode: entry.unix_mode(),
        };
        if entry.is_symlink() {
            if entry.size() > MAX_LINK_TARGET {
                return Err(unsafe_entry(&name, "is a symlink with an oversized target"));
            }
            if entry.size() == 0 {
                return Err(unsafe_entry(
                    &name,
                    "is a symlink with an empty or invalid target",
                ));
            }
            drop(entry);
            let target = if defer_links {
                Vec::new()
            } else {
                link_target(zip, index, archive)?
            };
            links.push((item, target));
        } else if entry.is_dir() {
            dirs.push(item);
        } else {
            files.push(item);
        }
    }

    // Names that differ only in spelling (`a//b`, `./a/b`) land on one path; the last one wins, as it
    // would when extracting sequentially, and two workers never race for one file.
    let mut seen = HashSet::new();
    files.reverse();
    files.retain(|item| seen.insert(item.rel.clone()));
    files.reverse();
    // Children before parents, so a read-only directory is locked only after its contents are done.
    dirs.sort_by_key(|item| std::cmp::Reverse(item.rel.components().count()));

    // Entries are placed through directory handles that refuse links anyway; refusing up front keeps
    // such an archive from being half extracted.
    let link_set: HashSet<&Path> = links.iter().map(|(i, _)| i.rel.as_path()).collect();
    for item in dirs
        .iter()
        .chain(files.iter())
        .chain(links.iter().map(|(i, _)| i))
    {
        if item.rel.ancestors().skip(1).any(|a| link_set.contains(a)) {
            return Err(unsafe_entry(
                item.rel.as_os_str().as_bytes(),
                "lies beneath a symlink of the same archive",
            ));
        }
    }
    Ok((dirs, files, links))
}

/// A symlink entry's target, refused when empty or holding a NUL byte.
fn link_target(
    zip: &mut ZipArchive<SharedFile>,
    index: usize,
    archive: &Path,
) -> Result<Vec<u8>, ArchiveError> {
    let mut entry = zip.by_index(index).map_err(|source| ArchiveError::Zip {
        path: archive.to_path_buf(),
        source,
    })?;
    let name = entry.name_raw().to_vec();
    let mut target = Vec::new();
    (&mut entry)
        .take(MAX_LINK_TARGET + 1)
        .read_to_end(&mut target)
        .map_err(|e| ArchiveError::io("reading symlink entry of", archive, e))?;
    if target.is_empty() || target.contains(&0) || target.len() as u64 > MAX_LINK_TARGET {
        return Err(ArchiveError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: String::from_utf8_lossy(&name).into_owned(),
            reason: "is a symlink with an empty or invalid target",
        });
    }
    Ok(target)
}

fn extract_files(
    zip: &ZipArchive<SharedFile>,
    archive: &Path,
    target: Target<'_>,
    files: &[Item],
    unsafe_target: &UnsafeTarget<'_>,
) -> Result<u64, ArchiveError> {
    if files.is_empty() {
        return Ok(0);
    }
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, files.len());
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let mut zip = zip.clone();
                let (next, abort) = (&next, &abort);
                s.spawn(move || -> Result<u64, ArchiveError> {
                    let mut bytes = 0;
                    let mut buf = vec![0u8; 256 * 1024];
                    while !abort.load(Ordering::Relaxed) {
                        let Some(item) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        match extract_one(&mut zip, archive, target, item, unsafe_target, &mut buf) {
                            Ok(n) => bytes += n,
                            Err(e) => {
                                abort.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(bytes)
                })
            })
            .collect();
        let mut total = 0;
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(ArchiveError::WorkerPanic);
                }
            }
        }
        first_err.map_or(Ok(total), Err)
    })
}

fn extract_one(
    zip: &mut ZipArchive<SharedFile>,
    archive: &Path,
    (root, owner, journal): Target<'_>,
    item: &Item,
    unsafe_target: &UnsafeTarget<'_>,
    buf: &mut [u8],
) -> Result<u64, ArchiveError> {
    let path = root.path().join(&item.rel);
    let (parent, name) = root.open_parent(&item.rel).map_err(|e| {
        if is_link_refusal(&e) {
            unsafe_target(&item.rel, LINK_ON_THE_WAY)
        } else {
            ArchiveError::io("opening the parent of", &path, e)
        }
    })?;
    make_room(&parent, name, &item.rel, journal).map_err(|reason| unsafe_target(&item.rel, reason))?;
    let mut entry = zip.by_index(item.index).map_err(|source| ArchiveError::Zip {
        path: archive.to_path_buf(),
        source,
    })?;
    let mtime = entry_mtime(&mut entry);
    let mut out = parent
        .create_new(name, 0o600)
        .map_err(|e| ArchiveError::io("creating", &path, e))?;
    // The zip reader verifies the CRC at the end of the entry, so a corrupt entry fails here.
    let n = copy_large(&mut entry, &mut out, buf).map_err(|e| ArchiveError::io("extracting", &path, e))?;
    let mode = item.mode.map_or(0o644, |m| m & 0o777);
    if let Some((uid, gid)) = owner {
        oxrunner_fs::fchown(out.as_fd(), uid, gid)
            .map_err(|e| ArchiveError::io("changing the owner of", &path, e))?;
    }
    // All through the descriptor: the path may have been swapped since the file was created.
    out.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| ArchiveError::io("setting permissions of", &path, e))?;
    out.set_times(FileTimes::new().set_modified(system_time(mtime)))
        .map_err(|e| ArchiveError::io("setting mtime of", &path, e))?;
    Ok(n)
}

/// `io::copy` with a buffer large enough that big files do not cost a write syscall per 8 KiB.
fn copy_large(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        io::Write::write_all(to, &buf[..n])?;
        total += n as u64;
    }
}

/// [`remove_non_dir`], or with a journal (an archive still arriving, which may yet be taken back): what stands at
/// `name` is renamed aside instead of removed, so that undoing the extraction can put it back, and the new entry
/// is recorded.
fn make_room(parent: &Dir, name: &OsStr, rel: &Path, journal: Option<&Journal>) -> Result<(), &'static str> {
    let Some(journal) = journal else {
        return remove_non_dir(parent, name);
    };
    match parent.lstat(name) {
        Ok(m) if m.kind == Kind::Dir => Err("a directory where the archive has a file or symlink"),
        Ok(_) => {
            let aside = journal.aside_name();
            parent
                .rename(name, &aside)
                .map_err(|_| "a file that cannot be replaced")?;
            journal.replaced(rel.to_path_buf(), aside);
            Ok(())
        }
        Err(_) => {
            journal.wrote(rel.to_path_buf());
            Ok(())
        }
    }
}

/// Make room for a new file or link `name` in `parent` without following anything already there.
fn remove_non_dir(parent: &Dir, name: &OsStr) -> Result<(), &'static str> {
    match parent.lstat(name) {
        Ok(m) if m.kind == Kind::Dir => Err("a directory where the archive has a file or symlink"),
        // Unlinking (rather than truncating) also keeps hard links to outside files intact.
        Ok(_) => parent.unlink(name).map_err(|_| "a file that cannot be replaced"),
        Err(_) => Ok(()),
    }
}

/// A zip entry name as a relative path with only normal components; `None` for names that denote the
/// root itself (`./`). Backslashes count as separators so `..\x` is caught too.
fn safe_relative(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    if raw.first().is_some_and(|&b| b == b'/' || b == b'\\')
        || (raw.len() >= 2 && raw[1] == b':' && raw[0].is_ascii_alphabetic())
    {
        return Err("is an absolute path");
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|&b| b == b'/' || b == b'\\') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("contains a `..` component (it would escape the target directory)"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Modification time from the extended-timestamp extra field, else the DOS time (taken as UTC).
fn entry_mtime<R: Read>(entry: &mut zip::read::ZipFile<'_, R>) -> i64 {
    for field in entry.extra_data_fields() {
        if let ExtraField::ExtendedTimestamp(ts) = field
            && let Some(t) = ts.mod_time()
        {
            return i64::from(t);
        }
    }
    entry
        .last_modified()
        .map(|d| unix_from_dos(d.year(), d.month(), d.day(), d.hour(), d.minute(), d.second()))
        .unwrap_or(0)
}

fn system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// A file handle that can be cloned per thread: each clone keeps its own position and read-ahead
/// buffer and reads with pread, so parallel readers of one archive never disturb each other. The buffer
/// matters: the zip reader asks for small pieces, one syscall each without it.
#[derive(Clone)]
pub(crate) struct SharedFile {
    file: Arc<File>,
    /// An archive still downloading: reads wait for their bytes.
    arrivals: Option<Arc<Arrivals>>,
    pos: u64,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`; `buf` holds valid bytes `[buf_start, buf_start + buf.len())`.
    buf_start: u64,
}

const READ_AHEAD: usize = 256 * 1024;

impl SharedFile {
    pub(crate) fn new(file: File, len: u64, arrivals: Option<Arc<Arrivals>>) -> Self {
        SharedFile {
            file: Arc::new(file),
            arrivals,
            pos: 0,
            len,
            buf: Vec::new(),
            buf_start: 0,
        }
    }
}

impl Read for SharedFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            if let Some(arrivals) = &self.arrivals {
                let want = out.len().max(READ_AHEAD) as u64;
                arrivals.wait_for(
                    self.pos.min(self.len),
                    self.pos.saturating_add(want).min(self.len),
                )?;
            }
            if out.len() >= READ_AHEAD {
                let n = self.file.read_at(out, self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            self.buf.resize(READ_AHEAD, 0);
            let n = self.file.read_at(&mut self.buf, self.pos)?;
            self.buf.truncate(n);
            self.buf_start = self.pos;
            if n == 0 {
                return Ok(0);
            }
        }
        let at = usize::try_from(self.pos - self.buf_start).unwrap_or(usize::MAX);
        let avail = &self.buf[at..];
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start of archive"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_confined() {
        assert_eq!(safe_relative(b"a/b.txt"), Ok(Some(PathBuf::from("a/b.txt"))));
        assert_eq!(safe_relative(b"./a//b/"), Ok(Some(PathBuf::from("a/b"))));
        assert_eq!(safe_relative(b"./"), Ok(None));
        assert!(safe_relative(b"../x").is_err());
        assert!(safe_relative(b"a/../../x").is_err());
        assert!(safe_relative(b"a\\..\\..\\x").is_err());
        assert!(safe_relative(b"/etc/passwd").is_err());
        assert!(safe_relative(b"C:/x").is_err());
        assert!(safe_relative(b"a\0b").is_err());
    }
}
