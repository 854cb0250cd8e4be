#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use oxrunner_archive::{ArchiveError, extract_zip};
use zip::write::SimpleFileOptions;

enum E<'a> {
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
    Dir(&'a str),
}

fn craft(path: &Path, entries: &[E<'_>]) {
    let mut w = zip::ZipWriter::new(File::create(path).unwrap());
    let opts = SimpleFileOptions::default();
    for e in entries {
        match e {
            E::File(name, data) => {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            E::Link(name, target) => w.add_symlink(*name, *target, opts).unwrap(),
            E::Dir(name) => w.add_directory(*name, opts).unwrap(),
        }
    }
    w.finish().unwrap();
}

/// A sandbox: `target/` to extract into, `outside/` that must stay empty.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("target")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        Sandbox { dir }
    }
    fn target(&self) -> std::path::PathBuf {
        self.dir.path().join("target")
    }
    fn outside(&self) -> std::path::PathBuf {
        self.dir.path().join("outside")
    }
    fn archive(&self, entries: &[E<'_>]) -> std::path::PathBuf {
        let p = self.dir.path().join("evil.zip");
        craft(&p, entries);
        p
    }
    fn assert_untouched(&self) {
        let outside: Vec<_> = fs::read_dir(self.outside()).unwrap().collect();
        assert!(outside.is_empty(), "something was written outside: {outside:?}");
        let top: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut top = top;
        top.sort();
        assert_eq!(top, ["evil.zip", "outside", "target"]);
    }
}

fn refused(r: Result<oxrunner_archive::ExtractStats, ArchiveError>) -> String {
    match r {
        Err(e @ (ArchiveError::UnsafeEntry { .. } | ArchiveError::UnsafeTarget { .. })) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn dot_dot_entries_are_refused_before_anything_is_written() {
    let sb = Sandbox::new();
    let a = sb.archive(&[E::File("ok.txt", b"fine"), E::File("../outside/x", b"evil")]);
    let msg = refused(extract_zip(&a, &sb.target()));
    assert!(msg.contains("../outside/x") && msg.contains("hint:"), "{msg}");
    assert!(
        !sb.target().join("ok.txt").exists(),
        "refusal must happen before writing"
    );
    sb.assert_untouched();

    let a = sb.archive(&[E::File("a/../../outside/y", b"evil")]);
    refused(extract_zip(&a, &sb.target()));
    sb.assert_untouched();
}

#[test]
fn absolute_entries_are_refused() {
    let sb = Sandbox::new();
    let abs = sb.outside().join("abs.txt");
    let a = sb.archive(&[E::File(abs.to_str().unwrap(), b"evil")]);
    refused(extract_zip(&a, &sb.target()));
    assert!(!abs.exists());
    sb.assert_untouched();
}

#[test]
fn symlink_out_then_a_file_through_it_is_refused() {
    let sb = Sandbox::new();
    let out = sb.outside();
    let a = sb.archive(&[
        E::Link("etc", "/etc"),
        E::File("etc/cron.d/evil", b"* * * * * root sh"),
    ]);
    refused(extract_zip(&a, &sb.target()));
    sb.assert_untouched();

    let a = sb.archive(&[E::Link("up", out.to_str().unwrap()), E::File("up/planted", b"x")]);
    refused(extract_zip(&a, &sb.target()));
    sb.assert_untouched();

    // Even a link that stays inside cannot be written through.
    let a = sb.archive(&[E::Dir("d/"), E::Link("l", "d"), E::File("l/f", b"x")]);
    let msg = refused(extract_zip(&a, &sb.target()));
    assert!(msg.contains("beneath a symlink"), "{msg}");
    sb.assert_untouched();
}

/// Issue 11 item 4: a link is restored whatever its target (a Python venv has
/// `bin/python -> /usr/bin/python3`); creating a link writes nothing through it.
#[test]
fn symlinks_are_restored_as_links_whatever_their_target() {
    let sb = Sandbox::new();
    let t = sb.target();
    for target in ["/usr/bin/python3", "../outside", "a/../../outside", ".."] {
        let a = sb.archive(&[E::Dir("venv/bin/"), E::Link("venv/bin/python", target)]);
        let stats = extract_zip(&a, &t).unwrap();
        assert_eq!(stats.symlinks, 1);
        assert_eq!(
            fs::read_link(t.join("venv/bin/python")).unwrap().to_str(),
            Some(target)
        );
        sb.assert_untouched();
    }
    // Links that climb out through other links of the same archive are just links too.
    let a = sb.archive(&[E::Link("sub/up", ".."), E::Link("x", "sub/up/../outside")]);
    extract_zip(&a, &t).unwrap();
    assert_eq!(
        fs::read_link(t.join("x")).unwrap().to_str(),
        Some("sub/up/../outside")
    );
    sb.assert_untouched();

    // A later archive never places entries through a link an earlier one left behind.
    let up = sb.outside().to_str().unwrap().to_owned();
    extract_zip(&sb.archive(&[E::Link("up", &up)]), &t).unwrap();
    let msg = refused(extract_zip(&sb.archive(&[E::File("up/planted", b"x")]), &t));
    assert!(msg.contains("not followed"), "{msg}");
    sb.assert_untouched();

    let a = sb.archive(&[
        E::File("d/f", b"data"),
        E::Link("d/l", "f"),
        E::Link("top", "d/../d/f"),
    ]);
    extract_zip(&a, &t).unwrap();
    assert_eq!(fs::read(t.join("top")).unwrap(), b"data");
    assert_eq!(fs::read(t.join("d/l")).unwrap(), b"data");
}

#[test]
fn existing_symlinks_in_the_target_are_never_followed() {
    let sb = Sandbox::new();
    let t = sb.target();
    // A directory symlink already in the project (e.g. from the checkout) pointing outside.
    std::os::unix::fs::symlink(sb.outside(), t.join("vendor")).unwrap();
    let a = sb.archive(&[E::File("vendor/planted", b"x")]);
    let msg = refused(extract_zip(&a, &t));
    assert!(msg.contains("symlink"), "{msg}");
    sb.assert_untouched();

    // A file symlink at the exact path is replaced, not written through.
    let victim = sb.outside().join("victim");
    fs::write(&victim, b"original").unwrap();
    std::os::unix::fs::symlink(&victim, t.join("f.txt")).unwrap();
    let a = sb.archive(&[E::File("f.txt", b"new")]);
    extract_zip(&a, &t).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    assert_eq!(fs::read(t.join("f.txt")).unwrap(), b"new");
    assert!(
        !fs::symlink_metadata(t.join("f.txt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    fs::remove_file(victim).unwrap();
    sb.assert_untouched();
}

#[test]
fn archive_from_python_zipfile_with_traversal_is_refused() {
    // A second producer, so the check does not rely on how one library writes names.
    let sb = Sandbox::new();
    let a = sb.dir.path().join("evil.zip");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1], 'w')\n\
             z.writestr('good.txt', 'ok')\n\
             z.writestr(zipfile.ZipInfo('..\\\\outside\\\\w.txt'), 'evil')\n\
             z.close()",
        )
        .arg(&a)
        .status()
        .expect("python3 is part of the test environment");
    assert!(status.success());
    assert!(common::unzip_names(&a).iter().any(|n| n.contains("..\\outside")));
    refused(extract_zip(&a, &sb.target()));
    sb.assert_untouched();
}

#[test]
fn read_only_directories_are_restored_after_their_contents() {
    let sb = Sandbox::new();
    let p = sb.dir.path().join("evil.zip");
    let mut w = zip::ZipWriter::new(File::create(&p).unwrap());
    let ro = SimpleFileOptions::default().unix_permissions(0o555);
    w.add_directory("ro/", ro).unwrap();
    w.start_file("ro/f", SimpleFileOptions::default()).unwrap();
    w.write_all(b"x").unwrap();
    w.finish().unwrap();
    extract_zip(&p, &sb.target()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(sb.target().join("ro")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o555);
    assert_eq!(fs::read(sb.target().join("ro/f")).unwrap(), b"x");
    fs::set_permissions(sb.target().join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn names_that_alias_one_path_extract_once_and_last_wins() {
    let sb = Sandbox::new();
    let a = sb.archive(&[
        E::File("a/x", b"first"),
        E::File("./a/x", b"second"),
        E::File("a//x", b"third"),
    ]);
    assert_eq!(common::unzip_names(&a), ["a/x", "./a/x", "a//x"]);
    extract_zip(&a, &sb.target()).unwrap();
    assert_eq!(fs::read(sb.target().join("a/x")).unwrap(), b"third");
}

/// Root restoring into a `--user` job's project hands what it creates to the project's owner (as
/// gitlab-runner does by extracting as that user), so the job can change its restored files.
#[test]
fn root_gives_extracted_entries_to_the_owner_of_the_target() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but this test needs root"
        );
        eprintln!(
            "SKIPPED: extracting as root into another user's directory needs root (it runs under CI=true)"
        );
        return;
    }
    // A numeric owner no account uses: only files in this test's own directory carry it.
    const OWNER: u32 = 3_999_017;
    let sb = Sandbox::new();
    let t = sb.target();
    std::os::unix::fs::chown(&t, Some(OWNER), Some(OWNER)).unwrap();
    let a = sb.archive(&[
        E::Dir("venv/bin/"),
        E::File("venv/bin/activate", b"# venv"),
        E::File("new/deep/f", b"x"),
        E::Link("venv/bin/python", "/usr/bin/python3"),
    ]);
    extract_zip(&a, &t).unwrap();
    for rel in [
        "venv",
        "venv/bin",
        "venv/bin/activate",
        "venv/bin/python",
        "new",
        "new/deep",
        "new/deep/f",
    ] {
        let m = fs::symlink_metadata(t.join(rel)).unwrap();
        assert_eq!((m.uid(), m.gid()), (OWNER, OWNER), "{rel}");
    }
    sb.assert_untouched();
}

/// The archive to extract is one the runner wrote (a cache, a downloaded artifact); a link standing at its name was
/// put there by someone else and is refused, not followed to whatever it names.
#[test]
fn an_archive_path_that_is_a_link_is_not_followed() {
    let sb = Sandbox::new();
    let real = sb.archive(&[E::File("secret.txt", b"other project's cache")]);
    let link = sb.dir.path().join("outside/cache.zip");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let result = extract_zip(&link, &sb.target());
    assert!(result.is_err(), "a linked archive was extracted: {result:?}");
    assert!(!sb.target().join("secret.txt").exists());
}
