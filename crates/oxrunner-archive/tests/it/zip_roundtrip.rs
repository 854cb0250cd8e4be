#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use oxrunner_archive::{
    ArchiveError, FileSet, Format, Level, collect, create_gzip, create_raw, create_zip, create_zip_file,
    extract_zip, sniff_format,
};

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "out/app.bin", &noise(2_600_000, 7)); // three chunks
    write(root, "out/log.txt", &b"line of log output\n".repeat(100_000));
    write(root, "out/sub/run.sh", b"#!/bin/sh\necho hi\n");
    write(root, "out/empty", b"");
    set_mode(root, "out/sub/run.sh", 0o750);
    set_mode(root, "out/log.txt", 0o600);
    set_mtime(root, "out/sub/run.sh", 1_600_000_000);
    set_mtime(root, "out/app.bin", 1_500_000_001);
    std::os::unix::fs::symlink("sub/run.sh", root.join("out/link")).unwrap();
    std::os::unix::fs::symlink("missing-target", root.join("out/dangling")).unwrap();
    dir
}

const EXPECTED: [&str; 8] = [
    "out/",
    "out/app.bin",
    "out/dangling",
    "out/empty",
    "out/link",
    "out/log.txt",
    "out/sub/",
    "out/sub/run.sh",
];

#[test]
fn round_trip_keeps_contents_modes_mtimes_and_symlinks() {
    for level in [Level::Fastest, Level::Fast, Level::Default, Level::Slowest] {
        let src = project();
        let set = collect(src.path(), &["out".to_owned()], &[], false).unwrap();
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        let work = tempfile::tempdir().unwrap();
        let archive = work.path().join("a.zip");
        let stats = create_zip_file(src.path(), &set, level, &archive).unwrap();
        assert_eq!(stats.entries, 8);
        assert_eq!(stats.bytes_out, fs::metadata(&archive).unwrap().len());

        unzip_test(&archive);
        assert_eq!(unzip_names(&archive), EXPECTED);
        assert_eq!(sniff_format(&archive).unwrap(), Format::Zip);

        let dst = work.path().join("dst");
        let ex = extract_zip(&archive, &dst).unwrap();
        assert_eq!((ex.files, ex.dirs, ex.symlinks), (4, 2, 2));
        for f in ["out/app.bin", "out/log.txt", "out/sub/run.sh", "out/empty"] {
            assert_eq!(
                fs::read(src.path().join(f)).unwrap(),
                fs::read(dst.join(f)).unwrap(),
                "{f} ({level:?})"
            );
        }
        let meta = |p: &Path| fs::symlink_metadata(p).unwrap();
        assert_eq!(
            meta(&dst.join("out/sub/run.sh")).permissions().mode() & 0o777,
            0o750
        );
        assert_eq!(meta(&dst.join("out/log.txt")).permissions().mode() & 0o777, 0o600);
        assert_eq!(meta(&dst.join("out/sub/run.sh")).mtime(), 1_600_000_000);
        assert_eq!(meta(&dst.join("out/app.bin")).mtime(), 1_500_000_001);
        assert_eq!(
            fs::read_link(dst.join("out/link")).unwrap(),
            PathBuf::from("sub/run.sh")
        );
        assert_eq!(
            fs::read_link(dst.join("out/dangling")).unwrap(),
            PathBuf::from("missing-target")
        );
        assert_eq!(
            fs::read_to_string(dst.join("out/link")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
    }
}

#[test]
fn info_zip_extracts_our_archive_identically() {
    let src = project();
    let set = collect(src.path(), &["out".to_owned()], &[], false).unwrap();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("a.zip");
    create_zip_file(src.path(), &set, Level::Default, &archive).unwrap();
    let dst = work.path().join("unzipped");
    fs::create_dir(&dst).unwrap();
    let status = std::process::Command::new("unzip")
        .arg("-q")
        .arg(&archive)
        .current_dir(&dst)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read(src.path().join("out/app.bin")).unwrap(),
        fs::read(dst.join("out/app.bin")).unwrap()
    );
    assert_eq!(
        fs::read_link(dst.join("out/link")).unwrap(),
        PathBuf::from("sub/run.sh")
    );
    assert_eq!(
        fs::metadata(dst.join("out/sub/run.sh")).unwrap().mtime(),
        1_600_000_000
    );
}

/// A sink that is only `Write`: proves nothing seeks back to patch headers.
struct Pipe(Vec<u8>);
impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn streams_to_a_non_seekable_writer_through_a_real_pipe() {
    let src = project();
    let set = collect(src.path(), &["out/**".to_owned()], &[], false).unwrap();
    let mut pipe = Pipe(Vec::new());
    let stats = create_zip(src.path(), &set, Level::Fast, &mut pipe).unwrap();
    assert_eq!(stats.bytes_out, pipe.0.len() as u64);

    // And through an OS pipe into `cat`, which cannot seek either.
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("piped.zip");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cat > '{}'", archive.display()))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    create_zip(src.path(), &set, Level::Fast, child.stdin.take().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    unzip_test(&archive);
    assert_eq!(
        fs::read(&archive).unwrap(),
        pipe.0,
        "output must be deterministic"
    );
}

#[test]
fn many_small_files_keep_their_order() {
    let src = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for i in 0..300 {
        let rel = format!("d/f{i:04}.txt");
        write(src.path(), &rel, format!("file {i}\n").repeat(i).as_bytes());
        expected.push(rel);
    }
    let set = FileSet {
        files: expected.iter().map(PathBuf::from).collect(),
        warnings: Vec::new(),
    };
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("many.zip");
    create_zip_file(src.path(), &set, Level::Default, &archive).unwrap();
    unzip_test(&archive);
    assert_eq!(unzip_names(&archive), expected);
}

#[test]
fn gzip_holds_one_member_per_file_and_raw_one_file() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "reports/a.env", b"A=1\n");
    write(src.path(), "reports/junit.xml", b"<testsuites/>\n");
    let set = collect(src.path(), &["reports/*".to_owned()], &[], false).unwrap();
    let mut gz = Vec::new();
    let stats = create_gzip(src.path(), &set, &mut gz).unwrap();
    assert_eq!(stats.entries, 2);
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "A=1\n<testsuites/>\n");
    let header = flate2::read::GzDecoder::new(&gz[..]).header().cloned().unwrap();
    assert_eq!(header.filename(), Some(&b"a.env"[..]));
    assert_eq!(header.comment(), Some(&b"reports/a.env"[..]));

    let work = tempfile::tempdir().unwrap();
    let gz_path = work.path().join("r.gz");
    fs::write(&gz_path, &gz).unwrap();
    assert_eq!(sniff_format(&gz_path).unwrap(), Format::Gzip);
    let status = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&gz_path)
        .status()
        .unwrap();
    assert!(status.success());

    assert!(matches!(
        create_raw(src.path(), &set, Vec::new()),
        Err(ArchiveError::TooManyRawFiles(2))
    ));
    let one = collect(src.path(), &["reports/a.env".to_owned()], &[], false).unwrap();
    let mut raw = Vec::new();
    create_raw(src.path(), &one, &mut raw).unwrap();
    assert_eq!(raw, b"A=1\n");

    let dir_set = collect(src.path(), &["reports".to_owned()], &[], false).unwrap();
    assert!(matches!(
        create_gzip(src.path(), &dir_set, Vec::new()),
        Err(ArchiveError::NotRegularFile(_))
    ));
}

