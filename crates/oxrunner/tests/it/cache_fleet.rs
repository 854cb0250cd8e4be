#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The distributed cache on a real object store: a three-node Garage cluster, and two `oxrunner run` daemons
//! ("machines" with their own config, builds and cache directories) against one fake-gitlab. A job on one machine
//! pushes a cache, a job on the other restores it; `Shared = false` keeps a runner's caches to itself; a killed
//! store node changes nothing (Garage's replication); a wrong secret key is a readable warning naming the bucket
//! and endpoint, never the secret, and never fails the job.

use std::time::Duration;

use fake_gitlab::{CacheSpec, JobSpec};

use crate::support::garage::{self, BUCKET, Cluster, REGION};
use crate::support::{
    Daemon, Sandbox, cache_job as job, fake, finished, global_toml, pull_cache as pull, shell_runner_toml,
};

const FINISH: Duration = Duration::from_secs(120);
const WRONG_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000bad";

fn cache_toml(cluster: &Cluster, node: usize, shared: bool, secret: &str) -> String {
    format!(
        "  [runners.cache]\n    Type = \"s3\"\n    Shared = {shared}\n    Path = \"fleet\"\n  \
         [runners.cache.s3]\n    ServerAddress = \"{addr}\"\n    AccessKey = \"{key}\"\n    SecretKey = \"{secret}\"\n    \
         BucketName = \"{BUCKET}\"\n    BucketLocation = \"{REGION}\"\n    Insecure = true\n",
        addr = cluster.s3_address(node),
        key = cluster.key_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_machines_share_caches_through_a_three_node_garage_cluster() {
    let Some(bin) = garage::binary() else {
        return;
    };
    let mut cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let fake = fake(1, 1).await;
    let url = fake.url();
    let token = |tag: &str| fake.create_runner_token_with_tags(tag, &[tag], false);
    let (a_shared, a_private) = (token("a"), token("ap"));
    let (b_shared, b_private, b_wrong) = (token("b"), token("bp"), token("bw"));

    // Machine A talks to node 0, machine B to node 1: node 2 is the one that will die.
    let a = Sandbox::new();
    let b = Sandbox::new();
    let runner = |sb: &Sandbox, name: &str, token: &str, cache: String| {
        shell_runner_toml(name, &url, token, &sb.path(name), &cache)
    };
    let a_text = global_toml(2, "")
        + &runner(&a, "a", &a_shared, cache_toml(&cluster, 0, true, &cluster.secret))
        + &runner(
            &a,
            "ap",
            &a_private,
            cache_toml(&cluster, 0, false, &cluster.secret),
        );
    let b_text = global_toml(2, "")
        + &runner(&b, "b", &b_shared, cache_toml(&cluster, 1, true, &cluster.secret))
        + &runner(
            &b,
            "bp",
            &b_private,
            cache_toml(&cluster, 1, false, &cluster.secret),
        )
        + &runner(&b, "bw", &b_wrong, cache_toml(&cluster, 1, true, WRONG_SECRET));
    std::fs::write(a.config(), a_text).unwrap();
    std::fs::write(b.config(), b_text).unwrap();
    let (a_cfg, b_cfg) = (a.config_str(), b.config_str());
    let da = a.spawn(&["run", "-c", &a_cfg]);
    let db = b.spawn(&["run", "-c", &b_cfg, "--listen-address", "127.0.0.1:0"]);

    // A pushes, B restores.
    let push = job(
        "push",
        "a",
        &["mkdir -p vendor && echo from-a > vendor/lib"],
        CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(push), FINISH, &da).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    let object = format!("{}/{BUCKET}/fleet/project/0/deps-main", cluster.s3_address(0));
    assert!(
        trace.contains(&format!("Uploading cache.zip to http://{object}")),
        "{trace}"
    );
    assert!(trace.contains("Created cache"), "{trace}");
    assert!(
        !trace.contains("X-Amz-Signature") && !trace.contains(&cluster.secret),
        "{trace}"
    );

    let restore = job(
        "restore",
        "b",
        &["test \"$(cat vendor/lib)\" = from-a"],
        pull("deps-$CI_COMMIT_REF_SLUG"),
    );
    let rec = finished(&fake, fake.enqueue_job(restore), FINISH, &db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Downloading cache from http://"), "{trace}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");

    // The download became B's local copy: a job on B finds it at least as new as the object, so nothing is
    // downloaded (upstream's cache-extractor line), and, changing nothing, sends nothing back.
    let again = job(
        "unchanged on b",
        "b",
        &["test \"$(cat vendor/lib)\" = from-a"],
        CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(again), FINISH, &db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("cache.zip is up to date"), "{trace}");
    assert!(!trace.contains("Downloading cache from"), "{trace}");
    assert!(trace.contains("Archive is up to date!"), "{trace}");
    assert!(!trace.contains("Uploading cache.zip"), "{trace}");
    assert!(trace.contains("Created cache"), "{trace}");
    a_broken_current_copy_is_downloaded_again(&fake, &b, &db).await;

    // A damaged local archive of a key the bucket lacks is a named extraction failure, not a cache miss.
    let copy = find_archive(b.dir.path(), "deps-main").expect("B keeps the downloaded archive");
    let damaged = copy.parent().unwrap().with_file_name("damaged").join("cache.zip");
    std::fs::create_dir_all(damaged.parent().unwrap()).unwrap();
    std::fs::write(&damaged, b"not a zip archive").unwrap();
    let rec = finished(
        &fake,
        fake.enqueue_job(job("damaged", "b", &["true"], pull("damaged"))),
        FINISH,
        &db,
    )
    .await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Failed to extract cache for key"), "{trace}");
    assert!(!trace.contains("Cache file does not exist"), "{trace}");

    // A key nobody pushed misses in the bucket, then its fallback key is found there.
    let fallback = job(
        "fallback",
        "b",
        &["test \"$(cat vendor/lib)\" = from-a"],
        CacheSpec {
            policy: "pull".into(),
            fallback_keys: vec!["deps-$CI_COMMIT_REF_SLUG".into()],
            ..CacheSpec::new("feature-x", &["vendor/"])
        },
    );
    let rec = finished(&fake, fake.enqueue_job(fallback), FINISH, &db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    let miss = trace.find("Cache file does not exist").expect(&trace);
    let next = trace.find("Checking cache for deps-main...").expect(&trace);
    assert!(miss < next, "{trace}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");

    a_newer_object_replaces_the_local_copy(&fake, &b, &da, &db).await;
    private_caches_stay_with_their_runner(&fake, &a_private, &da, &db).await;

    // One store node dies: pushes and restores go on.
    cluster.kill(2);
    let push = job(
        "push after kill",
        "a",
        &["mkdir -p vendor && echo survived > vendor/lib"],
        CacheSpec::new("after-kill", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(push), FINISH, &da).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(!trace.contains("Failed to create cache"), "{trace}");
    let restore = job(
        "restore after kill",
        "b",
        &["test \"$(cat vendor/lib)\" = survived"],
        pull("after-kill"),
    );
    let rec = finished(&fake, fake.enqueue_job(restore), FINISH, &db).await;
    assert_eq!(rec.status, "success", "{}", rec.trace_text());

    wrong_secret_is_a_named_warning(&fake, &cluster, &db).await;
    remote_transfers_are_counted(&db).await;
    for d in [&da, &db] {
        assert!(!d.log().contains(WRONG_SECRET) && !d.log().contains(&cluster.secret));
    }
    crate::support::quit_ok(da).await;
    crate::support::quit_ok(db).await;
}

/// B's metrics count what moved over the network: downloads with their bytes, refused uploads as failures.
async fn remote_transfers_are_counted(db: &Daemon) {
    let deadline = tokio::time::Instant::now() + FINISH;
    let addr = loop {
        let log = db.log();
        if let Some(rest) = log
            .lines()
            .find(|l| l.contains("Metrics server listening"))
            .and_then(|l| l.split("address=").nth(1))
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no metrics server:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |name: &str, direction: &str, outcome: &str| {
        let want = [
            "kind=\"cache\"".to_owned(),
            format!("direction=\"{direction}\""),
            format!("outcome=\"{outcome}\""),
        ];
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && want.iter().all(|w| l.contains(w.as_str())))
            .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
    };
    let downloaded = sample("gitlab_runner_transfer_bytes_total", "download", "success");
    assert!(downloaded.is_some_and(|b| b > 0.0), "{text}");
    let refused = sample(
        "gitlab_runner_transfer_duration_seconds_count",
        "upload",
        "failure",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    // Restores whose local copy was current are told apart from downloads.
    let kept = sample(
        "gitlab_runner_transfer_duration_seconds_count",
        "download",
        "up_to_date",
    );
    assert!(kept.is_some_and(|n| n >= 1.0), "{text}");
}

/// The local store's archive of `key` somewhere below `dir`.
/// A local copy that counts as up to date but does not extract (damaged, or dated in the future) is not the end of
/// the restore: the object is downloaded after all.
async fn a_broken_current_copy_is_downloaded_again(fake: &fake_gitlab::FakeGitlab, b: &Sandbox, db: &Daemon) {
    let copy = find_archive(b.dir.path(), "deps-main").expect("B keeps the downloaded archive");
    std::fs::write(&copy, b"not a zip archive").unwrap();
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(future)
        .unwrap();
    let restore = job(
        "restore over a broken copy",
        "b",
        &["test \"$(cat vendor/lib)\" = from-a"],
        pull("deps-$CI_COMMIT_REF_SLUG"),
    );
    let rec = finished(fake, fake.enqueue_job(restore), FINISH, db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    let up_to_date = trace.find("cache.zip is up to date").expect(&trace);
    let again = trace.find("it is downloaded again").expect(&trace);
    let download = trace.find("Downloading cache from http://").expect(&trace);
    assert!(up_to_date < again && again < download, "{trace}");
    assert!(trace.contains("Successfully extracted cache"), "{trace}");
    assert_ne!(std::fs::metadata(&copy).unwrap().modified().unwrap(), future);
}

/// B's local copy of a key is up to date only until another machine pushes the key again: then B downloads it.
async fn a_newer_object_replaces_the_local_copy(
    fake: &fake_gitlab::FakeGitlab,
    b: &Sandbox,
    da: &Daemon,
    db: &Daemon,
) {
    // `Last-Modified` has whole seconds and "up to date" means not after the local copy (upstream's rule): the new
    // push must fall in a later second than the copy was written, or it would count as the same age.
    let copy = find_archive(b.dir.path(), "deps-main").expect("B keeps the downloaded archive");
    let written = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let since_epoch = written.duration_since(std::time::UNIX_EPOCH).unwrap();
    let next_second = std::time::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs() + 1);
    while std::time::SystemTime::now() < next_second {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let push = job(
        "push again",
        "a",
        &["mkdir -p vendor && echo from-a-again > vendor/lib"],
        CacheSpec::new("deps-$CI_COMMIT_REF_SLUG", &["vendor/"]),
    );
    let rec = finished(fake, fake.enqueue_job(push), FINISH, da).await;
    assert_eq!(rec.status, "success", "{}", rec.trace_text());
    let restore = job(
        "restore the newer",
        "b",
        &["test \"$(cat vendor/lib)\" = from-a-again"],
        pull("deps-$CI_COMMIT_REF_SLUG"),
    );
    let rec = finished(fake, fake.enqueue_job(restore), FINISH, db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Downloading cache from http://"), "{trace}");
    assert!(!trace.contains("is up to date"), "{trace}");
}

fn find_archive(dir: &std::path::Path, key: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if !entry.file_type().ok()?.is_dir() {
            continue;
        }
        let zip = path.join("cache.zip");
        if path.file_name().is_some_and(|n| n == key) && zip.is_file() {
            return Some(zip);
        }
        if let Some(found) = find_archive(&path, key) {
            return Some(found);
        }
    }
    None
}

/// Shared = false: A's private cache lives under its runner prefix, B's private runner does not see it.
async fn private_caches_stay_with_their_runner(
    fake: &fake_gitlab::FakeGitlab,
    a_private: &str,
    da: &Daemon,
    db: &Daemon,
) {
    let push = job(
        "private push",
        "ap",
        &["mkdir -p vendor && echo private > vendor/lib"],
        CacheSpec::new("private", &["vendor/"]),
    );
    let rec = finished(fake, fake.enqueue_job(push), FINISH, da).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    let short: String = a_private.trim_start_matches("glrt-").chars().take(9).collect();
    assert!(
        trace.contains(&format!("/fleet/runner/{short}/project/0/private")),
        "{trace}"
    );
    let miss = job("private miss", "bp", &["test ! -e vendor/lib"], pull("private"));
    let rec = finished(fake, fake.enqueue_job(miss), FINISH, db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Cache file does not exist"), "{trace}");
    assert!(trace.contains("Failed to extract cache"), "{trace}");
}

/// A wrong secret: the store refuses the signature; the job goes on, the warning names bucket and endpoint.
async fn wrong_secret_is_a_named_warning(fake: &fake_gitlab::FakeGitlab, cluster: &Cluster, db: &Daemon) {
    let wrong_job = || {
        job(
            "wrong secret",
            "bw",
            &["mkdir -p vendor && echo x > vendor/lib && touch -d @1000000000 vendor/lib vendor"],
            CacheSpec::new("wrong", &["vendor/"]),
        )
    };
    let rec = finished(fake, fake.enqueue_job(wrong_job()), FINISH, db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    let named = format!("bucket \"{BUCKET}\" at http://{}", cluster.s3_address(1));
    assert!(trace.contains(&named), "{trace}");
    assert!(trace.contains("403"), "{trace}");
    assert!(trace.contains("Failed to create cache"), "{trace}");
    assert!(
        !trace.contains(WRONG_SECRET) && !trace.contains("X-Amz-Signature"),
        "{trace}"
    );
    // The local archive is unchanged now, but the bucket never got it: it is sent again (and refused again),
    // never reported as up to date and created.
    let rec = finished(fake, fake.enqueue_job(wrong_job()), FINISH, db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Archive is up to date!"), "{trace}");
    assert!(
        trace.contains(&named) && trace.contains("Failed to create cache"),
        "{trace}"
    );
}

/// Docker: the runner moves the archive (the job container gets neither the keys nor a signed URL, and needs no
/// route to the store); a shell machine restores what the Docker machine pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_docker_machine_pushes_and_a_shell_machine_restores() {
    use crate::support::docker::{DockerOpts, Env, IMAGE, docker_available};
    if !docker_available() {
        return;
    }
    let Some(bin) = garage::binary() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let env = Env::start(DockerOpts {
        docker_extra: cache_toml(&cluster, 0, true, &cluster.secret),
        ..DockerOpts::default()
    })
    .await;
    let push = JobSpec::new(
        "docker push",
        &[
            "mkdir -p vendor && echo from-docker > vendor/lib",
            "echo \"signed=$(env | grep -c -e X-Amz- -e OXRUNNER_CACHE_URL || true)\"",
        ],
    )
    .variable("GIT_STRATEGY", "empty")
    .image(fake_gitlab::ImageSpec::new(IMAGE))
    .cache(CacheSpec::new("docker-deps", &["vendor/"]));
    let rec = env.succeeded(env.fake.enqueue_job(push)).await;
    let trace = rec.trace_text();
    assert!(trace.contains("Uploading cache.zip to http://"), "{trace}");
    assert!(!trace.contains("Failed to create cache"), "{trace}");
    assert!(
        !trace.contains(&cluster.secret) && !trace.contains("X-Amz-Signature"),
        "{trace}"
    );
    // Nothing signed reaches the job's environment: the count the script printed is zero.
    assert!(trace.contains("signed=0"), "{trace}");
    assert!(!trace.contains("X-Amz-Credential"), "{trace}");

    let b = Sandbox::new();
    let token = env.fake.create_runner_token_with_tags("b", &["b"], false);
    let text = global_toml(1, "")
        + &shell_runner_toml(
            "b",
            &env.fake.url(),
            &token,
            &b.path("b"),
            &cache_toml(&cluster, 1, true, &cluster.secret),
        );
    std::fs::write(b.config(), text).unwrap();
    let cfg = b.config_str();
    let db = b.spawn(&["run", "-c", &cfg]);
    let restore = job(
        "shell restore",
        "b",
        &["test \"$(cat vendor/lib)\" = from-docker"],
        pull("docker-deps"),
    );
    let rec = finished(&env.fake, env.fake.enqueue_job(restore), FINISH, &db).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Downloading cache from http://"), "{trace}");
    crate::support::quit_ok(db).await;
}

/// Custom executor: the cache stages run job-side (`oxrunner cache-archiver` in the driver's environment) and get
/// a signed URL through the environment; a shell machine restores what the helper uploaded, and a second custom
/// machine restores through `cache-extractor`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_machines_move_caches_through_the_job_side_helpers() {
    let Some(bin) = garage::binary() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let fake = fake(1, 1).await;
    let url = fake.url();
    let custom = |sb: &Sandbox, name: &str, token: &str| {
        let dir = sb.path("driver");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.sh");
        let run = dir.join("run.sh");
        let root = sb.dir.path().display().to_string();
        std::fs::write(
            &config,
            format!(
                "#!/usr/bin/env bash\necho '{{\"builds_dir\": \"{root}/b\", \"cache_dir\": \"{root}/c\"}}'\n"
            ),
        )
        .unwrap();
        std::fs::write(&run, "#!/usr/bin/env bash\nexec bash \"$1\"\n").unwrap();
        for p in [&config, &run] {
            let mut perm = std::fs::metadata(p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(p, perm).unwrap();
        }
        let text = global_toml(1, "")
            + &format!(
                "\n[[runners]]\n  name = \"{name}\"\n  url = \"{url}\"\n  token = \"{token}\"\n  executor = \"custom\"\n  \
                 [runners.custom]\n    config_exec = \"{}\"\n    run_exec = \"{}\"\n{}",
                config.display(),
                run.display(),
                cache_toml(&cluster, 0, true, &cluster.secret),
            );
        std::fs::write(sb.config(), text).unwrap();
        let cfg = sb.config_str();
        sb.spawn(&["run", "-c", &cfg])
    };
    let (c1, c2, s) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
    let d1 = custom(
        &c1,
        "c1",
        &fake.create_runner_token_with_tags("c1", &["c1"], false),
    );
    let d2 = custom(
        &c2,
        "c2",
        &fake.create_runner_token_with_tags("c2", &["c2"], false),
    );
    let token = fake.create_runner_token_with_tags("s", &["s"], false);
    let text = global_toml(1, "")
        + &shell_runner_toml(
            "s",
            &url,
            &token,
            &s.path("s"),
            &cache_toml(&cluster, 1, true, &cluster.secret),
        );
    std::fs::write(s.config(), text).unwrap();
    let s_cfg = s.config_str();
    let ds = s.spawn(&["run", "-c", &s_cfg]);

    let push = job(
        "custom push",
        "c1",
        &["mkdir -p vendor && echo from-custom > vendor/lib"],
        CacheSpec::new("custom-deps", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(push), FINISH, &d1).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(trace.contains("Uploading cache.zip to http://"), "{trace}");
    assert!(!trace.contains("Failed to create cache"), "{trace}");
    assert!(
        !trace.contains("X-Amz-Signature") && !trace.contains(&cluster.secret),
        "{trace}"
    );

    for (tag, daemon) in [("s", &ds), ("c2", &d2)] {
        let restore = job(
            &format!("restore on {tag}"),
            tag,
            &["test \"$(cat vendor/lib)\" = from-custom"],
            pull("custom-deps"),
        );
        let rec = finished(&fake, fake.enqueue_job(restore), FINISH, daemon).await;
        let trace = rec.trace_text();
        assert_eq!(rec.status, "success", "{trace}");
        assert!(trace.contains("Successfully extracted cache"), "{trace}");
        assert!(!trace.contains("X-Amz-Signature"), "{trace}");
    }
    for d in [d1, d2, ds] {
        crate::support::quit_ok(d).await;
    }
}

/// The download of a shared cache goes into the store's directory as the trusted walk opened it: a key directory
/// swapped for a link (as a job user could where `cache_dir` sits in their home) is not followed, the archive never
/// lands where the link points, and the job goes on with a named warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_never_follows_a_link_in_the_cache_directory() {
    let Some(bin) = garage::binary() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let fake = fake(1, 1).await;
    let token = fake.create_runner_token_with_tags("t", &["t"], false);
    let sb = Sandbox::new();
    let text = global_toml(1, "")
        + &shell_runner_toml(
            "t",
            &fake.url(),
            &token,
            &sb.path("t"),
            &cache_toml(&cluster, 0, true, &cluster.secret),
        );
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn(&["run", "-c", &cfg]);

    let push = job(
        "push",
        "t",
        &["mkdir -p vendor && echo pushed > vendor/lib"],
        CacheSpec::new("linked", &["vendor/"]),
    );
    let rec = finished(&fake, fake.enqueue_job(push), FINISH, &d).await;
    assert_eq!(rec.status, "success", "{}", rec.trace_text());
    let copy = find_archive(sb.dir.path(), "linked").expect("the local copy of the pushed cache");
    let key_dir = copy.parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&key_dir).unwrap();
    let elsewhere = sb.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &key_dir).unwrap();

    let restore = job("restore", "t", &["test ! -e vendor/lib || true"], pull("linked"));
    let rec = finished(&fake, fake.enqueue_job(restore), FINISH, &d).await;
    let trace = rec.trace_text();
    assert_eq!(rec.status, "success", "{trace}");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "the download followed the link: {:?}",
        std::fs::read_dir(&elsewhere)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
    );
    assert!(trace.contains("the shared cache is not downloaded"), "{trace}");
    drop(d);
}
