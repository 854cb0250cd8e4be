#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::process::Command;

use oxrunner_pipeline::{Pipeline, PipelineContext, PipelineError, resolve};

pub fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

pub fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// A git repository on `main` with one commit and a GitLab-like origin, as the bench script makes it.
pub fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), files);
    git(d.path(), &["init", "-q", "-b", "main"]);
    git(d.path(), &["config", "user.email", "dev@example.com"]);
    git(d.path(), &["config", "user.name", "Dev Eloper"]);
    git(d.path(), &["config", "commit.gpgsign", "false"]);
    git(
        d.path(),
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.com:group/sub/proj.git",
        ],
    );
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "first commit\n\nbody line"]);
    git(d.path(), &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    git(
        d.path(),
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );
    d
}

pub fn ctx(dir: &Path) -> PipelineContext {
    PipelineContext::from_git(dir).unwrap()
}

/// Resolve a one-file pipeline in a fresh repository.
pub fn pipeline(yaml: &str) -> Pipeline {
    let d = repo(&[(".gitlab-ci.yml", yaml)]);
    resolve(&ctx(d.path())).unwrap()
}

pub fn pipeline_err(yaml: &str) -> PipelineError {
    let d = repo(&[(".gitlab-ci.yml", yaml)]);
    match resolve(&ctx(d.path())) {
        Ok(p) => panic!("expected an error, got jobs {:?}", names(&p)),
        Err(e) => e,
    }
}

pub fn names(p: &Pipeline) -> Vec<String> {
    p.jobs.iter().map(|j| j.name.clone()).collect()
}

pub fn expanded(p: &Pipeline, job: &str, var: &str) -> Option<String> {
    p.job(job)
        .unwrap()
        .expanded_variables()
        .into_iter()
        .rev()
        .find(|(k, _)| k == var)
        .map(|(_, v)| v)
}
