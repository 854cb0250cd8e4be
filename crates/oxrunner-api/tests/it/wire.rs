use oxrunner_api::{FeaturesInfo, JobResponse, RunnerInfo, UpdateJobRequest, Variable};

const FIXTURE: &str = include_str!("../fixtures/job-response.network-gitlab_test.json");

#[test]
fn upstream_fixture_deserialises_completely() {
    let job: JobResponse = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(job.id, 10);
    assert_eq!(job.token, "job-token");
    assert!(!job.allow_git_fetch);
    assert_eq!(job.job_info.name, "test-job");
    assert_eq!(job.job_info.stage, "test");
    assert_eq!(job.job_info.project_id, 123);
    assert_eq!(job.job_info.project_name, "test-project");
    assert_eq!(
        job.git_info.repo_url,
        "https://gitlab-ci-token:testTokenHere1234@gitlab.example.com/test/test-project.git"
    );
    assert_eq!(job.git_info.r#ref, "main");
    assert_eq!(job.git_info.sha, "abcdef123456");
    assert_eq!(job.git_info.before_sha, "654321fedcba");
    assert_eq!(job.git_info.ref_type, "branch");
    assert_eq!(job.runner_info.timeout, 3600);
    assert_eq!(job.variables.len(), 1);
    let v = &job.variables[0];
    assert_eq!((v.key.as_str(), v.value.as_str()), ("CI_REF_NAME", "main"));
    assert!(v.public && v.file && v.raw && !v.masked);
    assert_eq!(job.steps.len(), 2);
    assert_eq!(job.steps[0].name, "script");
    assert_eq!(job.steps[0].script, vec!["date", "ls -ls"]);
    assert_eq!(job.steps[0].timeout, 3600);
    assert_eq!(job.steps[0].when, "on_success");
    assert!(!job.steps[0].allow_failure);
    assert_eq!(job.steps[1].name, "after_script");
    assert!(job.steps[1].allow_failure);
    assert_eq!(job.image.name, "ruby:3.3");
    assert_eq!(job.image.entrypoint, vec!["/bin/sh"]);
    assert_eq!(job.image.executor_opts.docker.platform, "arm64/v8");
    assert!(job.image.executor_opts.other.is_empty());
    assert_eq!(job.services.len(), 2);
    assert_eq!(job.services[0].name, "postgresql:9.5");
    assert_eq!(job.services[0].alias, "db-pg");
    assert_eq!(job.services[0].command, vec!["sleep", "30"]);
    assert_eq!(job.services[0].executor_opts.docker.platform, "amd64/linux");
    assert_eq!(job.services[1].alias, "db-mysql");
    assert_eq!(job.services[1].executor_opts.docker.platform, "arm");
    assert_eq!(job.artifacts.len(), 1);
    assert_eq!(job.artifacts[0].name, "artifact.zip");
    assert_eq!(job.artifacts[0].paths, vec!["out/*"]);
    assert_eq!(job.artifacts[0].when, "always");
    assert_eq!(job.artifacts[0].expire_in, "7d");
    assert_eq!(job.cache[0].key, "$CI_COMMIT_SHA");
    assert_eq!(job.cache[0].paths, vec!["vendor/*"]);
    assert_eq!(job.cache[0].policy, "push");
    assert_eq!(job.credentials[0].r#type, "Registry");
    assert_eq!(job.credentials[0].url, "http://registry.gitlab.example.com/");
    assert_eq!(job.credentials[0].username, "gitlab-ci-token");
    assert_eq!(job.credentials[0].password, "job-token");
    let dep = &job.dependencies[0];
    assert_eq!(
        (dep.id, dep.name.as_str(), dep.token.as_str()),
        (9, "other-job", "other-job-token")
    );
    let file = dep.artifacts_file.as_ref().unwrap();
    assert_eq!((file.filename.as_str(), file.size), ("binaries.zip", 13_631_488));
    assert!(job.secrets.is_empty());
    assert!(job.hooks.is_empty());
}

#[test]
fn debug_output_hides_every_secret() {
    let mut job: JobResponse = serde_json::from_str(FIXTURE).unwrap();
    job.variables.push(Variable {
        key: "SECRET".into(),
        value: "hunter2-value".into(),
        masked: true,
        ..Default::default()
    });
    let dbg = format!("{job:?}");
    for secret in [
        "testTokenHere1234",
        "job-token",
        "other-job-token",
        "hunter2-value",
    ] {
        assert!(!dbg.contains(secret), "{secret} leaked: {dbg}");
    }
    // Non-secret values stay visible, so the output is still useful.
    assert!(dbg.contains("CI_REF_NAME") && dbg.contains("\"main\""), "{dbg}");
}

#[test]
fn unknown_fields_and_nulls_are_tolerated() {
    let mut v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    v["brand_new_field"] = serde_json::json!({"x": [1, 2]});
    v["image"] = serde_json::Value::Null;
    v["services"] = serde_json::Value::Null;
    v["job_info"]["project_jobs_running_on_instance_runners_count"] = serde_json::json!(5);
    v["git_info"]["protected"] = serde_json::Value::Null;
    v["image_executor_opts_future"] = serde_json::json!(true);
    v["features"] =
        serde_json::json!({"trace_sections": true, "failure_reasons": ["script_failure"], "new": 1});
    v["secrets"] = serde_json::json!({"DB": {"vault": {"path": "x", "server": {"auth": {"data": {"jwt": "eyJ.jwt.sig"}}}}}});
    let job: JobResponse = serde_json::from_value(v).unwrap();
    assert_eq!(job.image.name, "");
    assert!(job.services.is_empty());
    assert_eq!(job.job_info.project_jobs_running_on_instance_runners_count, "5");
    assert_eq!(job.git_info.protected, None);
    assert!(job.features.trace_sections);
    assert_eq!(job.features.failure_reasons, vec!["script_failure"]);
    assert!(job.secrets.get("DB").is_some());
    // The secret's location may show; its JWT never does.
    assert!(!format!("{job:?}").contains("eyJ.jwt.sig"));

    let minimal: JobResponse = serde_json::from_str(r#"{"id": 1}"#).unwrap();
    assert_eq!(minimal.id, 1);
    assert!(minimal.steps.is_empty());
}

#[test]
fn unknown_executor_opts_are_kept_for_rejection() {
    let job: JobResponse = serde_json::from_str(
        r#"{"id":1,"image":{"name":"a","executor_opts":{"docker":{"platform":"x","privileged":true},"podman":{}}}}"#,
    )
    .unwrap();
    assert!(job.image.executor_opts.docker.other.contains_key("privileged"));
    assert!(job.image.executor_opts.other.contains_key("podman"));
}

const FEATURE_KEYS: &[&str] = &[
    "variables",
    "image",
    "services",
    "artifacts",
    "cache",
    "fallback_cache_keys",
    "shared",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "session",
    "terminal",
    "refspecs",
    "masking",
    "proxy",
    "raw_variables",
    "artifacts_exclude",
    "multi_build_steps",
    "trace_reset",
    "trace_checksum",
    "trace_size",
    "vault_secrets",
    "cancelable",
    "return_exit_code",
    "service_variables",
    "service_multiple_aliases",
    "image_executor_opts",
    "service_executor_opts",
    "cancel_gracefully",
    "native_steps_integration",
    "two_phase_job_commit",
    "job_inputs",
];

#[test]
fn runner_info_sends_every_feature_key_as_bool() {
    let info = RunnerInfo::oxrunner("shell", "bash");
    let v = serde_json::to_value(&info).unwrap();
    assert_eq!(v["name"], "oxrunner");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["executor"], "shell");
    assert_eq!(v["shell"], "bash");
    assert_eq!(v["config"]["gpus"], "");
    assert!(v.get("labels").is_none(), "empty labels are omitted");
    let features = v["features"].as_object().unwrap();
    assert_eq!(features.len(), FEATURE_KEYS.len(), "{features:?}");
    for key in FEATURE_KEYS {
        assert!(
            features.get(*key).is_some_and(serde_json::Value::is_boolean),
            "{key}"
        );
    }
    assert_eq!(v["features"]["trace_checksum"], true);
    assert_eq!(v["features"]["image"], false);
    let back: FeaturesInfo = serde_json::from_value(v["features"].clone()).unwrap();
    assert_eq!(back, info.features);
}

#[test]
fn update_request_omits_zero_exit_code() {
    let mut req = UpdateJobRequest {
        token: "t".into(),
        state: "failed".into(),
        failure_reason: Some("script_failure".into()),
        exit_code: Some(0),
        ..Default::default()
    };
    let v = serde_json::to_value(&req).unwrap();
    assert!(v.get("exit_code").is_none());
    assert!(v.get("output").is_none());
    assert_eq!(v["failure_reason"], "script_failure");
    req.exit_code = Some(42);
    assert_eq!(serde_json::to_value(&req).unwrap()["exit_code"], 42);
    assert!(!format!("{req:?}").contains("\"t\""));
}
