//! The runner's distributed cache: for `Type = "s3"`, `"gcs"` or `"azure"` one signed GET of an object that never
//! exists, under the runner's own prefix, tells apart a reachable bucket (container) with accepted keys (404
//! NoSuchKey or BlobNotFound), a missing bucket, refused credentials and an unreachable endpoint. Messages name the
//! bucket, the endpoint and the config
//! keys to check; never the secret nor the signed URL (its query is the signature).

use std::time::Duration;

use oxrunner_config::RunnerConfig;

use super::report::Check;
use crate::hooks::RemoteSetup;
use crate::hooks::remote::RemoteCache;

/// The probe's object name under `project/0/`: no GitLab project has id 0, so no real cache is ever read.
const PROBE: &str = "oxrunner-doctor-probe";
/// A signed URL only needs to outlive the one request.
const SIGNED_FOR: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(15);
/// Only the `<Code>` of an S3 error body is read; the body is small XML, bounded anyway.
const BODY_LIMIT: usize = 16 * 1024;

pub async fn check(r: &RunnerConfig) -> Vec<Check> {
    let Some(kind) = r
        .cache
        .as_ref()
        .and_then(|c| c.cache_type.as_deref())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Vec::new();
    };
    let gcs = matches!(kind, "gcs" | "gcsv2");
    if !gcs && !matches!(kind, "s3" | "azure") {
        return vec![Check::warn(
            format!("cache: Type = \"{kind}\" is not supported yet; its bucket was not checked"),
            "this build shares caches through S3, GCS and Azure only, so runners on other hosts do not share these caches",
            "use Type = \"s3\" (any S3-compatible store), \"gcs\" or \"azure\", or run the jobs that share a cache on one \
             runner",
        )];
    }
    match RemoteSetup::from_config(r.cache.as_ref(), &r.short_token()) {
        RemoteSetup::Ready(remote) => vec![probe(&remote, gcs).await],
        RemoteSetup::Broken(msg) => {
            let (what, hint) = msg.split_once("\nhint: ").unwrap_or((msg.as_str(), ""));
            let what = what.lines().next().unwrap_or(what);
            let hint = hint.lines().next().unwrap_or_default();
            vec![Check::fail(
                format!("cache: {what}"),
                "jobs keep their caches in the local cache_dir only; other runners do not see them",
                if hint.is_empty() {
                    format!(
                        "fix [runners.cache.{}] in config.toml",
                        if gcs { "gcs" } else { kind }
                    )
                } else {
                    hint.to_owned()
                },
            )]
        }
        RemoteSetup::None => Vec::new(),
    }
}

async fn probe(remote: &RemoteCache, gcs: bool) -> Check {
    let place = remote.store.describe();
    let Some(object) = remote.object_name(0, PROBE, false) else {
        return Check::fail(
            format!("cache: {place}: Path leaves the bucket's prefix"),
            "object names are built from [runners.cache] Path; a `..` climbing above it is refused",
            "remove `..` from [runners.cache] Path",
        );
    };
    let signed = match remote.store.signed_get(&object, SIGNED_FOR).await {
        Ok(s) => s,
        Err(e) => {
            let (what, hint) = e.split_once("\nhint: ").unwrap_or((e.as_str(), ""));
            return Check::fail(
                format!("cache: {place}: {what}"),
                "every cache upload and download of this runner fails; jobs keep the local cache only",
                hint,
            );
        }
    };
    let http = match reqwest::Client::builder()
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                format!("cache: cannot set up an HTTP client: {e}"),
                "the bucket was not checked",
                "check the system's TLS setup",
            );
        }
    };
    let resp = match http.get(signed.url.clone()).send().await {
        Ok(resp) => resp,
        Err(e) => return unreachable_endpoint(&place, &e),
    };
    let status = resp.status();
    if status.is_success() {
        // Someone stored an object by that name; reading it worked, so do the keys.
        return reachable(&place);
    }
    let code = error_code(resp).await;
    if gcs {
        return judge_gcs(&place, status.as_u16(), code.as_deref());
    }
    judge(&place, status.as_u16(), code.as_deref())
}

fn reachable(place: &str) -> Check {
    Check::ok(format!("cache: {place} reachable, credentials accepted"))
}

