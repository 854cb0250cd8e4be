//! `secrets:` end to end: fake-gitlab hands out jobs whose payload carries `secrets` as GitLab sends them, the
//! daemon (shell executor) resolves them against a Vault stand-in on 127.0.0.1 before the executor is prepared,
//! and the values reach the job as masked (and file) variables; a missing secret follows
//! `FF_SECRET_RESOLVING_FAILS_IF_MISSING`; refused logins and providers this build lacks fail the job clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::vault::{Engine, FakeVault};
use crate::support::{Daemon, Sandbox, fake, finished, global_toml, quit_ok, shell_runner_toml};
use fake_gitlab::{FakeGitlab, JobSpec};
use serde_json::{Value, json};

const FINISH: Duration = Duration::from_secs(60);
/// The ID token GitLab would mint for the job (`id_tokens:`), sent as a masked variable.
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGg6Z3JvdXAvcHJvamVjdCJ9.c2lnbmF0dXJl";
const DB_PASSWORD: &str = "s3cr3t-db-pass-9f2c";
const TLS_KEY: &str = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----";
const LEGACY: &str = "legacy-v1-value-77aa";

fn start(fake: &FakeGitlab, sb: &Sandbox) -> Daemon {
    let token = fake.create_runner_token("secrets");
    let text = global_toml(1, "") + &shell_runner_toml("secrets", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

/// A `vault` entry as GitLab builds it from `secrets: NAME: vault: ...` (the JWT is a reference to the job's ID
/// token variable, expanded by the runner).
fn vault_secret(
    url: &str,
    namespace: &str,
    role: &str,
    engine: &str,
    mount: &str,
    path: &str,
    field: &str,
) -> Value {
    json!({
        "server": {
            "url": url,
            "auth": {"name": "jwt", "path": "jwt", "data": {"jwt": "$VAULT_ID_TOKEN", "role": role}},
            "namespace": namespace
        },
        "engine": {"name": engine, "path": mount},
        "path": path,
        "field": field
    })
}

async fn vault() -> FakeVault {
    let v = FakeVault::start().await;
    v.mount("ops", "kv", Engine::KvV2);
    v.put(
        "kv",
        "production/db",
        json!({"password": DB_PASSWORD, "tls_key": TLS_KEY}),
    );
    v.mount("ops", "legacy", Engine::KvV1);
    v.put("legacy", "app", json!({"token": LEGACY}));
    v.role("ops", "jwt", "deploy", JWT);
    v
}

fn job(name: &str, script: &[&str], secrets: Value) -> JobSpec {
    JobSpec::new(name, script)
        .variable("GIT_STRATEGY", "none")
        .masked_variable("VAULT_ID_TOKEN", JWT)
        .payload_field("secrets", secrets)
}

/// The job's `features` with `runner_configuration_error` among the failure reasons GitLab accepts; without
/// it the runner sends `script_failure` instead, as upstream.
fn features_with_configuration_error() -> Value {
    json!({"trace_sections": true, "failure_reasons": [
        "unknown_failure", "script_failure", "runner_system_failure", "runner_configuration_error",
        "runner_external_dependency_failure"
    ]})
}

/// The failure reason in the runner's final update of `job`.
fn sent_reason(job: &fake_gitlab::JobRecord) -> String {
    job.updates
        .iter()
        .rev()
        .find_map(|u| u["failure_reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn rev(s: &str) -> String {
    s.chars().rev().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_secrets_reach_the_job_masked_and_as_files() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb);
    let url = v.url();
    let id = fake.enqueue_job(job(
        "secrets",
        &[
            "echo \"db=$DB_PASSWORD\"",
            // Reversed, the value is not masked: proof that the job got it.
            "printf '%s\\n' \"$DB_PASSWORD\" | rev",
            "printf '%s\\n' \"$LEGACY\" | rev",
            "test -f \"$TLS_KEY\" && echo tls-key-is-a-file",
            "head -n 2 \"$TLS_KEY\" | tail -n 1 | rev",
            "cat \"$TLS_KEY\"; echo",
        ],
        json!({
            "DB_PASSWORD": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "production/db", "password"),
                            "file": false},
            "TLS_KEY": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "production/db", "tls_key")},
            "LEGACY": {"vault": vault_secret(&url, "ops", "deploy", "kv-v1", "legacy", "app", "token"),
                       "file": false}
        }),
    ));
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    for line in [
        "Resolving secrets",
        "Resolving secret \"DB_PASSWORD\"...",
        "Resolving secret \"TLS_KEY\"...",
        "Using \"vault\" secret resolver...",
        "db=[MASKED]",
        &rev(DB_PASSWORD),
        &rev(LEGACY),
        "tls-key-is-a-file",
        &rev("MIIEvQIBADANBg"),
    ] {
        assert!(trace.contains(line), "{line:?} missing:\n{trace}");
    }
    for secret in [DB_PASSWORD, LEGACY, "MIIEvQIBADANBg", JWT] {
        assert!(!trace.contains(secret), "{secret} leaked:\n{trace}");
        assert!(
            !d.log().contains(secret),
            "{secret} leaked to the runner log:\n{}",
            d.log()
        );
    }
    // Secrets are resolved before the executor is prepared, in their own section.
    let resolving = trace.find("Resolving secrets").unwrap();
    assert!(
        resolving < trace.find("Preparing the \"shell\" executor").unwrap(),
        "{trace}"
    );
    // Every read went to the job's namespace with the token of a jwt login.
    let reqs = v.requests();
    let logins: Vec<_> = reqs.iter().filter(|r| r.path == "/v1/auth/jwt/login").collect();
    assert_eq!(logins.len(), 3, "{reqs:?}");
    let body: Value = serde_json::from_str(&logins[0].body).unwrap();
    assert_eq!(body, json!({"jwt": JWT, "role": "deploy"}));
    let reads: Vec<_> = reqs.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(
        reads.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        [
            "/v1/kv/data/production/db",
            "/v1/legacy/app",
            "/v1/kv/data/production/db"
        ]
    );
    assert!(
        reads.iter().all(
            |r| r.headers.get("x-vault-namespace").map(String::as_str) == Some("ops")
                && r.headers
                    .get("x-vault-token")
                    .is_some_and(|t| t.starts_with("hvs."))
        ),
        "{reads:?}"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_fails_the_job_unless_the_flag_is_off() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb);
    let url = v.url();
    let missing = json!({
        "NO_SUCH_FIELD": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "production/db", "nope"),
                          "file": false},
        "NO_SUCH_PATH": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "staging/db", "password"),
                         "file": false}
    });
    let failing = fake.enqueue_job(job("missing", &["echo script-ran"], missing.clone()));
    let lenient = fake.enqueue_job(
        job(
            "missing-allowed",
            &[
                "echo \"field-len=${#NO_SUCH_FIELD} path-len=${#NO_SUCH_PATH}\"",
                "env | grep -q '^NO_SUCH_PATH=$' && echo path-is-set",
            ],
            missing,
        )
        .variable("FF_SECRET_RESOLVING_FAILS_IF_MISSING", "false"),
    );

    let job1 = finished(&fake, failing, FINISH, &d).await;
    let trace = job1.trace_text();
    assert_eq!(job1.status, "failed", "{trace}");
    assert_eq!(
        job1.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains(
            "ERROR: Job failed (system failure): resolving secrets: secret not found: NO_SUCH_FIELD"
        ),
        "{trace}"
    );
    assert!(
        trace.contains("hint: check the secret's path and field"),
        "{trace}"
    );
    // The executor never ran.
    assert!(
        !trace.contains("script-ran") && !trace.contains("Preparing the"),
        "{trace}"
    );

    let job2 = finished(&fake, lenient, FINISH, &d).await;
    let trace = job2.trace_text();
    assert_eq!(job2.status, "success", "{trace}");
    assert!(
        trace.contains("field-len=0 path-len=0") && trace.contains("path-is-set"),
        "{trace}"
    );
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_login_and_a_provider_this_build_lacks_fail_clearly() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb);
    let url = v.url();
    let wrong_role = fake.enqueue_job(
        job(
            "wrong-role",
            &["echo script-ran"],
            json!({"DB_PASSWORD": {"vault": vault_secret(&url, "ops", "wrong-role", "kv-v2", "kv", "production/db", "password")}}),
        )
        .payload_field("features", features_with_configuration_error()),
    );
    // The Vault entry sorts first: it must not be logged in to (or retried) for a job that cannot run anyway.
    let aws = fake.enqueue_job(
        job(
            "aws",
            &["echo script-ran"],
            json!({
                "A_DB": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "production/db", "password")},
                "AWS_DB": {"aws_secrets_manager": {
                    "secret_id": "prod/db", "field": "password",
                    "server": {"region": "eu-west-1", "jwt": JWT, "role_arn": "arn:aws:iam::123456789012:role/ci"}
                }}
            }),
        )
        .variable("SECRETS_RETRIEVAL_ATTEMPTS", "3"),
    );
    // GitLab's secrets manager classifies nothing upstream: a refused read is a system failure.
    let gsm = fake.enqueue_job(
        JobSpec::new("gsm-wrong-role", &["echo script-ran"])
            .variable("GIT_STRATEGY", "none")
            .payload_field(
                "secrets",
                json!({"DEPLOY_KEY": {"gitlab_secrets_manager": {
                    "server": {"url": url, "inline_auth": {"auth_mount": "jwt", "jwt": JWT, "role": "wrong-role"}},
                    "engine": {"name": "kv-v2", "path": "kv"}, "path": "production/db", "field": "password"
                }}}),
            )
            .payload_field("features", features_with_configuration_error()),
    );

    let job1 = finished(&fake, wrong_role, FINISH, &d).await;
    let trace = job1.trace_text();
    assert_eq!(job1.status, "failed", "{trace}");
    // What the runner sent: GitLab itself has no such reason and records it as `unknown_failure`.
    assert_eq!(sent_reason(&job1), "runner_configuration_error", "{trace}");
    assert!(
        trace.contains("ERROR: Job failed: resolving secrets: secret \"DB_PASSWORD\": logging in to ")
            && trace.contains("api error: status code 400: role \"wrong-role\" could not be found")
            && trace.contains("hint: check the secret's server URL, auth path and role"),
        "{trace}"
    );
    assert!(!trace.contains("script-ran"), "{trace}");

    let job2 = finished(&fake, aws, FINISH, &d).await;
    let trace = job2.trace_text();
    assert_eq!(job2.status, "failed", "{trace}");
    assert!(
        trace.contains(
            "resolving secrets: secret \"AWS_DB\" (secret_id \"prod/db\"): the \"aws_secrets_manager\" secret \
             resolver is not available in oxrunner"
        ) && trace.contains("hint: run this job on a runner with the \"aws_secrets_manager\" resolver"),
        "{trace}"
    );
    assert!(!trace.contains("script-ran"), "{trace}");
    assert!(
        !trace.contains("Resolving secret \"A_DB\"") && !trace.contains("Retrying"),
        "{trace}"
    );
    let aws_trace = trace.clone();

    let job3 = finished(&fake, gsm, FINISH, &d).await;
    let trace = job3.trace_text();
    assert_eq!(job3.status, "failed", "{trace}");
    assert_eq!(sent_reason(&job3), "runner_system_failure", "{trace}");
    assert!(
        v.requests()
            .iter()
            .any(|r| r.headers.get("x-vault-inline-auth-path").map(String::as_str) == Some("auth/jwt/login")),
        "{:?}",
        v.requests()
    );
    let trace = aws_trace;

    let log = d.log();
    for text in [&job1.trace_text(), &trace, &log] {
        assert!(!text.contains(JWT), "the JWT leaked:\n{text}");
    }
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_secrets_manager_reads_with_inline_auth() {
    let fake = fake(1, 1).await;
    let v = FakeVault::start().await;
    v.mount("", "secrets/kv", Engine::KvV2);
    v.put("secrets/kv", "explicit/DEPLOY_KEY", json!({"value": DB_PASSWORD}));
    v.role("", "gitlab_rails_jwt", "project_42", JWT);
    let sb = Sandbox::new();
    let d = start(&fake, &sb);
    let id = fake.enqueue_job(
        JobSpec::new(
            "gsm",
            &["printf '%s\\n' \"$DEPLOY_KEY\" | rev", "echo \"key=$DEPLOY_KEY\""],
        )
        .variable("GIT_STRATEGY", "none")
        .payload_field(
            "secrets",
            json!({"DEPLOY_KEY": {"gitlab_secrets_manager": {
                    "server": {"url": v.url(), "inline_auth": {
                        "path": "auth/gitlab_rails_jwt/login", "jwt": JWT, "role": "project_42"}},
                    "engine": {"name": "kv-v2", "path": "secrets/kv"},
                    "path": "explicit/DEPLOY_KEY",
                    "field": "value"
                }, "file": false}}),
        ),
    );
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(
        trace.contains("Using \"gitlab_secrets_manager\" secret resolver..."),
        "{trace}"
    );
    assert!(
        trace.contains(&rev(DB_PASSWORD)) && trace.contains("key=[MASKED]"),
        "{trace}"
    );
    // One request: the read, authenticated inline; no login, no token.
    let reqs = v.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/v1/secrets/kv/data/explicit/DEPLOY_KEY");
    assert_eq!(
        reqs[0].headers["x-vault-inline-auth-path"],
        "auth/gitlab_rails_jwt/login"
    );
    assert!(!reqs[0].headers.contains_key("x-vault-token"), "{reqs:?}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_server_is_retried_per_secrets_retrieval_attempts() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb);
    let secrets = json!({"DB_PASSWORD": {
        "vault": vault_secret(&v.url(), "ops", "deploy", "kv-v2", "kv", "production/db", "password"),
        "file": false
    }});

    v.fail_next(1, 503);
    let retried = fake.enqueue_job(
        job(
            "retried",
            &["printf '%s\\n' \"$DB_PASSWORD\" | rev"],
            secrets.clone(),
        )
        .variable("SECRETS_RETRIEVAL_ATTEMPTS", "2")
        .variable("FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY", "false"),
    );
    let job1 = finished(&fake, retried, FINISH, &d).await;
    let trace = job1.trace_text();
    assert_eq!(job1.status, "success", "{trace}");
    assert!(
        trace.contains("Retrying... resolving secrets: secret \"DB_PASSWORD\": logging in to ")
            && trace.contains("api error: status code 503: Vault is sealed")
            && trace.contains(&rev(DB_PASSWORD)),
        "{trace}"
    );

    v.fail_next(1, 503);
    let once = fake.enqueue_job(job("once", &["echo script-ran"], secrets));
    let job2 = finished(&fake, once, FINISH, &d).await;
    let trace = job2.trace_text();
    assert_eq!(job2.status, "failed", "{trace}");
    // runner_external_dependency_failure, sent as runner_system_failure where GitLab does not list it.
    assert_eq!(
        job2.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(
        trace.contains("ERROR: Job failed: resolving secrets: secret \"DB_PASSWORD\"")
            && trace.contains("status code 503: Vault is sealed")
            && trace.contains("hint: the secrets server failed"),
        "{trace}"
    );
    assert!(!trace.contains("script-ran"), "{trace}");
    quit_ok(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_vault_is_verified_against_bao_cacert() {
    let fake = fake(1, 1).await;
    let pki = fake_gitlab::TestPki::generate().unwrap();
    let trusted = FakeVault::start_tls(&pki.server).await;
    trusted.mount("", "kv", Engine::KvV2);
    trusted.put("kv", "app", json!({"password": DB_PASSWORD}));
    trusted.role("", "jwt", "deploy", JWT);
    // Another server, whose certificate no CA in BAO_CACERT signed.
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    let stranger =
        fake_gitlab::TlsMaterial::self_signed_ca("stranger", &["127.0.0.1"], now - day, now + day).unwrap();
    let untrusted = FakeVault::start_tls(&stranger).await;

    let sb = Sandbox::new();
    let ca = sb.path("vault-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let token = fake.create_runner_token("secrets-tls");
    let text = global_toml(1, "") + &shell_runner_toml("secrets-tls", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn_with_env(&["run", "-c", &cfg], &[("BAO_CACERT", ca.to_str().unwrap())]);

    let secret = |url: &str| {
        json!({"DB_PASSWORD": {"vault": vault_secret(url, "", "deploy", "kv-v2", "kv", "app", "password"),
                               "file": false}})
    };
    let ok = fake.enqueue_job(job(
        "tls-ok",
        &["printf '%s\\n' \"$DB_PASSWORD\" | rev"],
        secret(&trusted.url()),
    ));
    let refused = fake.enqueue_job(job("tls-refused", &["echo script-ran"], secret(&untrusted.url())));

    let job1 = finished(&fake, ok, FINISH, &d).await;
    let trace = job1.trace_text();
    assert_eq!(job1.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains(&rev(DB_PASSWORD)), "{trace}");

    let job2 = finished(&fake, refused, FINISH, &d).await;
    let trace = job2.trace_text();
    assert_eq!(job2.status, "failed", "{trace}");
    assert!(
        trace.contains(&format!("request to {}/ failed", untrusted.url())) && trace.contains("certificate"),
        "{trace}"
    );
    assert!(!trace.contains("script-ran"), "{trace}");
    // The untrusted server never saw the login (and its JWT): the handshake failed first.
    assert!(untrusted.requests().is_empty());
    quit_ok(d).await;
}

/// gitlab-runner expands secret entries against the job's full variable list, expanded once: a non-raw variable
/// that names a predefined one (`$CI_JOB_ID`) reaches Vault with that value, not as the literal text.
#[tokio::test(flavor = "multi_thread")]
async fn secret_entries_expand_against_the_jobs_full_variable_list() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    let sb = Sandbox::new();
    let url = v.url();
    let id = fake.enqueue_job(
        job(
            "nested",
            &["printf '%s\\n' \"$PER_JOB\" | rev"],
            json!({"PER_JOB": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "$SECRET_PREFIX/db", "password"),
                               "file": false}}),
        )
        .variable("SECRET_PREFIX", "jobs/$CI_JOB_ID"),
    );
    // The daemon starts once the secret exists at the job's own path.
    v.put("kv", &format!("jobs/{id}/db"), json!({"password": DB_PASSWORD}));
    let d = start(&fake, &sb);
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{:?}", v.requests());
    assert!(trace.contains(&rev(DB_PASSWORD)), "{trace}");
    assert!(
        v.requests()
            .iter()
            .any(|r| r.path == format!("/v1/kv/data/jobs/{id}/db")),
        "{:?}",
        v.requests()
    );
    quit_ok(d).await;
}

/// A field Vault stores as JSON null is "not found", as upstream (`data == nil`), not the text `<nil>`.
#[tokio::test(flavor = "multi_thread")]
async fn a_null_field_is_not_found() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    v.put("kv", "nulls", json!({"gone": null, "nested": {"inner": null}}));
    let sb = Sandbox::new();
    let d = start(&fake, &sb);
    let url = v.url();
    let id = fake.enqueue_job(job(
        "null-field",
        &["echo script-ran"],
        json!({"GONE": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "nulls", "gone"), "file": false}}),
    ));
    let nested = fake.enqueue_job(job(
        "nested-null",
        &["printf '%s\\n' \"$NESTED\" | rev"],
        json!({"NESTED": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "nulls", "nested"), "file": false}}),
    ));
    let job1 = finished(&fake, id, FINISH, &d).await;
    let trace = job1.trace_text();
    assert_eq!(job1.status, "failed", "{trace}");
    assert!(
        trace.contains("resolving secrets: secret not found: GONE"),
        "{trace}"
    );
    assert!(!trace.contains("script-ran"), "{trace}");
    let job2 = finished(&fake, nested, FINISH, &d).await;
    let trace = job2.trace_text();
    assert_eq!(job2.status, "success", "{trace}");
    assert!(trace.contains(&rev("map[inner:<nil>]")), "{trace}");
    quit_ok(d).await;
}

