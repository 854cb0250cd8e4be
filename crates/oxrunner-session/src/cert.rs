//! The session server's TLS certificate: self-signed for the advertised host, as gitlab-runner makes it (a server
//! certificate, not a CA; GitLab pins it from the `session` object of each job request), but kept beside
//! config.toml so GitLab sees the same one across restarts. Both files are written atomically with mode 0600.
//! A pair put there by the operator under the same names is used as it is and never replaced: only a pair the runner
//! generated (marked by a `.generated` file beside it) is renewed by age.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::SessionError;

/// gitlab-runner's certificates are valid for two years.
const VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// A generated certificate is replaced well before it expires (files older than this are regenerated).
const RENEW_AFTER: Duration = Duration::from_secs(700 * 24 * 3600);
/// Clock skew between the runner and GitLab.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A PEM certificate and its private key.
#[derive(Clone)]
pub struct CertPair {
    /// The certificate sent to GitLab in each job request.
    pub cert_pem: String,
    /// The private key; never logged.
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"[REDACTED]")
            .finish()
    }
}

/// Where the pair for `host` lives in `dir` (one pair per host, so changing `advertise_address` gets a
/// certificate that names the new host).
pub fn paths(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        dir.join(format!("session-server-{safe}.crt")),
        dir.join(format!("session-server-{safe}.key")),
    )
}

/// The file beside a generated pair that says the runner made it (and may renew it).
fn generated_marker(cert_path: &Path) -> PathBuf {
    cert_path.with_extension("generated")
}

/// The pair for `host` from `dir`, generated (and saved) when missing or, if the runner generated it, due for
/// renewal.
pub fn load_or_create(dir: &Path, host: &str) -> Result<CertPair, SessionError> {
    let (cert_path, key_path) = paths(dir, host);
    let marker = generated_marker(&cert_path);
    let renewable = marker.exists();
    if let (Some(cert_pem), Some(key_pem)) = (
        read_current(&cert_path, renewable)?,
        read_current(&key_path, renewable)?,
    ) {
        tighten(&key_path)?;
        return Ok(CertPair { cert_pem, key_pem });
    }
    let pair = generate(host)?;
    // The marker first: a crash between the writes leaves a pair the next start regenerates, never one of ours
    // that looks like the operator's.
    write_private(
        &marker,
        "written by oxrunner; delete this file to keep the pair beside it as your own\n",
    )?;
    write_private(&key_path, &pair.key_pem)?;
    write_private(&cert_path, &pair.cert_pem)?;
    Ok(pair)
}

/// A self-signed server certificate for `host` (an IP address or a DNS name).
pub fn generate(host: &str) -> Result<CertPair, SessionError> {
    let gen_err = |e: rcgen::Error| SessionError::CertGen {
        host: host.to_owned(),
        reason: e.to_string(),
    };
    let key = KeyPair::generate().map_err(gen_err)?;
    let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(gen_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "GitLab Runner");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + VALIDITY).into();
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The file's text, or `None` when it is missing, empty or (`renewable` only) old enough to renew.
fn read_current(path: &Path, renewable: bool) -> Result<Option<String>, SessionError> {
    let io_err = |source| SessionError::CertFile {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if renewable && age > RENEW_AFTER {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(io_err)?;
    Ok(Some(text).filter(|t| !t.trim().is_empty()))
}

/// A key file someone made readable to others is put back to 0600.
fn tighten(path: &Path) -> Result<(), SessionError> {
    let meta = std::fs::metadata(path).map_err(|source| SessionError::CertFile {
        path: path.to_owned(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "the session server key was readable by others; setting mode 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
            SessionError::CertFile {
                path: path.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Writes `text` to a 0600 temporary file beside `path`, then renames it over `path`: a crash never leaves a
/// half-written file, and the content is never readable by others, not even for a moment.
fn write_private(path: &Path, text: &str) -> Result<(), SessionError> {
    let io_err = |source| SessionError::CertFile {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}
