#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Services: the wait for their ports before the job, the warning when one does not come up, their environment,
//! and the runner's container joining the job network for the probe.

use crate::support as common;

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, RemoveContainerOptions, RemoveImageOptions,
};
use oxrunner_config::{DockerConfig, DockerService};
use oxrunner_core::{Executor, ExitStatus, ImageSpec, Variable, Variables};
use oxrunner_docker::DockerExecutor;
use oxrunner_docker::labels::LABEL_RUNNER;
use oxrunner_docker::route;

fn vars(pairs: &[(&str, &str)]) -> Variables {
    let mut v = Variables::new();
    for (k, val) in pairs {
        v.push(Variable::new(*k, *val));
    }
    v
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// A local image like busybox but with `EXPOSE 8080`, so the wait takes the port from the image.
async fn image_exposing_8080(docker: &Docker) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let container = docker
        .create_container(
            None::<CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(common::IMAGE.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .commit_container(
            CommitContainerOptions {
                container: Some(container.id.clone()),
                repo: Some("oxrunner-test/exposed".into()),
                tag: Some(tag.clone()),
                changes: Some("EXPOSE 8080".into()),
                ..Default::default()
            },
            bollard::models::ContainerConfig::default(),
        )
        .await
        .unwrap();
    docker
        .remove_container(&container.id, None::<RemoveContainerOptions>)
        .await
        .unwrap();
    format!("oxrunner-test/exposed:{tag}")
}

/// A prepared executor, its trace, and its runner token (the label of all its objects).
async fn prepare(
    config: DockerConfig,
    plan: &oxrunner_core::JobPlan,
) -> (DockerExecutor, common::Trace, String) {
    let ctx = common::runner();
    let token = ctx.short_token.clone();
    let mut exec = DockerExecutor::new(config, ctx);
    let trace = common::Trace::new();
    exec.prepare(plan, &trace.writer).await.unwrap();
    (exec, trace, token)
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn the_job_starts_once_the_service_listens_on_its_exposed_port() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let image = image_exposing_8080(&docker).await;
    let mut plan = common::plan(601);
    plan.services = vec![ImageSpec {
        name: image.clone(),
        aliases: vec!["web".into()],
        // Slow to start: without the wait, the job's single request below would be refused.
        command: sh("sleep 2; echo service-ready > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"),
        ..ImageSpec::default()
    }];
    let (mut exec, trace, _) = prepare(common::config(), &plan).await;
    let status = common::run(&mut exec, "wget -qO- http://web:8080/index.html", &trace).await;
    exec.cleanup().await;
    docker
        .remove_image(&image, None::<RemoveImageOptions>, None)
        .await
        .unwrap();
    let log = trace.text();
    assert!(
        log.contains("Waiting for services to be up and running (timeout 30 seconds)..."),
        "{log}"
    );
    assert!(!log.contains("probably didn't start properly"), "{log}");
    assert_eq!(status, ExitStatus::Code(0), "{log}");
    assert!(log.contains("service-ready"), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_service_that_never_listens_gets_a_warning_with_its_logs_and_the_job_goes_on() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let mut plan = common::plan(602);
    plan.services = vec![ImageSpec {
        name: common::IMAGE.into(),
        aliases: vec!["quiet".into()],
        command: sh("echo service-says-hello; exec sleep 60"),
        variables: vars(&[("HEALTHCHECK_TCP_PORT", "9999")]),
        ..ImageSpec::default()
    }];
    let config = DockerConfig {
        wait_for_services_timeout: Some(2),
        ..common::config()
    };
    let (mut exec, trace, runner) = prepare(config, &plan).await;
    let status = common::run(&mut exec, "echo job-ran", &trace).await;
    exec.cleanup().await;
    let log = trace.text();
    assert!(log.contains("(timeout 2 seconds)"), "{log}");
    assert!(log.contains("probably didn't start properly."), "{log}");
    assert!(log.contains("-oxrunner-test__busybox-0 probably"), "{log}");
    assert!(log.contains("(image oxrunner-test/busybox:latest)"), "{log}");
    assert!(log.contains("port 9999 within 2 s"), "{log}");
    assert!(log.contains("Service container logs:"), "{log}");
    assert!(log.contains("service-says-hello"), "{log}");
    assert_eq!(status, ExitStatus::Code(0), "{log}");
    assert!(log.contains("job-ran"), "{log}");
    assert_eq!(common::objects_of(&docker, &runner).await, (vec![], vec![]));
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_service_that_exits_early_shows_its_exit_code_and_logs() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let mut plan = common::plan(603);
    plan.services = vec![ImageSpec {
        name: common::IMAGE.into(),
        command: sh("echo boom-before-exit >&2; exit 3"),
        variables: vars(&[("HEALTHCHECK_TCP_PORT", "80")]),
        ..ImageSpec::default()
    }];
    // The default 30 s timeout: an exited service must end the wait at once, not at the timeout.
    let (mut exec, trace, _) = prepare(common::config(), &plan).await;
    let status = common::run(&mut exec, "true", &trace).await;
    exec.cleanup().await;
    let log = trace.text();
    assert!(
        log.contains("exited with code 3 before accepting connections"),
        "{log}"
    );
    assert!(log.contains("boom-before-exit"), "{log}");
    assert_eq!(status, ExitStatus::Code(0), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn services_get_the_job_variables_their_own_and_config_services_start_too() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let serve_env = |port: &str| {
        sh(&format!(
            "mkdir -p /w && env > /w/env && exec httpd -f -p {port} -h /w"
        ))
    };
    let config = DockerConfig {
        services: vec![DockerService {
            name: common::IMAGE.into(),
            alias: Some("cfgsvc".into()),
            command: serve_env("8080"),
            environment: vec![
                "FROM_CFG_SERVICE=yes-$JOB_VAR".into(),
                "HEALTHCHECK_TCP_PORT=8080".into(),
            ],
            ..DockerService::default()
        }],
        ..common::config()
    };
    let mut plan = common::plan(604);
    plan.variables.push(Variable::new("JOB_VAR", "job-value"));
    plan.variables
        .push(Variable::masked("SECRET_TOKEN", "do-not-leak-this"));
    plan.services = vec![ImageSpec {
        name: common::IMAGE.into(),
        aliases: vec!["jobsvc".into()],
        command: serve_env("8081"),
        variables: vars(&[("SERVICE_VAR", "${JOB_VAR}-x"), ("HEALTHCHECK_TCP_PORT", "8081")]),
        ..ImageSpec::default()
    }];
    let (mut exec, trace, _) = prepare(config, &plan).await;
    let status = common::run(
        &mut exec,
        "wget -qO- http://jobsvc:8081/env; wget -qO- http://cfgsvc:8080/env",
        &trace,
    )
    .await;
    exec.cleanup().await;
    let log = trace.text();
    assert_eq!(status, ExitStatus::Code(0), "{log}");
    assert!(!log.contains("probably didn't start properly"), "{log}");
    assert_eq!(log.matches("JOB_VAR=job-value").count(), 2, "{log}");
    assert_eq!(log.matches("FROM_CONFIG=config-value").count(), 2, "{log}");
    assert!(log.contains("SERVICE_VAR=job-value-x"), "{log}");
    assert!(log.contains("FROM_CFG_SERVICE=yes-job-value"), "{log}");
    assert!(!log.contains("do-not-leak-this"), "{log}");
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_runner_container_joins_the_job_network_for_the_probe_and_leaves_it() {
    let Some(docker) = common::engine().await else {
        return;
    };
    // The test process is not a container of this engine (even where a stray /.dockerenv exists).
    assert_eq!(route::own_container(&docker).await, None);

    let runner = common::runner().short_token;
    let labels = HashMap::from([(LABEL_RUNNER.to_owned(), runner.clone())]);
    let network = format!("{runner}-net");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    // A stand-in for the runner's own container (the seed runs oxrunner in one with the socket mounted).
    let own = docker
        .create_container(
            None::<CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(common::IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "30".into()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    docker.start_container(&own, None).await.unwrap();
    let networks_of = |id: String| {
        let docker = docker.clone();
        async move {
            let info = docker.inspect_container(&id, None).await.unwrap();
            let mut names: Vec<String> = info
                .network_settings
                .unwrap()
                .networks
                .unwrap_or_default()
                .into_keys()
                .collect();
            names.sort();
            names
        }
    };

    assert!(route::join(&docker, &own, &network).await.unwrap());
    assert!(networks_of(own.clone()).await.contains(&network));
    // Already there: nothing to do, nothing to undo.
    assert!(!route::join(&docker, &own, &network).await.unwrap());
    route::leave(&docker, &network, &own).await;
    assert!(!networks_of(own.clone()).await.contains(&network));

    docker
        .remove_container(
            &own,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    docker.remove_network(&network).await.unwrap();
}
