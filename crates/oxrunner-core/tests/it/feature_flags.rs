//! The feature-flag table against upstream's (a generated data file), and gitlab-runner's resolution order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use oxrunner_core::feature_flags::{self, FLAGS, Support};
use oxrunner_core::{Variable, Variables};

const UPSTREAM: &str = include_str!("../data/upstream-feature-flags.tsv");

#[test]
fn the_table_is_upstreams_table() {
    let upstream: Vec<(String, bool, bool)> = UPSTREAM
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_owned(), cols[1] == "true", cols[2] == "true")
        })
        .collect();
    let ours: Vec<(String, bool, bool)> = FLAGS
        .iter()
        .map(|f| (f.name.to_owned(), f.default, f.deprecated))
        .collect();
    assert_eq!(
        ours, upstream,
        "regenerate with scripts/upstream-tables and update FLAGS"
    );
}

fn value(resolved: &[feature_flags::Resolved], name: &str) -> bool {
    resolved.iter().find(|r| r.flag.name == name).unwrap().value
}

#[test]
fn config_beats_the_job_variable_which_beats_the_environment_and_the_default() {
    let config = BTreeMap::from([("FF_TIMESTAMPS".to_owned(), false)]);
    let environment = vec![
        "FF_SCRIPT_SECTIONS=true".to_owned(),
        "FF_NETWORK_PER_BUILD=true".to_owned(),
    ];
    let job: Variables = vec![
        Variable::new("FF_TIMESTAMPS", "true"),
        Variable::new("FF_NETWORK_PER_BUILD", "false"),
        Variable::new("FF_USE_DIRECT_DOWNLOAD", "0"),
        Variable::new("FF_MASK_ALL_DEFAULT_TOKENS", "maybe"),
        Variable::new("OTHER", "kept"),
    ]
    .into();
    let (resolved, problems) = feature_flags::resolve(&config, &environment, &job);
    assert_eq!(resolved.len(), FLAGS.len());
    assert!(!value(&resolved, "FF_TIMESTAMPS"), "config wins over the job");
    assert!(
        !value(&resolved, "FF_NETWORK_PER_BUILD"),
        "job wins over environment"
    );
    assert!(value(&resolved, "FF_SCRIPT_SECTIONS"), "environment over default");
    assert!(!value(&resolved, "FF_USE_DIRECT_DOWNLOAD"), "Go booleans");
    assert!(
        value(&resolved, "FF_MASK_ALL_DEFAULT_TOKENS"),
        "unparsable: default"
    );
    assert!(value(&resolved, "FF_USE_GIT_BUNDLE_URIS"), "default");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("FF_MASK_ALL_DEFAULT_TOKENS"), "{problems:?}");

    // Every flag reaches the job once, with its resolved value; other variables are kept.
    let vars = feature_flags::apply(&resolved, &job);
    for f in FLAGS {
        assert_eq!(vars.iter().filter(|v| v.key == f.name).count(), 1, "{}", f.name);
    }
    assert_eq!(vars.value("FF_TIMESTAMPS"), Some("false"));
    assert_eq!(vars.value("FF_USE_DIRECT_DOWNLOAD"), Some("false"));
    assert_eq!(vars.value("OTHER"), Some("kept"));
    assert_eq!(
        feature_flags::header(&vars).unwrap(),
        "FF_USE_DIRECT_DOWNLOAD:false, FF_SCRIPT_SECTIONS:true, FF_TIMESTAMPS:false"
    );
}

#[test]
fn config_flags_without_effect_are_named() {
    let config = BTreeMap::from([
        ("FF_TIMESTAMPS".to_owned(), false),
        ("FF_USE_FASTZIP".to_owned(), true),
        ("FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY".to_owned(), true),
        ("FF_NO_SUCH_FLAG".to_owned(), true),
    ]);
    let warnings = feature_flags::config_warnings(&config);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.starts_with("FF_NO_SUCH_FLAG is not")));
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY = true: the kubernetes"))
    );
    // Every flag this build ignores says why.
    for f in FLAGS {
        if let Support::Ignored(why) = f.support {
            assert!(!why.is_empty(), "{}", f.name);
        }
    }
}

#[test]
fn stage_retry_backoff_doubles_up_to_its_cap() {
    use oxrunner_core::feature_flags::stage_retry_backoff;
    let on = Variables::default();
    let secs = |vars: &Variables| {
        (0..9)
            .map(|n| stage_retry_backoff(vars, n).as_secs())
            .collect::<Vec<_>>()
    };
    assert_eq!(secs(&on), [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(stage_retry_backoff(&on, u32::MAX).as_secs(), 300);
    let off: Variables = vec![Variable::new("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", "false")].into();
    assert_eq!(secs(&off), [1, 2, 4, 5, 5, 5, 5, 5, 5]);
}

#[test]
fn git_urls_without_tokens_is_warned_about_only_when_set_to_false() {
    let warn = |value: bool| {
        let config = BTreeMap::from([("FF_GIT_URLS_WITHOUT_TOKENS".to_owned(), value)]);
        feature_flags::config_warnings(&config)
    };
    // This build always keeps the token out of remote URLs, as upstream does with the flag on.
    assert_eq!(warn(true), Vec::<String>::new());
    let off = warn(false);
    assert_eq!(off.len(), 1, "{off:?}");
    assert!(
        off[0].starts_with("FF_GIT_URLS_WITHOUT_TOKENS = false: the job token never goes into a remote URL"),
        "{off:?}"
    );
}
