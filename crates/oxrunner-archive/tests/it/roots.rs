#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Review findings 3 and 6 of issue 11: roots of trust and hard links, as root with a throwaway user.
//!
//! Finding 3: in the user's guide setup `builds_dir` and `cache_dir` sit in the job user's home, which
//! that user can change: `home/builds` or `home/cache` replaced by a link to a root-only directory must
//! not make root create or read anything there. A link that only an administrator could have placed
//! (in a root-owned 0755 directory) is still followed.
//!
//! Finding 6: with `fs.protected_hardlinks=0` a job user can hard-link a root-only file into its
//! project; root collecting artifacts must not archive it.
//!
//! Needs root (a user is created and removed). Under `CI=true` it runs or fails; elsewhere it skips
//! with a message.

use crate::support as common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::TempUser;
use oxrunner_archive::{CacheStore, Level, collect, create_gzip, create_raw, create_zip_file, extract_zip};
use oxrunner_fs::Dir;

const SECRET: &str = "oxrt-roots-secret-9a1c4e";

/// `<tmp>/home` owned by the user (as `/home/gitlab-runner` in the guide) and `<tmp>/root-only` (root,
/// 0700). The temporary directory itself is root's, 0700.
fn setup(tag: &str) -> (tempfile::TempDir, TempUser, PathBuf, PathBuf) {
    let user = TempUser::create(&format!("roots-{tag}"));
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    user.chown(&home);
    let root_only = tmp.path().join("root-only");
    fs::create_dir(&root_only).unwrap();
    fs::set_permissions(&root_only, fs::Permissions::from_mode(0o700)).unwrap();
    (tmp, user, home, root_only)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A small archive holding `evil` (a file) made from a scratch project.
fn archive(tmp: &Path) -> PathBuf {
    let src = tmp.join("src");
    common::write(&src, "evil", b"payload");
    let files = collect(&src, &["evil".to_owned()], &[], false).unwrap();
    let zip = tmp.join("a.zip");
    create_zip_file(&src, &files, Level::Fast, &zip).unwrap();
    zip
}

#[test]
fn builds_dir_replaced_by_a_link_is_not_followed() {
    if !common::root_tests_can_run("the roots-of-trust tests", &["useradd", "userdel", "chown"]) {
        return;
    }
    let (tmp, user, home, root_only) = setup("builds");
    let zip = archive(tmp.path());
    // What the job user can do to its own home: put a link where the runner's builds_dir is.
    symlink(&root_only, home.join("builds")).unwrap();
    user.chown(&home.join("builds"));
    let project = home.join("builds/t1abc/0/group/project");

    let err = extract_zip(&zip, &project).unwrap_err().to_string();
    assert!(err.contains("not followed") && err.contains("hint:"), "{err}");
    let err = Dir::create_trusted(&project).unwrap_err().to_string();
    assert!(err.contains("builds is a symlink inside a directory"), "{err}");
    assert!(Dir::open_trusted(&home.join("builds")).is_err());
    assert!(
        listing(&root_only).is_empty(),
        "created in the root-only directory: {:?}",
        listing(&root_only)
    );
}

#[test]
fn the_guides_setup_still_works() {
    if !common::root_tests_can_run("the roots-of-trust tests", &["useradd", "userdel", "chown"]) {
        return;
    }
    let (tmp, user, home, _root_only) = setup("guide");
    let zip = archive(tmp.path());
    let builds = home.join("builds");
    fs::create_dir(&builds).unwrap();
    user.chown(&builds);
    let project = builds.join("t1abc/0/group/project");
    extract_zip(&zip, &project).unwrap();
    assert_eq!(fs::read_to_string(project.join("evil")).unwrap(), "payload");

    // The cache store in the user's home, made by the runner: saved and restored.
    let store = CacheStore::new(&home.join("cache"));
    let files = collect(&project, &["evil".to_owned()], &[], false).unwrap();
    store
        .save("group/project", "main", &project, &files, Level::Fast)
        .unwrap();
    let restore_into = tmp.path().join("restored");
    let got = store
        .restore("group/project", &["main".to_owned()], &restore_into)
        .unwrap();
    assert_eq!(got.as_deref(), Some("main"));
    assert_eq!(fs::read_to_string(restore_into.join("evil")).unwrap(), "payload");
}

#[test]
fn cache_dir_replaced_by_a_link_is_not_followed() {
    if !common::root_tests_can_run("the roots-of-trust tests", &["useradd", "userdel", "chown"]) {
        return;
    }
    let (tmp, user, home, root_only) = setup("cache");
    let project = tmp.path().join("project");
    common::write(&project, "dep.txt", b"cached");
    symlink(&root_only, home.join("cache")).unwrap();
    user.chown(&home.join("cache"));
    let store = CacheStore::new(&home.join("cache"));
    let files = collect(&project, &["dep.txt".to_owned()], &[], false).unwrap();

    let err = store
        .save("group/project", "main", &project, &files, Level::Fast)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not followed"), "{err}");
    assert!(
        listing(&root_only).is_empty(),
        "created in the root-only directory: {:?}",
        listing(&root_only)
    );

    // A root-only archive behind the link is never read either.
    let cached = root_only.join("group/project/main");
    fs::create_dir_all(&cached).unwrap();
    let secret_src = tmp.path().join("secret-src");
    common::write(&secret_src, "secret.txt", SECRET.as_bytes());
    let secret_files = collect(&secret_src, &["secret.txt".to_owned()], &[], false).unwrap();
    create_zip_file(&secret_src, &secret_files, Level::Fast, &cached.join("cache.zip")).unwrap();
    let into = tmp.path().join("job");
    let restored = store.restore("group/project", &["main".to_owned()], &into);
    assert!(!matches!(restored, Ok(Some(_))), "{restored:?}");
    assert!(!into.join("secret.txt").exists());
}

#[test]
fn a_cache_dir_the_job_user_owns_is_refused() {
    if !common::root_tests_can_run("the roots-of-trust tests", &["useradd", "userdel", "chown"]) {
        return;
    }
    let (tmp, user, home, _root_only) = setup("cacheown");
    let cache = home.join("cache");
    fs::create_dir(&cache).unwrap();
    user.chown(&cache);
    let project = tmp.path().join("project");
    common::write(&project, "dep.txt", b"cached");
    let files = collect(&project, &["dep.txt".to_owned()], &[], false).unwrap();
    let err = CacheStore::new(&cache)
        .save("group/project", "main", &project, &files, Level::Fast)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("uid {} can write it", user.uid)) && err.contains("hint:"),
        "{err}"
    );
    assert!(listing(&cache).is_empty());
}

