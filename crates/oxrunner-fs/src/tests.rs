//! Unit tests: links are refused at every component, by both resolution strategies.

use super::*;

fn tree() -> (tempfile::TempDir, Dir) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/f"), "inside").unwrap();
    std::fs::create_dir(tmp.path().join("outside")).unwrap();
    std::fs::write(tmp.path().join("outside/f"), "outside").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("a/link")).unwrap();
    std::os::unix::fs::symlink("b", root.join("a/rel")).unwrap();
    std::os::unix::fs::symlink("b/f", root.join("a/flink")).unwrap();
    let dir = Dir::open_trusted(&root).unwrap();
    (tmp, dir)
}

fn read(file: File) -> String {
    std::io::read_to_string(file).unwrap()
}

#[test]
fn files_open_beneath_without_links() {
    let (_tmp, dir) = tree();
    assert_eq!(read(dir.open_file(Path::new("a/b/f")).unwrap()), "inside");
    for rel in ["a/link/f", "a/rel/f", "a/flink"] {
        let err = dir.open_file(Path::new(rel)).unwrap_err();
        assert!(is_link_refusal(&err), "{rel}: {err}");
    }
    assert!(dir.open_file(Path::new("../root/a/b/f")).is_err());
    assert!(dir.open_file(Path::new("/etc/passwd")).is_err());
    assert!(dir.open_dir(Path::new("a/link")).is_err());
    assert!(dir.open_dir(Path::new("a/rel")).is_err());
}

#[test]
fn the_fallback_walk_refuses_links_too() {
    let (_tmp, dir) = tree();
    let open = |parents: &[&str], last: &str| {
        let parents: Vec<&OsStr> = parents.iter().map(OsStr::new).collect();
        dir.walk_beneath(
            &parents,
            OsStr::new(last),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    assert_eq!(read(File::from(open(&["a", "b"], "f").unwrap())), "inside");
    assert!(is_link_refusal(&open(&["a", "link"], "f").unwrap_err()));
    assert!(is_link_refusal(&open(&["a", "rel"], "f").unwrap_err()));
    assert!(is_link_refusal(&open(&["a"], "flink").unwrap_err()));
}

#[test]
fn directories_are_created_without_following_links() {
    let (tmp, dir) = tree();
    let made = dir.create_dir_all(Path::new("x/y/z"), 0o755).unwrap();
    made.create_new(OsStr::new("new"), 0o640).unwrap();
    assert_eq!(
        dir.lstat_path(Path::new("x/y/z/new")).unwrap().mode & 0o777,
        0o640
    );
    let err = dir.create_dir_all(Path::new("a/link/sub"), 0o755).unwrap_err();
    assert!(is_link_refusal(&err), "{err}");
    assert!(!tmp.path().join("outside/sub").exists());
    // An existing file (even a dangling link) is never opened by create_new.
    let a = dir.open_dir(Path::new("a")).unwrap();
    a.symlink(OsStr::new("/nonexistent-oxrunner-target"), OsStr::new("dangling"))
        .unwrap();
    assert!(a.create_new(OsStr::new("dangling"), 0o644).is_err());
    assert!(a.create_new(OsStr::new("../escape"), 0o644).is_err());
}

#[test]
fn links_are_listed_read_and_removed_as_links() {
    let (tmp, dir) = tree();
    let a = dir.open_dir(Path::new("a")).unwrap();
    let mut names = a.entries().unwrap();
    names.sort();
    let kinds: Vec<(String, Kind)> = names
        .into_iter()
        .map(|(n, k)| (n.to_string_lossy().into_owned(), k))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("b".to_owned(), Kind::Dir),
            ("flink".to_owned(), Kind::Symlink),
            ("link".to_owned(), Kind::Symlink),
            ("rel".to_owned(), Kind::Symlink),
        ]
    );
    assert_eq!(a.read_link(OsStr::new("rel")).unwrap(), "b");
    a.remove_all(OsStr::new("link")).unwrap();
    assert!(tmp.path().join("outside/f").exists());
    dir.remove_all(OsStr::new("a")).unwrap();
    assert!(dir.entries().unwrap().is_empty());
    assert!(tmp.path().join("outside/f").exists());
}

#[test]
fn fifos_are_refused_without_blocking() {
    let (_tmp, dir) = tree();
    rustix::fs::mkfifoat(&dir, "fifo", Mode::from_raw_mode(0o644)).unwrap();
    assert!(dir.open_file(Path::new("fifo")).is_err());
}

