use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oxrunner_config::{ConfigDocument, ConfigError, DockerConfig, RunnerConfig, Secret, load};
use time::macros::datetime;

use crate::fixture;

fn shell_runner() -> RunnerConfig {
    RunnerConfig {
        name: "Shell Runner".into(),
        url: "https://gitlab.example.com/".into(),
        id: 42,
        token: Secret::new("glrt-t1_shelltoken123"),
        token_obtained_at: Some(datetime!(2026-11-27 10:00:00 UTC)),
        executor: "shell".into(),
        ..RunnerConfig::default()
    }
}

fn seed_docker_runner() -> RunnerConfig {
    RunnerConfig {
        name: "Docker Runner".into(),
        url: "https://gitlab.webpat.co/".into(),
        token: Secret::new("d05b450b6b4446a75b6231284e4a7a"),
        executor: "docker".into(),
        docker: Some(DockerConfig {
            image: Some("docker:latest".into()),
            ..DockerConfig::default()
        }),
        ..RunnerConfig::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_file_gets_register_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/gitlab-runner/config.toml");
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.append_runner(&shell_runner());
    doc.save().unwrap();

    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        r#"concurrent = 1
check_interval = 0

[session_server]
  session_timeout = 1800

[[runners]]
  name = "Shell Runner"
  url = "https://gitlab.example.com/"
  id = 42
  token = "glrt-t1_shelltoken123"
  token_obtained_at = 2026-11-27T10:00:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  [runners.cache]
"#
    );
    let loaded = load(&path).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let r = &loaded.config.runners[0];
    assert_eq!(r.token_obtained_at, Some(datetime!(2026-11-27 10:00:00 UTC)));
    assert_eq!(r.token_expires_at, None);
    assert_eq!(r.short_token(), "shelltoke");
    assert!(r.docker.is_none());
    assert!(r.cache.is_some());
}

#[test]
fn docker_runner_matches_the_seed_config_structure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.append_runner(&seed_docker_runner());
    doc.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(
            "  executor = \"docker\"\n  [runners.cache]\n  [runners.docker]\n    tls_verify = false\n    image = \"docker:latest\"\n    privileged = false\n    disable_entrypoint_overwrite = false\n    oom_kill_disable = false\n    disable_cache = false\n    volumes = [\"/cache\"]\n    shm_size = 0\n    network_mtu = 0\n"
        ),
        "{text}"
    );

    let ours = load(&path).unwrap().config;
    let seed = load(&crate::fixture_path("seed-qa2-docker-runner.toml"))
        .unwrap()
        .config;
    assert_eq!(ours.check_interval, seed.check_interval);
    let (o, s) = (&ours.runners[0], &seed.runners[0]);
    assert_eq!(o.name, s.name);
    assert_eq!(o.url, s.url);
    assert_eq!(o.token, s.token);
    assert_eq!(o.executor, s.executor);
    assert_eq!(o.cache, s.cache);
    let (od, sd) = (o.docker.as_ref().unwrap(), s.docker.as_ref().unwrap());
    assert_eq!(od.tls_verify, sd.tls_verify);
    assert_eq!(od.image, sd.image);
    assert_eq!(od.privileged, sd.privileged);
    assert_eq!(od.disable_cache, sd.disable_cache);
    assert_eq!(od.shm_size, sd.shm_size);
    assert_eq!(od.volumes[0], sd.volumes[0]);
    // Seed's file is a new-file config except for the user's later edit of `concurrent`.
    assert_eq!(ours.concurrent, 1);
    assert_eq!(seed.concurrent, 4);
}

#[test]
fn cache_volume_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    let mut with_volume = seed_docker_runner();
    with_volume.docker.as_mut().unwrap().volumes = vec![
        "/var/run/docker.sock:/var/run/docker.sock".into(),
        "shared:/cache".into(),
    ];
    doc.append_runner(&with_volume);
    let mut no_cache = seed_docker_runner();
    no_cache.docker.as_mut().unwrap().disable_cache = Some(true);
    doc.try_append_runner(&no_cache).unwrap();
    let mut windows = seed_docker_runner();
    windows.executor = "docker-windows".into();
    doc.append_runner(&windows);

    let c = doc.config().unwrap();
    assert_eq!(
        c.runners[0].docker.as_ref().unwrap().volumes,
        vec!["/var/run/docker.sock:/var/run/docker.sock", "shared:/cache"]
    );
    assert!(c.runners[1].docker.as_ref().unwrap().volumes.is_empty());
    assert_eq!(c.runners[2].docker.as_ref().unwrap().volumes, vec!["c:\\cache"]);
    assert_eq!(c.runners[2].shell.as_deref(), Some("pwsh"));
}

#[test]
fn shell_runner_drops_other_executor_sections() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = ConfigDocument::open_or_new(&dir.path().join("config.toml")).unwrap();
    let mut r = shell_runner();
    r.docker = Some(DockerConfig::default());
    r.builds_dir = Some("/srv/builds".into());
    r.limit = 2;
    doc.append_runner(&r);
    let text = doc.to_toml_string();
    assert!(!text.contains("[runners.docker]"), "{text}");
    assert!(text.contains("  limit = 2\n"), "{text}");
    assert!(text.contains("  builds_dir = \"/srv/builds\"\n"), "{text}");
}

