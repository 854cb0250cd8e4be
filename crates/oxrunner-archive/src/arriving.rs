//! Extracting an archive while it is still being downloaded (a remote cache's parts land in a file at their
//! offsets, in any order). The downloader reports each written range to an [`Arrivals`]; the extraction reads the
//! file through it, and a read waits until its bytes have arrived. The central directory is read first, as for a
//! complete archive, so a hostile archive is still refused before anything is written (symlink targets, which are
//! entry data, are checked when the link is made). Should the download fail midway, the extraction takes back
//! everything it had done ([`Journal`]: new entries removed, the files they replaced put back, directories it made
//! removed when empty), so a job never starts on half of a cache it was told is missing.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use oxrunner_fs::Dir;

use crate::extract::{SharedFile, extract_from};

/// How a download ended, as far as the extraction is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    Failed(String),
}

#[derive(Debug)]
struct State {
    /// The archive's size, once the download knows it and has sized the file.
    total: Option<u64>,
    /// Disjoint `[start, end)` ranges on disk, sorted.
    have: Vec<(u64, u64)>,
    end: End,
}

/// What has been written of an archive that is still downloading; shared by the downloader (which reports) and
/// the extraction (which waits).
#[derive(Debug)]
pub struct Arrivals {
    state: Mutex<State>,
    changed: Condvar,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            state: Mutex::new(State {
                total: None,
                have: Vec::new(),
                end: End::Open,
            }),
            changed: Condvar::new(),
        }
    }
}

impl Arrivals {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file now has its final size `total` and will be filled in ranges: the extraction may start.
    pub fn begin(&self, total: u64) {
        let mut s = self.lock();
        if s.end == End::Open && s.total.is_none() {
            s.total = Some(total);
            self.changed.notify_all();
        }
    }

    /// `[start, end)` is on disk (written and no longer in a buffer).
    pub fn arrived(&self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut s = self.lock();
        insert_range(&mut s.have, start, end);
        self.changed.notify_all();
    }

    /// Every byte arrived and was checked: the download succeeded.
    pub fn complete(&self) {
        let mut s = self.lock();
        if s.end == End::Open {
            s.end = End::Complete;
            if let Some(total) = s.total {
                s.have = vec![(0, total)];
            }
        }
        self.changed.notify_all();
    }

    /// The download stopped (a failure, a missing object, a store that stopped answering in ranges, a cancelled
    /// job): a waiting read fails with `why`. No effect once complete.
    pub fn fail(&self, why: &str) {
        let mut s = self.lock();
        if s.end == End::Open {
            s.end = End::Failed(why.to_owned());
        }
        self.changed.notify_all();
    }

    /// Whether the download ended in failure.
    pub fn failed(&self) -> bool {
        matches!(self.lock().end, End::Failed(_))
    }

