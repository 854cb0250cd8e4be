//! Suspendable environments (`FF_SUSPENDABLE_ENVIRONMENTS`) on a real engine: a suspended job keeps its stopped
//! containers, build volume and network, the daemon's sweep of leftovers keeps them, and a job with the key
//! resumes them with their files; a key cannot resume a container of another project, nor one already resumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support as common;

use std::collections::HashMap;
use std::collections::HashSet;

use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
};
use oxrunner_core::{Executor, ExitStatus, ImageSpec, JobPlan, RuntimeEnvironmentKey, Variable};
use oxrunner_docker::labels::LABEL_RUNNER;
use oxrunner_docker::{DockerExecutor, remove_leftovers};

const SYSTEM_ID: &str = "s_suspendtest01";

/// Removes every container, volume and network labelled with the test's runner when the test ends, passed or
/// not: a suspended environment is kept by design, so a failed assertion would otherwise leave it behind.
struct Purge(String);

impl Drop for Purge {
    fn drop(&mut self) {
        let runner = self.0.clone();
        // Drop cannot await, and the test's runtime may be unwinding: purge on a runtime of its own.
        let purge = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(purge(&runner));
        });
        let _ = purge.join();
    }
}

async fn purge(runner: &str) {
    let Ok(docker) = bollard::Docker::connect_with_local_defaults() else {
        return;
    };
    let filters = || {
        Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_RUNNER}={runner}")],
        )]))
    };
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: filters(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for id in containers.into_iter().filter_map(|c| c.id) {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&id, Some(opts)).await;
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions { filters: filters() }))
        .await
        .ok()
        .and_then(|v| v.volumes)
        .unwrap_or_default();
    for v in volumes {
        let _ = docker
            .remove_volume(&v.name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await;
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: filters() }))
        .await
        .unwrap_or_default();
    for id in networks.into_iter().filter_map(|n| n.id) {
        let _ = docker.remove_network(&id).await;
    }
}

