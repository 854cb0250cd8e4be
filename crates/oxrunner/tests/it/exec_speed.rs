//! `oxrunner exec` starts few processes: the repository facts come from `.git` (no `git log`, `symbolic-ref` or
//! `remote` process), and on exec's fresh job copies the runner does itself what the predefined `prepare_script`,
//! `get_sources` and `cleanup_file_variables` scripts would do (no `hostname`, no `rm`, no `mkdir`). The
//! predefined variables stay what git says, also when git has to be asked (packed objects).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use crate::support::exec::{Repo, Run, git};

const CI: &str = r#"
facts:
  script:
    - echo "sha=$CI_COMMIT_SHA"
    - echo "branch=$CI_COMMIT_BRANCH default=$CI_DEFAULT_BRANCH project=$CI_PROJECT_PATH"
    - echo "author=$CI_COMMIT_AUTHOR"
    - echo "timestamp=$CI_COMMIT_TIMESTAMP"
    - echo "title=$CI_COMMIT_TITLE"
    - echo "description=$CI_COMMIT_DESCRIPTION"
    - echo "FROM_ENV=yes" >> "$GITLAB_ENV"
    - echo "tmp=$(dirname "$GITLAB_ENV")" > "$MARKERS/tmp"
"#;

fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}

/// A repository whose HEAD commit has a two-paragraph message, a committer time zone east of UTC, an `origin`
/// remote and an `origin/HEAD`.
fn repo() -> Repo {
    let repo = Repo::new(CI, &[]);
    let p = repo.path();
    std::fs::write(p.join("README"), "x\n").unwrap();
    git(p, &["add", "README"]);
    let st = Command::new("git")
        .arg("-C")
        .arg(p)
        .args(["commit", "-q", "-m", "Add the readme\n\nWith a body line."])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", p)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_DATE", "1700000000 +0130")
        .status()
        .unwrap();
    assert!(st.success());
    git(
        p,
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.com:group/sub/proj.git",
        ],
    );
    git(
        p,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/trunk",
        ],
    );
    repo
}

/// Wrappers in front of PATH that log their calls, then run the real program.
fn spy(repo: &Repo) -> (String, std::path::PathBuf) {
    let bin = repo.markers().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = repo.markers().join("calls.log");
    for tool in ["git", "hostname", "rm", "mkdir"] {
        let real = String::from_utf8(Command::new("which").arg(tool).output().unwrap().stdout).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.trim()
        );
        let path = bin.join(tool);
        std::fs::write(&path, script).unwrap();
        let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(&path, mode).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    (path, log)
}

fn run_spied(repo: &Repo) -> (Run, String) {
    let (path, log) = spy(repo);
    let home = repo.markers();
    let run = repo.exec_env(&[], &[("PATH", path.as_str()), ("HOME", home.to_str().unwrap())]);
    assert!(run.ok(), "{}", run.dump());
    (run, std::fs::read_to_string(log).unwrap_or_default())
}

fn assert_facts(repo: &Repo, run: &Run) {
    let p = repo.path();
    let sha = git_out(p, &["rev-parse", "HEAD"]);
    assert!(run.printed("facts", &format!("sha={sha}")), "{}", run.dump());
    assert!(
        run.printed("facts", "branch=main default=trunk project=group/sub/proj"),
        "{}",
        run.dump()
    );
    assert!(
        run.printed("facts", "author=Ada Lovelace <ada@example.com>"),
        "{}",
        run.dump()
    );
    let when = git_out(p, &["log", "-1", "--format=%cI"]);
    assert_eq!(when, "2023-11-14T23:43:20+01:30");
    assert!(
        run.printed("facts", &format!("timestamp={when}")),
        "{}",
        run.dump()
    );
    assert!(run.printed("facts", "title=Add the readme"), "{}", run.dump());
    assert!(
        run.printed("facts", "description=With a body line."),
        "{}",
        run.dump()
    );
}