/// The failure message also goes to the runner's own log, which has no masker: a masked value expanded into
/// an entry (here the ID token as the auth path) is masked there too.
#[tokio::test(flavor = "multi_thread")]
async fn failure_messages_reach_the_runner_log_masked() {
    let fake = fake(1, 1).await;
    let v = vault().await;
    let sb = Sandbox::new();
    let mut d = start(&fake, &sb);
    let mut secret = vault_secret(
        &v.url(),
        "ops",
        "deploy",
        "kv-v2",
        "kv",
        "production/db",
        "password",
    );
    secret["server"]["auth"]["path"] = json!("$VAULT_ID_TOKEN");
    let id = fake.enqueue_job(job(
        "token-in-path",
        &["echo script-ran"],
        json!({"DB_PASSWORD": {"vault": secret}}),
    ));
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "failed", "{trace}");
    assert!(trace.contains("at auth/[MASKED]/login"), "{trace}");
    // The runner's last words about the job are written after GitLab has the final state.
    let status = d.quit(Duration::from_secs(30)).await;
    let log = d.log();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("auth/[MASKED]/login"), "{log}");
    assert!(!log.contains(JWT), "the JWT leaked to the runner log:\n{log}");
}

/// `BAO_CAPATH` (a directory of CA files) is honoured as OpenBao's client honours it; `VAULT_SKIP_VERIFY` is not,
/// and the job log says so.
#[tokio::test(flavor = "multi_thread")]
async fn bao_capath_is_trusted_and_skip_verify_is_named_as_ignored() {
    let fake = fake(1, 1).await;
    let pki = fake_gitlab::TestPki::generate().unwrap();
    let v = FakeVault::start_tls(&pki.server).await;
    v.mount("", "kv", Engine::KvV2);
    v.put("kv", "app", json!({"password": DB_PASSWORD}));
    v.role("", "jwt", "deploy", JWT);
    let sb = Sandbox::new();
    let ca_dir = sb.path("vault-cas");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let token = fake.create_runner_token("secrets-capath");
    let text =
        global_toml(1, "") + &shell_runner_toml("secrets-capath", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    let d = sb.spawn_with_env(
        &["run", "-c", &cfg],
        &[
            ("BAO_CAPATH", ca_dir.to_str().unwrap()),
            ("VAULT_SKIP_VERIFY", "true"),
        ],
    );
    let id = fake.enqueue_job(job(
        "capath",
        &["printf '%s\\n' \"$DB_PASSWORD\" | rev"],
        json!({"DB_PASSWORD": {"vault": vault_secret(&v.url(), "", "deploy", "kv-v2", "kv", "app", "password"),
                               "file": false}}),
    ));
    let job = finished(&fake, id, FINISH, &d).await;
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}\n{}", d.log());
    assert!(trace.contains(&rev(DB_PASSWORD)), "{trace}");
    assert!(trace.contains("VAULT_SKIP_VERIFY is set and ignored"), "{trace}");
    quit_ok(d).await;
}

