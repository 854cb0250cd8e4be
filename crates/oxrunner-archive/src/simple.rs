//! The two non-zip artifact formats: `gzip` (one gzip member per file, what GitLab expects for reports
//! such as junit and dotenv) and `raw` (a single file as is).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use flate2::{Compression, GzBuilder};

use crate::create::Counting;
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
    let mut sink = Counting {
        inner: out,
        written: 0,
    };
    let mut stats = ZipStats::default();
    for rel in &files.files {
        let full = project_dir.join(rel);
        let meta = match fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %rel.display(), "file ignored: it no longer exists");
                continue;
            }
            Err(e) => return Err(ArchiveError::io("reading metadata of", &full, e)),
        };
        if !meta.file_type().is_file() {
            return Err(ArchiveError::NotRegularFile(rel.clone()));
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut input = open_nofollow(&full)?;
        let mut gz = GzBuilder::new()
            .filename(name.into_bytes())
            .comment(rel.to_string_lossy().into_owned().into_bytes())
            .mtime(u32::try_from(meta.mtime().max(0)).unwrap_or(u32::MAX))
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
    if files.files.len() > 1 {
        return Err(ArchiveError::TooManyRawFiles(files.files.len()));
    }
    let mut out = out;
    let mut stats = ZipStats::default();
    if let Some(rel) = files.files.first() {
        let full = project_dir.join(rel);
        let mut input = open_nofollow(&full)?;
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