#[test]
fn corrupted_data_is_detected_on_extract() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "f.txt", &b"abcdefgh".repeat(1000));
    let set = collect(src.path(), &["f.txt".to_owned()], &[], false).unwrap();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("c.zip");
    create_zip_file(src.path(), &set, Level::Fastest, &archive).unwrap();
    let mut bytes = fs::read(&archive).unwrap();
    // Flip a byte inside the stored data (after the 30-byte header, name and 9-byte extra).
    bytes[30 + 5 + 9 + 100] ^= 0xff;
    fs::write(&archive, &bytes).unwrap();
    assert!(extract_zip(&archive, &work.path().join("out")).is_err());
}

/// A sink that breaks after a few bytes, like an upload connection that drops.
struct Broken(usize);
impl Write for Broken {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 < buf.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "connection reset",
            ));
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_stops_the_workers_and_reports_the_error() {
    let src = project();
    let set = collect(src.path(), &["out".to_owned()], &[], false).unwrap();
    let err = create_zip(src.path(), &set, Level::Default, Broken(100_000)).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Write(ref e) if e.kind() == std::io::ErrorKind::BrokenPipe),
        "{err}"
    );
}

#[test]
fn archives_made_by_info_zip_extract_with_modes_mtimes_and_links() {
    let src = project();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("infozip.zip");
    let status = std::process::Command::new("zip")
        .args(["-q", "-r", "-y"])
        .arg(&archive)
        .arg("out")
        .current_dir(src.path())
        .status()
        .unwrap();
    assert!(status.success());
    let dst = work.path().join("dst");
    let ex = extract_zip(&archive, &dst).unwrap();
    assert_eq!((ex.files, ex.symlinks), (4, 2));
    let run = fs::symlink_metadata(dst.join("out/sub/run.sh")).unwrap();
    assert_eq!((run.mode() & 0o777, run.mtime()), (0o750, 1_600_000_000));
    assert_eq!(
        fs::read(dst.join("out/app.bin")).unwrap(),
        fs::read(src.path().join("out/app.bin")).unwrap()
    );
    assert_eq!(
        fs::read_link(dst.join("out/link")).unwrap(),
        PathBuf::from("sub/run.sh")
    );
}
