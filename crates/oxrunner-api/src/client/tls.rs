//! The rustls configuration of every connection to GitLab, and the server certificate rule.
//!
//! The standard check (webpki over the system roots plus the configured trust file)
//! decides first. The most common self-hosted setup, a certificate made with `openssl req -x509`,
//! is its own CA (`basicConstraints CA:TRUE`), and webpki refuses a CA certificate as the server's
//! own (`CaUsedAsEndEntity`) even when the user put exactly that certificate into the trust file.
//! Go's verifier (gitlab-runner, and git/curl through OpenSSL or GnuTLS) accepts it, because a
//! certificate that is itself a trusted root needs no chain. So when the standard check fails and
//! the presented certificate is byte-identical to one in the *configured* file (never the system
//! store), it is accepted if it is within its validity period, names the server and allows
//! server authentication. The handshake signature is still checked by the provider, so the server
//! has to hold the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::ca_chain::ChainRecord;
use crate::error::ApiError;

/// The certificates of the CA file in use (`tls-ca-file` or `certs/<host>.crt`).
#[derive(Clone)]
pub(crate) struct TrustFile {
    pub(crate) path: PathBuf,
    pub(crate) certs: Vec<CertificateDer<'static>>,
}

impl TrustFile {
    /// Parse every certificate of a PEM bundle; a file without one is refused (it is a mistake,
    /// and silently trusting only the system store would hide it).
    pub(crate) fn from_pem(path: &Path, pem: &[u8]) -> Result<TrustFile, ApiError> {
        let bad = |detail: String| ApiError::TlsFile {
            path: path.to_path_buf(),
            detail,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate found".to_string()));
        }
        Ok(TrustFile {
            path: path.to_path_buf(),
            certs,
        })
    }
}

/// Client certificate chain and key for mutual TLS.
pub(crate) struct Identity {
    pub(crate) certs: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Identity {
    pub(crate) fn from_pem(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<Identity, ApiError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::TlsFile {
                path: cert_path.to_path_buf(),
                detail: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(ApiError::TlsFile {
                path: cert_path.to_path_buf(),
                detail: "no certificate found".to_string(),
            });
        }
        // The key's parse error is not shown: it could quote key material.
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| ApiError::TlsFile {
            path: key_path.to_path_buf(),
            detail: "no usable private key (PKCS#8, PKCS#1 or SEC1 PEM) found".to_string(),
        })?;
        Ok(Identity { certs, key })
    }
}

/// Build the rustls configuration shared by the API and transfer clients; its verifier records each chain it
/// accepts from `gitlab_host`, for the job's CA chain (`ca_chain.rs`).
pub(crate) fn client_config_recording(
    trust: Option<&TrustFile>,
    identity: Option<(&Path, Identity)>,
    gitlab_host: &str,
) -> Result<(rustls::ClientConfig, Arc<ChainRecord>), ApiError> {
    let mut record = None;
    let config = build_config(trust, identity, |v| v, Some((gitlab_host, &mut record)))?;
    let record = record.ok_or_else(|| ApiError::ClientSetup {
        detail: "the certificate verifier was not set up".to_string(),
    })?;
    Ok((config, record))
}