/// The verdict on an error answer; pure, so each S3 code is testable without a store.
fn judge(place: &str, status: u16, code: Option<&str>) -> Check {
    match (status, code) {
        (404, Some("NoSuchKey" | "BlobNotFound") | None) => reachable(place),
        (404, Some("ContainerNotFound")) => Check::fail(
            format!("cache: {place}: the container does not exist (ContainerNotFound)"),
            "every cache upload and download of this runner fails; jobs keep the local cache only",
            "create the container, or fix ContainerName (and AccountName, StorageDomain) in [runners.cache.azure]",
        ),
        (404, Some("NoSuchBucket")) => Check::fail(
            format!("cache: {place}: the bucket does not exist (NoSuchBucket)"),
            "every cache upload and download of this runner fails; jobs keep the local cache only",
            "create the bucket, or fix BucketName (and ServerAddress) in [runners.cache.s3]",
        ),
        (403 | 400 | 401, Some(code)) => Check::fail(
            format!("cache: {place} refused the credentials ({code})"),
            "every cache upload and download of this runner fails; jobs keep the local cache only",
            refusal_fix(code),
        ),
        (_, code) => Check::fail(
            format!(
                "cache: {place} answered HTTP {status}{}",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            "the cache store did not accept a read of the runner's prefix",
            "check ServerAddress, BucketName, BucketLocation and the keys in [runners.cache.s3]",
        ),
    }
}

/// [`judge`] for GCS, whose XML error codes are S3's for these cases but whose settings are others.
fn judge_gcs(place: &str, status: u16, code: Option<&str>) -> Check {
    let lost = "every cache upload and download of this runner fails; jobs keep the local cache only";
    match (status, code) {
        (404, Some("NoSuchKey") | None) => reachable(place),
        (404, Some("NoSuchBucket")) => Check::fail(
            format!("cache: {place}: the bucket does not exist (NoSuchBucket)"),
            lost,
            "create the bucket, or fix BucketName in [runners.cache.gcs]",
        ),
        (403 | 400 | 401, code) => Check::fail(
            format!(
                "cache: {place} refused the signed request{}",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            lost,
            "check the service account's key in [runners.cache.gcs] (CredentialsFile, or AccessID and PrivateKey), \
             that it may read and write objects in the bucket, and the runner's clock",
        ),
        (500..=599, code) => Check::fail(
            format!(
                "cache: {place} answered HTTP {status}{}, a GCS server error",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            "cache transfers fail while GCS answers so; jobs keep the local cache meanwhile",
            "retry later (see https://status.cloud.google.com); nothing in [runners.cache.gcs] causes this",
        ),
        (_, code) => Check::fail(
            format!(
                "cache: {place} answered HTTP {status}{}",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            "the cache store did not accept a read of the runner's prefix",
            "check BucketName and UniverseDomain in [runners.cache.gcs]",
        ),
    }
}

fn refusal_fix(code: &str) -> String {
    match code {
        // Azure's answer to a SAS signed with another key (Azurite: AuthorizationFailure).
        "AuthenticationFailed" | "AuthorizationFailure" => {
            "check AccountName and AccountKey in [runners.cache.azure] (the key must be a current access key of \
             the account), and the runner's clock"
                .to_owned()
        }
        "SignatureDoesNotMatch" => {
            "check SecretKey (and SessionToken) in [runners.cache.s3]; BucketLocation must be the bucket's region"
                .to_owned()
        }
        "InvalidAccessKeyId" => "check AccessKey in [runners.cache.s3]: the store does not know this key".to_owned(),
        "AccessDenied" => {
            "check AccessKey and SecretKey in [runners.cache.s3] (some stores, Garage among them, answer a wrong \
             secret so), or grant the key read and write on the bucket"
                .to_owned()
        }
        _ => "check AccessKey, SecretKey, SessionToken and BucketLocation in [runners.cache.s3]".to_owned(),
    }
}

fn unreachable_endpoint(place: &str, err: &reqwest::Error) -> Check {
    // The URL carries the signature: only the cause chain goes into the message.
    let mut cause = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        cause = if err.is_timeout() {
            "timed out"
        } else {
            "request failed"
        }
        .to_owned();
    }
    Check::fail(
        format!("cache: {place} is not reachable: {cause}"),
        "every cache upload and download of this runner fails; jobs keep the local cache only",
        if place.starts_with(crate::hooks::remote::azure::DESCRIBE_PREFIX) {
            "check AccountName and StorageDomain in [runners.cache.azure], and the network path"
        } else if place.starts_with(crate::hooks::remote::gcs::DESCRIBE_PREFIX) {
            "check the network path to GCS (DNS, firewall, HTTPS_PROXY/NO_PROXY), and UniverseDomain in \
             [runners.cache.gcs] when the bucket is not in Google's public cloud"
        } else {
            "check ServerAddress (and Insecure = true for plain http) in [runners.cache.s3], and the network path"
        },
    )
}

/// The `<Code>` of an S3 XML error body, read no further than [`BODY_LIMIT`].
async fn error_code(mut resp: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = text[start..start + len].trim();
    (!code.is_empty() && code.len() < 64).then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::{judge, judge_gcs};

    #[test]
    fn each_s3_code_gets_its_verdict() {
        let p = "bucket \"b\" at http://127.0.0.1:1";
        assert!(judge(p, 404, Some("NoSuchKey")).message.contains("reachable"));
        let missing = judge(p, 404, Some("NoSuchBucket"));
        assert!(missing.message.contains("does not exist"), "{}", missing.message);
        let sig = judge(p, 403, Some("SignatureDoesNotMatch"));
        assert!(sig.message.contains("SignatureDoesNotMatch"));
        assert!(sig.fix.as_deref().unwrap_or_default().contains("SecretKey"));
        let key = judge(p, 403, Some("InvalidAccessKeyId"));
        assert!(key.fix.as_deref().unwrap_or_default().contains("AccessKey"));
        assert!(judge(p, 500, None).message.contains("HTTP 500"));
    }

    #[test]
    fn gcs_answers_name_the_gcs_settings() {
        let p = "GCS bucket \"b\" at https://storage.googleapis.com";
        assert!(judge_gcs(p, 404, Some("NoSuchKey")).message.contains("reachable"));
        let missing = judge_gcs(p, 404, Some("NoSuchBucket"));
        assert!(
            missing
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("[runners.cache.gcs]")
        );
        let sig = judge_gcs(p, 403, Some("SignatureDoesNotMatch"));
        assert!(sig.message.contains("SignatureDoesNotMatch"), "{}", sig.message);
        let fix = sig.fix.as_deref().unwrap_or_default();
        assert!(
            fix.contains("CredentialsFile") && !fix.contains("SecretKey"),
            "{fix}"
        );
    }

    #[test]
    fn gcs_server_errors_say_retry_not_check_settings() {
        let p = "GCS bucket \"b\" at https://storage.googleapis.com";
        for status in [500, 503] {
            let c = judge_gcs(p, status, None);
            let fix = c.fix.as_deref().unwrap_or_default();
            assert!(c.message.contains("GCS server error"), "{}", c.message);
            assert!(
                fix.contains("retry later") && !fix.contains("BucketName"),
                "{fix}"
            );
        }
    }

    /// An unreachable GCS endpoint gets GCS advice, not S3's `ServerAddress` (GCS has none).
    #[tokio::test]
    async fn an_unreachable_gcs_endpoint_gets_gcs_advice() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let err = reqwest::get(format!("http://{addr}/"))
            .await
            .expect_err("nothing listens there");
        let c = super::unreachable_endpoint("GCS bucket \"b\" at https://storage.googleapis.com", &err);
        let fix = c.fix.as_deref().unwrap_or_default();
        assert!(
            fix.contains("UniverseDomain") && fix.contains("[runners.cache.gcs]"),
            "{fix}"
        );
        assert!(!fix.contains("ServerAddress") && !fix.contains("s3"), "{fix}");
    }

    #[test]
    fn each_azure_code_gets_its_verdict() {
        let p = "Azure container \"c\" at http://127.0.0.1:1/devstoreaccount1";
        assert!(judge(p, 404, Some("BlobNotFound")).message.contains("reachable"));
        let missing = judge(p, 404, Some("ContainerNotFound"));
        assert!(
            missing.message.contains("container does not exist"),
            "{}",
            missing.message
        );
        assert!(
            missing
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("ContainerName")
        );
        for code in ["AuthenticationFailed", "AuthorizationFailure"] {
            let refused = judge(p, 403, Some(code));
            assert!(refused.message.contains(code), "{}", refused.message);
            assert!(refused.fix.as_deref().unwrap_or_default().contains("AccountKey"));
        }
    }
}
