//! A step-by-step connection probe for `oxrunner doctor`: name resolution, TCP, the TLS handshake
//! and one HTTP request, each reported on its own, so a failure names the step that failed.
//!
//! The handshake uses the client's own rustls configuration with its verifier wrapped by one that
//! records the chain the server presented and then delegates: the probe accepts and refuses exactly
//! what the runner would, and on a refusal it can still show what was presented and which
//! certificate is missing. It runs on a blocking thread: it is short, bounded by `timeout`, and
//! done once per runner.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{TlsFiles, api_base, read_file, tls};
use crate::error::ApiError;
use crate::redact::redact_url;

/// What each step of the probe found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Host name or address of the URL (no brackets).
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// Name resolution: the addresses, or why there are none.
    pub addresses: Result<Vec<SocketAddr>, String>,
    /// TCP: the address that answered, or the error of the last attempt. `None` when DNS failed.
    pub connected: Option<Result<SocketAddr, String>>,
    /// TLS, for `https` URLs that got a TCP connection.
    pub tls: Option<TlsReport>,
    /// One request over the connection: its status line and `Date` header. `None` when an
    /// earlier step failed.
    pub http: Option<Result<HttpHead, String>>,
}

/// The TLS handshake: what the server presented and, on failure, why it was refused.
#[derive(Debug, Clone)]
pub struct TlsReport {
    /// The certificates the server sent, end entity first.
    pub chain: Vec<CertInfo>,
    /// The refusal: Go-style detail and the fix (same wording as the client's errors).
    pub failure: Option<TlsFailure>,
    /// The CA file in use (`tls-ca-file` or `<config dir>/certs/<host>.crt`).
    pub trust_file: Option<PathBuf>,
    chain_der: Vec<CertificateDer<'static>>,
}

/// Why the handshake failed.
#[derive(Debug, Clone)]
pub struct TlsFailure {
    /// What went wrong, e.g. "certificate signed by unknown authority ...".
    pub detail: String,
    /// What to do about it.
    pub hint: String,
    /// The certificate the client needs and did not have: the subject of the issuer of the last
    /// certificate presented, or that certificate itself when it is self-signed.
    pub missing: Option<String>,
}

/// One presented certificate, for display.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
    /// End of validity.
    pub not_after: String,
}

/// The answer to the probe's request.
#[derive(Debug, Clone)]
pub struct HttpHead {
    /// HTTP status code.
    pub status: u16,
    /// The server's clock, from the `Date` header.
    pub date: Option<SystemTime>,
}

