#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `tls_verify` + `tls_cert_path` against a TLS front of the real engine on 127.0.0.1.

use crate::support as common;

use std::sync::Arc;

use oxrunner_config::DockerConfig;
use oxrunner_core::{Executor, ExitStatus};
use oxrunner_docker::{DockerError, DockerExecutor, Endpoint};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, UnixStream};

struct Certs {
    dir: tempfile::TempDir,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

/// A CA and a server certificate for 127.0.0.1, written as the docker `ca.pem`, `cert.pem`, `key.pem` trio.
fn certs() -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    Certs {
        dir,
        server_cert: cert.der().clone(),
        server_key: key.serialize_der(),
    }
}

/// Terminates TLS on a loopback port and forwards to the engine's unix socket.
async fn tls_proxy(certs: &Certs) -> u16 {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![certs.server_cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.server_key.clone())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut unix) = UnixStream::connect("/var/run/docker.sock").await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_tls_host_with_certificates_runs_jobs() {
    let Some(docker) = common::engine().await else {
        return;
    };
    let certs = certs();
    let port = tls_proxy(&certs).await;
    let cfg = DockerConfig {
        host: Some(format!("tcp://127.0.0.1:{port}")),
        tls_verify: Some(true),
        tls_cert_path: Some(certs.dir.path().display().to_string()),
        ..common::config()
    };
    let ctx = common::runner();
    let mut exec = DockerExecutor::new(cfg, ctx.clone());
    let trace = common::Trace::new();
    exec.prepare(&common::plan(601), &trace.writer).await.unwrap();
    assert_eq!(
        common::run(&mut exec, "echo over-tls", &trace).await,
        ExitStatus::Code(0)
    );
    assert!(trace.text().contains("over-tls"));
    exec.cleanup().await;
    assert_eq!(
        common::objects_of(&docker, &ctx.short_token).await,
        (vec![], vec![])
    );
}

#[tokio::test]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn a_tls_host_with_a_foreign_ca_is_refused() {
    let Some(_docker) = common::engine().await else {
        return;
    };
    let served = certs();
    let port = tls_proxy(&served).await;
    let other = certs();
    let cfg = DockerConfig {
        host: Some(format!("tcp://127.0.0.1:{port}")),
        tls_verify: Some(true),
        tls_cert_path: Some(other.dir.path().display().to_string()),
        ..DockerConfig::default()
    };
    let err = Endpoint::resolve(&cfg).connect().await.unwrap_err();
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
}
