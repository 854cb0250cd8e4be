#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Engine addresses: unix sockets, tcp (through a loopback proxy to the real engine), and clear failures.

use crate::support as common;

use oxrunner_config::DockerConfig;
use oxrunner_core::{ExecError, Executor, FailureReason};
use oxrunner_docker::{DockerError, DockerExecutor, Endpoint};
use tokio::net::{TcpListener, UnixStream};

fn with_host(host: &str) -> DockerConfig {
    DockerConfig {
        host: Some(host.into()),
        ..common::config()
    }
}

#[tokio::test]
async fn a_missing_socket_is_a_system_failure_naming_the_socket_and_the_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let mut exec = DockerExecutor::new(with_host(&host), common::runner());
    let trace = common::Trace::new();
    let err = exec.prepare(&common::plan(1), &trace.writer).await.unwrap_err();
    assert!(matches!(err, ExecError::Other(_)), "{err:?}");
    assert_eq!(err.reason(), FailureReason::RunnerSystemFailure);
    let msg = err.to_string();
    assert!(msg.contains(&host), "{msg}");
    assert!(msg.contains("/var/run/docker.sock:/var/run/docker.sock"), "{msg}");
    assert!(
        msg.contains("start dockerd") && msg.contains("DOCKER_HOST"),
        "{msg}"
    );
    exec.cleanup().await;
}

#[tokio::test]
async fn a_closed_tcp_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let host = format!("tcp://127.0.0.1:{port}");
    let err = Endpoint::resolve(&with_host(&host)).connect().await.unwrap_err();
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&host), "{err}");
}

#[tokio::test]
async fn tls_without_certificates_is_a_configuration_error() {
    let cfg = DockerConfig {
        tls_verify: Some(true),
        tls_cert_path: Some("/nonexistent/certs".into()),
        ..with_host("tcp://127.0.0.1:2376")
    };
    let err = Endpoint::resolve(&cfg).connect().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tls_cert_path") && msg.contains("ca.pem is missing"),
        "{msg}"
    );
    assert!(msg.contains("hint:"), "{msg}");
}

#[test]
fn endpoint_resolution_prefers_config_then_environment() {
    let env = |k: &str| match k {
        "DOCKER_HOST" => Some("tcp://127.0.0.1:2375".to_owned()),
        "DOCKER_TLS_VERIFY" => Some("1".to_owned()),
        "DOCKER_CERT_PATH" => Some("/certs".to_owned()),
        _ => None,
    };
    let from_env = Endpoint::resolve_with(&DockerConfig::default(), env);
    assert_eq!(from_env.host, "tcp://127.0.0.1:2375");
    assert!(from_env.tls_verify);
    assert_eq!(
        from_env.cert_path.as_deref(),
        Some(std::path::Path::new("/certs"))
    );

    let cfg = DockerConfig {
        host: Some("unix:///run/other.sock".into()),
        tls_verify: Some(false),
        ..DockerConfig::default()
    };
    let from_cfg = Endpoint::resolve_with(&cfg, env);
    assert_eq!(from_cfg.host, "unix:///run/other.sock");
    assert!(!from_cfg.tls_verify);

    let default = Endpoint::resolve_with(&DockerConfig::default(), |_| None);
    assert_eq!(default.host, oxrunner_docker::DEFAULT_DOCKER_HOST);
    assert!(!default.tls_verify);
}

/// Forwards a loopback TCP port to the engine's unix socket, so the tcp:// path talks to the real engine.
async fn tcp_proxy() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut unix) = UnixStream::connect("/var/run/docker.sock").await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_tcp_host_runs_jobs() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let port = tcp_proxy().await;
    let ctx = common::runner();
    let mut exec = DockerExecutor::new(with_host(&format!("tcp://127.0.0.1:{port}")), ctx.clone());
    let trace = common::Trace::new();
    exec.prepare(&common::plan(2), &trace.writer).await.unwrap();
    let status = common::run(&mut exec, "echo over-tcp", &trace).await;
    assert!(status.success(), "{}", trace.text());
    assert!(trace.text().contains("over-tcp"));
    exec.cleanup().await;
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
}
