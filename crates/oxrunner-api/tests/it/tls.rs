use oxrunner_api::{ApiError, Client, ClientConfig, JobRequest, JobRequestOutcome};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::{Req, Server, resp, start_tls, start_tls_with};

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_pem: String,
    leaf_der: CertificateDer<'static>,
    leaf_key_pem: String,
    leaf_key_der: Vec<u8>,
    client_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "oxrunner test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "runner");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        leaf_pem: leaf.pem(),
        leaf_der: leaf.der().clone(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_key_der: leaf_key.serialize_der(),
        client_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

async fn server(pki: &Pki) -> Server {
    start_tls(
        "localhost",
        pki.leaf_pem.clone(),
        pki.leaf_key_pem.clone(),
        |_r: &Req, _| resp(204, &[], ""),
    )
    .await
}

fn req() -> JobRequest {
    JobRequest {
        token: "t".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn unknown_ca_is_a_tls_error_with_hint() {
    let pki = pki();
    let srv = server(&pki).await;
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(c.ca_chain_pem().is_none());
    let err = c.request_job(&req()).await.unwrap_err();
    assert!(matches!(err, ApiError::Tls { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("certificate signed by unknown authority"), "{msg}");
    assert!(msg.contains("hint: pass --tls-ca-file"), "{msg}");
    assert!(msg.contains("<config dir>/certs/localhost.crt"), "{msg}");
}

#[tokio::test]
async fn tls_ca_file_is_trusted() {
    let pki = pki();
    let srv = server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        tls_ca_file: Some(ca),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        c.request_job(&req()).await.unwrap(),
        JobRequestOutcome::NoJob
    ));
    assert_eq!(c.ca_chain_pem().as_deref(), Some(pki.ca_pem.as_str()));
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn certs_dir_host_crt_is_picked_up() {
    let pki = pki();
    let srv = server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    // Host without the port, as gitlab-runner names it.
    std::fs::write(dir.path().join("localhost.crt"), &pki.ca_pem).unwrap();
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        certs_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        c.request_job(&req()).await.unwrap(),
        JobRequestOutcome::NoJob
    ));
    assert_eq!(c.ca_chain_pem().as_deref(), Some(pki.ca_pem.as_str()));

    // Files for other hosts are not used.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("gitlab.example.com.crt"), &pki.ca_pem).unwrap();
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        certs_dir: Some(other.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    assert!(c.ca_chain_pem().is_none());
    assert!(matches!(
        c.request_job(&req()).await.unwrap_err(),
        ApiError::Tls { .. }
    ));
}

#[tokio::test]
async fn bad_ca_file_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("broken.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let err = Client::new(ClientConfig {
        url: "https://localhost/".into(),
        tls_ca_file: Some(ca.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, ApiError::TlsFile { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.pem"), "{err}");
    let missing = Client::new(ClientConfig {
        url: "https://localhost/".into(),
        tls_ca_file: Some(dir.path().join("missing.pem")),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(missing, ApiError::Io { .. }), "{missing:?}");
}

/// A server that only talks to clients presenting a certificate signed by the test CA.
async fn mtls_server(pki: &Pki) -> Server {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key_der.clone()));
    let cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.leaf_der.clone()], key)
        .unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
    start_tls_with("localhost", config, |_r: &Req, _| resp(204, &[], "")).await
}

#[tokio::test]
async fn client_certificate_is_picked_up_from_certs_dir() {
    let pki = pki();
    let srv = mtls_server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("localhost.crt"), &pki.ca_pem).unwrap();
    let cfg = ClientConfig {
        url: srv.url.clone(),
        certs_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };

    // Without a client certificate the server refuses the handshake.
    let anonymous = Client::new(cfg.clone()).unwrap();
    assert!(anonymous.tls_client_pem().is_none());
    let err = anonymous.request_job(&req()).await.unwrap_err();
    assert!(matches!(err, ApiError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("hint: pass --tls-cert-file"), "{err}");
    assert!(srv.requests().is_empty());

    std::fs::write(dir.path().join("localhost.auth.crt"), &pki.client_pem).unwrap();
    std::fs::write(dir.path().join("localhost.auth.key"), &pki.client_key_pem).unwrap();
    let c = Client::new(cfg).unwrap();
    assert!(matches!(
        c.request_job(&req()).await.unwrap(),
        JobRequestOutcome::NoJob
    ));
    let pem = c.tls_client_pem().unwrap();
    assert_eq!(pem.cert, pki.client_pem);
    assert!(!format!("{pem:?}").contains("PRIVATE KEY"));
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn explicit_client_certificate_files_are_used() {
    let pki = pki();
    let srv = mtls_server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.client_pem).unwrap();
    std::fs::write(&key, &pki.client_key_pem).unwrap();
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        tls_ca_file: Some(ca),
        tls_cert_file: Some(cert),
        tls_key_file: Some(key),
        certs_dir: None,
    })
    .unwrap();
    assert!(matches!(
        c.request_job(&req()).await.unwrap(),
        JobRequestOutcome::NoJob
    ));
}
