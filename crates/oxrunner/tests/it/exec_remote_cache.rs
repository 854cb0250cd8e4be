//! `oxrunner exec --cache-config`: a laptop shares caches with CI. A daemon job pushes a cache to a three-node
//! Garage cluster and `exec` restores it in a local repository; `exec` pushes one and a daemon job restores it.
//! Object names are the daemon's (the runner's short token with `Shared = false`, the project id from
//! `CI_PROJECT_ID`). A file with several runners needs `--cache-runner`.

use std::time::Duration;

use fake_gitlab::{CacheSpec, JobSpec};

use crate::support::exec::Repo;
use crate::support::garage::{self, BUCKET, Cluster, REGION};
use crate::support::{Sandbox, fake, finished, global_toml, shell_runner_toml};

const FINISH: Duration = Duration::from_secs(120);

const CI: &str = "\
restore:
  cache:
    key: deps
    paths: [vendor/]
    policy: pull
  script:
    - test \"$(cat vendor/lib)\" = from-ci
push:
  cache:
    key: laptop
    paths: [vendor/]
    policy: push
  script:
    - mkdir -p vendor && echo from-laptop > vendor/lib
";

fn cache_toml(cluster: &Cluster) -> String {
    format!(
        "  [runners.cache]\n    Type = \"s3\"\n    Shared = false\n  [runners.cache.s3]\n    ServerAddress = \"{addr}\"\n    \
         AccessKey = \"{key}\"\n    SecretKey = \"{secret}\"\n    BucketName = \"{BUCKET}\"\n    \
         BucketLocation = \"{REGION}\"\n    Insecure = true\n",
        addr = cluster.s3_address(0),
        key = cluster.key_id,
        secret = cluster.secret,
    )
}

/// GitLab sends cache keys with the ref's protection appended (`exec`'s runs count as unprotected refs); the
/// fake sends keys as given, so the daemon's jobs here spell the suffix out.
fn job(name: &str, script: &[&str], cache: CacheSpec) -> JobSpec {
    JobSpec::new(name, script)
        .variable("GIT_STRATEGY", "empty")
        .tags(&["ci"])
        .cache(cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_a_daemon_share_caches_through_garage() {
    let Some(bin) = garage::binary() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let fake = fake(1, 1).await;
    let url = fake.url();
    let token = fake.create_runner_token_with_tags("ci", &["ci"], false);
    let other = fake.create_runner_token_with_tags("other", &["other"], false);
    let sb = Sandbox::new();
    let text = global_toml(1, "")
        + &shell_runner_toml("ci", &url, &token, &sb.path("ci"), &cache_toml(&cluster))
        + &shell_runner_toml("other", &url, &other, &sb.path("other"), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let daemon = sb.spawn(&["run", "-c", &cfg]);

    let push = job(
        "ci push",
        &["mkdir -p vendor && echo from-ci > vendor/lib"],
        CacheSpec::new("deps-non_protected", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(push), FINISH, &daemon).await;
    assert_eq!(rec.status, "success", "{}", rec.trace_text());
    let short: String = token.trim_start_matches("glrt-").chars().take(9).collect();
    let object = format!("/{BUCKET}/runner/{short}/project/0/deps-non_protected");
    assert!(rec.trace_text().contains(&object), "{}", rec.trace_text());

    let repo = Repo::new(CI, &[]);
    // Two runners in the file: exec must be told whose cache to use.
    let run = tokio::task::block_in_place(|| repo.exec(&["restore", "--cache-config", &cfg]));
    assert!(!run.ok(), "{}", run.dump());
    assert!(
        run.stderr().contains("--cache-runner") && run.stderr().contains("hint:"),
        "{}",
        run.dump()
    );

    let run = tokio::task::block_in_place(|| {
        repo.exec_env(
            &["restore", "--cache-runner", "ci", "--variable", "CI_PROJECT_ID=0"],
            &[("OXRUNNER_CACHE_CONFIG", &cfg)],
        )
    });
    assert!(run.ok(), "{}", run.dump());
    assert!(run.stdout().contains(&object), "{}", run.dump());
    assert!(
        run.stdout().contains("Successfully extracted cache"),
        "{}",
        run.dump()
    );
    assert!(
        !run.stdout().contains("X-Amz-Signature") && !run.stdout().contains(&cluster.secret),
        "{}",
        run.dump()
    );

    let run = tokio::task::block_in_place(|| {
        repo.exec(&[
            "push",
            "--cache-config",
            &cfg,
            "--cache-runner",
            "ci",
            "--variable",
            "CI_PROJECT_ID=0",
        ])
    });
    assert!(run.ok(), "{}", run.dump());
    assert!(
        run.stdout().contains("Uploading cache.zip to http://"),
        "{}",
        run.dump()
    );
    let restore = job(
        "ci restore",
        &["test \"$(cat vendor/lib)\" = from-laptop"],
        CacheSpec {
            policy: "pull".into(),
            ..CacheSpec::new("laptop-non_protected", &["vendor/"])
        },
    );
    let rec = finished(&fake, fake.enqueue_job(restore), FINISH, &daemon).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Downloading cache from http://"), "{trace}");
    assert!(!trace.contains("Cache file does not exist"), "{trace}");
    crate::support::quit_ok(daemon).await;
}

/// A runner without `[runners.cache]` is a clear error before any job runs.
#[test]
fn a_runner_without_a_cache_section_is_refused() {
    let sb = Sandbox::new();
    let text = global_toml(1, "")
        + &shell_runner_toml(
            "plain",
            "http://127.0.0.1:9",
            "glrt-plainrunnertoken",
            &sb.path("p"),
            "",
        );
    std::fs::write(sb.config(), text).unwrap();
    let repo = Repo::new(CI, &[]);
    let run = repo.exec(&["push", "--cache-config", &sb.config_str()]);
    assert!(!run.ok(), "{}", run.dump());
    assert!(
        run.stderr().contains("has no [runners.cache]") && run.stderr().contains("hint:"),
        "{}",
        run.dump()
    );
    assert!(!repo.path().join(".oxrunner/logs/push.log").exists());
}

/// Without the project's id exec would use another project's caches: refused before any job runs, whether the
/// id is missing or not a number. The cache section is complete, so nothing else stops the run.
#[test]
fn a_missing_or_bad_project_id_is_refused() {
    let sb = Sandbox::new();
    let cache = "  [runners.cache]\n    Type = \"s3\"\n  [runners.cache.s3]\n    ServerAddress = \"127.0.0.1:9\"\n    \
                 AccessKey = \"k\"\n    SecretKey = \"s\"\n    BucketName = \"b\"\n    BucketLocation = \"r\"\n    \
                 Insecure = true\n";
    let text = global_toml(1, "")
        + &shell_runner_toml(
            "ci",
            "http://127.0.0.1:9",
            "glrt-cirunnertoken0",
            &sb.path("p"),
            cache,
        );
    std::fs::write(sb.config(), text).unwrap();
    let repo = Repo::new(CI, &[]);
    let cfg = sb.config_str();
    for extra in [&[][..], &["--variable", "CI_PROJECT_ID=abc"][..]] {
        let mut args = vec!["push", "--cache-config", cfg.as_str()];
        args.extend_from_slice(extra);
        let run = repo.exec(&args);
        assert!(!run.ok(), "{}", run.dump());
        assert!(
            run.stderr().contains("CI_PROJECT_ID") && run.stderr().contains("hint:"),
            "{}",
            run.dump()
        );
        assert!(
            !repo.path().join(".oxrunner/logs/push.log").exists(),
            "{}",
            run.dump()
        );
    }
}
