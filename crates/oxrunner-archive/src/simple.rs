//! The two non-zip artifact formats: `gzip` (one gzip member per file, what GitLab expects for reports
//! such as junit and dotenv) and `raw` (a single file as is).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use oxrunner_fs::{Dir, Kind, is_link_refusal};

use crate::create::{Counting, open_root};
use crate::{ArchiveError, FileSet, ZipStats};

fn open_nofollow(path: &Path) -> Result<File, ArchiveError> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ArchiveError::io("opening", path, e))
}

/// Concatenated gzip members, one per file in path order, each naming its file (base name in the
/// header's name, relative path in its comment) like gitlab-runner's gzip archiver. Only regular files
/// are allowed; files that vanished are skipped.
pub fn create_gzip<W: Write>(project_dir: &Path, files: &FileSet, out: W) -> Result<ZipStats, ArchiveError> {
    create_gzip_in(&open_root(project_dir)?, files, out)
}

/// [`create_gzip`] with `files` relative to the directory `root`, opened with links on the way followed
/// only inside `root`.
pub fn create_gzip_in<W: Write>(root: &Dir, files: &FileSet, out: W) -> Result<ZipStats, ArchiveError> {
    let mut sink = Counting {
        inner: out,
        written: 0,
    };
    let mut stats = ZipStats::default();
    for rel in &files.files {
        let full = root.path().join(rel);
        let meta = match root.lstat_path_in_tree(rel) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %rel.display(), "file ignored: it no longer exists");
                continue;
            }
            Err(e) if is_link_refusal(&e) => return Err(ArchiveError::NotRegularFile(rel.clone())),
            Err(e) => return Err(ArchiveError::io("reading metadata of", &full, e)),
        };
        if meta.kind != Kind::File {
            return Err(ArchiveError::NotRegularFile(rel.clone()));
        }
        if root
            .is_foreign_hard_link(&meta)
            .map_err(|e| ArchiveError::io("reading metadata of", &full, e))?
        {
            tracing::warn!(
                path = %rel.display(),
                uid = meta.uid,
                "file ignored: it is a hard link to a file of another user; the runner does not archive it"
            );
            continue;
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut input = root
            .open_file_in_tree(rel)
            .map_err(|e| ArchiveError::io("opening", &full, e))?;
        let mut gz = GzBuilder::new()
            .filename(name.into_bytes())
            .comment(rel.to_string_lossy().into_owned().into_bytes())
            .mtime(u32::try_from(meta.mtime.max(0)).unwrap_or(u32::MAX))
            .write(&mut sink, Compression::default());
        stats.bytes_in +=
            io::copy(&mut input, &mut gz).map_err(|e| ArchiveError::io("compressing", &full, e))?;
        gz.finish().map_err(ArchiveError::Write)?;
        stats.entries += 1;
    }
    sink.flush().map_err(ArchiveError::Write)?;
    stats.bytes_out = sink.written;
    Ok(stats)
}

/// The single selected file, byte for byte. More than one file is an error, as in gitlab-runner.
pub fn create_raw<W: Write>(project_dir: &Path, files: &FileSet, out: W) -> Result<ZipStats, ArchiveError> {
    create_raw_in(&open_root(project_dir)?, files, out)
}

/// [`create_raw`] with the file relative to the directory `root`, opened with links on the way followed
/// only inside `root`.
pub fn create_raw_in<W: Write>(root: &Dir, files: &FileSet, out: W) -> Result<ZipStats, ArchiveError> {
    if files.files.len() > 1 {
        return Err(ArchiveError::TooManyRawFiles(files.files.len()));
    }
    let mut out = out;
    let mut stats = ZipStats::default();
    if let Some(rel) = files.files.first() {
        let full = root.path().join(rel);
        let mut input = root
            .open_file_in_tree(rel)
            .map_err(|e| ArchiveError::io("opening", &full, e))?;
        let n = io::copy(&mut input, &mut out).map_err(|e| ArchiveError::io("copying", &full, e))?;
        out.flush().map_err(ArchiveError::Write)?;
        stats = ZipStats {
            entries: 1,
            bytes_in: n,
            bytes_out: n,
        };
    }
    Ok(stats)
}

/// Upper bound for [`read_report`]: reports are read whole into memory.
const REPORT_LIMIT: u64 = 64 * 1024 * 1024;

/// The text of a report written by [`create_gzip`] (all members, concatenated) or [`create_raw`]; the format is
/// sniffed from the content. Refuses reports larger than 64 MiB once decompressed.
pub fn read_report(path: &Path) -> Result<String, ArchiveError> {
    use std::io::Read;
    let mut file = open_nofollow(path)?;
    let mut magic = [0u8; 2];
    let n = file
        .read(&mut magic)
        .map_err(|e| ArchiveError::io("reading", path, e))?;
    let file = open_nofollow(path)?;
    let mut reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut bytes = Vec::new();
    (&mut reader)
        .take(REPORT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ArchiveError::io("decompressing", path, e))?;
    if bytes.len() as u64 > REPORT_LIMIT {
        return Err(ArchiveError::io(
            "reading",
            path,
            io::Error::other(format!("the report is larger than {} MiB", REPORT_LIMIT >> 20)),
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn reads_gzip_members_and_raw_files_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.env"), "A=1\n").unwrap();
        std::fs::write(dir.path().join("b.env"), "B=2\n").unwrap();
        let files = crate::collect(dir.path(), &["a.env".into(), "b.env".into()], &[], false).unwrap();
        let out = dir.path().join("report.gz");
        create_gzip(dir.path(), &files, File::create(&out).unwrap()).unwrap();
        assert_eq!(read_report(&out).unwrap(), "A=1\nB=2\n");
        assert_eq!(read_report(&dir.path().join("a.env")).unwrap(), "A=1\n");
    }
}
