//! A three-level test PKI (root -> intermediate -> server), for tests of the CA chain a runner hands its jobs:
//! the server presents its certificate and the intermediate, and the intermediate can name where its issuer is
//! published (Authority Information Access `caIssuers`), as public CAs do.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::FakeError;
use crate::tls::TlsMaterial;

/// `id-pe-authorityInfoAccess`.
const AIA_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// DER of `id-ad-caIssuers` (1.3.6.1.5.5.7.48.2).
const CA_ISSUERS_DER: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];

#[derive(Clone, Debug)]
pub struct TestChain {
    pub root_pem: String,
    pub root_der: Vec<u8>,
    pub intermediate_pem: String,
    pub leaf_pem: String,
    /// For [`crate::FakeOptions::tls`]: the leaf followed by the intermediate, and the leaf's key.
    pub server: TlsMaterial,
}

impl TestChain {
    /// A fresh chain; with `issuer_url`, the intermediate names it as where its issuer (the root) is published.
    pub fn generate(issuer_url: Option<&str>) -> Result<TestChain, FakeError> {
        let root_key = KeyPair::generate()?;
        let root_params = ca_params("fake-gitlab test root", Vec::new())?;
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate()?;
        let extensions = issuer_url.map(aia).into_iter().collect();
        let int_params = ca_params("fake-gitlab test intermediate", extensions)?;
        let intermediate = int_params.signed_by(&int_key, &root_issuer)?;
        let int_issuer = Issuer::new(int_params, int_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params.signed_by(&leaf_key, &int_issuer)?;
        Ok(TestChain {
            root_pem: root.pem(),
            root_der: root.der().to_vec(),
            intermediate_pem: intermediate.pem(),
            leaf_pem: leaf.pem(),
            server: TlsMaterial {
                cert_pem: format!("{}{}", leaf.pem(), intermediate.pem()),
                key_pem: leaf_key.serialize_pem(),
            },
        })
    }
}

fn ca_params(name: &str, custom_extensions: Vec<CustomExtension>) -> Result<CertificateParams, FakeError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.custom_extensions = custom_extensions;
    Ok(params)
}

/// `SEQUENCE { SEQUENCE { caIssuers, [6] uri } }`.
fn aia(url: &str) -> CustomExtension {
    let mut location = vec![0x86];
    push_len(&mut location, url.len());
    location.extend_from_slice(url.as_bytes());
    let mut description = vec![0x30];
    push_len(&mut description, CA_ISSUERS_DER.len() + location.len());
    description.extend_from_slice(CA_ISSUERS_DER);
    description.extend_from_slice(&location);
    let mut content = vec![0x30];
    push_len(&mut content, description.len());
    content.extend_from_slice(&description);
    CustomExtension::from_oid_content(AIA_OID, content)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x81);
        out.push((len & 0xff) as u8);
    }
}
