use std::path::Path;

use oxrunner_config::{ConfigError, load, parse_fragment, parse_str};

use crate::{fixture, fixture_path};

const FULL_FILES: [&str; 9] = [
    "commands-testdata-test-config.toml",
    "config.toml.example",
    "docs-advanced-runners-section.toml",
    "docs-advanced-session-server.toml",
    "docs-docker-autoscaler-aws.toml",
    "docs-executors-docker-sample-config.toml",
    "docs-k8s-podman-saved-config.toml",
    "lint-valid.toml",
    "seed-qa2-docker-runner.toml",
];

const FRAGMENTS: [&str; 4] = [
    "docs-advanced-cache-s3.toml",
    "docs-advanced-runners-artifact.toml",
    "docs-advanced-runners-docker-example.toml",
    "docs-advanced-runners-kubernetes.toml",
];

#[test]
fn every_full_fixture_loads_without_warnings() {
    for name in FULL_FILES {
        let loaded = load(&fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let keys: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
        // The saved podman config really has `limit = 50` under `concurrent = 3`.
        let expected: &[&str] = if name == "docs-k8s-podman-saved-config.toml" {
            &["runners[0].limit"]
        } else {
            &[]
        };
        assert_eq!(keys, expected, "{name}: {:#?}", loaded.warnings);
    }
}

#[test]
fn every_fragment_loads_as_one_runner() {
    for name in FRAGMENTS {
        let loaded =
            parse_fragment(&fixture(name), Path::new(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.config.runners.len(), 1, "{name}");
        assert!(
            loaded.warnings.is_empty(),
            "{name}: unexpected warnings {:#?}",
            loaded.warnings
        );
    }
}

#[test]
fn global_keys_and_defaults() {
    let c = load(&fixture_path("docs-k8s-podman-saved-config.toml"))
        .unwrap()
        .config;
    assert_eq!(c.listen_address.as_deref(), Some(":9252"));
    assert_eq!(c.concurrent, 3);
    assert_eq!(c.check_interval().as_secs(), 1);
    assert_eq!(c.log_level.as_deref(), Some("debug"));
    assert_eq!(c.connection_max_age(), Some(std::time::Duration::from_secs(900)));
    assert_eq!(c.shutdown_timeout().as_secs(), 30);
    assert_eq!(c.session_server.as_ref().unwrap().session_timeout, 1800);
    let r = &c.runners[0];
    assert_eq!(r.limit, 50);
    assert_eq!(r.builds_dir.as_deref(), Some("/my_custom_dir"));
    let k = r.kubernetes.as_ref().unwrap();
    assert_eq!(k.privileged, Some(true));
    assert_eq!(k.namespace_overwrite_allowed.as_deref(), Some(""));
    assert!(k.volumes.as_ref().unwrap().contains_key("empty_dir"));
    assert!(k.other.contains_key("build_container_security_context"));
    assert!(k.other.contains_key("node_selector_overwrite_allowed"));

    // Absent keys: gitlab-runner's NewConfig defaults.
    let minimal = parse_str("", Path::new("empty.toml")).unwrap().config;
    assert_eq!(minimal.concurrent, 1);
    assert_eq!(minimal.check_interval().as_secs(), 3);
    assert!(minimal.runners.is_empty());
}

#[test]
fn docker_section_is_typed() {
    let loaded = parse_fragment(
        &fixture("docs-advanced-runners-docker-example.toml"),
        Path::new("docker.toml"),
    )
    .unwrap();
    let d = loaded.config.runners[0].docker.as_ref().unwrap();
    assert_eq!(d.image.as_deref(), Some("ruby:3.3"));
    assert_eq!(
        d.tls_cert_path.as_deref(),
        Some("/Users/ayufan/.boot2docker/certs")
    );
    assert_eq!(d.dns, vec!["8.8.8.8"]);
    assert_eq!(d.services_limit, Some(5));
    assert_eq!(d.shm_size, Some(300000));
    assert_eq!(d.volumes, vec!["/data", "/home/project/cache"]);
    assert_eq!(d.ulimit.get("rtprio").map(String::as_str), Some("99"));
    assert_eq!(
        d.sysctls.get("net.ipv4.ip_forward").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        d.log_options.get("labels").map(String::as_str),
        Some("com.gitlab.gitlab-runner.type")
    );
    assert_eq!(d.services.len(), 3);
    assert_eq!(d.services[0].alias.as_deref(), Some("svc1"));
    assert_eq!(d.services[0].command, vec!["executable", "param1", "param2"]);
    assert_eq!(d.services[0].entrypoint, vec!["entrypoint.sh"]);
    assert_eq!(d.services[2].name, "postgres:9");
}

#[test]
fn pull_policy_accepts_string_and_array() {
    let text = r#"
[[runners]]
  executor = "docker"
  [runners.docker]
    pull_policy = "if-not-present"
[[runners]]
  executor = "docker"
  [runners.docker]
    pull_policy = ["always", "if-not-present"]
"#;
    let c = parse_str(text, Path::new("p.toml")).unwrap().config;
    assert_eq!(
        c.runners[0].docker.as_ref().unwrap().pull_policy,
        vec!["if-not-present"]
    );
    assert_eq!(
        c.runners[1].docker.as_ref().unwrap().pull_policies(),
        vec!["always", "if-not-present"]
    );
}

#[test]
fn cache_section_uses_pascal_case_keys() {
    let loaded = parse_fragment(&fixture("docs-advanced-cache-s3.toml"), Path::new("cache.toml")).unwrap();
    let cache = loaded.config.runners[0].cache.as_ref().unwrap();
    assert_eq!(cache.cache_type.as_deref(), Some("s3"));
    assert_eq!(cache.path.as_deref(), Some("path/to/prefix"));
    assert!(!cache.is_shared());
    let s3 = cache.s3.as_ref().unwrap();
    assert_eq!(s3.server_address.as_deref(), Some("s3.amazonaws.com"));
    assert_eq!(s3.bucket_location.as_deref(), Some("eu-west-1"));
    assert_eq!(
        s3.secret_key.as_ref().map(|s| s.expose()),
        Some("AWS_S3_SECRET_KEY")
    );
    assert_eq!(s3.server_side_encryption_key_id.as_deref(), Some("alias/my-key"));
    assert!(!format!("{cache:?}").contains("AWS_S3_SECRET_KEY"));
}

#[test]
fn artifact_timeouts_parse_as_durations() {
    let loaded = parse_fragment(
        &fixture("docs-advanced-runners-artifact.toml"),
        Path::new("artifact.toml"),
    )
    .unwrap();
    let a = loaded.config.runners[0].artifact.as_ref().unwrap();
    assert_eq!(a.upload_timeout().as_secs(), 7200);
    assert_eq!(a.response_header_timeout().as_secs(), 900);
}

#[test]
fn misspelled_key_warns_with_position_and_suggestion() {
    let path = fixture_path("lint-misspelled_key.toml");
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.key, "runners[0].buids_dir");
    assert_eq!((w.line, w.column), (9, 3));
    assert!(
        w.message.contains("unknown key `runners.buids_dir`"),
        "{}",
        w.message
    );
    assert!(w.message.contains("did you mean `builds_dir`"), "{}", w.message);
    let shown = w.to_string();
    assert!(shown.ends_with("lint-misspelled_key.toml:9:3: unknown key `runners.buids_dir` (ignored); did you mean `builds_dir`?"), "{shown}");
    // The runner itself is still usable.
    assert_eq!(loaded.config.runners[0].executor, "shell");
}

#[test]
fn wrong_section_warns_on_the_unknown_top_level_key() {
    let loaded = load(&fixture_path("lint-wrong_section.toml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.key, "runner");
    assert_eq!(w.line, 11);
    assert!(w.message.contains("unknown key `runner`"), "{}", w.message);
    assert!(w.message.contains("did you mean `runners`"), "{}", w.message);
}

#[test]
fn unknown_keys_in_nested_sections() {
    let text = r#"concurrent = 1
[[runners]]
  name = "a"
  executor = "docker"
  [runners.docker]
    image = "alpine"
    colume = ["/x"]
  [runners.cache]
    Type = "s3"
    [runners.cache.s3]
      BucketNmae = "b"
  [runners.autoscaler]
    anything_goes = 1
[[runners]]
  name = "b"
  executor = "shell"
  [[runners.docker.services]]
    name = "redis"
    alais = "r"
"#;
    let loaded = parse_str(text, Path::new("config.toml")).unwrap();
    let got: Vec<(String, usize, usize)> = loaded
        .warnings
        .iter()
        .map(|w| (w.key.clone(), w.line, w.column))
        .collect();
    assert_eq!(
        got,
        vec![
            ("runners[0].docker.colume".to_owned(), 7, 5),
            ("runners[0].cache.s3.BucketNmae".to_owned(), 11, 7),
            ("runners[1].docker.services[0].alais".to_owned(), 19, 5),
        ]
    );
    assert_eq!(
        loaded.warnings[0].to_string(),
        "config.toml:7:5: unknown key `runners.docker.colume` (ignored); did you mean `volumes`?"
    );
}

#[test]
fn bad_shell_and_executor_are_warnings() {
    let loaded = load(&fixture_path("lint-bad_shell.toml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.key, "runners[0].shell");
    assert_eq!((w.line, w.column), (9, 11));
    assert!(w.message.contains("unsupported shell `fish`"));

    let loaded = parse_str(
        "concurrent = 0\n[[runners]]\nexecutor = \"dockr\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    let keys: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, vec!["concurrent", "runners[0].executor"]);
}

#[test]
fn invalid_syntax_reports_path_line_column_and_hint() {
    let path = fixture_path("lint-invalid_syntax.toml");
    let err = load(&path).unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert_eq!(*line, 4);
    assert!(*column >= 1);
    let shown = err.to_string();
    assert!(shown.contains("lint-invalid_syntax.toml:4:"), "{shown}");
    assert!(shown.contains("\nhint: "), "{shown}");
}

#[test]
fn type_error_points_at_the_value() {
    let text = "check_interval = 3\nconcurrent = \"x\"\n";
    let err = parse_str(text, Path::new("/etc/gitlab-runner/config.toml")).unwrap_err();
    let ConfigError::Invalid {
        line, column, key, ..
    } = &err
    else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!((*line, *column), (2, 14));
    assert_eq!(key, "concurrent");
    assert!(
        err.to_string()
            .starts_with("/etc/gitlab-runner/config.toml:2:14: invalid value for `concurrent`")
    );

    let text = "[[runners]]\n  name = \"a\"\n  [runners.docker]\n    privileged = \"yes\"\n";
    let err = parse_str(text, Path::new("c.toml")).unwrap_err();
    let ConfigError::Invalid { line, key, .. } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(*line, 4);
    assert_eq!(key, "runners[0].docker.privileged");
}

#[test]
fn bad_duration_is_invalid() {
    let text = "connection_max_age = \"15 minutes\"\n";
    let err = parse_str(text, Path::new("c.toml")).unwrap_err();
    let ConfigError::Invalid {
        key, line, column, ..
    } = &err
    else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(key, "connection_max_age");
    assert_eq!((*line, *column), (1, 22));
}

#[test]
fn missing_file_is_a_read_error_with_hint() {
    let err = load(Path::new("/nonexistent/oxrunner/config.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("hint: register a runner first"));
}

#[test]
fn url_and_token_expand_environment_variables() {
    // Setting variables needs `unsafe` in edition 2024 (denied here), so use ones cargo
    // exports to every test process.
    let pkg = std::env::var("CARGO_PKG_NAME").unwrap();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let text = r#"
[[runners]]
  url = "https://$CARGO_PKG_NAME.example/"
  token = "glrt-${CARGO_PKG_NAME}x"
  executor = "shell"
  builds_dir = "$CARGO_MANIFEST_DIR"
"#;
    let c = parse_str(text, Path::new("c.toml")).unwrap().config;
    assert_eq!(c.runners[0].url, format!("https://{pkg}.example/"));
    assert_eq!(c.runners[0].token.expose(), format!("glrt-{pkg}x"));
    // Only url and token are expanded, as in gitlab-runner.
    assert_eq!(c.runners[0].builds_dir.as_deref(), Some("$CARGO_MANIFEST_DIR"));
    assert_ne!(dir, "$CARGO_MANIFEST_DIR");
}

#[test]
fn debug_output_never_contains_secrets() {
    for name in ["config.toml.example", "commands-testdata-test-config.toml"] {
        let loaded = load(&fixture_path(name)).unwrap();
        let shown = format!("{:?}", loaded.config);
        for secret in ["production-server-password", "test-token1", "test-token2"] {
            assert!(!shown.contains(secret), "{name}: `{secret}` leaked in {shown}");
        }
    }
    let ssh = load(&fixture_path("config.toml.example")).unwrap().config.runners[2]
        .ssh
        .clone()
        .unwrap();
    assert_eq!(
        ssh.get("password").and_then(|v| v.as_str()),
        Some("production-server-password")
    );
}

#[test]
fn default_path_follows_gitlab_runner() {
    let path = oxrunner_config::default_config_path();
    if nix_is_root() {
        assert_eq!(path, Path::new("/etc/gitlab-runner/config.toml"));
    } else {
        assert!(path.ends_with(".gitlab-runner/config.toml"), "{}", path.display());
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert!(path.starts_with(home));
        }
    }
    assert_eq!(
        oxrunner_config::certs_dir(&path),
        path.parent().unwrap().join("certs")
    );
}

fn nix_is_root() -> bool {
    // /proc/self/status `Uid:` line: real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap()
}

#[test]
fn single_bracket_runners_gets_a_specific_hint() {
    let err = parse_str("concurrent = 1\n[runners]\nname = \"x\"\n", Path::new("c.toml")).unwrap_err();
    let ConfigError::Invalid { key, line, hint, .. } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(key, "runners");
    assert_eq!(*line, 2);
    assert!(hint.contains("[[runners]]"), "{hint}");
}

#[test]
fn limits_above_concurrent_warn() {
    let text =
        "concurrent = 2\n[[runners]]\n  executor = \"shell\"\n  limit = 5\n  request_concurrency = 2\n";
    let loaded = parse_str(text, Path::new("c.toml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.key, "runners[0].limit");
    assert_eq!((w.line, w.column), (4, 11));
    assert!(
        w.message.contains("greater than `concurrent` (2)"),
        "{}",
        w.message
    );
}

#[test]
fn errors_do_not_echo_secret_values() {
    let text = "[[runners]]\n  token = 987654321\n";
    let err = parse_str(text, Path::new("c.toml")).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, ConfigError::Invalid { .. }), "{shown}");
    assert!(!shown.contains("987654321"), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");

    // The same mistake on a non-secret key keeps the value, which helps the user.
    let err = parse_str("[[runners]]\n  name = 987654321\n", Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("987654321"), "{err}");
}
