//! Settings gitlab-runner honours that this oxrunner build does not yet: each one set in config.toml is named in a
//! warning at start and on reload, never ignored silently.

use oxrunner_config::{Config, RunnerConfig};

pub fn global(config: &Config) -> Vec<String> {
    oxrunner_config::support::global_warnings(config)
}

pub fn runner(r: &RunnerConfig) -> Vec<String> {
    let mut out = oxrunner_config::support::runner_warnings(r);
    let name = &r.name;
    out.extend(cache(r));
    let flags = oxrunner_core::feature_flags::config_warnings(&r.feature_flags);
    if !flags.is_empty() {
        out.push(format!(
            "runner `{name}`: [runners.feature_flags] without effect in this build: {}",
            flags.join("; ")
        ));
    }
    if r.executor == "custom" && r.custom.as_ref().is_none_or(|c| c.run_exec.is_empty()) {
        out.push(format!(
            "runner `{name}`: executor = \"custom\" without [runners.custom] run_exec: every job fails \
             (custom executor is missing RunExec)\nhint: set run_exec (and config_exec, prepare_exec, cleanup_exec as \
             needed) in [runners.custom]"
        ));
    }
    if r.id <= 0 && oxrunner_core::feature_flags::runner_is_on(&r.feature_flags, oxrunner_core::suspend::FLAG)
    {
        out.push(format!(
            "runner `{name}`: FF_SUSPENDABLE_ENVIRONMENTS is on but the runner has no id (or id = 0): jobs that \
             resume a suspended environment on this runner will fail\nhint: run `oxrunner register` to register the \
             runner and fill in id, or add the id GitLab shows on the runner's page to this [[runners]] section"
        ));
    }
    if r.shell.as_deref().is_some_and(|s| !matches!(s, "bash" | "sh")) {
        out.push(format!(
            "runner `{name}`: shell = \"{}\" is not supported (bash or sh); bash is used",
            r.shell.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// `[runners.cache]`: S3 and Azure are served (`hooks/remote/`); other types and the AWS-only S3 keys are named.
fn cache(r: &RunnerConfig) -> Vec<String> {
    let mut out = Vec::new();
    let name = &r.name;
    let Some(cache) = r.cache.as_ref() else {
        return out;
    };
    match cache.cache_type.as_deref().map(str::trim).unwrap_or_default() {
        "" => {}
        kind @ ("s3" | "azure" | "gcs" | "gcsv2") => {
            if let Some(s3) = cache.s3.as_ref().filter(|_| kind == "s3") {
                let set = [
                    ("DualStack", s3.dual_stack.is_some()),
                    ("Accelerate", s3.accelerate.is_some()),
                    ("RoleARN", s3.role_arn.is_some()),
                    ("UploadRoleARN", s3.upload_role_arn.is_some()),
                    ("AssumeRoleMaxConcurrency", s3.assume_role_max_concurrency.is_some()),
                    (
                        "DisableAssumeRoleCredentialsCaching",
                        s3.disable_assume_role_credentials_caching.is_some(),
                    ),
                ];
                for (key, _) in set.iter().filter(|(_, on)| *on) {
                    out.push(format!(
                        "runner `{name}`: [runners.cache.s3] {key} is not supported; ignored"
                    ));
                }
            }
            if let crate::hooks::RemoteSetup::Broken(why) =
                crate::hooks::RemoteSetup::from_config(Some(cache), &r.short_token())
            {
                out.push(format!("runner `{name}`: {why}"));
            }
        }
        kind => out.push(format!(
            "runner `{name}`: [runners.cache] Type = \"{kind}\": this cache type is not supported yet (only \"s3\", \"gcs\" \
             and \"azure\"); \
             caches stay in the local cache_dir (shared by all jobs of this runner)"
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_unsupported_setting() {
        let text = r#"
sentry_dsn = "https://key@sentry.example/1"
[[runners]]
  name = "r"
  url = "https://gitlab.example.com"
  token = "glrt-x"
  executor = "shell"
  shell = "pwsh"
  [runners.cache]
    Type = "gcs"
[[runners]]
  name = "d"
  url = "https://gitlab.example.com"
  token = "glrt-y"
  executor = "docker"
  cache_dir = "/cache"
  [runners.docker]
    image = "busybox"
    helper_image = "registry.example/helper:x"
"#;
        let loaded = oxrunner_config::parse_str(text, std::path::Path::new("config.toml"));
        let config = match loaded {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        let g = global(&config);
        assert!(g.iter().any(|w| w.starts_with("sentry_dsn")), "{g:?}");
        let r = runner(&config.runners[0]);
        // GCS is served; a GCS section that cannot work is named with what is wrong.
        assert!(
            r.iter()
                .any(|w| w.contains("[runners.cache.gcs] BucketName is missing")),
            "{r:?}"
        );
        assert!(r.iter().any(|w| w.contains("shell = \"pwsh\"")), "{r:?}");
        let d = runner(&config.runners[1]);
        assert!(
            d.iter()
                .any(|w| w.contains("runners.docker.helper_image is not supported")),
            "{d:?}"
        );
        assert_eq!(runner(&RunnerConfig::default()), Vec::<String>::new());
    }

    #[test]
    fn s3_caches_are_served_and_only_their_aws_only_keys_or_broken_settings_named() {
        let text = r#"
[[runners]]
  name = "ok"
  url = "https://gitlab.example.com"
  token = "glrt-ok"
  executor = "shell"
  [runners.cache]
    Type = "s3"
    [runners.cache.s3]
      ServerAddress = "127.0.0.1:9000"
      AccessKey = "AKID"
      SecretKey = "very-secret-key"
      BucketName = "b"
[[runners]]
  name = "aws"
  url = "https://gitlab.example.com"
  token = "glrt-aws"
  executor = "shell"
  [runners.cache]
    Type = "s3"
    [runners.cache.s3]
      AccessKey = "AKID"
      SecretKey = "very-secret-key"
      RoleARN = "arn:aws:iam::1:role/r"
[[runners]]
  name = "ok2"
  url = "https://gitlab.example.com"
  token = "glrt-ok2"
  executor = "shell"
"#;
        let config = match oxrunner_config::parse_str(text, std::path::Path::new("config.toml")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(runner(&config.runners[0]), Vec::<String>::new());
        let aws = runner(&config.runners[1]);
        assert!(
            aws.iter()
                .any(|w| w.contains("[runners.cache.s3] RoleARN is not supported")),
            "{aws:?}"
        );
        assert!(
            aws.iter()
                .any(|w| w.contains("BucketName is missing") && w.contains("hint:")),
            "{aws:?}"
        );
        assert!(!aws.iter().any(|w| w.contains("very-secret-key")), "{aws:?}");
        assert_eq!(runner(&config.runners[2]), Vec::<String>::new());
    }

    #[test]
    fn a_custom_runner_without_run_exec_is_named() {
        let text = r#"
[[runners]]
  name = "c"
  url = "https://gitlab.example.com"
  token = "glrt-c"
  executor = "custom"
[[runners]]
  name = "ok"
  url = "https://gitlab.example.com"
  token = "glrt-ok"
  executor = "custom"
  builds_dir = "/b"
  [runners.custom]
    run_exec = "/d/run"
"#;
        let config = match oxrunner_config::parse_str(text, std::path::Path::new("config.toml")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        let missing = runner(&config.runners[0]);
        assert!(
            missing
                .iter()
                .any(|w| w.contains("without [runners.custom] run_exec") && w.contains("\nhint: ")),
            "{missing:?}"
        );
        assert!(
            runner(&config.runners[1]).is_empty(),
            "{:?}",
            runner(&config.runners[1])
        );
    }

    #[test]
    fn suspendable_environments_without_a_runner_id_are_named() {
        let text = r#"
[[runners]]
  name = "no-id"
  url = "https://gitlab.example.com"
  token = "glrt-a"
  executor = "docker"
  [runners.feature_flags]
    FF_SUSPENDABLE_ENVIRONMENTS = true
[[runners]]
  name = "with-id"
  id = 42
  url = "https://gitlab.example.com"
  token = "glrt-b"
  executor = "docker"
  [runners.feature_flags]
    FF_SUSPENDABLE_ENVIRONMENTS = true
"#;
        let config = match oxrunner_config::parse_str(text, std::path::Path::new("config.toml")) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        };
        let missing = runner(&config.runners[0]);
        assert!(
            missing.iter().any(
                |w| w.contains("FF_SUSPENDABLE_ENVIRONMENTS is on but the runner has no id")
                    && w.contains("\nhint: ")
            ),
            "{missing:?}"
        );
        let with_id = runner(&config.runners[1]);
        assert!(with_id.is_empty(), "{with_id:?}");
    }

    #[test]
    fn azure_caches_are_served_and_only_broken_settings_named() {
        let runner_with = |azure: &str| {
            let text = format!(
                "[[runners]]\n  name = \"az\"\n  url = \"https://gitlab.example.com\"\n  token = \"glrt-az\"\n  \
                 executor = \"shell\"\n  [runners.cache]\n    Type = \"azure\"\n  [runners.cache.azure]\n{azure}"
            );
            match oxrunner_config::parse_str(&text, std::path::Path::new("config.toml")) {
                Ok(l) => runner(&l.config.runners[0]),
                Err(e) => panic!("{e}"),
            }
        };
        let ok =
            runner_with("    AccountName = \"acct\"\n    AccountKey = \"a2V5\"\n    ContainerName = \"c\"\n");
        assert_eq!(ok, Vec::<String>::new());
        let broken = runner_with("    AccountName = \"acct\"\n    ContainerName = \"c\"\n");
        assert!(
            broken
                .iter()
                .any(|w| w.contains("AccountKey is missing") && w.contains("hint:")),
            "{broken:?}"
        );
    }
}