#[test]
fn round_trip_keeps_comments_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let original = format!(
        "{}\n[runners.docker.experimental_thing]\n  keep_me = true # not a gitlab-runner key\n",
        fixture("docs-docker-autoscaler-aws.toml")
    );
    std::fs::write(&path, &original).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.append_runner(&shell_runner());
    doc.save().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(original.trim_end()), "{text}");
    for kept in [
        "# uncomment for Windows AMIs when the Runner manager is hosted on Linux",
        "plugin = \"aws\" # in GitLab 16.11 and later",
        "idle_time = \"20m0s\"",
        "keep_me = true # not a gitlab-runner key",
    ] {
        assert!(text.contains(kept), "lost `{kept}` in:\n{text}");
    }
    assert_eq!(mode(&path), 0o600);
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.config.runners.len(), 2);
    assert_eq!(loaded.config.runners[0].name, "docker autoscaler example");
    assert_eq!(loaded.config.runners[1].name, "Shell Runner");
    assert!(loaded.config.runners[0].autoscaler.is_some());
    // The unknown key survives and is still reported.
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].key, "runners[0].docker.experimental_thing");
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["config.toml"]);
}

#[test]
fn remove_runners_by_predicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, fixture("commands-testdata-test-config.toml")).unwrap();
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    assert_eq!(doc.runner_count(), 3);
    assert_eq!(doc.remove_runners(|r| r.executor == "shell"), 2);
    assert_eq!(doc.remove_runners(|r| r.token.expose() == "nope"), 0);
    doc.save().unwrap();
    let c = load(&path).unwrap().config;
    assert_eq!(c.runners.len(), 1);
    assert_eq!(c.runners[0].name, "test-docker-runner");
    assert_eq!(c.concurrent, 2);

    assert_eq!(doc.remove_runners(|_| true), 1);
    doc.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("[[runners]]"), "{text}");
    assert!(load(&path).unwrap().config.runners.is_empty());
}

#[test]
fn set_runner_token_keeps_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "concurrent = 1 # jobs\n\n[[runners]]\n  name = \"a\"\n  url = \"https://gitlab.example.com/\"\n  token = \"glrt-old\" # rotated by the runner\n  token_obtained_at = 2026-01-01T00:00:00Z\n  token_expires_at = 2026-02-01T00:00:00Z\n  executor = \"shell\"\n",
    )
    .unwrap();
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.set_runner_token(
        0,
        "glrt-new",
        Some(datetime!(2026-11-27 12:00:00 UTC)),
        Some(datetime!(2026-12-27 12:00:00 UTC)),
    )
    .unwrap();
    doc.save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("  token = \"glrt-new\" # rotated by the runner\n"),
        "{text}"
    );
    assert!(
        text.contains("  token_obtained_at = 2026-11-27T12:00:00Z\n"),
        "{text}"
    );
    assert!(
        text.contains("  token_expires_at = 2026-12-27T12:00:00Z\n"),
        "{text}"
    );
    assert!(text.starts_with("concurrent = 1 # jobs\n"), "{text}");

    let err = doc.set_runner_token(3, "x", None, None).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::NoSuchRunner {
            index: 3,
            count: 1,
            ..
        }
    ));
}

#[test]
fn open_rejects_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, fixture("lint-invalid_syntax.toml")).unwrap();
    assert!(matches!(
        ConfigDocument::open_or_new(&path),
        Err(ConfigError::Syntax { line: 4, .. })
    ));
    std::fs::write(&path, "concurrent = \"many\"\n").unwrap();
    assert!(matches!(
        ConfigDocument::open_or_new(&path),
        Err(ConfigError::Invalid { .. })
    ));
}

#[test]
fn save_reports_unwritable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("sub");
    let doc = ConfigDocument::open_or_new(&blocker.join("config.toml")).unwrap();
    // The directory cannot be created once a plain file holds its name.
    std::fs::write(&blocker, "").unwrap();
    let err = doc.save().unwrap_err();
    assert!(matches!(err, ConfigError::Write { .. }));
    assert!(err.to_string().contains("hint:"));
}

#[test]
fn empty_file_is_treated_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "\n").unwrap();
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.append_runner(&shell_runner());
    let text = doc.to_toml_string();
    assert!(text.starts_with("concurrent = 1\ncheck_interval = 0\n"), "{text}");
    assert_eq!(doc.runner_count(), 1);
}

#[test]
fn document_debug_hides_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = ConfigDocument::open_or_new(&dir.path().join("config.toml")).unwrap();
    doc.append_runner(&shell_runner());
    let shown = format!("{doc:?}");
    assert!(!shown.contains("shelltoken"), "{shown}");
    assert!(shown.contains("runners: 1"), "{shown}");
}

#[test]
fn set_runner_token_adds_missing_dates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[[runners]]\n  name = \"a\"\n  token = \"old\"\n  executor = \"shell\"\n",
    )
    .unwrap();
    let mut doc = ConfigDocument::open_or_new(&path).unwrap();
    doc.set_runner_token(0, "glrt-rotated", Some(datetime!(2026-11-27 12:00:00 UTC)), None)
        .unwrap();
    let text = doc.to_toml_string();
    assert!(
        text.contains("  token_obtained_at = 2026-11-27T12:00:00Z\n"),
        "{text}"
    );
    assert!(
        text.contains("  token_expires_at = 0001-01-01T00:00:00Z\n"),
        "{text}"
    );
    let r = &doc.config().unwrap().runners[0];
    assert_eq!(r.token.expose(), "glrt-rotated");
    assert_eq!(r.token_expires_at, None);
}

#[test]
fn save_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.toml");
    let link = dir.path().join("config.toml");
    std::fs::write(&real, "concurrent = 2\n").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut doc = ConfigDocument::open_or_new(&link).unwrap();
    doc.append_runner(&shell_runner());
    doc.save().unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(load(&real).unwrap().config.runners.len(), 1);
    assert_eq!(mode(&real), 0o600);
}
