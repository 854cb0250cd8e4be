//! Issue 11 item 3: a server whose certificate is its own CA (what `openssl req -x509` makes) is
//! trusted when exactly that certificate is the configured CA file, and only then.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use oxrunner_api::{ApiError, Client, ClientConfig, JobRequest, JobRequestOutcome};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, date_time_ymd,
};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::{Req, Server, resp, start_tls, start_tls_with};

struct SelfSigned {
    cert_pem: String,
    key_pem: String,
}

/// `basicConstraints CA:TRUE`, self-signed, subjectAltName `names`.
fn self_signed(cn: &str, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> SelfSigned {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    edit(&mut params);
    let cert = params.self_signed(&key).unwrap();
    SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn usual() -> SelfSigned {
    self_signed("gitlab.test", &["localhost", "127.0.0.1"], |_| {})
}

async fn serve(host: &str, cert: &SelfSigned) -> Server {
    start_tls(
        host,
        cert.cert_pem.clone(),
        cert.key_pem.clone(),
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

fn with_ca_file(url: &str, ca: &Path) -> Client {
    Client::new(ClientConfig {
        url: url.to_string(),
        tls_ca_file: Some(ca.to_path_buf()),
        ..Default::default()
    })
    .unwrap()
}

/// Expect a TLS error; returns (detail, hint).
async fn refused(c: &Client, srv: &Server) -> (String, String) {
    let err = c.request_job(&req()).await.unwrap_err();
    assert!(srv.requests().is_empty(), "no request may reach the server");
    assert!(
        matches!(err, ApiError::Tls { .. }),
        "expected a TLS error, got {err:?}"
    );
    let msg = err.to_string();
    let (detail, hint) = msg
        .split_once("\nhint: ")
        .unwrap_or_else(|| panic!("no hint line: {msg}"));
    (detail.to_string(), hint.to_string())
}

#[tokio::test]
async fn self_signed_ca_certificate_in_tls_ca_file_is_trusted() {
    let cert = usual();
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let c = with_ca_file(&srv.url, &ca);
    let outcome = c.request_job(&req()).await;
    assert!(matches!(outcome, Ok(JobRequestOutcome::NoJob)), "{outcome:?}");
    assert_eq!(srv.requests().len(), 1);
    // The same file goes to jobs as CI_SERVER_TLS_CA_FILE.
    assert_eq!(c.ca_chain_pem().as_deref(), Some(cert.cert_pem.as_str()));
}

#[tokio::test]
async fn self_signed_ca_certificate_in_certs_dir_is_trusted_for_an_ip_url() {
    let cert = usual();
    let srv = serve("127.0.0.1", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    // gitlab-runner's name: the URL's host without the port.
    std::fs::write(dir.path().join("127.0.0.1.crt"), &cert.cert_pem).unwrap();
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        certs_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let outcome = c.request_job(&req()).await;
    assert!(matches!(outcome, Ok(JobRequestOutcome::NoJob)), "{outcome:?}");
}

#[tokio::test]
async fn the_certificate_may_share_the_file_with_other_cas() {
    let cert = usual();
    let other = self_signed("some other CA", &[], |_| {});
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("bundle.pem");
    std::fs::write(&ca, format!("{}{}", other.cert_pem, cert.cert_pem)).unwrap();
    let outcome = with_ca_file(&srv.url, &ca).request_job(&req()).await;
    assert!(matches!(outcome, Ok(JobRequestOutcome::NoJob)), "{outcome:?}");
}

/// The certificate the real tool makes (RSA key, OpenSSL's default extensions).
#[tokio::test]
async fn openssl_req_x509_certificate_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
        .args([
            "-subj",
            "/CN=gitlab.test",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED: openssl CLI not available ({e})");
            return;
        }
        Err(e) => panic!("openssl is required under CI=true: {e}"),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl's default makes a CA certificate; this test is about that case"
    );
    let material = SelfSigned {
        cert_pem: std::fs::read_to_string(&cert).unwrap(),
        key_pem: std::fs::read_to_string(&key).unwrap(),
    };
    let srv = serve("127.0.0.1", &material).await;
    let outcome = with_ca_file(&srv.url, &cert).request_job(&req()).await;
    assert!(matches!(outcome, Ok(JobRequestOutcome::NoJob)), "{outcome:?}");
}

#[tokio::test]
async fn a_different_self_signed_certificate_is_refused_and_the_hint_names_the_file() {
    let cert = usual();
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("stale.pem");
    std::fs::write(&ca, usual().cert_pem).unwrap();
    let (detail, hint) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(
        detail.contains("certificate signed by unknown authority"),
        "{detail}"
    );
    assert!(
        detail.contains("CN=gitlab.test"),
        "the presented certificate is named: {detail}"
    );
    assert!(detail.contains("self-signed"), "{detail}");
    assert!(hint.contains(&ca.display().to_string()), "{hint}");
    assert!(hint.contains("contains neither"), "{hint}");
    // Same name, other key: what a renewed certificate next to a stale copy looks like.
    assert!(hint.contains("different certificate named"), "{hint}");
    assert!(
        !hint.starts_with("pass --tls-ca-file"),
        "the CA file was passed already: {hint}"
    );
}

#[tokio::test]
async fn without_a_ca_file_the_hint_says_the_self_signed_certificate_itself_is_needed() {
    let cert = usual();
    let srv = serve("localhost", &cert).await;
    let c = Client::new(ClientConfig {
        url: srv.url.clone(),
        ..Default::default()
    })
    .unwrap();
    let (detail, hint) = refused(&c, &srv).await;
    assert!(
        detail.contains("certificate signed by unknown authority"),
        "{detail}"
    );
    assert!(hint.starts_with("pass --tls-ca-file"), "{hint}");
    assert!(hint.contains("<config dir>/certs/localhost.crt"), "{hint}");
    assert!(hint.contains("the certificate itself"), "{hint}");
}

#[tokio::test]
async fn an_expired_self_signed_certificate_is_refused_even_when_trusted() {
    let cert = self_signed("gitlab.test", &["localhost"], |p| {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    });
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let (detail, hint) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(detail.contains("expired"), "{detail}");
    assert!(hint.contains("renew"), "{hint}");
    assert!(hint.contains(&ca.display().to_string()), "{hint}");
}

#[tokio::test]
async fn a_not_yet_valid_self_signed_certificate_is_refused() {
    let cert = self_signed("gitlab.test", &["localhost"], |p| {
        p.not_before = date_time_ymd(2090, 1, 1);
        p.not_after = date_time_ymd(2091, 1, 1);
    });
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let (detail, _) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(detail.contains("not valid yet"), "{detail}");
}

#[tokio::test]
async fn a_trusted_self_signed_certificate_for_another_host_is_refused() {
    let cert = self_signed("gitlab.example.com", &["gitlab.example.com"], |_| {});
    let srv = serve("127.0.0.1", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let (detail, hint) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(detail.contains("not valid for 127.0.0.1"), "{detail}");
    assert!(detail.contains("gitlab.example.com"), "{detail}");
    assert!(hint.contains("subjectAltName=IP:127.0.0.1"), "{hint}");
}

/// Only the subjectAltName counts, as in Go: a matching common name alone is not enough.
#[tokio::test]
async fn a_trusted_self_signed_certificate_with_the_name_only_in_its_cn_is_refused() {
    let cert = self_signed("localhost", &[], |_| {});
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let (detail, _) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(detail.contains("not valid for localhost"), "{detail}");
}

#[tokio::test]
async fn a_trusted_self_signed_client_only_certificate_is_refused() {
    let cert = self_signed("gitlab.test", &["localhost"], |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let srv = serve("localhost", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let (detail, hint) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(detail.contains("not meant for TLS servers"), "{detail}");
    assert!(hint.contains("serverAuth"), "{hint}");
}

/// Presents `cert` but signs the handshake with an unrelated key, which only an impostor that copied
/// the (public) certificate would do.
#[derive(Debug)]
struct Impostor(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Being in the CA file vouches for the certificate, not for whoever sends it: the handshake
/// signature must still be made with the certificate's key.
#[tokio::test]
async fn a_trusted_self_signed_certificate_without_its_key_is_refused() {
    let cert = usual();
    let stranger = KeyPair::generate().unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(stranger.serialize_der()));
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let der = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![der], signer);
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Impostor(Arc::new(certified))));
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
    let srv = start_tls_with("localhost", config, |_r: &Req, _| resp(204, &[], "")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gitlab.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let (detail, _) = refused(&with_ca_file(&srv.url, &ca), &srv).await;
    assert!(
        detail.contains("does not hold the certificate's private key"),
        "{detail}"
    );
}

/// Go accepts any presented certificate that is itself in the pool, so a CA file holding just the
/// server's own certificate (without the private CA that issued it) works with gitlab-runner too.
#[tokio::test]
async fn a_ca_issued_server_certificate_alone_in_the_ca_file_is_trusted() {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "private CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let served = SelfSigned {
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    let srv = serve("localhost", &served).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leaf.pem");
    std::fs::write(&file, leaf.pem()).unwrap();
    let outcome = with_ca_file(&srv.url, &file).request_job(&req()).await;
    assert!(matches!(outcome, Ok(JobRequestOutcome::NoJob)), "{outcome:?}");
}
