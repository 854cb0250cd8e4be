//! TLS material for the HTTPS variant of the fake, plus a throw-away test PKI.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::FakeError;

/// PEM certificate chain and private key served by the fake.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TlsMaterial {
    /// One certificate that is both the server's and its own CA, like
    /// `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=<cn> -addext subjectAltName=<names>`
    /// makes: self-signed, `basicConstraints` critical `CA:TRUE`, no key usage restrictions.
    /// `names` are subjectAltName entries (IP addresses become IP entries). The runner has to
    /// trust [`TlsMaterial::cert_pem`] itself; the validity window is the caller's, so expired
    /// or not-yet-valid certificates can be served too.
    pub fn self_signed_ca(
        common_name: &str,
        names: &[&str],
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> Result<TlsMaterial, FakeError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.self_signed(&key)?;
        Ok(TlsMaterial {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"[REDACTED]")
            .finish()
    }
}

/// A private CA and a server certificate for `localhost` / `127.0.0.1` / `::1` signed by it, so
/// tests can exercise `tls-ca-file` the way a self-hosted GitLab with an internal CA is used.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA certificate (what a runner's `tls-ca-file` would contain).
    pub ca_pem: String,
    /// Server certificate (leaf, followed by nothing else) and key for [`crate::FakeOptions::tls`].
    pub server: TlsMaterial,
    /// A client certificate signed by the same CA (for [`crate::FakeOptions::client_ca`]).
    pub client: TlsMaterial,
}

impl TestPki {
    pub fn generate() -> Result<TestPki, FakeError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake-gitlab test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "fake-gitlab test client");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &issuer)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            server: TlsMaterial {
                cert_pem: leaf.pem(),
                key_pem: leaf_key.serialize_pem(),
            },
            client: TlsMaterial {
                cert_pem: client.pem(),
                key_pem: client_key.serialize_pem(),
            },
        })
    }
}