#[test]
fn one_job_starts_no_git_query_and_no_predefined_script_tool() {
    let repo = repo();
    let (run, calls) = run_spied(&repo);
    assert_facts(&repo, &run);
    let git_calls: Vec<&str> = calls.lines().filter(|l| l.starts_with("git ")).collect();
    assert!(
        git_calls.iter().all(|l| l.contains(" ls-files ")),
        "only the file listing asks git:\n{calls}"
    );
    assert!(
        !calls.contains("hostname"),
        "the runner names the host itself:\n{calls}"
    );
    assert!(
        !calls.lines().any(|l| l.starts_with("rm ")),
        "no clean-up script:\n{calls}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        run.printed("facts", &format!("Running on {}...", host.trim())),
        "{}",
        run.dump()
    );
    assert!(
        run.printed("facts", "Skipping Git repository setup"),
        "{}",
        run.dump()
    );
    // The job's temporary directory (GITLAB_ENV, file variables) existed and is gone with the job.
    let tmp = std::fs::read_to_string(repo.markers().join("tmp")).unwrap();
    let tmp = tmp.trim().strip_prefix("tmp=").unwrap();
    assert!(tmp.ends_with(".tmp"), "{tmp}");
    assert!(!Path::new(tmp).exists(), "{tmp} outlived the job");
}

#[test]
fn packed_objects_and_refs_give_the_same_facts() {
    let repo = repo();
    git(repo.path(), &["gc", "-q", "--prune=now"]);
    assert!(repo.path().join(".git/packed-refs").exists());
    let (run, calls) = run_spied(&repo);
    assert_facts(&repo, &run);
    // The packed commit is read by git: one query, not four.
    let queries = calls
        .lines()
        .filter(|l| l.starts_with("git ") && !l.contains(" ls-files "))
        .count();
    assert_eq!(queries, 1, "{calls}");
}

/// The job's `.git` carries the user's active hooks but none of git's inert files (`*.sample` hooks,
/// `description`, `COMMIT_EDITMSG`): each is one more file to create per job. `git` still works in the job.
#[test]
fn the_job_copy_of_git_has_the_users_hooks_and_no_inert_files() {
    let ci = r#"
hooks:
  script:
    - ls .git/hooks > "$MARKERS/hooks"
    - ls .git > "$MARKERS/gitdir"
    - git log -1 --format=%s > "$MARKERS/log"
"#;
    let repo = Repo::new(ci, &[]);
    let p = repo.path();
    let hook = p.join(".git/hooks/pre-commit");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&hook, mode).unwrap();
    std::fs::write(p.join(".git/hooks/pre-push.sample"), "#!/bin/sh\n").unwrap();
    std::fs::write(p.join(".git/COMMIT_EDITMSG"), "message\n").unwrap();
    std::fs::write(p.join(".git/description"), "Unnamed repository\n").unwrap();
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    let hooks = std::fs::read_to_string(repo.markers().join("hooks")).unwrap();
    assert_eq!(hooks.trim(), "pre-commit", "{hooks}");
    let gitdir = std::fs::read_to_string(repo.markers().join("gitdir")).unwrap();
    for inert in ["description", "COMMIT_EDITMSG"] {
        assert!(!gitdir.lines().any(|l| l == inert), "{inert} copied:\n{gitdir}");
    }
    let log = std::fs::read_to_string(repo.markers().join("log")).unwrap();
    assert!(!log.trim().is_empty(), "git log failed in the job");
}

/// A `.git/hooks` that is a link (to a shared hooks directory, or dangling) is copied as the link it is.
#[test]
fn a_hooks_link_in_git_is_kept_as_a_link() {
    let ci = "links:\n  script:\n    - readlink .git/hooks > \"$MARKERS/hooks\"\n";
    let repo = Repo::new(ci, &[]);
    let p = repo.path();
    std::fs::remove_dir_all(p.join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink("../no-such-hooks", p.join(".git/hooks")).unwrap();
    let run = repo.exec(&[]);
    assert!(run.ok(), "{}", run.dump());
    let target = std::fs::read_to_string(repo.markers().join("hooks")).unwrap();
    assert_eq!(target.trim(), "../no-such-hooks");
}
