//! The CA chain a job gets as `CI_SERVER_TLS_CA_FILE` when no CA file is configured, as gitlab-runner builds it
//! (`helpers/tls/ca_chain`): the chain that verified GitLab's certificate (the leaf, its intermediates, the
//! trusted anchor), each certificate once. With `FF_RESOLVE_FULL_TLS_CHAIN` the chain is then extended past an
//! anchor that is not self-signed: first by fetching issuers from the last certificate's Authority Information
//! Access URL (`caIssuers`, at most 14 hops, until a self-signed one), then by looking the last certificate's
//! issuers up in the system's trusted roots. A failed fetch, or a last certificate or issuer outside its
//! validity period, fails the whole chain, and the job then gets none, as upstream. Issuer URLs are fetched
//! without following redirects, under one deadline, and a fetched certificate that did not sign the one naming
//! it ends the chain.
//!
//! The certificates GitLab presented are recorded by the client's verifier after the standard check accepted
//! them ([`ChainRecord`]; handshakes with other hosts, such as object storage, are not); the paths Go's verifier
//! would list are rebuilt here by name and signature over the presented certificates and the system roots, the
//! same certificates that check used, within Go's bounds on that search.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// gitlab-runner's URL resolver stops after this many rounds (the 15th round ends the loop before fetching).
const AIA_LOOP_LIMIT: usize = 15;
const AIA_FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// All the fetches of one chain together.
const AIA_DEADLINE: Duration = Duration::from_secs(30);
/// An issuer certificate (or a PKCS#7 bundle of a few) is a few KiB; anything far larger is not one.
const AIA_MAX_BYTES: usize = 1024 * 1024;
/// Bounds on the paths built over what the server presented (Go bounds its chain building similarly).
const MAX_DEPTH: usize = 16;
const MAX_PATHS: usize = 16;
const MAX_PRESENTED: usize = 32;
/// Go's `maxChainSignatureChecks`: the signature checks one chain search may spend.
const MAX_SIGNATURE_CHECKS: usize = 100;
const CA_ISSUERS_OID: &str = "1.3.6.1.5.5.7.48.2";

/// What the verifier saw on the last accepted handshake with GitLab, and the roots it trusted.
pub(crate) struct ChainRecord {
    /// GitLab's host as the TLS server name is compared (lower case, IPv6 without brackets). The transfer client
    /// shares the verifier and also talks to object storage, another host whose chain a job must not get.
    gitlab_host: String,
    presented: Mutex<Option<Vec<CertificateDer<'static>>>>,
    /// The system roots with their subjects (DER), so an issuer is looked up without parsing every root.
    roots: Vec<(Vec<u8>, CertificateDer<'static>)>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The issuer fetches' client, made on the first use of `FF_RESOLVE_FULL_TLS_CHAIN`.
    aia_http: OnceLock<reqwest::Client>,
}

impl ChainRecord {
    pub(crate) fn new(
        gitlab_host: &str,
        roots: Vec<CertificateDer<'static>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Arc<Self> {
        let roots = roots
            .into_iter()
            .filter_map(|der| {
                let (_, parsed) = X509Certificate::from_der(der.as_ref()).ok()?;
                let subject = parsed.subject().as_raw().to_vec();
                Some((subject, der))
            })
            .collect();
        Arc::new(ChainRecord {
            gitlab_host: gitlab_host.to_ascii_lowercase(),
            presented: Mutex::new(None),
            roots,
            algorithms,
            aia_http: OnceLock::new(),
        })
    }

    /// The system roots that issued `cert`.
    fn root_issuers_of(&self, cert: &CertificateDer<'_>) -> Vec<&CertificateDer<'static>> {
        let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
            return Vec::new();
        };
        let issuer = parsed.issuer().as_raw();
        self.roots
            .iter()
            .filter(|(subject, _)| subject.as_slice() == issuer)
            .map(|(_, root)| root)
            .filter(|root| signed_by(cert, root, &self.algorithms))
            .collect()
    }

    /// Called by the verifier once the standard check accepted `end_entity` with `intermediates` for
    /// `server_name`; only GitLab's own handshakes are kept (upstream reads the chain off the `jobs/request`
    /// response). A resumed session skips the verifier, so the record stays the last full handshake's with GitLab.
    pub(crate) fn record(
        &self,
        server_name: &ServerName<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) {
        let name = match server_name {
            ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => return,
        };
        if name != self.gitlab_host {
            return;
        }
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self
            .presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(chain);
    }