/// The Docker executor: the runner resolves the secrets, and the job container gets one as a masked variable
/// and one as a file variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn docker_jobs_get_masked_and_file_secrets() {
    use crate::support::docker::{DockerOpts, Env, IMAGE, docker_available};
    if !docker_available() {
        return;
    }
    let v = vault().await;
    let env = Env::start(DockerOpts::default()).await;
    let url = v.url();
    // Dashes between the characters: the value as the job saw it, which the masker does not match.
    let spaced = |s: &str| s.chars().map(|c| format!("{c}-")).collect::<String>();
    let id = env.fake.enqueue_job(
        job(
            "docker-secrets",
            &[
                "echo \"db=$DB_PASSWORD\"",
                "printf '%s\\n' \"$DB_PASSWORD\" | sed 's/./&-/g'",
                "test -f \"$TLS_KEY\" && echo tls-key-is-a-file",
                "head -n 2 \"$TLS_KEY\" | tail -n 1 | sed 's/./&-/g'",
            ],
            json!({
                "DB_PASSWORD": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "production/db", "password"),
                                "file": false},
                "TLS_KEY": {"vault": vault_secret(&url, "ops", "deploy", "kv-v2", "kv", "production/db", "tls_key")}
            }),
        )
        .image(fake_gitlab::ImageSpec::new(IMAGE)),
    );
    let job = env.succeeded(id).await;
    let trace = job.trace_text();
    for line in [
        "db=[MASKED]",
        &spaced(DB_PASSWORD),
        "tls-key-is-a-file",
        &spaced("MIIEvQIBADANBg"),
    ] {
        assert!(trace.contains(line), "{line:?} missing:\n{trace}");
    }
    for secret in [DB_PASSWORD, "MIIEvQIBADANBg", JWT] {
        assert!(!trace.contains(secret), "{secret} leaked:\n{trace}");
    }
}
