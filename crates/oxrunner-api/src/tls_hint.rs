//! Wording of TLS failures: the detail in Go's terms (users search for gitlab-runner's messages)
//! and a hint that starts from what the user already did, so it never tells them to pass the CA
//! file they passed. The facts come from [`crate::client::Rejected`], which the certificate
//! verifier attaches to its error.

use rustls::CertificateError as C;

use crate::client::{Presented, Rejected};

const UNKNOWN_AUTHORITY: &str =
    "certificate signed by unknown authority (x509: certificate signed by unknown authority)";

/// `(detail, hint)` for a rustls error met on a request to `url` (already redacted).
pub(crate) fn describe(err: &rustls::Error, url: &str) -> (String, String) {
    let target = Target::of(url);
    match err {
        rustls::Error::InvalidCertificate(C::Other(o)) => match o.0.downcast_ref::<Rejected>() {
            Some(r) => rejected(r, &target),
            None => (format!("certificate verification failed: {o}"), target.ca_hint()),
        },
        // Chain problems arrive wrapped in `Rejected`; a bare bad signature is the handshake's.
        rustls::Error::InvalidCertificate(C::BadSignature) => (
            "the server's handshake signature does not match its certificate: it does not hold the certificate's private key".to_string(),
            format!(
                "make sure {} is served with the key belonging to its certificate; otherwise this is not your GitLab server",
                target.host
            ),
        ),
        rustls::Error::InvalidCertificate(c) => (certificate_text(c), target.ca_hint()),
        rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => (
            format!("the server did not accept our client certificate or requires one ({err})"),
            format!(
                "pass --tls-cert-file <cert.pem> and --tls-key-file <key.pem> or put them at <config dir>/certs/{h}.auth.crt and {h}.auth.key",
                h = target.host
            ),
        ),
        other => (format!("TLS handshake failed: {other}"), target.ca_hint()),
    }
}

/// Host (as gitlab-runner names files in `certs/`: no port, no brackets) and port of the URL.
struct Target {
    host: String,
    port: u16,
}

impl Target {
    fn of(url: &str) -> Target {
        let parsed = url::Url::parse(url).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .unwrap_or_else(|| "<host>".to_string());
        let port = parsed.and_then(|u| u.port_or_known_default()).unwrap_or(443);
        Target { host, port }
    }

    fn ca_hint(&self) -> String {
        format!(
            "pass --tls-ca-file <ca.pem> or put the CA at <config dir>/certs/{}.crt",
            self.host
        )
    }
}

fn certificate_text(c: &C) -> String {
    match c {
        C::UnknownIssuer => UNKNOWN_AUTHORITY.to_string(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("certificate is not valid for this host name ({c})")
        }
        C::Expired | C::ExpiredContext { .. } => format!("certificate has expired ({c})"),
        C::NotValidYet | C::NotValidYetContext { .. } => format!("certificate is not valid yet ({c})"),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            format!("certificate is not meant for TLS servers ({c})")
        }
        other => format!("certificate verification failed: {other}"),
    }
}

fn summary(p: &Presented) -> String {
    let names = if p.names.is_empty() {
        "none".to_string()
    } else {
        p.names.join(", ")
    };
    format!(
        "the server presented subject \"{}\", issuer \"{}\"{}, valid {} to {}, subjectAltName names: {names}",
        p.subject,
        p.issuer,
        if p.self_signed { " (self-signed)" } else { "" },
        p.not_before,
        p.not_after,
    )
}

fn rejected(r: &Rejected, t: &Target) -> (String, String) {
    let Some(p) = &r.presented else {
        return (certificate_text(&r.cause), t.ca_hint());
    };
    let what = summary(p);
    // A self-signed certificate's only issuer is itself, which `listed` covers; a same-named
    // certificate in the file is a different one (typically from before a renewal).
    let issuer_listed = r.issuer_name_listed && !p.self_signed;
    let clock = "and check this machine's clock";
    match &r.cause {
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            format!("certificate is not valid for {}; {what}", t.host),
            format!(
                "use a name the certificate is valid for in the runner's url, or reissue the certificate with a subjectAltName for {} (openssl: -addext \"subjectAltName={}:{}\")",
                t.host,
                if t.host.parse::<std::net::IpAddr>().is_ok() {
                    "IP"
                } else {
                    "DNS"
                },
                t.host
            ),
        ),
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            let hint = match (&r.trust_file, r.listed) {
                (Some(f), true) => format!(
                    "{} is the certificate the server presents, but it is outside its validity period: renew it on the GitLab server and replace it in {}, {clock}",
                    f.display(),
                    f.display()
                ),
                _ => format!("renew the certificate on the GitLab server, {clock}"),
            };
            (format!("{}; {what}", certificate_text(&r.cause)), hint)
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
            format!("{}; {what}", certificate_text(&r.cause)),
            "reissue the certificate with extendedKeyUsage serverAuth (or without that extension)"
                .to_string(),
        ),
        // Any other failure of a certificate nobody vouches for comes down to an unknown issuer
        // (webpki reports a self-signed CA certificate as `CaUsedAsEndEntity` instead).
        _ if !r.listed && !issuer_listed => (format!("{UNKNOWN_AUTHORITY}; {what}"), unknown_hint(r, p, t)),
        other => (
            format!("certificate verification failed: {other}; {what}"),
            match &r.trust_file {
                Some(f) => format!(
                    "{} holds the issuer \"{}\", yet the certificate does not verify against it: check that the server sends its intermediate certificates and uses a server certificate, not a CA certificate",
                    f.display(),
                    p.issuer
                ),
                None => t.ca_hint(),
            },
        ),
    }
}

fn unknown_hint(r: &Rejected, p: &Presented, t: &Target) -> String {
    let fetch = format!(
        "openssl s_client -showcerts -connect {}:{} </dev/null",
        t.host, t.port
    );
    let wanted = if p.self_signed {
        format!("the certificate itself, which is self-signed (from the GitLab server, or: {fetch})")
    } else {
        format!("the certificate of the CA \"{}\" that issued it", p.issuer)
    };
    let stale = if p.self_signed && r.issuer_name_listed {
        format!(
            " (it holds a different certificate named \"{}\", perhaps from before the server's certificate was renewed)",
            p.subject
        )
    } else {
        String::new()
    };
    match &r.trust_file {
        Some(f) => format!(
            "{} contains neither this certificate nor its issuer{stale}: put {wanted} into it",
            f.display()
        ),
        None => format!("{}; it must contain {wanted}", t.ca_hint()),
    }
}
