//! Extracting an archive while it is still being downloaded (a remote cache's parts land in a file at their
//! offsets, in any order). The downloader reports each written range to an [`Arrivals`]; the extraction reads the
//! file through it, and a read waits until its bytes have arrived. The central directory is read first, as for a
//! complete archive, so a hostile archive is still refused before anything is written (symlink targets, which are
//! entry data, are checked when the link is made). Should the download fail midway, the extraction removes
//! everything it had written ([`Journal`]), so a job never starts on half of a cache it was told is missing.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
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

/// What an extraction from an arriving archive wrote, so that it can be taken back.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    entries: Mutex<Vec<(PathBuf, bool)>>,
}

impl Journal {
    /// A file or link at `rel` is about to be (re)placed.
    pub(crate) fn wrote(&self, rel: PathBuf) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((rel, false));
    }

    /// The directory `rel` did not exist and was created.
    pub(crate) fn made_dir(&self, rel: PathBuf) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((rel, true));
    }

    /// Removes what was written, then the directories made (deepest first, only when empty), never following a
    /// link on the way. Returns the paths that could not be removed, with why.
    pub(crate) fn undo(&self, root: &Dir) -> Vec<String> {
        let mut entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner));
        let mut problems = Vec::new();
        let (mut dirs, files): (Vec<_>, Vec<_>) = entries.drain(..).partition(|(_, dir)| *dir);
        for (rel, _) in files {
            let removed = root
                .open_parent(&rel)
                .and_then(|(parent, name)| parent.unlink(name));
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("{}: {e}", rel.display())),
            }
        }
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, _) in dirs {
            // A directory that holds something the extraction did not put there stays.
            let _ = root
                .open_parent(&rel)
                .and_then(|(parent, name)| parent.remove_dir(name));
        }
        problems
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
        Ok(stats) => Arriving::Extracted(stats),
        Err(e) => {
            if arrivals.wait_end() {
                Arriving::Abandoned {
                    left: journal.undo(root),
                }
            } else {
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
