#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 11 item 1: a job user who owns the build directory swaps one of its directories with a symlink
//! to a root-only directory (absolute `l`, relative `r` = `../outside`) or with a link that stays in the
//! build directory (`i` -> `e`), in a tight loop (`renameat2(RENAME_EXCHANGE)`), while the runner (root)
//! extracts an archive into the build directory and collects artifacts from it. Collection follows
//! in-tree links on the way to a path, so the in-tree swap is a legitimate detour; the others must never
//! be. Nothing may be created or changed in the root-only directory, and its secret must never end up in
//! an archive.
//!
//! Needs root (a throwaway user is created and removed). Under `CI=true` it runs or fails; elsewhere it
//! skips with a message. The racer is this test binary itself, re-run as the throwaway user with
//! `OXRT_RACER_DIR` set (see `racer_helper_process`).

use crate::support as common;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::TempUser;
use oxrunner_archive::{Level, collect, create_zip, create_zip_file, extract_zip};

const SECRET: &str = "oxrt-root-only-secret-3f9c1d0a7b";
const IN_TREE: &str = "oxrt-in-tree-content";
const ITERATIONS: usize = 2000;
const TIME_BOUND: Duration = Duration::from_secs(20);

/// A test's name as libtest filters it: the module path inside the test program (without the program's own name),
/// then the function; the test re-runs its own program with `--exact` on it.
fn test_name(function: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{function}"),
        None => function.to_string(),
    }
}

/// The racer process, killed on drop.
struct Racer(Child);

impl Racer {
    fn start(exe: &Path, user: &TempUser, build: &Path) -> Racer {
        let child = Command::new("setpriv")
            .arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--clear-groups")
            .arg(exe)
            .arg(test_name("racer_helper_process"))
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .env("OXRT_RACER_DIR", build)
            .spawn()
            .unwrap();
        let mut racer = Racer(child);
        // The racer announces itself by making `swapping`; until then there is nothing to race. A loaded machine
        // (a full test run beside other builds) can take long to start the test program again as another user:
        // wait as long as the racer is alive, and say how it ended if it did not get there.
        let deadline = Instant::now() + Duration::from_secs(180);
        while !build.join("swapping").exists() {
            if let Some(status) = racer.0.try_wait().unwrap() {
                panic!("the racer exited ({status}) before it started racing");
            }
            assert!(Instant::now() < deadline, "the racer did not start in 180 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        racer
    }

    fn assert_running(&mut self) {
        assert!(
            self.0.try_wait().unwrap().is_none(),
            "the racer stopped early, so nothing was raced"
        );
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sandbox: `<base>` (root, 0755) holding `outside` (root, 0700, with the secret), `bin/` with a
/// copy of this test binary the racer can execute, and `build` owned by the racer with `d` (a real
/// directory), `l` (an absolute symlink to `outside`), `r` (`../outside`) and `i` (`e`, a real directory
/// beside it): the racer keeps exchanging `d` with each of the others.
struct Sandbox {
    base: tempfile::TempDir,
    user: TempUser,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        let base = tempfile::Builder::new().prefix("oxrt-race-").tempdir().unwrap();
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let user = TempUser::create(&format!("race-{tag}"));
        let outside = base.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("s"), SECRET).unwrap();
        fs::set_permissions(outside.join("s"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        let bin = base.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::copy(std::env::current_exe().unwrap(), bin.join("racer")).unwrap();
        fs::set_permissions(bin.join("racer"), fs::Permissions::from_mode(0o755)).unwrap();
        let build = base.path().join("build");
        fs::create_dir(&build).unwrap();
        fs::create_dir(build.join("d")).unwrap();
        fs::write(build.join("d/s"), "harmless").unwrap();
        fs::create_dir(build.join("e")).unwrap();
        fs::write(build.join("e/s"), IN_TREE).unwrap();
        std::os::unix::fs::symlink(&outside, build.join("l")).unwrap();
        std::os::unix::fs::symlink("../outside", build.join("r")).unwrap();
        std::os::unix::fs::symlink("e", build.join("i")).unwrap();
        for p in ["d/s", "d", "e/s", "e", ""].map(|p| build.join(p)) {
            std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).unwrap();
        }
        for link in ["l", "r", "i"] {
            std::os::unix::fs::lchown(build.join(link), Some(user.uid), Some(user.gid)).unwrap();
        }
        Sandbox { base, user }
    }

    fn build(&self) -> PathBuf {
        self.base.path().join("build")
    }

    fn outside(&self) -> PathBuf {
        self.base.path().join("outside")
    }

    fn racer(&self) -> Racer {
        Racer::start(&self.base.path().join("bin/racer"), &self.user, &self.build())
    }

    /// The root-only directory still holds exactly the secret, with its modes and owner.
    fn assert_outside_untouched(&self, iteration: usize) {
        let outside = self.outside();
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [OsStr::new("s")],
            "iteration {iteration}: entries appeared outside"
        );
        let dir = fs::metadata(&outside).unwrap();
        assert_eq!(
            dir.mode() & 0o7777,
            0o700,
            "iteration {iteration}: outside dir mode changed"
        );
        assert_eq!(dir.uid(), 0, "iteration {iteration}: outside dir owner changed");
        let s = fs::metadata(outside.join("s")).unwrap();
        assert_eq!(
            s.mode() & 0o7777,
            0o600,
            "iteration {iteration}: secret mode changed"
        );
        assert_eq!(
            (s.uid(), s.gid()),
            (0, 0),
            "iteration {iteration}: secret owner changed"
        );
        assert_eq!(fs::read_to_string(outside.join("s")).unwrap(), SECRET);
    }
}

/// Not a test: the racer's body, run as the throwaway user by [`Racer::start`]. Without
/// `OXRT_RACER_DIR` it returns at once.
#[test]
fn racer_helper_process() {
    let Some(dir) = std::env::var_os("OXRT_RACER_DIR") else {
        return;
    };
    let build = fs::File::open(&dir).unwrap();
    fs::write(Path::new(&dir).join("swapping"), "").unwrap();
    // Bounded so a forgotten racer cannot outlive its test for long.
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        for _ in 0..10_000 {
            for other in ["l", "r", "i"] {
                let _ =
                    rustix::fs::renameat_with(&build, "d", &build, other, rustix::fs::RenameFlags::EXCHANGE);
            }
        }
    }
}

fn bounded(mut body: impl FnMut(usize)) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while n < ITERATIONS && start.elapsed() < TIME_BOUND {
        body(n);
        n += 1;
    }
    n
}