    fn presented(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The chain for a job as PEM, `None` before any verified handshake (plain HTTP) or when resolving failed
    /// (logged, as upstream logs it).
    pub(crate) async fn job_chain(self: &Arc<Self>, resolve_full: bool) -> Option<String> {
        let presented = self.presented()?;
        // Up to a hundred signature checks: not for an async worker.
        let me = Arc::clone(self);
        let paths = match tokio::task::spawn_blocking(move || me.verified_paths(&presented).paths).await {
            Ok(paths) => paths,
            Err(e) => {
                tracing::error!(error = %e, "building the job's CA chain failed");
                return None;
            }
        };
        let mut all = Vec::new();
        for path in paths {
            if !resolve_full {
                all.extend(path);
                continue;
            }
            match self.resolve_full(path).await {
                Ok(full) => all.extend(full),
                Err(e) => {
                    tracing::error!(error = %e, "Error on fetching TLS Data from API response... couldn't resolve certificates chain from the leaf certificate");
                    return None;
                }
            }
        }
        let pem = pem_chain(&all);
        (!pem.is_empty()).then_some(pem)
    }

    /// Every path from the leaf to a trusted root, as Go's verifier lists its verified chains: at each step a
    /// system root that issued the certificate ends a path (roots first), and a presented certificate that
    /// issued it continues one, even when it is a root itself. The presented certificates are the server's to
    /// choose, so the search is bounded as Go bounds it: a candidate with the subject and key of one already on
    /// the path is skipped, and the whole search stops after [`MAX_SIGNATURE_CHECKS`] signature checks.
    fn verified_paths(&self, presented: &[CertificateDer<'static>]) -> Paths {
        let mut search = Paths {
            paths: Vec::new(),
            signature_checks: 0,
        };
        let Some((leaf, others)) = presented.split_first() else {
            return search;
        };
        let others: Vec<Candidate> = others
            .iter()
            .take(MAX_PRESENTED)
            .map(|der| Candidate {
                identity: identity(der),
                der: der.clone(),
            })
            .collect();
        let leaf = Candidate {
            identity: identity(leaf),
            der: leaf.clone(),
        };
        self.extend_paths(&mut vec![leaf], &others, &mut search);
        search
    }

    fn extend_paths(&self, path: &mut Vec<Candidate>, others: &[Candidate], search: &mut Paths) {
        let Some(current) = path.last().map(|c| c.der.clone()) else {
            return;
        };
        for root in self.root_issuers_counted(&current, search) {
            if search.paths.len() >= MAX_PATHS {
                return;
            }
            let mut done: Vec<CertificateDer<'static>> = path.iter().map(|c| c.der.clone()).collect();
            if root.as_ref() != current.as_ref() {
                done.push(root.clone());
            }
            search.paths.push(done);
        }
        if path.len() >= MAX_DEPTH {
            return;
        }
        for next in others {
            if search.paths.len() >= MAX_PATHS || search.signature_checks >= MAX_SIGNATURE_CHECKS {
                return;
            }
            let on_path = path.iter().any(|p| {
                p.der.as_ref() == next.der.as_ref() || (p.identity.is_some() && p.identity == next.identity)
            });
            if on_path || !names_issuer(&current, &next.der) {
                continue;
            }
            search.signature_checks += 1;
            if !signed_by(&current, &next.der, &self.algorithms) {
                continue;
            }
            path.push(next.clone());
            self.extend_paths(path, others, search);
            path.pop();
        }
    }

    /// [`Self::root_issuers_of`] within the search's signature budget.
    fn root_issuers_counted(
        &self,
        cert: &CertificateDer<'_>,
        search: &mut Paths,
    ) -> Vec<&CertificateDer<'static>> {
        let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
            return Vec::new();
        };
        let issuer = parsed.issuer().as_raw();
        let mut found = Vec::new();
        for (subject, root) in &self.roots {
            if subject.as_slice() != issuer {
                continue;
            }
            if search.signature_checks >= MAX_SIGNATURE_CHECKS {
                break;
            }
            search.signature_checks += 1;
            if signed_by(cert, root, &self.algorithms) {
                found.push(root);
            }
        }
        found
    }

    async fn resolve_full(
        &self,
        mut chain: Vec<CertificateDer<'static>>,
    ) -> Result<Vec<CertificateDer<'static>>, String> {
        let http = match self.aia_http.get() {
            Some(http) => http.clone(),
            None => {
                // A redirect would let whoever serves the URL send the runner anywhere; CAs publish issuers at
                // the URL itself.
                let http = reqwest::Client::builder()
                    .timeout(AIA_FETCH_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot set up the issuer fetch: {e}"))?;
                self.aia_http.get_or_init(|| http).clone()
            }
        };
        // One deadline for all the fetches: every job start waits for them.
        tokio::time::timeout(AIA_DEADLINE, self.fetch_issuers(&http, &mut chain))
            .await
            .map_err(|_| {
                format!(
                    "fetching the issuers took longer than {}s",
                    AIA_DEADLINE.as_secs()
                )
            })??;
        // The verify step, as Go's `Verify` of the last certificate against the system roots: an unknown
        // authority leaves the chain as it is, a certificate (or the only issuers) outside its validity period
        // is an error, which drops the chain.
        let Some(last) = chain.last().cloned() else {
            return Ok(chain);
        };
        if self.self_signed(&last) {
            return Ok(chain);
        }
        if !valid_now(&last) {
            return Err("error while verifying last certificate from the chain: x509: certificate has expired or is not yet valid".to_string());
        }
        let roots = self.root_issuers_of(&last);
        if roots.is_empty() {
            return Ok(chain);
        }
        match roots.into_iter().find(|root| valid_now(root)) {
            Some(root) if root.as_ref() != last.as_ref() => chain.push(root.clone()),
            Some(_) => {}
            None => {
                return Err("error while verifying last certificate from the chain: x509: certificate has expired or is not yet valid".to_string());
            }
        }
        Ok(chain)
    }

