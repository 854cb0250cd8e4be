//! Suspendable environments (`FF_SUSPENDABLE_ENVIRONMENTS`) on a real engine: a suspended job keeps its stopped
//! containers, build volume and network, the daemon's sweep of leftovers keeps them, and a job with the key
//! resumes them with their files; a key cannot resume a container of another project, nor one already resumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::collections::HashMap;
use std::collections::HashSet;

use bollard::query_parameters::ListNetworksOptions;
use oxrunner_core::{Executor, ExitStatus, ImageSpec, JobPlan, RuntimeEnvironmentKey, Variable};
use oxrunner_docker::labels::LABEL_RUNNER;
use oxrunner_docker::{DockerExecutor, remove_leftovers};

const SYSTEM_ID: &str = "s_suspendtest01";

fn suspendable(job_id: i64) -> JobPlan {
    let mut plan = common::plan(job_id);
    plan.variables
        .push(Variable::new("FF_SUSPENDABLE_ENVIRONMENTS", "true"));
    plan
}

async fn networks_of(docker: &bollard::Docker, runner: &str) -> usize {
    docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{LABEL_RUNNER}={runner}")],
            )])),
        }))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_suspended_environment_survives_the_sweep_and_resumes_with_its_files_and_services() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let mut ctx = common::runner();
    ctx.runner_id = 3;
    ctx.system_id = SYSTEM_ID.into();
    let trace = common::Trace::new();

    let mut plan = suspendable(601);
    plan.suspend.on_success = true;
    plan.services = vec![ImageSpec {
        name: common::IMAGE.into(),
        aliases: vec!["web".into()],
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo service-ok > /tmp/index.html && exec httpd -f -p 8080 -h /tmp".into(),
        ],
        ..ImageSpec::default()
    }];
    let mut first = DockerExecutor::new(common::config(), ctx.clone());
    first.prepare(&plan, &trace.writer).await.unwrap();
    let script = "mkdir -p /opt && echo outside-the-build-dir > /opt/marker && mkdir -p /builds/group/project && \
                  echo in-the-volume > /builds/group/project/kept.txt";
    assert_eq!(
        common::run(&mut first, script, &trace).await,
        ExitStatus::Code(0),
        "{}",
        trace.text()
    );
    let fields = first.suspend().await.unwrap();
    first.cleanup().await;
    first.finish_cleanup().await;
    let key = RuntimeEnvironmentKey::new(3, SYSTEM_ID, fields).to_string();

    let (containers, volumes) = common::objects_of(&docker, &ctx.short_token).await;
    assert_eq!(
        (containers.len(), volumes.len()),
        (2, 1),
        "suspend keeps job, service and volume"
    );
    assert_eq!(networks_of(&docker, &ctx.short_token).await, 1);
    // At daemon start nothing runs, yet a suspended environment is not a leftover.
    let removed = remove_leftovers(&docker, &ctx.short_token, &HashSet::new())
        .await
        .unwrap();
    assert!(removed.is_empty(), "{removed:?}");

    // The key names a job container of project 42: a job of another project cannot take it.
    let mut foreign = suspendable(602);
    foreign.project_id = 43;
    foreign.suspend.runtime_environment_key = key.clone();
    let mut intruder = DockerExecutor::new(common::config(), ctx.clone());
    let err = intruder.prepare(&foreign, &trace.writer).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("not a job container of this runner and project"),
        "{err}"
    );
    intruder.cleanup().await;

    let mut resumed_plan = suspendable(603);
    resumed_plan.suspend.runtime_environment_key = key.clone();
    let mut second = DockerExecutor::new(common::config(), ctx.clone());
    second.prepare(&resumed_plan, &trace.writer).await.unwrap();
    assert!(
        trace.text().contains("Resuming Docker executor..."),
        "{}",
        trace.text()
    );
    let script = "cat /opt/marker /builds/group/project/kept.txt; \
                  for i in $(seq 1 40); do wget -qO- http://web:8080/index.html && break; sleep 0.25; done";
    assert_eq!(
        common::run(&mut second, script, &trace).await,
        ExitStatus::Code(0),
        "{}",
        trace.text()
    );
    let log = trace.text();
    assert!(log.contains("outside-the-build-dir\nin-the-volume\n"), "{log}");
    assert!(log.contains("service-ok"), "{log}");

    // Resumed once, the environment is in use: the same key cannot resume it again.
    let mut twice = DockerExecutor::new(common::config(), ctx.clone());
    let err = twice.prepare(&resumed_plan, &trace.writer).await.unwrap_err();
    assert!(err.to_string().contains("is not suspended"), "{err}");
    twice.cleanup().await;

    // Not suspended again: the resumed job's end removes everything.
    second.cleanup().await;
    second.finish_cleanup().await;
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
    assert_eq!(networks_of(&docker, &ctx.short_token).await, 0);
}