/// One test, so the two resolution strategies of `oxrunner_fs` (openat2, then the component walk the
/// runner falls back to on older kernels) run one after the other in this process.
#[test]
fn racing_the_job_user_never_leaks_through_a_swapped_directory() {
    if !common::root_tests_can_run("the symlink race test", &["useradd", "userdel", "setpriv"]) {
        return;
    }
    extraction_never_writes_through_a_swapped_directory("openat2");
    collection_never_reads_through_a_swapped_directory("openat2");
    oxrunner_fs::resolve_by_walking();
    extraction_never_writes_through_a_swapped_directory("walk");
    collection_never_reads_through_a_swapped_directory("walk");
}

fn extraction_never_writes_through_a_swapped_directory(strategy: &str) {
    let sb = Sandbox::new("x");
    // The archive: a directory entry `d/` (mode 0777) and files directly in it, each one a chance to
    // land outside when `d` is a link at the wrong moment.
    let src = tempfile::tempdir().unwrap();
    for k in 0..20 {
        common::write(src.path(), &format!("d/f{k:02}"), b"planted by the archive");
        common::set_mode(src.path(), &format!("d/f{k:02}"), 0o4755);
    }
    common::set_mode(src.path(), "d", 0o777);
    let files = collect(src.path(), &["d".to_owned()], &[], false).unwrap();
    let archive = src.path().join("a.zip");
    create_zip_file(src.path(), &files, Level::Fastest, &archive).unwrap();

    let mut racer = sb.racer();
    let mut ok = 0;
    let done = bounded(|i| {
        if extract_zip(&archive, &sb.build()).is_ok() {
            ok += 1;
        }
        sb.assert_outside_untouched(i);
    });
    racer.assert_running();
    eprintln!("{strategy}: {done} extractions raced, {ok} succeeded, nothing written outside");
}

fn collection_never_reads_through_a_swapped_directory(strategy: &str) {
    let sb = Sandbox::new("c");
    let mut racer = sb.racer();
    let mut archived = 0;
    let mut via_link = 0;
    let paths = ["d", "d/*", "d/s"].map(str::to_owned);
    let done = bounded(|i| {
        let Ok(files) = collect(&sb.build(), &paths, &[], false) else {
            return;
        };
        let mut zip = Vec::new();
        if create_zip(&sb.build(), &files, Level::Fastest, &mut zip).is_err() {
            return;
        }
        archived += 1;
        let mut reader = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        for k in 0..reader.len() {
            let mut entry = reader.by_index(k).unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if content == IN_TREE.as_bytes() {
                via_link += 1;
            }
            assert!(
                !String::from_utf8_lossy(&content).contains(SECRET),
                "{strategy} iteration {i}: the root-only secret was archived as {:?}",
                entry.name()
            );
        }
        sb.assert_outside_untouched(i);
    });
    racer.assert_running();
    eprintln!(
        "{strategy}: {done} collections raced, {archived} archives built, {via_link} entries read through \
         the in-tree link, the secret never read"
    );
}