#[test]
fn an_administrators_link_is_followed() {
    if !common::root_tests_can_run("the roots-of-trust tests", &["useradd", "userdel", "chown"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let admin = tmp.path().join("root-owned-dir");
    fs::create_dir_all(admin.join("real")).unwrap();
    fs::set_permissions(&admin, fs::Permissions::from_mode(0o755)).unwrap();
    symlink("real", admin.join("link")).unwrap();
    symlink(admin.join("real"), admin.join("abs")).unwrap();
    Dir::create_trusted(&admin.join("link/builds/x")).unwrap();
    assert!(admin.join("real/builds/x").is_dir());
    Dir::open_trusted(&admin.join("abs/builds")).unwrap();
    // ... but not a link in a directory a user can write, even a trusted link's target's way through it.
    let user = TempUser::create("roots-admin");
    let open = tmp.path().join("user-dir");
    fs::create_dir(&open).unwrap();
    user.chown(&open);
    symlink(admin.join("real"), open.join("l")).unwrap();
    assert!(Dir::open_trusted(&open.join("l")).is_err());
    symlink(open.join("l"), admin.join("via-user")).unwrap();
    let err = Dir::open_trusted(&admin.join("via-user"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("uid {} can write", user.uid)), "{err}");
}

/// Collects what `tracing` logs while `f` runs.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, logs)
}

#[test]
fn a_hard_link_to_a_root_only_file_is_not_archived() {
    if !common::root_tests_can_run("the roots-of-trust tests", &["useradd", "userdel", "chown"]) {
        return;
    }
    let (tmp, user, home, root_only) = setup("hardlink");
    let secret = root_only.join("shadow");
    fs::write(&secret, SECRET).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let project = home.join("project");
    common::write(&project, "own.txt", b"mine");
    fs::hard_link(project.join("own.txt"), project.join("own-too.txt")).unwrap();
    user.chown_tree(&project);
    // As `ln /etc/shadow out.txt` by the job user where fs.protected_hardlinks is 0.
    fs::hard_link(&secret, project.join("out.txt")).unwrap();

    let paths = ["out.txt", "own.txt", "own-too.txt"].map(str::to_owned);
    let files = collect(&project, &paths, &[], false).unwrap();
    let zip = tmp.path().join("artifacts.zip");
    let (made, logs) = with_logs(|| create_zip_file(&project, &files, Level::Fast, &zip));
    made.unwrap();
    let mut names = common::unzip_names(&zip);
    names.sort();
    assert_eq!(names, ["own-too.txt", "own.txt"], "archived: {names:?}");
    assert!(!String::from_utf8_lossy(&fs::read(&zip).unwrap()).contains(SECRET));
    assert!(
        logs.contains("out.txt") && logs.contains("hard link"),
        "logs: {logs}"
    );

    // The gzip and raw formats: skipped, or (raw, which must hold exactly the file) refused.
    let mut gz = Vec::new();
    let (made, logs) = with_logs(|| create_gzip(&project, &files, &mut gz));
    assert_eq!(made.unwrap().entries, 2);
    assert!(
        logs.contains("out.txt") && logs.contains("hard link"),
        "logs: {logs}"
    );
    let only = collect(&project, &["out.txt".to_owned()], &[], false).unwrap();
    let mut raw = Vec::new();
    let err = create_raw(&project, &only, &mut raw).unwrap_err().to_string();
    assert!(err.contains("hard link"), "{err}");
    assert!(!String::from_utf8_lossy(&raw).contains(SECRET));
}