/// `<tmp>/root` with in-tree links (`cur -> a/b`, `a/up -> ../a/b`, chains) and links that leave it
/// (absolute, `..` past the root, absolute back into the root).
fn linked_tree() -> (tempfile::TempDir, Dir) {
    let (tmp, dir) = tree();
    let root = tmp.path().join("root");
    std::os::unix::fs::symlink("a/b", root.join("cur")).unwrap();
    std::os::unix::fs::symlink("../a/b", root.join("a/up")).unwrap();
    std::os::unix::fs::symlink("cur", root.join("chain")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("esc")).unwrap();
    std::os::unix::fs::symlink("a/../../outside", root.join("esc2")).unwrap();
    std::os::unix::fs::symlink(root.join("a/b"), root.join("absin")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root/tmp", root.join("magic")).unwrap();
    (tmp, dir)
}

#[test]
fn reads_in_tree_follow_links_that_stay_beneath() {
    let (_tmp, dir) = linked_tree();
    // The first resolution finds out whether this kernel has openat2.
    dir.open_dir_in_tree(Path::new("a")).unwrap();
    if !use_openat2() {
        eprintln!("SKIPPED: this kernel has no openat2; the fallback is tested below");
        return;
    }
    for rel in ["cur/f", "a/up/f", "chain/f", "a/rel/f"] {
        assert_eq!(
            read(dir.open_file_in_tree(Path::new(rel)).unwrap()),
            "inside",
            "{rel}"
        );
        assert_eq!(dir.lstat_path_in_tree(Path::new(rel)).unwrap().kind, Kind::File);
    }
    assert!(
        dir.open_dir_in_tree(Path::new("chain"))
            .unwrap()
            .entries()
            .unwrap()
            .len()
            == 1
    );
    // The last component is not followed: a link there is seen (and refused as a file) as a link.
    assert_eq!(
        dir.lstat_path_in_tree(Path::new("cur")).unwrap().kind,
        Kind::Symlink
    );
    assert!(is_link_refusal(
        &dir.open_file_in_tree(Path::new("a/flink")).unwrap_err()
    ));
    // Absolute links (even back into the tree, or to a magic link in /proc) and escapes by `..` are
    // refused.
    for rel in [
        "a/link/f",
        "esc/f",
        "esc2/f",
        "absin/f",
        "magic/x",
        "../root/a/b/f",
    ] {
        let err = dir.open_file_in_tree(Path::new(rel)).unwrap_err();
        assert!(rel.starts_with("..") || is_link_refusal(&err), "{rel}: {err}");
        assert!(dir.lstat_path_in_tree(Path::new(rel)).is_err(), "{rel}");
        let dir_rel = Path::new(rel).parent().unwrap();
        assert!(dir.open_dir_in_tree(dir_rel).is_err(), "{rel}");
    }
    // The strict methods still refuse the in-tree links.
    assert!(is_link_refusal(&dir.open_file(Path::new("cur/f")).unwrap_err()));
}

#[test]
fn reads_in_tree_refuse_every_link_without_openat2() {
    let (_tmp, dir) = linked_tree();
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    assert_eq!(
        read(File::from(
            dir.open_in_tree(Path::new("a/b/f"), flags, false).unwrap()
        )),
        "inside"
    );
    for rel in ["cur/f", "a/up/f", "chain/f", "a/link/f", "esc/f", "absin/f"] {
        let err = dir.open_in_tree(Path::new(rel), flags, false).unwrap_err();
        assert!(is_link_refusal(&err), "{rel}: {err}");
    }
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let err = dir.open_in_tree(Path::new("cur"), dir_flags, false).unwrap_err();
    assert!(is_link_refusal(&err), "{err}");
}

/// The trusted walk on directories the runner owns (0755): links are resolved by hand like the kernel
/// would, `..` included, and a loop ends with `ELOOP`.
#[test]
fn trusted_walk_resolves_links_in_the_runners_own_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    std::fs::create_dir_all(base.join("real/sub")).unwrap();
    std::os::unix::fs::symlink("real", base.join("rel")).unwrap();
    std::os::unix::fs::symlink(base.join("real/sub"), base.join("abs")).unwrap();
    std::os::unix::fs::symlink("../real", base.join("real/up")).unwrap();
    std::os::unix::fs::symlink("loop", base.join("loop")).unwrap();
    std::fs::write(base.join("real/sub/f"), "here").unwrap();
    for path in [
        "rel/sub",
        "abs",
        "real/up/sub",
        "real/sub/../sub",
        "rel/up/up/sub",
    ] {
        let dir = Dir::open_trusted(&base.join(path)).unwrap();
        assert_eq!(read(dir.open_file(Path::new("f")).unwrap()), "here", "{path}");
        assert_eq!(dir.path(), base.join(path));
    }
    let err = Dir::open_trusted(&base.join("loop")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::LOOP.raw_os_error()), "{err}");
    Dir::create_trusted(&base.join("rel/new/deeper")).unwrap();
    assert!(base.join("real/new/deeper").is_dir());
    // A file on the way is not a directory.
    assert!(Dir::open_trusted(&base.join("real/sub/f")).is_err());
}

/// A link directly inside a world-writable sticky directory (`/tmp`-like) is followed only when the
/// runner (or root) owns the link: nobody else can replace it there. A directory the runner made inside
/// it is trusted again.
#[test]
fn a_link_in_a_world_writable_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sticky = tmp.path().join("sticky");
    std::fs::create_dir_all(sticky.join("mine/real")).unwrap();
    std::fs::set_permissions(&sticky, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("mine", sticky.join("link")).unwrap();
    std::os::unix::fs::symlink("real", sticky.join("mine/ok")).unwrap();
    Dir::open_trusted(&sticky.join("link")).unwrap();
    Dir::open_trusted(&sticky.join("mine/ok")).unwrap();
    if rustix::process::geteuid().is_root() {
        // Another user's link (uid 65534, `nobody`; only root can give a link away).
        std::os::unix::fs::lchown(sticky.join("link"), Some(65534), Some(65534)).unwrap();
        let err = Dir::open_trusted(&sticky.join("link")).unwrap_err();
        assert!(is_untrusted_link(&err), "{err}");
        assert!(err.to_string().contains("every user can write"), "{err}");
    } else {
        eprintln!("not root: the part with another user's link is skipped");
    }
    // Without the sticky bit, everything below the open directory is opened without following links.
    std::fs::set_permissions(&sticky, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let err = Dir::open_trusted(&sticky.join("mine/ok")).unwrap_err();
    assert!(is_untrusted_link(&err), "{err}");
    Dir::open_trusted(&sticky.join("mine/real")).unwrap();
}
