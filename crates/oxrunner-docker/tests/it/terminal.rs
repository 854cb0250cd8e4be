//! Review finding on the Docker web terminal: closing it ends its shell even when the container's `/tmp` is
//! read-only (the old close found the shell by a pid file there) and whatever the shell ignores the hangup with.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use oxrunner_core::TermSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support as common;

/// The test's container, removed on drop even when the test fails.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn closing_ends_the_shell_in_a_read_only_container() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let name = format!("oxrt-terminal-ro-{}", std::process::id());
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let body = ContainerCreateBody {
        image: Some("oxrunner-test/busybox:latest".into()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        host_config: Some(HostConfig {
            readonly_rootfs: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .unwrap();
    let container = Container(name.clone());
    docker.start_container(&name, None).await.unwrap();

    // The close runs as the terminal's user (never root: its `sh` is the image's), which may end its own shell.
    for user in [None, Some("nobody")] {
        let terminal = oxrunner_docker::container_terminal(
            docker.clone(),
            name.clone(),
            user.map(str::to_owned),
            "/".into(),
            vec![],
        );
        let mut conn = terminal.open(TermSize::default()).await.unwrap();
        conn.input
            .write_all(b"trap '' HUP; echo RE''ADY-$((40+2))\r")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(30), async {
            while !String::from_utf8_lossy(&seen).contains("READY-42") {
                let n = conn.output.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the terminal ended early: {}",
                    String::from_utf8_lossy(&seen)
                );
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no READY from the terminal: {}", String::from_utf8_lossy(&seen)));

        conn.control.close().await;
        // The exec's output ends once its shell is gone.
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match conn.output.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the terminal's shell (user {user:?}) outlived close in a read-only container"
        );
    }
    drop(container);
}
