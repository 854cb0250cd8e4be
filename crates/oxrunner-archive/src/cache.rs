//! The local cache store: `<cache_dir>/<project slug>/<key>/cache.zip`, one archive per (project, key)
//! shared by every job of the runner. gitlab-runner keys Docker cache volumes by concurrent slot, which
//! is why caches "go missing" with `concurrent > 1`; here all slots read and write the same file.
//!
//! Concurrency model: writers build `cache.zip.tmp-<random>` beside the archive and rename it into
//! place, so readers see either the old or the new archive, never a partial one; with two writers the
//! last rename wins and both results are complete archives. A save whose file list (paths, sizes, mtimes,
//! modes, link targets) hashes to the digest stored in the current archive's zip comment is skipped.
//!
//! Trust: the runner (often root) writes here while jobs run as `--user`, and `cache_dir` often sits in
//! that user's home. The root is therefore opened with the trusted walk of `oxrunner_fs` (a link the job
//! user could have placed on the way is refused) and must be owned by root or the runner and writable
//! by nobody else; otherwise caches are refused with a hint rather than tightened, because a directory
//! another user could write may already hold that user's links below it. Below the root, the
//! `<slug>/<key>` directories are opened or made from the handle without following links, and the
//! archive itself is then handled by path through `/proc/self/fd/<that handle>` (the temporary file,
//! its mode, the rename, the comment read, stale temporaries). That is safe because nothing below a
//! checked root is written by anyone but the runner: jobs never get `cache_dir` (their caches pass
//! through the runner), so no other user can put a link there.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use oxrunner_fs::{Dir, Kind, is_link_refusal};
use sha2::{Digest, Sha256};

use crate::create::{open_root, write_zip_atomically};
use crate::{ArchiveError, FileSet, Level, ZipStats, extract_zip_into};

/// The file name of a key's archive in the store.
pub const ARCHIVE_NAME: &str = "cache.zip";
const DIGEST_PREFIX: &str = "oxrunner-cache-digest:sha256:";
/// Temporary archives older than this were left by a crashed writer; younger ones may be in use.
const STALE_TMP_AGE: Duration = Duration::from_secs(6 * 3600);

/// `cache:policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    Pull,
    Push,
    #[default]
    PullPush,
}

impl CachePolicy {
    /// GitLab's spelling (`pull`, `push`, `pull-push`); empty means the default `pull-push`.
    pub fn parse(s: &str) -> Option<CachePolicy> {
        match s.trim() {
            "pull" => Some(CachePolicy::Pull),
            "push" => Some(CachePolicy::Push),
            "" | "pull-push" => Some(CachePolicy::PullPush),
            _ => None,
        }
    }

    pub fn restores(self) -> bool {
        matches!(self, CachePolicy::Pull | CachePolicy::PullPush)
    }

    pub fn saves(self) -> bool {
        matches!(self, CachePolicy::Push | CachePolicy::PullPush)
    }
}

/// Result of [`CacheStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Written(ZipStats),
    /// The archive already holds exactly these files; it was left untouched.
    Unchanged,
}

/// Result of [`CacheStore::restore_with_report`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The (sanitised) key whose archive was extracted.
    pub restored: Option<String>,
    /// Lines for the job log, in order.
    pub warnings: Vec<String>,
    /// An archive was there but could not be used (as opposed to no archive for any key).
    pub failed: bool,
}

#[derive(Debug, Clone)]
pub struct CacheStore {
    root: PathBuf,
}

