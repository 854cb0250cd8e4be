//! Settings gitlab-runner honours that this oxrunner build does not yet: each one set in config.toml is named in a
//! warning at start and on reload, never ignored silently.

use oxrunner_config::{Config, RunnerConfig};

pub fn global(config: &Config) -> Vec<String> {
    oxrunner_config::support::global_warnings(config)
}

pub fn runner(r: &RunnerConfig) -> Vec<String> {
    let mut out = oxrunner_config::support::runner_warnings(r);
    let name = &r.name;
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
    if r.shell.as_deref().is_some_and(|s| !matches!(s, "bash" | "sh")) {
        out.push(format!(
            "runner `{name}`: shell = \"{}\" is not supported (bash or sh); bash is used",
            r.shell.as_deref().unwrap_or_default()
        ));
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
    Type = "s3"
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
        assert!(
            r.iter()
                .any(|w| w.contains("runners.cache.Type is not supported")),
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
}
