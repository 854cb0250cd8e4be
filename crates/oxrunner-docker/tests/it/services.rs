#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A service container on the per-job network, reachable from the job by its aliases.

use crate::support as common;

use std::collections::HashMap;

use bollard::query_parameters::ListNetworksOptions;
use oxrunner_core::{Executor, ExitStatus, ImageSpec};
use oxrunner_docker::DockerExecutor;
use oxrunner_docker::labels::LABEL_RUNNER;

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn the_job_reaches_a_service_by_alias_and_cleanup_removes_it_with_the_network() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let ctx = common::runner();
    let mut plan = common::plan(501);
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
    let mut exec = DockerExecutor::new(common::config(), ctx.clone());
    let trace = common::Trace::new();
    exec.prepare(&plan, &trace.writer).await.unwrap();
    // busybox exposes no port, so the readiness wait only warns; the job retries until the service listens. The
    // second name is the alias derived from the image name (`/` replaced by `-`).
    let script = "for i in $(seq 1 40); do wget -qO- http://web:8080/index.html && break; sleep 0.25; done; \
                  wget -qO- http://oxrunner-test-busybox:8080/index.html";
    let status = common::run(&mut exec, script, &trace).await;
    let log = trace.text();
    assert_eq!(status, ExitStatus::Code(0), "{log}");
    assert_eq!(log.matches("service-ok").count(), 2, "{log}");
    let (containers, _) = common::objects_of(&docker, &ctx.short_token).await;
    assert_eq!(containers.len(), 2);

    exec.cleanup().await;
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{LABEL_RUNNER}={}", ctx.short_token)],
            )])),
        }))
        .await
        .unwrap();
    assert!(networks.is_empty(), "{networks:?}");
}