/// The ids and running states of one job's containers of `kind`.
async fn containers_of(
    docker: &bollard::Docker,
    runner: &str,
    job: i64,
    kind: &str,
) -> Vec<(String, String)> {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("{LABEL_RUNNER}={runner}"),
                    format!("com.oxrunner.job={job}"),
                    format!("com.oxrunner.type={kind}"),
                ],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.id.unwrap_or_default(),
                c.state.map(|s| s.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

fn with_service(plan: &mut JobPlan) {
    plan.services = vec![ImageSpec {
        name: common::IMAGE.into(),
        aliases: vec!["web".into()],
        command: vec!["sh".into(), "-c".into(), "exec sleep 300".into()],
        ..ImageSpec::default()
    }];
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_key_cannot_adopt_another_jobs_service_and_a_refused_resume_stays_suspended() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let mut ctx = common::runner();
    ctx.runner_id = 3;
    ctx.system_id = SYSTEM_ID.into();
    let _purge = Purge(ctx.short_token.clone());
    let trace = common::Trace::new();

    let mut plan = suspendable(611);
    plan.suspend.on_success = true;
    with_service(&mut plan);
    let mut first = DockerExecutor::new(common::config(), ctx.clone());
    first.prepare(&plan, &trace.writer).await.unwrap();
    let fields = first.suspend().await.unwrap();
    first.cleanup().await;
    first.finish_cleanup().await;
    let key = RuntimeEnvironmentKey::new(3, SYSTEM_ID, fields.clone());

    // Another job of the same runner and project runs with its own service.
    let mut other_plan = suspendable(612);
    with_service(&mut other_plan);
    let mut other = DockerExecutor::new(common::config(), ctx.clone());
    other.prepare(&other_plan, &trace.writer).await.unwrap();
    let others = containers_of(&docker, &ctx.short_token, 612, "service").await;
    assert_eq!(others.len(), 1, "{others:?}");
    let mut forged = fields.clone();
    forged.retain(|(k, _)| k != "service-ids");
    forged.push(("service-ids".into(), others[0].0.clone()));
    let mut thief_plan = suspendable(613);
    thief_plan.suspend.runtime_environment_key = RuntimeEnvironmentKey::new(3, SYSTEM_ID, forged).to_string();
    let mut thief = DockerExecutor::new(common::config(), ctx.clone());
    let err = thief.prepare(&thief_plan, &trace.writer).await.unwrap_err();
    assert!(
        err.to_string().contains("not a service of the suspended job"),
        "{err}"
    );
    thief.cleanup().await;
    thief.finish_cleanup().await;
    assert_eq!(
        containers_of(&docker, &ctx.short_token, 612, "service").await,
        others
    );
    other.cleanup().await;
    other.finish_cleanup().await;

    // A resume refused for the job's user (a check that used to come after the starts) starts nothing and
    // leaves the environment suspended for a later try.
    let mut config = common::config();
    config.allowed_users = vec!["root".into()];
    let mut bad_user = suspendable(614);
    bad_user.image = Some(ImageSpec {
        name: common::IMAGE.into(),
        user: Some("nobody".into()),
        ..ImageSpec::default()
    });
    bad_user.suspend.runtime_environment_key = key.to_string();
    let mut refused = DockerExecutor::new(config, ctx.clone());
    let err = refused.prepare(&bad_user, &trace.writer).await.unwrap_err();
    assert!(err.to_string().contains("allowed_users"), "{err}");
    refused.cleanup().await;
    refused.finish_cleanup().await;
    for kind in ["build", "service"] {
        let states = containers_of(&docker, &ctx.short_token, 611, kind).await;
        assert!(
            !states.is_empty() && states.iter().all(|(_, s)| s == "exited"),
            "{kind}: {states:?}"
        );
    }

    let mut again = suspendable(615);
    again.suspend.runtime_environment_key = key.to_string();
    let mut resumed = DockerExecutor::new(common::config(), ctx.clone());
    resumed.prepare(&again, &trace.writer).await.unwrap();
    assert_eq!(
        common::run(&mut resumed, "true", &trace).await,
        ExitStatus::Code(0),
        "{}",
        trace.text()
    );
    resumed.cleanup().await;
    resumed.finish_cleanup().await;
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
}

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
    let _purge = Purge(ctx.short_token.clone());
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
                  for i in $(seq 1 240); do wget -qO- http://web:8080/index.html && break; sleep 0.25; done";
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

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_suspended_environment_outlives_a_token_rotation_and_expires_in_the_sweep() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let mut ctx = common::runner();
    ctx.runner_id = 4;
    ctx.system_id = SYSTEM_ID.into();
    let _purge = Purge(ctx.short_token.clone());
    let trace = common::Trace::new();
    let suspend_one = |job: i64, ctx: oxrunner_core::RunnerContext| {
        let trace = &trace;
        async move {
            let mut plan = suspendable(job);
            plan.suspend.on_success = true;
            let mut exec = DockerExecutor::new(common::config(), ctx);
            exec.prepare(&plan, &trace.writer).await.unwrap();
            let fields = exec.suspend().await.unwrap();
            exec.cleanup().await;
            exec.finish_cleanup().await;
            RuntimeEnvironmentKey::new(4, SYSTEM_ID, fields).to_string()
        }
    };
    let key = suspend_one(621, ctx.clone()).await;

    // The token was reset: same runner entry (id) on the same machine, a new short token.
    let mut rotated = ctx.clone();
    rotated.short_token = format!("{}x", &ctx.short_token[..7]);
    let _purge_rotated = Purge(rotated.short_token.clone());
    let mut plan = suspendable(622);
    plan.suspend.runtime_environment_key = key;
    let mut resumed = DockerExecutor::new(common::config(), rotated.clone());
    resumed.prepare(&plan, &trace.writer).await.unwrap();
    assert_eq!(
        common::run(&mut resumed, "true", &trace).await,
        ExitStatus::Code(0),
        "{}",
        trace.text()
    );
    resumed.cleanup().await;
    resumed.finish_cleanup().await;
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![]),
        "the resumed job's end removes the environment made under the old token"
    );

    // The sweep keeps a suspended environment younger than the limit and removes an older one.
    suspend_one(623, ctx.clone()).await;
    let kept = oxrunner_docker::remove_leftovers(&docker, &ctx.short_token, &HashSet::new())
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    let removed = oxrunner_docker::remove_leftovers_keeping(
        &docker,
        &ctx.short_token,
        &HashSet::new(),
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(
        (removed.containers.len(), removed.volumes.len()),
        (1, 1),
        "{removed:?}"
    );
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_resume_cancelled_after_the_claim_is_given_back_by_cleanup() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let mut ctx = common::runner();
    ctx.runner_id = 5;
    ctx.system_id = SYSTEM_ID.into();
    let _purge = Purge(ctx.short_token.clone());
    let trace = common::Trace::new();
    let mut plan = suspendable(631);
    plan.suspend.on_success = true;
    with_service(&mut plan);
    // Nothing listens on the probed port: a resume waits for the service, which is where it is cancelled.
    plan.services[0].variables = vec![Variable::new("HEALTHCHECK_TCP_PORT", "9")].into();
    let mut no_wait = common::config();
    no_wait.wait_for_services_timeout = Some(-1);
    let mut first = DockerExecutor::new(no_wait, ctx.clone());
    first.prepare(&plan, &trace.writer).await.unwrap();
    let key = RuntimeEnvironmentKey::new(5, SYSTEM_ID, first.suspend().await.unwrap()).to_string();
    first.cleanup().await;
    first.finish_cleanup().await;

    let mut resume = suspendable(632);
    resume.suspend.runtime_environment_key = key;
    let mut waiting = common::config();
    waiting.wait_for_services_timeout = Some(3600);
    let mut exec = DockerExecutor::new(waiting, ctx.clone());
    let claimed_and_started = async {
        loop {
            let build = containers_of(&docker, &ctx.short_token, 631, "build").await;
            let service = containers_of(&docker, &ctx.short_token, 631, "service").await;
            let name = docker
                .inspect_container(&build[0].0, None)
                .await
                .unwrap()
                .name
                .unwrap_or_default();
            if !name.ends_with("-suspended") && service.iter().all(|(_, s)| s == "running") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = exec.prepare(&resume, &trace.writer) => panic!("the resume did not wait for its service: {r:?}"),
        r = tokio::time::timeout(std::time::Duration::from_secs(120), claimed_and_started) => {
            r.expect("the resume claimed the container and started its service");
        }
    }
    // The driver drops a cancelled prepare and calls cleanup.
    exec.cleanup().await;
    exec.finish_cleanup().await;
    let build = containers_of(&docker, &ctx.short_token, 631, "build").await;
    let name = docker
        .inspect_container(&build[0].0, None)
        .await
        .unwrap()
        .name
        .unwrap_or_default();
    assert!(name.ends_with("-suspended"), "{name}");
    for kind in ["build", "service"] {
        let states = containers_of(&docker, &ctx.short_token, 631, kind).await;
        assert!(states.iter().all(|(_, s)| s == "exited"), "{kind}: {states:?}");
    }
}
