//! The test images of `scripts/docker-images` live under the project's own name space `oxrunner-test/` and carry
//! the label `com.oxrunner.test=1`: a test image under a public name (`busybox:latest`, `docker:latest`, ...) would
//! shadow the user's real image of that name. Tags an earlier version of the script left under public names are
//! removed, but only when the image behind them is provably one of ours.
//!
//! Runs on the real engine through the `docker` CLI; with `CI=true` a missing engine fails instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::path::Path;
use std::process::{Command, Stdio};

const NS: &str = "oxrunner-test/";
const LABEL: &str = "com.oxrunner.test";
/// The names the script builds.
const BUILT: &[&str] = &[
    "oxrunner-test/busybox:latest",
    "oxrunner-test/tools:latest",
    "oxrunner-test/docker:latest",
    "oxrunner-test/node:8.4.0",
];
/// The public names earlier versions of the script gave the same images.
const LEGACY: &[&str] = &[
    "busybox:latest",
    "local/busybox:latest",
    "local/tools:latest",
    "docker:latest",
    "node:8.4.0",
    "local/oxrunner:test",
];

/// Runs the `docker` CLI; returns whether it succeeded and its stdout.
fn docker(args: &[&str]) -> (bool, Vec<u8>) {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    (out.status.success(), out.stdout)
}

#[track_caller]
fn docker_ok(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).0
}

fn label(image: &str, key: &str) -> String {
    docker_ok(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        image,
    ])
}

/// The content of `/etc/oxrunner-image` (the file every image of the script has had) in `image`, read from a
/// created, never started container; `None` when the image has no such file.
fn marker(image: &str) -> Option<String> {
    let ctr = docker_ok(&["create", "--label", &format!("{LABEL}=1"), image, "true"]);
    let (ok, tar) = docker(&["cp", &format!("{ctr}:/etc/oxrunner-image"), "-"]);
    docker_ok(&["rm", "-f", &ctr]);
    ok.then(|| String::from_utf8_lossy(&tar).into_owned())
}

/// Every `repository:tag` of the images carrying the test label.
fn labelled_tags() -> Vec<String> {
    docker_ok(&[
        "images",
        "--filter",
        &format!("label={LABEL}=1"),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])
    .lines()
    .filter(|l| *l != "<none>:<none>")
    .map(str::to_owned)
    .collect()
}

fn script() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/docker-images"))
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn every_test_image_lives_under_oxrunner_test_and_no_public_name_is_ours() {
    // Runs scripts/docker-images.
    let Some(_docker) = common::engine().await else {
        return;
    };
    let tags = labelled_tags();
    for name in BUILT {
        assert!(tags.iter().any(|t| t == name), "{name} missing among {tags:?}");
    }
    let outside: Vec<&String> = tags.iter().filter(|t| !t.starts_with(NS)).collect();
    assert!(outside.is_empty(), "test images outside {NS}: {outside:?}");
    // A public name may exist (the user's own image), but it must not be one of ours.
    for name in LEGACY {
        if !exists(name) {
            continue;
        }
        assert_ne!(label(name, LABEL), "1", "{name} carries the test label");
        let mark = marker(name);
        assert!(
            !mark
                .as_deref()
                .is_some_and(|m| m.contains("oxrunner") && m.contains("test image")),
            "{name} is an oxrunner test image: {mark:?}"
        );
    }
}

/// Removes the named images when dropped, so that a failed test leaves none behind.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rmi", "-f", name]);
        }
    }
}

/// Imports a one-file root file system as `name`, with the given `docker import --change` lines.
fn import(dir: &Path, name: &str, file: (&str, &str), changes: &[&str]) {
    let root = dir.join(name.replace(['/', ':'], "_"));
    let path = root.join(file.0);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, file.1).unwrap();
    let tar = root.with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let mut args = vec!["import".to_owned()];
    for change in changes {
        args.extend(["--change".to_owned(), (*change).to_owned()]);
    }
    args.extend([tar.to_string_lossy().into_owned(), name.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args);
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn tags_of_earlier_versions_are_removed_only_when_the_image_is_ours() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    // The legacy names are replaced by names of this test, so that no user's image is ever at stake here.
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let name = |what: &str| format!("{NS}legacy-{what}:{id}");
    let (marked, labelled, runner, foreign, look_alike) = (
        name("marked"),
        name("labelled"),
        name("runner"),
        name("foreign"),
        name("look-alike"),
    );
    let images = Images(vec![
        marked.clone(),
        labelled.clone(),
        runner.clone(),
        foreign.clone(),
        look_alike.clone(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let user_file = ("etc/os-release", "NAME=\"someone's image\"\n");
    // As the earlier script built it: no label, only the file of the root file system.
    import(
        dir.path(),
        &marked,
        ("etc/oxrunner-image", "oxrunner busybox test image\n"),
        &[],
    );
    import(dir.path(), &labelled, user_file, &[&format!("LABEL {LABEL}=1")]);
    // The earlier oxrunner image: the tools image (a file of its own) plus the binary's label.
    import(
        dir.path(),
        &runner,
        user_file,
        &["LABEL com.oxrunner.binary-sha256=0123abcd"],
    );
    import(dir.path(), &foreign, user_file, &[]);
    import(
        dir.path(),
        &look_alike,
        ("etc/oxrunner-image", "my own image\n"),
        &[],
    );

    let out = script()
        .env("OXRUNNER_LEGACY_TAGS", images.0.join(" "))
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    for gone in [&marked, &labelled, &runner] {
        assert!(!exists(gone), "{gone} was kept:\n{log}");
        assert!(log.contains(&format!("removed {gone}")), "{log}");
    }
    for kept in [&foreign, &look_alike] {
        assert!(exists(kept), "{kept} was removed:\n{log}");
        assert!(
            log.contains(&format!("{kept} is not an oxrunner test image")),
            "{log}"
        );
        // The probe container the script created to read the image's file is gone.
        let left = docker_ok(&["ps", "-aq", "--filter", &format!("ancestor={kept}")]);
        assert_eq!(left, "", "containers of {kept} left behind");
    }
    drop(images);
}
