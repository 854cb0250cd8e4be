//! Every key of gitlab-runner's config structs (the generated `tests/data/upstream-config-keys.tsv`) is known to
//! the loader (no false "unknown key" warning) and classified as acted on or warned; a config that sets a
//! warned key gets a warning naming it.

use std::path::Path;

use oxrunner_config::support::{self, Support};
use oxrunner_config::{Loaded, parse_str};

const UPSTREAM: &str = include_str!("../data/upstream-config-keys.tsv");

fn upstream_keys() -> Vec<(&'static str, &'static str)> {
    UPSTREAM
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_once('\t').unwrap())
        .collect()
}

/// Values tried for a key until the config parses (the keys' types differ; the table does not say them).
const CANDIDATES: &[&str] = &[
    "\"x\"",
    "\"1s\"",
    "7",
    "true",
    "[\"x\"]",
    "1979-05-27T07:32:00Z",
    "{ x = \"x\" }",
    "{ x = true }",
    "{ x = [\"x\"] }",
    "[{ name = \"x\" }]",
    "{ enabled = true }",
    "{ run_exec = \"x\" }",
    "{ BucketName = \"b\" }",
    "{ ContainerName = \"c\" }",
    "{ host = \"h\" }",
    "{ image = \"x\" }",
    "{ usage_logger = { enabled = true } }",
    "{ shutdown_drain = { enabled = true } }",
    "{ boot_verify = { enabled = true } }",
    "{ metrics = { prometheus_address = \"x\" } }",
    "{ job_queuing_durations = [{ periods = [\"* * * * * * *\"] }] }",
];

const RUNNER: &str = "[[runners]]\nname = \"r\"\nurl = \"https://gitlab.example.com\"\ntoken = \"glrt-x\"\nexecutor = \"shell\"\n";

/// A config that sets `key` of `section` to `value`.
fn config_with(section: &str, key: &str, value: &str) -> String {
    let line = format!("{key} = {value}\n");
    match section {
        "." => line,
        "session_server" | "machine" | "experimental" => format!("[{section}]\n{line}"),
        "runners" => {
            let base: String = RUNNER
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .map(|l| format!("{l}\n"))
                .collect();
            format!("{base}{line}")
        }
        "runners.docker.services" => {
            let name = if key == "name" { "" } else { "name = \"svc\"\n" };
            format!("{RUNNER}[[runners.docker.services]]\n{name}{line}")
        }
        "runners.custom" if key != "run_exec" => format!("{RUNNER}[{section}]\nrun_exec = \"x\"\n{line}"),
        _ => format!("{RUNNER}[{section}]\n{line}"),
    }
}

fn warnings_of(loaded: &Loaded) -> Vec<String> {
    let mut out = support::global_warnings(&loaded.config);
    for r in &loaded.config.runners {
        out.extend(support::runner_warnings(r));
    }
    out
}

#[test]
fn every_upstream_key_is_known_and_classified() {
    let keys = upstream_keys();
    assert!(keys.len() > 350, "{}", keys.len());
    let mut unclassified = Vec::new();
    let mut unknown = Vec::new();
    for (section, key) in &keys {
        if support::classify(section, key).is_none() {
            unclassified.push(format!("{section} {key}"));
        }
        // Structural keys are covered by their sections.
        if *section == "." && matches!(*key, "runners") {
            continue;
        }
        let parsed = CANDIDATES
            .iter()
            .find_map(|v| parse_str(&config_with(section, key, v), Path::new("config.toml")).ok());
        match parsed {
            None => unknown.push(format!("{section} {key}: no candidate value parses")),
            Some(loaded) => {
                for w in &loaded.warnings {
                    if w.message.contains("unknown key") && w.key.ends_with(key) {
                        unknown.push(format!("{section} {key}: {}", w.message));
                    }
                }
            }
        }
    }
    assert!(
        unclassified.is_empty(),
        "not classified:\n{}",
        unclassified.join("\n")
    );
    assert!(
        unknown.is_empty(),
        "false unknown-key warnings:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn an_inert_key_points_at_a_warned_one() {
    for (section, key, support) in support::KEYS {
        if let Support::Inert(other) = support {
            let (s, k) = match other.rsplit_once('.') {
                Some((s, k)) => (s, k),
                None => (".", *other),
            };
            assert!(
                matches!(support::classify(s, k), Some(Support::Warned(_))),
                "{section} {key} -> {other}"
            );
        }
    }
}

#[test]
fn a_config_setting_a_warned_key_is_warned_about() {
    let mut silent = Vec::new();
    for (section, key) in upstream_keys() {
        let Some(Support::Warned(_)) = support::classify(section, key) else {
            continue;
        };
        let path = if section == "." {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        let warned = CANDIDATES.iter().any(|v| {
            parse_str(&config_with(section, key, v), Path::new("config.toml")).is_ok_and(|loaded| {
                warnings_of(&loaded)
                    .iter()
                    .any(|w| w.contains(&format!("{path} is not supported")))
            })
        });
        if !warned {
            silent.push(path);
        }
    }
    assert!(
        silent.is_empty(),
        "warned keys without a warning:\n{}",
        silent.join("\n")
    );
}

#[test]
fn what_register_writes_is_not_warned_about() {
    // gitlab-runner's register writes empty cache sections and zero values: they ask for nothing.
    let text = format!(
        "concurrent = 1\n[session_server]\n  session_timeout = 1800\n{RUNNER}[runners.cache]\n  \
         MaxUploadedArchiveSize = 0\n  [runners.cache.s3]\n  [runners.cache.gcs]\n  [runners.cache.azure]\n\
         [runners.docker]\n  image = \"alpine\"\n  volumes = [\"/cache\"]\n  shm_size = 0\n"
    );
    let loaded = parse_str(&text, Path::new("config.toml")).unwrap();
    assert_eq!(warnings_of(&loaded), Vec::<String>::new());
}

#[test]
fn azure_cache_keys_are_acted_on_not_warned() {
    let text = format!(
        "{RUNNER}[runners.cache]\n  Type = \"azure\"\n  [runners.cache.azure]\n    AccountName = \"acct\"\n    \
         AccountKey = \"a2V5\"\n    ContainerName = \"c\"\n    StorageDomain = \"blob.core.windows.net\"\n"
    );
    let loaded = parse_str(&text, Path::new("config.toml")).unwrap();
    assert_eq!(warnings_of(&loaded), Vec::<String>::new());
    assert_eq!(support::classify("runners.cache", "azure"), Some(Support::Acted));
    for key in ["AccountName", "AccountKey", "ContainerName", "StorageDomain"] {
        assert!(
            support::classify("runners.cache.azure", key) == Some(Support::Acted),
            "{key}"
        );
    }
}
