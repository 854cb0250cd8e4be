#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A full spool disk (a small tmpfs) never cuts the job log silently: the log ends with a line saying why, the
//! writer reports the log lost, and what was written before stays whole and checksummed.

use std::path::Path;
use std::process::Command;

use oxrunner_core::trace::{MaskSet, TraceWriter, cut_message};

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop. Needs root: under `CI=true` a missing
/// privilege fails the test, elsewhere it is skipped with a message.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: this test needs root to mount a tmpfs"
            );
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("oxrunner-test-spoolfs-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "oxrunner-test"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed: {status:?}");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn full_spool_disk_ends_the_log_with_the_reason_and_marks_it_lost() {
    let Some(fs) = Tmpfs::mount("64k") else {
        return;
    };
    let (w, handle) = TraceWriter::new(fs.path(), MaskSet::new(vec!["s3cr3t".into()], &[]), 0).unwrap();
    let line = "0123456789 abcdefghij s3cr3t klmnopqrstuvwxyz\n";
    // About 470 KB into a 64 KiB file system.
    for _ in 0..10_000 {
        w.write(line.as_bytes());
    }
    w.info("printed-after-the-disk-filled-up");
    let lost = w.lost().expect("a full spool disk must mark the log lost");
    assert!(lost.contains("No space left on device"), "{lost}");
    let (crc, size) = handle.finish().await;
    let spool = handle.read_all().unwrap();
    assert_eq!(spool.len() as u64, size, "reported size vs. spool");
    assert_eq!(crc32fast::hash(&spool), crc, "checksum vs. spool");
    let text = String::from_utf8(spool).unwrap();
    let cut = cut_message(&lost);
    assert!(
        text.ends_with(&cut),
        "the log must end with the cut line {cut:?}; it ends with {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    // Before the cut line: only whole, masked lines, as many as fit.
    let body = &text[..text.len() - cut.len()];
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    assert!(lines.len() > 100, "only {} lines kept", lines.len());
    for l in &lines {
        assert_eq!(*l, "0123456789 abcdefghij [MASKED] klmnopqrstuvwxyz\n");
    }
    assert!(!text.contains("printed-after-the-disk-filled-up"));
    drop(w);
    drop(handle);
}

#[tokio::test]
async fn masked_values_too_large_to_mask_block_all_output() {
    let dir = tempfile::tempdir().unwrap();
    // Distinct 5 MiB: more than the masker accepts even after removing repeated pieces.
    let mut value = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while value.len() < 5 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push_str(&format!("{x:016x}"));
    }
    let (w, handle) = TraceWriter::new(dir.path(), MaskSet::new(vec![value.clone()], &[]), 0).unwrap();
    let lost = w.lost().expect("an unbuildable masker must mark the log lost");
    assert!(lost.contains("masked variables add up to"), "{lost}");
    w.write(&value.as_bytes()[..64]);
    w.write(b"\nplain output\n");
    handle.finish().await;
    let text = String::from_utf8(handle.read_all().unwrap()).unwrap();
    assert!(text.contains("masked variables add up to"), "{text}");
    assert!(text.contains("hint: "), "{text}");
    assert!(
        !text.contains(&value[..16]),
        "part of the value reached the log:\n{text}"
    );
    assert!(
        !text.contains("plain output"),
        "output written without a masker:\n{text}"
    );
}
