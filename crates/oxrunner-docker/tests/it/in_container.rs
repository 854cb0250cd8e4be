#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The readiness probe from a runner that itself runs in a container with only the Docker socket mounted (the
//! seed's setup). The engine drops traffic between bridge networks, so from the default bridge a service on the
//! per-job network is unreachable unless the runner's container joins that network.
//!
//! The test re-runs this very test binary inside a busybox container (the host's C library and loader mounted
//! read-only, plus the socket); the inner run, told apart by an environment variable, starts a slow service on
//! a fresh network and waits for it: first without joining (the fallback that reads the service's socket table),
//! then by joining, then with [`health::wait_for_services`] as the executor calls it.

use crate::support as common;

use std::path::Path;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{LogsOptions, RemoveContainerOptions, WaitContainerOptions};
use futures::StreamExt;
use oxrunner_config::DockerConfig;
use oxrunner_docker::health::{self, StartedService};
use oxrunner_docker::labels::job_labels;
use oxrunner_docker::services::{self, ServiceSpec};
use oxrunner_docker::{cleanup, hostcfg, route};

const TEST: &str = "a_runner_in_a_container_reaches_a_service_by_joining_the_job_network";

/// A test's name as libtest filters it: the module path inside the test program (without the program's own name),
/// then the function; the test re-runs its own program with `--exact` on it.
fn test_name(function: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{function}"),
        None => function.to_string(),
    }
}
const INNER: &str = "OXRUNNER_TEST_INNER_RUNNER";

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_runner_in_a_container_reaches_a_service_by_joining_the_job_network() {
    if let Ok(runner) = std::env::var(INNER) {
        inner(&runner).await;
        return;
    }
    let Some(docker) = common::engine().await else {
        return;
    };
    let runner = common::runner().short_token;
    let exe = std::env::current_exe().unwrap();
    let exe_dir = exe.parent().unwrap().display().to_string();
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let mut binds = vec![
        format!("{exe_dir}:{exe_dir}:ro"),
        format!("{socket}:/var/run/docker.sock"),
    ];
    // The test binary links the host's C library: mount the loader's and the library's directories (whichever
    // exist; the engine would create a missing source directory on the host).
    for dir in ["/lib", "/lib64", "/usr/lib", "/usr/lib64"] {
        if Path::new(dir).is_dir() {
            binds.push(format!("{dir}:{dir}:ro"));
        }
    }
    let outer = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(common::IMAGE.into()),
                cmd: Some(vec![
                    exe.display().to_string(),
                    "--exact".into(),
                    test_name(TEST),
                    // The test is ignored without an engine; inside the container it is meant to run.
                    "--include-ignored".into(),
                    "--nocapture".into(),
                    "--test-threads=1".into(),
                ]),
                env: Some(vec![
                    format!("{INNER}={runner}"),
                    "DOCKER_HOST=unix:///var/run/docker.sock".into(),
                ]),
                labels: Some(job_labels(&runner, 901, 42, "runner-stand-in")),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    docker.start_container(&outer, None).await.unwrap();
    let code = tokio::time::timeout(
        Duration::from_secs(60),
        docker.wait_container(&outer, None::<WaitContainerOptions>).next(),
    )
    .await
    .ok()
    .flatten()
    .map(|r| match r {
        Ok(r) => r.status_code,
        Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => code,
        Err(e) => panic!("waiting for the runner stand-in: {e}"),
    });
    let mut logs = String::new();
    let mut stream = docker.logs(
        &outer,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        }),
    );
    while let Some(Ok(chunk)) = stream.next().await {
        logs.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    docker
        .remove_container(
            &outer,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("inner: the service answered"), "{logs}");
    assert_eq!(common::objects_of(&docker, &runner).await, (vec![], vec![]));
}

/// Runs inside the container: a service that listens only after a second, on a network of its own.
async fn inner(runner: &str) {
    let docker = oxrunner_docker::connect(&DockerConfig::default()).await.unwrap();
    let own = route::own_container(&docker).await;
    assert!(own.is_some(), "the runner's own container was not found");
    let labels = |kind: &str| job_labels(runner, 901, 42, kind);
    let config = DockerConfig::default();
    let network = format!("runner-{runner}-inner-network");
    let network_id = services::create_network(&docker, &network, labels("network"), &config)
        .await
        .unwrap();
    let spec = ServiceSpec {
        image: common::IMAGE.into(),
        aliases: vec!["web".into()],
        command: vec![
            "sh".into(),
            "-c".into(),
            "sleep 1; exec httpd -f -p 8080 -h /tmp".into(),
        ],
        entrypoint: vec![],
        env: vec!["HEALTHCHECK_TCP_PORT=8080".into()],
        pull_policy: vec![],
        user: None,
    };
    let name = format!("runner-{runner}-inner-web-0");
    let host_config = hostcfg::service_host_config(&config, &spec.image, &network, vec![]).unwrap();
    let id = services::start(&docker, &spec, &name, &network, labels("service"), host_config)
        .await
        .unwrap();
    let service = StartedService {
        id: id.clone(),
        name,
        image: spec.image.clone(),
    };
    // Checked before cleanup, asserted after it, so a failure leaves nothing behind.
    let mut failures: Vec<String> = Vec::new();

    // 1. Without joining, the service's address is unroutable from here; the wait falls back to the service's
    //    own socket table (busybox has `cat`).
    let service_ip = docker
        .inspect_container(&id, None)
        .await
        .unwrap()
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&network).and_then(|e| e.ip_address.clone()))
        .unwrap();
    let addr = format!("{service_ip}:8080");
    if let Err(e) = health::wait_one(&docker, &service, &network, Duration::from_secs(20)).await {
        failures.push(format!("fallback wait: {}", e.describe(&service)));
    }
    let direct = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr)).await;
    if matches!(direct, Ok(Ok(_))) {
        failures.push(format!(
            "{addr} is routable without joining: the fallback was not exercised"
        ));
    }

    // 2. Joining makes the address routable; leaving undoes it.
    let joined = route::join_if_needed(&docker, &network).await.unwrap();
    if joined.is_none() {
        failures.push("the runner's container did not join the network".to_owned());
    }
    let direct = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr)).await;
    if !matches!(direct, Ok(Ok(_))) {
        failures.push(format!("{addr} is not reachable after joining: {direct:?}"));
    }
    if let Some(own) = &joined {
        route::leave(&docker, &network, own).await;
    }

    // 3. The whole wait, as the executor runs it.
    let trace = common::Trace::new();
    health::wait_for_services(
        &docker,
        std::slice::from_ref(&service),
        &network,
        Duration::from_secs(20),
        &trace.writer,
    )
    .await;
    let log = trace.text();
    if log.contains("probably didn't start properly") {
        failures.push(log);
    }
    // The runner's container left the job network again, so cleanup can remove it.
    let still_joined = docker
        .inspect_container(own.as_deref().unwrap(), None)
        .await
        .unwrap()
        .network_settings
        .and_then(|n| n.networks)
        .is_some_and(|n| n.contains_key(&network));
    if still_joined {
        failures.push(format!("the runner's container is still on {network}"));
    }
    cleanup::remove_container(&docker, &id).await.unwrap();
    cleanup::remove_network(&docker, &network_id).await.unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    println!("inner: the service answered");
}
