//! The `info` block oxrunner sends with register, verify and job requests: who we are and what we implement.
//! GitLab uses the features to decide what it may send (runner-api.md §1.7), so advertise only what works.

use oxrunner_api::{FeaturesInfo, RunnerInfo};

use crate::version;

pub fn runner_info(executor: &str, shell: Option<&str>) -> RunnerInfo {
    let docker = executor == "docker";
    let base = FeaturesInfo::client_defaults();
    let features = FeaturesInfo {
        variables: true,
        image: docker,
        services: docker,
        artifacts: true,
        cache: true,
        fallback_cache_keys: true,
        shared: !docker,
        upload_multiple_artifacts: true,
        upload_raw_artifacts: true,
        session: false,
        terminal: false,
        refspecs: true,
        masking: true,
        proxy: false,
        raw_variables: true,
        artifacts_exclude: true,
        multi_build_steps: true,
        vault_secrets: false,
        return_exit_code: true,
        service_variables: docker,
        service_multiple_aliases: docker,
        image_executor_opts: docker,
        service_executor_opts: docker,
        native_steps_integration: false,
        job_inputs: false,
        ..base
    };
    let mut info = RunnerInfo::oxrunner(executor, shell.unwrap_or("bash"));
    info.version = version::VERSION.to_string();
    info.revision = version::REVISION.to_string();
    info.features = features;
    info
}