    /// Blocks until the extraction may start (`Some(total)`), or the download ended before it began to arrive in
    /// ranges (`None`: a small or missing object, or a failure; the caller deals with the file afterwards).
    pub(crate) fn wait_begin(&self) -> Option<u64> {
        let mut s = self.lock();
        loop {
            if s.end != End::Open {
                return s.total.filter(|_| s.end == End::Complete);
            }
            if let Some(total) = s.total {
                return Some(total);
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until the download ended; `true` when it failed.
    pub(crate) fn wait_end(&self) -> bool {
        let mut s = self.lock();
        while s.end == End::Open {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        matches!(s.end, End::Failed(_))
    }

    /// Blocks until `[start, end)` is on disk; fails when the download failed first.
    pub(crate) fn wait_for(&self, start: u64, end: u64) -> io::Result<()> {
        let mut s = self.lock();
        loop {
            if covered(&s.have, start, end) || s.end == End::Complete {
                return Ok(());
            }
            if let End::Failed(why) = &s.end {
                return Err(io::Error::other(format!("the download stopped: {why}")));
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

fn insert_range(have: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    let (mut start, mut end) = (start, end);
    // Everything touching or overlapping the new range merges into it.
    have.retain(|&(s, e)| {
        if e < start || s > end {
            return true;
        }
        start = start.min(s);
        end = end.max(e);
        false
    });
    let at = have.partition_point(|&(s, _)| s < start);
    have.insert(at, (start, end));
}

fn covered(have: &[(u64, u64)], start: u64, end: u64) -> bool {
    start >= end || have.iter().any(|&(s, e)| s <= start && end <= e)
}

/// One change an extraction from an arriving archive made.
#[derive(Debug)]
enum Change {
    /// A file or link was made where nothing stood.
    Wrote(PathBuf),
    /// What stood at the path was renamed to `aside` (in the same directory) to make room.
    Replaced { rel: PathBuf, aside: OsString },
    /// The directory did not exist and was created.
    MadeDir(PathBuf),
}

/// What an extraction from an arriving archive changed, so that it can be taken back: a replaced file is kept
/// under a hidden name beside it until the extraction is kept ([`Journal::keep`]) or undone ([`Journal::undo`]).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    changes: Mutex<Vec<Change>>,
    asides: AtomicU64,
}

impl Journal {
    fn push(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change);
    }

    fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A file or link is about to be placed at `rel`, where nothing stood.
    pub(crate) fn wrote(&self, rel: PathBuf) {
        self.push(Change::Wrote(rel));
    }

    /// What stood at `rel` was renamed to `aside` in the same directory.
    pub(crate) fn replaced(&self, rel: PathBuf, aside: OsString) {
        self.push(Change::Replaced { rel, aside });
    }

    /// A name for what a new entry replaces, unique within this process.
    pub(crate) fn aside_name(&self) -> OsString {
        let n = self.asides.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!(".oxrunner-replaced-{}-{n}", std::process::id()))
    }

    /// The directory `rel` did not exist and was created.
    pub(crate) fn made_dir(&self, rel: PathBuf) {
        self.push(Change::MadeDir(rel));
    }

    /// The extraction stands: what it replaced is removed, as a complete extraction removes it.
    pub(crate) fn keep(&self, root: &Dir) {
        for change in self.take() {
            if let Change::Replaced { rel, aside } = change {
                let _ = root
                    .open_parent(&rel)
                    .and_then(|(parent, _)| parent.unlink(&aside));
            }
        }
    }

    /// Removes what was written and puts back what it replaced, then removes the directories made (deepest first,
    /// only when empty), never following a link on the way. Returns the paths that could not be restored, with why.
    pub(crate) fn undo(&self, root: &Dir) -> Vec<String> {
        let mut problems = Vec::new();
        let mut dirs = Vec::new();
        for change in self.take().into_iter().rev() {
            let outcome = match &change {
                Change::Wrote(rel) => root
                    .open_parent(rel)
                    .and_then(|(parent, name)| gone(parent.unlink(name))),
                Change::Replaced { rel, aside } => root.open_parent(rel).and_then(|(parent, name)| {
                    gone(parent.unlink(name))?;
                    parent.rename(aside, name)
                }),
                Change::MadeDir(rel) => {
                    dirs.push(rel.clone());
                    Ok(())
                }
            };
            if let (Err(e), Change::Wrote(rel) | Change::Replaced { rel, .. }) = (outcome, &change) {
                problems.push(format!("{}: {e}", rel.display()));
            }
        }
        dirs.sort_by_key(|rel| std::cmp::Reverse(rel.components().count()));
        for rel in dirs {
            // A directory that holds something the extraction did not put there stays.
            let _ = root
                .open_parent(&rel)
                .and_then(|(parent, name)| parent.remove_dir(name));
        }
        problems
    }
}

/// Not being there is what removing wanted.
fn gone(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What extracting an arriving archive came to.
#[derive(Debug)]
pub enum Arriving {
    /// The download ended before the archive began to arrive in ranges (a small or missing object, or an early
    /// failure): nothing was written; the caller extracts the complete file, if any, the ordinary way.
    NotStarted,
    /// Every entry is in place, each checked against its CRC.
    Extracted(crate::ExtractStats),
    /// The archive itself could not be extracted (what the same archive, complete, would have given).
    Failed(crate::ArchiveError),
    /// The download failed midway: what the extraction had written is removed again; `left` names what could
    /// not be.
    Abandoned { left: Vec<String> },
}

/// Extracts the archive arriving in `file` (the download's own file, read through its descriptor) into `root`,
/// as [`crate::extract_zip_into`] would once complete, waiting for each byte as it reads. Returns when the
/// extraction is done and, on any problem, once the download has ended: a download that failed means everything
/// written is taken back ([`Arriving::Abandoned`]). `label` names the archive in errors. Runs on a blocking thread.
pub fn extract_arriving(file: File, label: &Path, arrivals: &Arc<Arrivals>, root: &Dir) -> Arriving {
    let Some(total) = arrivals.wait_begin() else {
        return Arriving::NotStarted;
    };
    let journal = Journal::default();
    let reader = SharedFile::new(file, total, Some(Arc::clone(arrivals)));
    match extract_from(reader, label, root, Some(&journal)) {
        Ok(stats) => {
            journal.keep(root);
            Arriving::Extracted(stats)
        }
        Err(e) => {
            if arrivals.wait_end() {
                Arriving::Abandoned {
                    left: journal.undo(root),
                }
            } else {
                // The archive itself is bad: as far as it got stands, as with a complete file.
                journal.keep(root);
                Arriving::Failed(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_cover() {
        let mut have = Vec::new();
        insert_range(&mut have, 10, 20);
        insert_range(&mut have, 30, 40);
        assert!(!covered(&have, 15, 35));
        insert_range(&mut have, 20, 30);
        assert_eq!(have, vec![(10, 40)]);
        assert!(covered(&have, 15, 35));
        insert_range(&mut have, 0, 5);
        insert_range(&mut have, 50, 60);
        assert_eq!(have, vec![(0, 5), (10, 40), (50, 60)]);
        assert!(!covered(&have, 4, 11));
    }

    #[test]
    fn a_failed_download_wakes_a_waiting_read() {
        let arrivals = std::sync::Arc::new(Arrivals::default());
        arrivals.begin(100);
        let waiter = {
            let a = std::sync::Arc::clone(&arrivals);
            std::thread::spawn(move || a.wait_for(0, 50))
        };
        arrivals.arrived(0, 10);
        arrivals.fail("connection reset");
        let res = waiter.join().expect("waiter");
        let err = res.expect_err("the read must fail");
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(arrivals.failed());
    }

    #[test]
    fn an_early_end_means_not_started() {
        let arrivals = Arrivals::default();
        arrivals.fail("404");
        assert_eq!(arrivals.wait_begin(), None);
        let complete = Arrivals::default();
        complete.complete();
        assert_eq!(complete.wait_begin(), None);
    }
}
