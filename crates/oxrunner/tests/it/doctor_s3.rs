//! `oxrunner doctor` on an S3 cache against a real Garage cluster on 127.0.0.1: the right keys give a ✓ naming the
//! bucket and endpoint, a wrong secret and a missing bucket give ✗ lines with the keys to fix, and no output ever
//! shows the secret or a signed URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::doctor::{doctor, healthy_shell_toml, write_config};
use crate::support::garage::{self, BUCKET, Cluster, REGION};
use crate::support::{self as common, Sandbox};

const WRONG_SECRET: &str = "0000000000000000000000000000000000000000000000000000000000000bad";

fn cache_toml(cluster: &Cluster, bucket: &str, secret: &str) -> String {
    format!(
        "  [runners.cache]\n    Type = \"s3\"\n    Shared = false\n  \
         [runners.cache.s3]\n    ServerAddress = \"{addr}\"\n    AccessKey = \"{key}\"\n    SecretKey = \"{secret}\"\n    \
         BucketName = \"{bucket}\"\n    BucketLocation = \"{REGION}\"\n    Insecure = true\n",
        addr = cluster.s3_address(0),
        key = cluster.key_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_cache_bucket_is_probed_with_the_configured_keys() {
    let Some(bin) = garage::binary() else {
        return;
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&bin))
        .await
        .unwrap();
    let sb = Sandbox::new();
    let fake = common::fake(2, 1).await;
    let token = fake.create_runner_token("doc");
    let endpoint = format!("http://{}", cluster.s3_address(0));
    let place = format!("bucket \"{BUCKET}\" at {endpoint}");

    write_config(
        &sb,
        &healthy_shell_toml(
            &sb,
            &fake.url(),
            &token,
            &cache_toml(&cluster, BUCKET, &cluster.secret),
        ),
    );
    let out = doctor(&sb, &[]).await;
    assert!(
        out.stdout
            .contains(&format!("  ✓ cache: {place} reachable, credentials accepted")),
        "{}",
        out.all()
    );
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(!out.all().contains(&cluster.secret), "{}", out.all());

    write_config(
        &sb,
        &healthy_shell_toml(
            &sb,
            &fake.url(),
            &token,
            &cache_toml(&cluster, BUCKET, WRONG_SECRET),
        ),
    );
    let out = doctor(&sb, &[]).await;
    crate::doctor::assert_fails_with(
        &out,
        // S3 says SignatureDoesNotMatch, Garage AccessDenied: either way the code is named.
        &format!("cache: {place} refused the credentials ("),
        "SecretKey",
    );
    let all = out.all();
    assert!(
        !all.contains(WRONG_SECRET) && !all.contains("X-Amz-Signature"),
        "{all}"
    );

    let missing = "oxrt-no-such-bucket";
    write_config(
        &sb,
        &healthy_shell_toml(
            &sb,
            &fake.url(),
            &token,
            &cache_toml(&cluster, missing, &cluster.secret),
        ),
    );
    let out = doctor(&sb, &[]).await;
    crate::doctor::assert_fails_with(
        &out,
        &format!("cache: bucket \"{missing}\" at {endpoint}: the bucket does not exist (NoSuchBucket)"),
        "create the bucket",
    );
    assert!(!out.all().contains(&cluster.secret), "{}", out.all());

    // A section the runner cannot use: one ✗ with the config error and its hint, not a second `!` line.
    let broken = format!(
        "  [runners.cache]\n    Type = \"s3\"\n  [runners.cache.s3]\n    ServerAddress = \"{}\"\n    \
         AccessKey = \"{}\"\n    SecretKey = \"{}\"\n",
        cluster.s3_address(0),
        cluster.key_id,
        cluster.secret
    );
    write_config(&sb, &healthy_shell_toml(&sb, &fake.url(), &token, &broken));
    let out = doctor(&sb, &[]).await;
    crate::doctor::assert_fails_with(
        &out,
        "cache: [runners.cache.s3] BucketName is missing",
        "name the bucket",
    );
    assert_eq!(
        out.stdout.matches("BucketName is missing").count(),
        1,
        "{}",
        out.all()
    );
    assert!(!out.all().contains(&cluster.secret), "{}", out.all());
}