impl CacheStore {
    pub fn new(cache_dir: &Path) -> Self {
        CacheStore {
            root: cache_dir.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// gitlab-runner's key sanitisation (`cache/cachekey`): `%2F`/`%2E` decoded, `\` → `/`, `.`/`..`
    /// resolved under a virtual root, trailing blanks stripped from the last segments. `None` when
    /// nothing is left (the cache is then skipped with a warning).
    pub fn sanitize_key(key: &str) -> Option<String> {
        let decoded = key
            .replace("%2f", "/")
            .replace("%2F", "/")
            .replace("%2e", ".")
            .replace("%2E", ".")
            .replace('\\', "/");
        let mut parts = clean_segments(&decoded);
        while let Some(last) = parts.last_mut() {
            let trimmed = last.trim_end().to_owned();
            if trimmed.is_empty() {
                parts.pop();
            } else {
                *last = trimmed;
                break;
            }
        }
        // Upstream stops here, so "a/.. " would become "a/.."; cleaning again keeps trimmed segments
        // from turning into traversals.
        let parts = clean_segments(&parts.join("/"));
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// The key as stored with `FF_HASH_CACHE_KEYS`: SHA-256 of the unsanitised key, in hex. Safe as a
    /// path component whatever the key contains.
    pub fn hash_key(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// `CACHE_FALLBACK_KEY` is ignored (with a warning) when it ends in `-protected`, so unprotected
    /// refs cannot read protected caches. Returns the keys to try, in order, and the warnings.
    pub fn keys_in_order(
        key: &str,
        fallback_keys: &[String],
        cache_fallback_key: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let mut keys = vec![key.to_owned()];
        let mut warnings = Vec::new();
        keys.extend(fallback_keys.iter().cloned());
        if let Some(global) = cache_fallback_key.map(str::trim).filter(|k| !k.is_empty()) {
            if global.ends_with("-protected") {
                warnings.push(format!(
                    "CACHE_FALLBACK_KEY {global:?} not allowed to end in \"-protected\"; it is ignored"
                ));
            } else {
                keys.push(global.to_owned());
            }
        }
        (keys, warnings)
    }

    /// Where the archive of `key` lives. Both parts are sanitised; anything that is not a normal path
    /// component is dropped so the result always stays under the store root.
    pub fn archive_path(&self, project_slug: &str, key: &str) -> PathBuf {
        self.root
            .join(archive_dir_rel(project_slug, key))
            .join(ARCHIVE_NAME)
    }

    /// The store's root, opened through the trusted walk (see the module docs) and checked: nobody but
    /// root or the runner may be able to change it. `create`: make it (0755) when missing.
    fn open_store(&self, create: bool) -> Result<Dir, ArchiveError> {
        let opened = if create {
            Dir::create_trusted(&self.root)
        } else {
            Dir::open_trusted(&self.root)
        };
        let dir = opened.map_err(|e| ArchiveError::io("opening the cache directory", &self.root, e))?;
        let writer = dir
            .untrusted_writer()
            .map_err(|e| ArchiveError::io("checking the cache directory", &self.root, e))?;
        if let Some(writer) = writer {
            let msg = format!(
                "{writer} can write it, and could redirect the runner's cache files; caches are not used\n\
                 hint: let only the runner's user own it: `chown root: DIR && chmod 0755 DIR` when the runner \
                 runs as root (or remove it and let the runner create it)"
            );
            return Err(ArchiveError::io(
                "using the cache directory",
                &self.root,
                io::Error::new(io::ErrorKind::PermissionDenied, msg),
            ));
        }
        Ok(dir)
    }

    /// Extract the first key (in order) that has an archive; see [`CacheStore::restore_with_report`].
    pub fn restore(
        &self,
        project_slug: &str,
        keys_in_order: &[String],
        project_dir: &Path,
    ) -> Result<Option<String>, ArchiveError> {
        let report = self.restore_with_report(project_slug, keys_in_order, project_dir)?;
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        Ok(report.restored)
    }

    /// Try each key in order; a missing or unreadable archive moves on to the next key with a warning,
    /// since cache failures never fail a job.
    pub fn restore_with_report(
        &self,
        project_slug: &str,
        keys_in_order: &[String],
        project_dir: &Path,
    ) -> Result<RestoreReport, ArchiveError> {
        let root = Dir::create_trusted(project_dir)
            .map_err(|e| ArchiveError::io("opening directory", project_dir, e))?;
        self.restore_into(project_slug, keys_in_order, &root)
    }

    /// [`CacheStore::restore_with_report`] into the project directory `root` (see [`extract_zip_into`]).
    pub fn restore_into(
        &self,
        project_slug: &str,
        keys_in_order: &[String],
        root: &Dir,
    ) -> Result<RestoreReport, ArchiveError> {
        check_slug(project_slug)?;
        let mut report = RestoreReport::default();
        let store = match self.open_store(false) {
            Ok(store) => Some(store),
            Err(ArchiveError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        for raw in keys_in_order {
            let Some(key) = Self::sanitize_key(raw) else {
                report
                    .warnings
                    .push(format!("cache key {raw:?} could not be sanitized; skipping it"));
                report.failed = true;
                continue;
            };
            let path = self.archive_path(project_slug, &key);
            let Some((_dir, source)) = store
                .as_ref()
                .and_then(|store| open_archive(store, &archive_dir_rel(project_slug, &key)))
            else {
                report.warnings.push(format!(
                    "No cache found for key {key:?} ({} does not exist)",
                    path.display()
                ));
                continue;
            };
            match extract_zip_into(&source, root) {
                Ok(_) => {
                    report.restored = Some(key);
                    return Ok(report);
                }
                Err(e) => {
                    report.failed = true;
                    report
                        .warnings
                        .push(format!("Failed to extract cache for key {key:?}: {e}"));
                }
            }
        }
        Ok(report)
    }

    /// Archive `files` as the cache of `key`, unless the current archive already has the same content.
    pub fn save(
        &self,
        project_slug: &str,
        key: &str,
        project_dir: &Path,
        files: &FileSet,
        level: Level,
    ) -> Result<SaveOutcome, ArchiveError> {
        self.save_from(project_slug, key, &open_root(project_dir)?, files, level)
    }

    /// [`CacheStore::save`] with `files` relative to the project directory `root` (see
    /// [`crate::create_zip_in`]).
    pub fn save_from(
        &self,
        project_slug: &str,
        key: &str,
        root: &Dir,
        files: &FileSet,
        level: Level,
    ) -> Result<SaveOutcome, ArchiveError> {
        check_slug(project_slug)?;
        let clean = Self::sanitize_key(key).ok_or_else(|| ArchiveError::InvalidCacheKey(key.to_owned()))?;
        let store = self.open_store(true)?;
        let rel = archive_dir_rel(project_slug, &clean);
        let dir = store
            .create_dir_all(&rel, 0o755)
            .map_err(|e| ArchiveError::io("creating directory", self.root.join(&rel), e))?;
        // Path-based from here, but only through the held handle: everything below the checked root was
        // made by the runner, so no other user can place a link there.
        let dest = dir.proc_path().join(ARCHIVE_NAME);
        let digest = content_digest(root, files)?;
        let comment = format!("{DIGEST_PREFIX}{digest}");
        if read_zip_comment(&dest).is_some_and(|c| c == comment.as_bytes()) {
            return Ok(SaveOutcome::Unchanged);
        }
        remove_stale_temporaries(&dir.proc_path());
        let stats = write_zip_atomically(root, files, level, &dest, comment.as_bytes())?;
        Ok(SaveOutcome::Written(stats))
    }
}

impl CacheStore {
    /// The directory that holds `key`'s archive, made if missing, reached through the store's trusted walk (the
    /// store refused when another user can change it) and held open: a download writes and renames into it
    /// through [`Dir::proc_path`], never through a path a job user could redirect. Temporaries an interrupted
    /// download or save left there (over six hours old) are swept on the way.
    pub fn key_dir(&self, project_slug: &str, key: &str) -> Result<Dir, ArchiveError> {
        check_slug(project_slug)?;
        let clean = Self::sanitize_key(key).ok_or_else(|| ArchiveError::InvalidCacheKey(key.to_owned()))?;
        let store = self.open_store(true)?;
        let rel = archive_dir_rel(project_slug, &clean);
        let dir = store
            .create_dir_all(&rel, 0o755)
            .map_err(|e| ArchiveError::io("creating directory", self.root.join(&rel), e))?;
        remove_stale_temporaries(&dir.proc_path());
        Ok(dir)
    }

    /// Called after the archive of `key` was extracted into `root` when it came from a remote store: its digest
    /// describes the files (with their times) on the machine that made it, so it is replaced by the digest of the
    /// files just extracted here. The next save of unchanged files then finds the archive up to date instead of
    /// writing and uploading it again. Archives without our digest (made by gitlab-runner) are left as they are.
    pub fn adopt_extracted(&self, project_slug: &str, key: &str, root: &Dir) -> Result<(), ArchiveError> {
        check_slug(project_slug)?;
        // Through the store's trusted directory, as the download that put the archive there.
        let dir = self.key_dir(project_slug, key)?;
        let path = dir.proc_path().join(ARCHIVE_NAME);
        let Some((offset, old)) = zip_comment_at(&path) else {
            return Ok(());
        };
        if !old.starts_with(DIGEST_PREFIX.as_bytes()) {
            return Ok(());
        }
        let file = crate::extract::open_archive(&path).map_err(|e| ArchiveError::io("opening", &path, e))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| ArchiveError::io("reading", &path, io::Error::other(e)))?;
        let mut files = Vec::with_capacity(zip.len());
        for i in 0..zip.len() {
            let entry = zip
                .by_index_raw(i)
                .map_err(|e| ArchiveError::io("reading", &path, io::Error::other(e)))?;
            let name = entry
                .name()
                .map_err(|e| ArchiveError::io("reading", &path, io::Error::other(e)))?;
            files.push(PathBuf::from(name.trim_end_matches('/')));
        }
        let set = FileSet {
            files,
            warnings: Vec::new(),
        };
        let comment = format!("{DIGEST_PREFIX}{}", content_digest(root, &set)?);
        // Same length (one hash for another): the comment is rewritten in place, the entries stay untouched.
        if comment.len() != old.len() {
            return Ok(());
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(|e| ArchiveError::io("opening", &path, e))?;
        // The archive keeps its date: a download is dated with the object's `Last-Modified`, and the next restore
        // compares that date with the store's (a rewrite dated now would make an object pushed meanwhile look older).
        let dated = out.metadata().and_then(|m| m.modified());
        // Not synced: that would force the whole just-downloaded archive to disk inside the restore, and a lost
        // rewrite only costs one more upload of an unchanged cache.
        out.seek(SeekFrom::Start(offset))
            .and_then(|_| out.write_all(comment.as_bytes()))
            .and_then(|()| dated.and_then(|date| out.set_modified(date)))
            .map_err(|e| ArchiveError::io("writing", &path, e))
    }
}

/// Archives `files` (relative to `root`) at `dest`, as the `cache-archiver` helper command does inside a job
/// environment: with the same content digest as the store's archives, so an unchanged cache is not rewritten, and
/// atomically. It runs with the job's own rights on a path the job's scripts chose, so unlike [`CacheStore`] it
/// makes no trust check of the directory.
pub fn save_cache_file(
    dest: &Path,
    root: &Dir,
    files: &FileSet,
    level: Level,
) -> Result<SaveOutcome, ArchiveError> {
    let digest = content_digest(root, files)?;
    let comment = format!("{DIGEST_PREFIX}{digest}");
    if read_zip_comment(dest).is_some_and(|c| c == comment.as_bytes()) {
        return Ok(SaveOutcome::Unchanged);
    }
    let stats = write_zip_atomically(root, files, level, dest, comment.as_bytes())?;
    Ok(SaveOutcome::Written(stats))
}

/// `<slug>/<key>` with only normal components, so it always stays below the store's root.
fn archive_dir_rel(project_slug: &str, key: &str) -> PathBuf {
    let slug = CacheStore::sanitize_key(project_slug).unwrap_or_default();
    let key = CacheStore::sanitize_key(key).unwrap_or_default();
    let mut p = PathBuf::new();
    for part in [slug.as_str(), key.as_str()] {
        for comp in Path::new(part).components() {
            if let Component::Normal(c) = comp {
                p.push(c);
            }
        }
    }
    p
}

/// The archive's directory below the store (no link followed) and a path to the archive through that
/// handle; `None` when there is no archive there.
fn open_archive(store: &Dir, rel: &Path) -> Option<(Dir, PathBuf)> {
    let dir = store.open_dir(rel).ok()?;
    let meta = dir.lstat(std::ffi::OsStr::new(ARCHIVE_NAME)).ok()?;
    if meta.kind != Kind::File {
        return None;
    }
    let path = dir.proc_path().join(ARCHIVE_NAME);
    Some((dir, path))
}

fn check_slug(slug: &str) -> Result<(), ArchiveError> {
    match CacheStore::sanitize_key(slug) {
        Some(_) => Ok(()),
        None => Err(ArchiveError::InvalidProjectSlug(slug.to_owned())),
    }
}

/// Split on `/`, resolving `.` and `..` under a virtual root (`..` at the top is dropped).
fn clean_segments(s: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for seg in s.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other.to_owned()),
        }
    }
    parts
}

/// SHA-256 over what the archive would record for each listed path.
fn content_digest(root: &Dir, files: &FileSet) -> Result<String, ArchiveError> {
    let mut h = Sha256::new();
    for rel in &files.files {
        let full = root.path().join(rel);
        h.update(rel.as_os_str().as_bytes());
        h.update([0]);
        let found = root
            .open_parent_in_tree(rel)
            .and_then(|(parent, name)| Ok((parent.lstat(name)?, parent, name)));
        match found {
            Ok((m, parent, name)) => {
                h.update(m.mode.to_le_bytes());
                h.update(m.size.to_le_bytes());
                h.update(m.mtime.to_le_bytes());
                h.update(m.mtime_nsec.to_le_bytes());
                if m.kind == Kind::Symlink {
                    let target = parent
                        .read_link(name)
                        .map_err(|e| ArchiveError::io("reading link", &full, e))?;
                    h.update(target.as_bytes());
                }
            }
            // What the archive will skip (vanished, or now behind a link) must change the digest too.
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_refusal(&e) => h.update(b"missing"),
            Err(e) => return Err(ArchiveError::io("reading metadata of", &full, e)),
        }
        h.update([0xff]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The archive comment from the end-of-central-directory record, read from the file's tail only.
fn read_zip_comment(path: &Path) -> Option<Vec<u8>> {
    zip_comment_at(path).map(|(_, comment)| comment)
}

/// The archive comment and the file offset it starts at.
fn zip_comment_at(path: &Path) -> Option<(u64, Vec<u8>)> {
    let mut f = crate::extract::open_archive(path).ok()?;
    let len = f.metadata().ok()?.len();
    let tail_len = len.min(22 + 0xFFFF);
    f.seek(SeekFrom::Start(len - tail_len)).ok()?;
    let mut tail = Vec::with_capacity(usize::try_from(tail_len).ok()?);
    f.take(tail_len).read_to_end(&mut tail).ok()?;
    let pos = (0..tail.len().saturating_sub(21)).rev().find(|&i| {
        tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06] && {
            let clen = usize::from(u16::from_le_bytes([tail[i + 20], tail[i + 21]]));
            i + 22 + clen == tail.len()
        }
    })?;
    Some((len - tail_len + (pos + 22) as u64, tail[pos + 22..].to_vec()))
}

fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let prefix = format!("{ARCHIVE_NAME}.tmp-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        // By the later of its mtime and ctime: a download is dated with the object's `Last-Modified` (often days
        // ago), and a ctime cannot be set back, so a temporary still being written is never taken for a leftover.
        let old = entry
            .metadata()
            .ok()
            .and_then(|m| {
                let changed = SystemTime::UNIX_EPOCH
                    + Duration::new(
                        u64::try_from(m.ctime()).ok()?,
                        u32::try_from(m.ctime_nsec()).ok()?,
                    );
                Some(m.modified().ok()?.max(changed))
            })
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TMP_AGE);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        assert_eq!(CachePolicy::parse("pull"), Some(CachePolicy::Pull));
        assert_eq!(CachePolicy::parse(""), Some(CachePolicy::PullPush));
        assert!(CachePolicy::Push.saves() && !CachePolicy::Push.restores());
        assert!(CachePolicy::Pull.restores() && !CachePolicy::Pull.saves());
        assert_eq!(CachePolicy::parse("always"), None);
    }

    #[test]
    fn hashed_keys_are_sha256_hex() {
        let h = CacheStore::hash_key("main");
        assert_eq!(
            h,
            "0d6e4079e36703ebd37c00722f5891d28b0e2811dc114b129215123adcce3605"
        );
        assert_ne!(CacheStore::hash_key("main"), CacheStore::hash_key("main "));
        assert!(CacheStore::sanitize_key(&h).is_some_and(|k| k == h));
    }
}