    /// Follows `caIssuers` URLs from the last certificate up, while each fetched certificate signed the one
    /// before it (a server's certificate names the URL, so what comes back is not trusted to be the issuer).
    async fn fetch_issuers(
        &self,
        http: &reqwest::Client,
        chain: &mut Vec<CertificateDer<'static>>,
    ) -> Result<(), String> {
        for _ in 1..AIA_LOOP_LIMIT {
            let Some(last) = chain.last() else {
                break;
            };
            let Some(url) = ca_issuers_url(last) else {
                break;
            };
            let Some(issuer) = fetch_issuer(http, &url).await? else {
                break;
            };
            if !signed_by(last, &issuer, &self.algorithms) {
                tracing::warn!(
                    url = %crate::redact::redact_url(&url),
                    "the certificate at a caIssuers URL did not sign the certificate naming it; the chain ends before it"
                );
                break;
            }
            let root = self.self_signed(&issuer);
            chain.push(issuer);
            if root {
                break;
            }
        }
        Ok(())
    }

    fn self_signed(&self, cert: &CertificateDer<'_>) -> bool {
        signed_by(cert, cert, &self.algorithms)
    }

    /// `parent` names `child`'s issuer and signed it.
    #[cfg(test)]
    fn issued(&self, child: &CertificateDer<'_>, parent: &CertificateDer<'_>) -> bool {
        names_issuer(child, parent) && signed_by(child, parent, &self.algorithms)
    }
}

/// The paths found and the signature checks spent on them.
struct Paths {
    paths: Vec<Vec<CertificateDer<'static>>>,
    signature_checks: usize,
}

/// A certificate of the path search with its subject and public key (Go's "already in chain" test).
#[derive(Clone)]
struct Candidate {
    der: CertificateDer<'static>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn identity(cert: &CertificateDer<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    Some((
        parsed.subject().as_raw().to_vec(),
        parsed.tbs_certificate.subject_pki.raw.to_vec(),
    ))
}

/// `parent`'s subject is `child`'s issuer name.
fn names_issuer(child: &CertificateDer<'_>, parent: &CertificateDer<'_>) -> bool {
    match (
        X509Certificate::from_der(child.as_ref()),
        X509Certificate::from_der(parent.as_ref()),
    ) {
        (Ok((_, c)), Ok((_, p))) => c.issuer().as_raw() == p.subject().as_raw(),
        _ => false,
    }
}

/// Within its validity period now (Go checks every certificate of a chain it verifies).
fn valid_now(cert: &CertificateDer<'_>) -> bool {
    X509Certificate::from_der(cert.as_ref()).is_ok_and(|(_, c)| c.validity().is_valid())
}

