//! A fake that requires client certificates, as GitLab behind a proxy that asks for them (nginx
//! `ssl_verify_client on`): the TLS handshake fails for a client without a certificate issued by the given CA.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{FakeError, TlsMaterial};

fn tls_err(what: &str, e: impl std::fmt::Display) -> FakeError {
    FakeError::Tls {
        source: std::io::Error::other(format!("{what}: {e}")),
    }
}

/// The server configuration: `server`'s certificate, and client certificates verified against `client_ca_pem`.
pub(crate) fn server_config(
    server: &TlsMaterial,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, FakeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| tls_err("client CA", e))?;
        roots.add(cert).map_err(|e| tls_err("client CA", e))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("server certificate", e))?;
    let key =
        PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(|e| tls_err("server key", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("server certificate", e))?;
    // git (libcurl) and reqwest both speak HTTP/1.1 to GitLab.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `server`'s certificate without client authentication, offering only HTTP/2 (the job router speaks gRPC).
pub(crate) fn h2_server_config(server: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, FakeError> {
    plain_server_config(server, b"h2")
}

/// The same for the router's WebSocket entrance (the handshake is HTTP/1.1).
pub(crate) fn http1_server_config(server: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, FakeError> {
    plain_server_config(server, b"http/1.1")
}

fn plain_server_config(server: &TlsMaterial, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, FakeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("server certificate", e))?;
    let key =
        PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(|e| tls_err("server key", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("server certificate", e))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}