/// Probes the GitLab of `cfg` (the same URL, CA and client-certificate rules as [`super::Client`]).
/// Fails only when the configuration itself is unusable (bad URL, unreadable TLS files).
pub async fn probe(cfg: &super::ClientConfig, timeout: Duration) -> Result<ProbeReport, ApiError> {
    let base = api_base(&cfg.url)?;
    let host = base
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = base.port_or_known_default().unwrap_or(443);
    let https = base.scheme() == "https";
    let files = TlsFiles::resolve(cfg, &host);
    let setup = if https {
        let trust = match &files.ca_file {
            Some(ca) => Some(tls::TrustFile::from_pem(ca, &read_file(ca)?)?),
            None => None,
        };
        let identity = match (&files.cert_file, &files.key_file) {
            (Some(c), Some(k)) => Some((
                c.as_path(),
                tls::Identity::from_pem(c, &read_file(c)?, k, &read_file(k)?)?,
            )),
            _ => None,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let mut config = tls::client_config_with(trust.as_ref(), identity, move |inner| {
            Arc::new(Recorder { inner, seen: record })
        })?;
        // One plain HTTP/1.1 request follows the handshake.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some((Arc::new(config), seen, files.ca_file.clone()))
    } else {
        None
    };
    let path = format!("{}version", base.path());
    let shown = redact_url(base.as_str());
    let report = tokio::task::spawn_blocking(move || run(host, port, setup, &path, &shown, timeout))
        .await
        .map_err(|e| ApiError::ClientSetup {
            detail: format!("the connection probe did not finish: {e}"),
        })?;
    Ok(report)
}

type TlsSetup = (
    Arc<rustls::ClientConfig>,
    Arc<Mutex<Vec<CertificateDer<'static>>>>,
    Option<PathBuf>,
);

fn run(
    host: String,
    port: u16,
    setup: Option<TlsSetup>,
    path: &str,
    shown_url: &str,
    timeout: Duration,
) -> ProbeReport {
    let mut report = ProbeReport {
        addresses: (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
            .map_err(|e| e.to_string()),
        host,
        port,
        connected: None,
        tls: None,
        http: None,
    };
    let addrs = match &report.addresses {
        Ok(a) if !a.is_empty() => a.clone(),
        Ok(_) => {
            report.addresses = Err("the name has no address".to_string());
            return report;
        }
        Err(_) => return report,
    };
    let mut last = String::new();
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some((s, addr));
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let Some((mut tcp, addr)) = stream else {
        report.connected = Some(Err(last));
        return report;
    };
    report.connected = Some(Ok(addr));
    if tcp.set_read_timeout(Some(timeout)).is_err() || tcp.set_write_timeout(Some(timeout)).is_err() {
        report.http = Some(Err("cannot set socket timeouts".to_string()));
        return report;
    }
    let request = format!(
        "HEAD {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: oxrunner-doctor\r\nConnection: close\r\n\r\n",
        host_header(&report.host, port)
    );
    let Some((config, seen, trust_file)) = setup else {
        report.http = Some(exchange(&mut tcp, &request));
        return report;
    };
    let (tls_report, http) = tls_exchange(
        &mut tcp,
        &report.host,
        config,
        &seen,
        trust_file,
        &request,
        shown_url,
    );
    report.tls = Some(tls_report);
    report.http = http;
    report
}

fn tls_exchange(
    tcp: &mut TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    seen: &Mutex<Vec<CertificateDer<'static>>>,
    trust_file: Option<PathBuf>,
    request: &str,
    shown_url: &str,
) -> (TlsReport, Option<Result<HttpHead, String>>) {
    let mut tls_report = TlsReport {
        chain: Vec::new(),
        failure: None,
        trust_file,
        chain_der: Vec::new(),
    };
    let name = match ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(e) => {
            tls_report.failure = Some(plain_failure(format!(
                "{host} is not a valid TLS server name: {e}"
            )));
            return (tls_report, None);
        }
    };
    let mut conn = match rustls::ClientConnection::new(config, name) {
        Ok(c) => c,
        Err(e) => {
            tls_report.failure = Some(plain_failure(format!("cannot start TLS: {e}")));
            return (tls_report, None);
        }
    };
    let mut handshake = Ok(());
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(tcp) {
            handshake = Err(e);
            break;
        }
    }
    tls_report.chain_der = match seen.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    tls_report.chain = tls_report.chain_der.iter().filter_map(CertInfo::of).collect();
    if let Err(e) = handshake {
        let (detail, hint) = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(r) => crate::tls_hint::describe(r, shown_url),
            None => (format!("TLS handshake failed: {e}"), String::new()),
        };
        let missing = tls_report.chain.last().map(|c| {
            if c.self_signed {
                format!("\"{}\" itself (self-signed)", c.subject)
            } else {
                format!("the issuer \"{}\"", c.issuer)
            }
        });
        tls_report.failure = Some(TlsFailure {
            detail,
            hint,
            missing,
        });
        return (tls_report, None);
    }
    let mut stream = rustls::Stream::new(&mut conn, tcp);
    (tls_report, Some(exchange(&mut stream, request)))
}

fn plain_failure(detail: String) -> TlsFailure {
    TlsFailure {
        detail,
        hint: String::new(),
        missing: None,
    }
}

fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sends the request and reads the response head (at most 64 KiB).
fn exchange(io: &mut impl ReadWrite, request: &str) -> Result<HttpHead, String> {
    io.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    io.flush().map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match io.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if head.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "the server's answer is not HTTP".to_string())?;
    let date = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("date"))
        .and_then(|(_, v)| httpdate::parse_http_date(v.trim()).ok());
    Ok(HttpHead { status, date })
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl CertInfo {
    fn of(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, c) = X509Certificate::from_der(der.as_ref()).ok()?;
        Some(CertInfo {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            self_signed: c.subject().as_raw() == c.issuer().as_raw(),
            not_after: c.validity().not_after.to_string(),
        })
    }
}

impl TlsReport {
    /// Whether a client trusting only the PEM bundle `bundle` (git's `http.sslCAInfo` or the system
    /// bundle) would accept the chain the server presented for `host`. Like OpenSSL, a presented
    /// certificate that is itself in the bundle is trusted.
    pub fn trusted_by_bundle(&self, bundle: &[u8], host: &str) -> Result<(), String> {
        let Some((end_entity, intermediates)) = self.chain_der.split_first() else {
            return Err("the server presented no certificate".to_string());
        };
        let certs = CertificateDer::pem_slice_iter(bundle)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the bundle cannot be read: {e}"))?;
        if certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(());
        }
        let mut roots = rustls::RootCertStore::empty();
        let (_, _) = roots.add_parsable_certificates(certs);
        if roots.is_empty() {
            return Err("the bundle holds no usable certificate".to_string());
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Records the presented chain, then lets the client's verifier decide.
#[derive(Debug)]
struct Recorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        match self.seen.lock() {
            Ok(mut g) => *g = chain,
            Err(p) => *p.into_inner() = chain,
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