/// Go's `CheckSignatureFrom`: the parent may sign certificates (a CA, with `keyCertSign` when it lists key
/// usages) and its key verifies the child's signature.
fn signed_by(
    child: &CertificateDer<'_>,
    parent: &CertificateDer<'_>,
    algs: &WebPkiSupportedAlgorithms,
) -> bool {
    let (Ok((_, c)), Ok((_, p))) = (
        X509Certificate::from_der(child.as_ref()),
        X509Certificate::from_der(parent.as_ref()),
    ) else {
        return false;
    };
    let is_ca = matches!(p.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let may_sign = match p.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    if !is_ca || !may_sign {
        return false;
    }
    let (Some(sig_alg), Some(key_alg)) = (
        signature_algorithm_id(child.as_ref()),
        sequence_contents(p.tbs_certificate.subject_pki.raw).and_then(|spki| first_tlv_contents(spki)),
    ) else {
        return false;
    };
    let key = p.tbs_certificate.subject_pki.subject_public_key.data.as_ref();
    algs.all.iter().any(|alg| {
        alg.signature_alg_id().as_ref() == sig_alg
            && alg.public_key_alg_id().as_ref() == key_alg
            && alg
                .verify_signature(key, c.tbs_certificate.as_ref(), c.signature_value.data.as_ref())
                .is_ok()
    })
}

/// The contents of a certificate's `signatureAlgorithm` (the second element of its outer SEQUENCE), the form
/// rustls names algorithms in.
fn signature_algorithm_id(der: &[u8]) -> Option<&[u8]> {
    let body = sequence_contents(der)?;
    let (_, _, rest) = tlv(body)?;
    first_tlv_contents(rest)
}

fn sequence_contents(der: &[u8]) -> Option<&[u8]> {
    match tlv(der)? {
        (0x30, contents, _) => Some(contents),
        _ => None,
    }
}

fn first_tlv_contents(der: &[u8]) -> Option<&[u8]> {
    tlv(der).map(|(_, contents, _)| contents)
}

/// One DER element: (tag, contents, what follows). Definite lengths only, as DER requires.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The first `caIssuers` URL of a certificate's Authority Information Access extension.
fn ca_issuers_url(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    parsed
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => aia.accessdescs.iter().find_map(|d| {
                match (
                    &d.access_location,
                    d.access_method.to_id_string() == CA_ISSUERS_OID,
                ) {
                    (GeneralName::URI(uri), true) => Some((*uri).to_string()),
                    _ => None,
                }
            }),
            _ => None,
        })
}

/// The issuer certificate at `url`: PEM, DER or a PKCS#7 bundle (its first certificate). `None` when the file
/// holds no certificate.
async fn fetch_issuer(http: &reqwest::Client, url: &str) -> Result<Option<CertificateDer<'static>>, String> {
    let shown = crate::redact::redact_url(url);
    let mut resp = http.get(url).send().await.map_err(|e| {
        format!(
            "remote fetch failure from {shown}: {}",
            crate::error::chain_text(&e)
        )
    })?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!(
            "remote fetch failure from {shown}: HTTP request failed with status code: {}",
            resp.status().as_u16()
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        format!(
            "remote fetch failure from {shown}: {}",
            crate::error::chain_text(&e)
        )
    })? {
        if body.len() + chunk.len() > AIA_MAX_BYTES {
            return Err(format!(
                "remote fetch failure from {shown}: more than {AIA_MAX_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    decode_certificate(&body).map_err(|e| format!("decoding failure of {shown}: {e}"))
}

fn decode_certificate(data: &[u8]) -> Result<Option<CertificateDer<'static>>, String> {
    let der = if data.starts_with(b"-----BEGIN ") {
        match CertificateDer::from_pem_slice(data) {
            Ok(cert) => cert.as_ref().to_vec(),
            Err(e) => return Err(format!("invalid certificate: {e}")),
        }
    } else {
        data.to_vec()
    };
    if X509Certificate::from_der(&der).is_ok() {
        return Ok(Some(CertificateDer::from(der)));
    }
    pkcs7_first_certificate(&der).map(|c| c.map(|c| CertificateDer::from(c.to_vec())))
}

/// `ContentInfo { contentType, [0] SignedData { version, digestAlgorithms, encapContentInfo, [0] certificates } }`:
/// the first certificate of a certs-only PKCS#7 bundle (`.p7c`, what many CAs publish at their AIA URL).
fn pkcs7_first_certificate(der: &[u8]) -> Result<Option<&[u8]>, String> {
    let bad = || "invalid certificate: neither a certificate nor a PKCS#7 bundle".to_string();
    let info = sequence_contents(der).ok_or_else(bad)?;
    let (oid_tag, _, rest) = tlv(info).ok_or_else(bad)?;
    let (explicit, signed, _) = tlv(rest).ok_or_else(bad)?;
    if oid_tag != 0x06 || explicit != 0xa0 {
        return Err(bad());
    }
    let mut fields = sequence_contents(signed).ok_or_else(bad)?;
    for _ in 0..3 {
        let (_, _, rest) = tlv(fields).ok_or_else(bad)?;
        fields = rest;
    }
    match tlv(fields) {
        Some((0xa0, certs, _)) => match tlv(certs) {
            Some((0x30, _, rest)) => Ok(Some(&certs[..certs.len() - rest.len()])),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Each certificate once (by signature, as upstream), PEM-encoded as Go's `pem.Encode`, without trailing space.
fn pem_chain(chain: &[CertificateDer<'_>]) -> String {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut out = String::new();
    for cert in chain {
        let signature = X509Certificate::from_der(cert.as_ref())
            .map(|(_, c)| c.signature_value.data.to_vec())
            .unwrap_or_else(|_| cert.as_ref().to_vec());
        if seen.contains(&signature) {
            continue;
        }
        seen.push(signature);
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.trim_end().to_string()
}

#[cfg(test)]
#[path = "ca_chain_tests.rs"]
mod tests;