/// [`client_config_recording`] with the certificate verifier wrapped by `wrap` (the doctor's probe records
/// the presented chain, then delegates), so a probe decides exactly as the client would.
pub(crate) fn client_config_with(
    trust: Option<&TrustFile>,
    identity: Option<(&Path, Identity)>,
    wrap: impl FnOnce(Arc<dyn ServerCertVerifier>) -> Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, ApiError> {
    build_config(trust, identity, wrap, None)
}

fn build_config(
    trust: Option<&TrustFile>,
    identity: Option<(&Path, Identity)>,
    wrap: impl FnOnce(Arc<dyn ServerCertVerifier>) -> Arc<dyn ServerCertVerifier>,
    record: Option<(&str, &mut Option<Arc<ChainRecord>>)>,
) -> Result<rustls::ClientConfig, ApiError> {
    let setup = |detail: String| ApiError::ClientSetup { detail };
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let (standard, system_roots) = standard_verifier(trust, provider.clone())?;
    let chain_record = record.map(|(host, slot)| {
        let r = ChainRecord::new(host, system_roots, provider.signature_verification_algorithms);
        *slot = Some(Arc::clone(&r));
        r
    });
    let verifier = GitlabVerifier {
        standard,
        trust: trust.cloned(),
        record: chain_record,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(wrap(Arc::new(verifier)));
    let mut config = match identity {
        Some((cert_path, id)) => {
            builder
                .with_client_auth_cert(id.certs, id.key)
                .map_err(|e| ApiError::TlsFile {
                    path: cert_path.to_path_buf(),
                    detail: format!("with its key: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // reqwest leaves ALPN to a preconfigured config; offer what it offers by default.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// webpki over the system roots plus the trust file: what reqwest's platform verifier does on
/// Linux, minus its error logging, which would report every accepted self-signed handshake as an
/// error.
/// Also returns the system roots, which the job's CA chain is built over.
fn standard_verifier(
    trust: Option<&TrustFile>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<(Arc<dyn ServerCertVerifier>, Vec<CertificateDer<'static>>), ApiError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(t) = trust {
        for cert in &t.certs {
            roots.add(cert.clone()).map_err(|e| ApiError::TlsFile {
                path: t.path.clone(),
                detail: format!("not usable as a trusted certificate: {e}"),
            })?;
        }
    }
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::warn!(error = %e, "cannot load a system CA certificate");
    }
    let system_roots = system.certs.clone();
    let (_, ignored) = roots.add_parsable_certificates(system.certs);
    if ignored > 0 {
        tracing::warn!(ignored, "system CA certificates ignored: they cannot be parsed");
    }
    if roots.is_empty() {
        return Err(ApiError::ClientSetup {
            detail: "no CA certificates were loaded from the system\nhint: install the ca-certificates package, set SSL_CERT_FILE, or pass --tls-ca-file".to_string(),
        });
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| ApiError::ClientSetup {
            detail: e.to_string(),
        })?;
    Ok((verifier, system_roots))
}

/// See the module comment.
struct GitlabVerifier {
    standard: Arc<dyn ServerCertVerifier>,
    trust: Option<TrustFile>,
    /// The API and transfer clients record what they accepted; the doctor's probe does not.
    record: Option<Arc<ChainRecord>>,
}

impl fmt::Debug for GitlabVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabVerifier")
            .field("trust_file", &self.trust.as_ref().map(|t| &t.path))
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for GitlabVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let standard_err =
            match self
                .standard
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            {
                Ok(ok) => {
                    if let Some(record) = &self.record {
                        record.record(server_name, end_entity, intermediates);
                    }
                    return Ok(ok);
                }
                Err(e) => e,
            };
        let listed = self
            .trust
            .as_ref()
            .is_some_and(|t| t.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()));
        let cause = if listed {
            match check_listed(end_entity, server_name, now) {
                Ok(()) => {
                    tracing::debug!(server = ?server_name, "server certificate accepted: it is in the configured CA file");
                    return Ok(ServerCertVerified::assertion());
                }
                Err(e) => e,
            }
        } else {
            match standard_err {
                rustls::Error::InvalidCertificate(c) => c,
                // Not about the certificate (e.g. an internal error): nothing to explain.
                other => return Err(other),
            }
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(self.explain(cause, end_entity, listed))),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.standard.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.standard.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.standard.supported_verify_schemes()
    }
}

impl GitlabVerifier {
    fn explain(&self, cause: CertificateError, end_entity: &CertificateDer<'_>, listed: bool) -> Rejected {
        let parsed = X509Certificate::from_der(end_entity.as_ref())
            .ok()
            .map(|(_, c)| c);
        let issuer_name_listed = match (&parsed, &self.trust) {
            (Some(ee), Some(t)) => t.certs.iter().any(|c| {
                X509Certificate::from_der(c.as_ref())
                    .is_ok_and(|(_, ca)| ca.subject().as_raw() == ee.issuer().as_raw())
            }),
            _ => false,
        };
        Rejected {
            cause,
            presented: parsed.as_ref().map(Presented::of),
            trust_file: self.trust.as_ref().map(|t| t.path.clone()),
            listed,
            issuer_name_listed,
        }
    }
}

/// The checks Go applies to a certificate that is itself a trusted root: validity period, server
/// authentication allowed by its extended key usage, and a subjectAltName matching the server
/// (webpki's name check, which like Go ignores the common name).
fn check_listed(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), CertificateError> {
    let (_, cert) =
        X509Certificate::from_der(end_entity.as_ref()).map_err(|_| CertificateError::BadEncoding)?;
    let validity = cert.validity();
    let at = |secs: i64| UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(secs).unwrap_or(0)));
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now_secs < validity.not_before.timestamp() {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: at(validity.not_before.timestamp()),
        });
    }
    if now_secs > validity.not_after.timestamp() {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: at(validity.not_after.timestamp()),
        });
    }
    match cert.extended_key_usage() {
        Ok(None) => {}
        Ok(Some(eku)) if eku.value.any || eku.value.server_auth => {}
        Ok(Some(_)) => return Err(CertificateError::InvalidPurpose),
        Err(_) => return Err(CertificateError::BadEncoding),
    }
    // webpki's parser also refuses critical extensions it does not understand, as Go does.
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity).map_err(certificate_error)?;
    rustls::client::verify_server_name(&parsed, server_name).map_err(certificate_error)
}

fn certificate_error(e: rustls::Error) -> CertificateError {
    match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    }
}

/// What the server presented, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Presented {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) self_signed: bool,
    /// subjectAltName DNS names and IP addresses.
    pub(crate) names: Vec<String>,
    pub(crate) not_before: String,
    pub(crate) not_after: String,
}

impl Presented {
    fn of(cert: &X509Certificate<'_>) -> Presented {
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_string()),
                    GeneralName::IPAddress(ip) => ip_text(ip),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Presented {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            names,
            not_before: cert.validity().not_before.to_string(),
            not_after: cert.validity().not_after.to_string(),
        }
    }
}

fn ip_text(raw: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(raw) {
        return Some(std::net::Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(raw)
        .ok()
        .map(|v6| std::net::Ipv6Addr::from(v6).to_string())
}

/// Why the server's certificate was refused, with what is needed to tell the user how to fix it.
/// Travels inside `CertificateError::Other` through rustls, tokio-rustls, hyper and reqwest.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) cause: CertificateError,
    pub(crate) presented: Option<Presented>,
    pub(crate) trust_file: Option<PathBuf>,
    /// The presented certificate is itself in the trust file (so the file is right, the
    /// certificate is not: expired, wrong name, ...).
    pub(crate) listed: bool,
    /// The trust file holds a certificate whose subject is the presented certificate's issuer
    /// (for a self-signed certificate: an older or different certificate of the same name).
    pub(crate) issuer_name_listed: bool,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause)
    }
}

impl std::error::Error for Rejected {}
