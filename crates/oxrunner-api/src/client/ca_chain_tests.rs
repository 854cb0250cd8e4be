//! Unit tests of the CA chain builder: path building by name and signature, the PEM form, and the issuer file
//! formats an AIA URL may serve (PEM, DER, certs-only PKCS#7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::*;

struct Pki {
    root: CertificateDer<'static>,
    intermediate: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
}

fn ca(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    p
}

fn pki() -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca("intermediate");
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &int_issuer)
        .unwrap();
    Pki {
        root: root.der().clone(),
        intermediate: intermediate.der().clone(),
        leaf: leaf.der().clone(),
    }
}

fn record(roots: Vec<CertificateDer<'static>>) -> Arc<ChainRecord> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    ChainRecord::new("localhost", roots, provider.signature_verification_algorithms)
}

#[test]
fn every_path_to_a_trusted_root_is_listed() {
    let p = pki();
    let presented = vec![p.leaf.clone(), p.intermediate.clone()];
    let to_root = record(vec![p.root.clone()]).verified_paths(&presented).paths;
    assert_eq!(
        to_root,
        vec![vec![p.leaf.clone(), p.intermediate.clone(), p.root.clone()]]
    );
    let to_intermediate = record(vec![p.intermediate.clone()])
        .verified_paths(&presented)
        .paths;
    assert_eq!(
        to_intermediate,
        vec![vec![p.leaf.clone(), p.intermediate.clone()]]
    );
    // Both trusted: Go lists the short path and the one through the presented intermediate up to the root.
    let both = record(vec![p.intermediate.clone(), p.root.clone()])
        .verified_paths(&presented)
        .paths;
    assert_eq!(
        both,
        vec![
            vec![p.leaf.clone(), p.intermediate.clone()],
            vec![p.leaf.clone(), p.intermediate.clone(), p.root.clone()],
        ]
    );
    assert!(record(Vec::new()).verified_paths(&presented).paths.is_empty());
}

#[tokio::test]
async fn a_failed_issuer_fetch_leaves_the_job_without_a_chain_only_with_the_flag() {
    // A caIssuers URL on a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/root.der", closed.local_addr().unwrap());
    drop(closed);
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("root");
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let mut int_params = ca("intermediate");
    int_params.custom_extensions = vec![aia(&url)];
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &int_issuer)
        .unwrap();
    assert_eq!(ca_issuers_url(intermediate.der()).as_deref(), Some(url.as_str()));

    let r = record(vec![intermediate.der().clone()]);
    assert_eq!(r.job_chain(false).await, None, "nothing recorded yet");
    r.record(&gitlab(), leaf.der(), std::slice::from_ref(intermediate.der()));
    let plain = r.job_chain(false).await.unwrap();
    assert_eq!(plain.matches("BEGIN CERTIFICATE").count(), 2);
    assert_eq!(r.job_chain(true).await, None);
}

/// `SEQUENCE { SEQUENCE { id-ad-caIssuers, [6] url } }` as an Authority Information Access extension.
fn aia(url: &str) -> rcgen::CustomExtension {
    let ca_issuers = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    let mut description = ca_issuers.to_vec();
    description.extend(der(0x86, url.as_bytes()));
    rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        der(0x30, &der(0x30, &description)),
    )
}

#[test]
fn signatures_are_checked_not_only_names() {
    let p = pki();
    let other = pki();
    let r = record(Vec::new());
    assert!(r.issued(&p.leaf, &p.intermediate));
    assert!(!r.issued(&p.leaf, &other.intermediate), "same name, other key");
    assert!(!r.issued(&p.intermediate, &p.leaf), "a leaf signs nothing");
    assert!(r.self_signed(&p.root));
    assert!(!r.self_signed(&p.intermediate));
}

#[test]
fn pem_chain_is_gos_encoding_without_duplicates_or_trailing_newline() {
    let p = pki();
    let pem = pem_chain(&[p.leaf.clone(), p.root.clone(), p.leaf.clone()]);
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 2);
    assert!(pem.ends_with("-----END CERTIFICATE-----"));
    assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    let back: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, vec![p.leaf, p.root]);
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap());
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap());
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[test]
fn issuer_files_in_pem_der_and_pkcs7() {
    let p = pki();
    let pem = pem_chain(std::slice::from_ref(&p.root));
    assert_eq!(decode_certificate(pem.as_bytes()).unwrap(), Some(p.root.clone()));
    assert_eq!(decode_certificate(p.root.as_ref()).unwrap(), Some(p.root.clone()));

    // ContentInfo { signedData, [0] SignedData { 1, {}, { data }, [0] { root, intermediate }, {} } }
    let signed_data_oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    let data_oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    let mut certs = p.root.as_ref().to_vec();
    certs.extend_from_slice(p.intermediate.as_ref());
    let mut fields = vec![0x02, 0x01, 0x01];
    fields.extend(der(0x31, &[]));
    fields.extend(der(0x30, &data_oid));
    fields.extend(der(0xa0, &certs));
    fields.extend(der(0x31, &[]));
    let mut info = signed_data_oid.to_vec();
    info.extend(der(0xa0, &der(0x30, &fields)));
    let p7 = der(0x30, &info);
    assert_eq!(decode_certificate(&p7).unwrap(), Some(p.root.clone()));

    // A bundle without certificates holds no issuer; garbage is an error.
    let mut empty = vec![0x02, 0x01, 0x01];
    empty.extend(der(0x31, &[]));
    empty.extend(der(0x30, &data_oid));
    empty.extend(der(0x31, &[]));
    let mut info = signed_data_oid.to_vec();
    info.extend(der(0xa0, &der(0x30, &empty)));
    assert_eq!(decode_certificate(&der(0x30, &info)).unwrap(), None);
    assert!(decode_certificate(b"not a certificate").is_err());
}

#[test]
fn a_truncated_length_is_no_element() {
    assert!(tlv(&[0x30, 0x05, 0x01]).is_none());
    assert!(tlv(&[0x30, 0x81]).is_none());
    assert_eq!(
        tlv(&[0x04, 0x01, 0xaa, 0xbb]),
        Some((0x04, &[0xaa][..], &[0xbb][..]))
    );
}

fn gitlab() -> ServerName<'static> {
    ServerName::try_from("LocalHost").unwrap()
}

#[tokio::test]
async fn only_gitlabs_handshakes_are_recorded() {
    let p = pki();
    let other = pki();
    let r = record(vec![p.root.clone(), other.root.clone()]);
    r.record(&gitlab(), &p.leaf, std::slice::from_ref(&p.intermediate));
    let store = ServerName::try_from("127.0.0.1").unwrap();
    r.record(&store, &other.leaf, std::slice::from_ref(&other.intermediate));
    let pem = r.job_chain(false).await.unwrap();
    let got: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, vec![p.leaf, p.intermediate, p.root]);
}

/// A server may present many self-issued variants of its intermediate (same name and key, each signing every
/// other) and no way to a trusted root: without Go's bounds the path search walks their permutations (31!/16!
/// paths). It has to end within the signature budget.
#[test]
fn self_issued_variants_do_not_blow_up_the_path_search() {
    let root_key = KeyPair::generate().unwrap();
    let root = ca("root").self_signed(&root_key).unwrap();
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca("intermediate");
    let int_issuer = Issuer::new(int_params.clone(), int_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &int_issuer)
        .unwrap();
    let mut presented = vec![leaf.der().clone()];
    for serial in 0..31u64 {
        let mut p = int_params.clone();
        p.serial_number = Some(rcgen::SerialNumber::from(serial + 1));
        presented.push(p.signed_by(int_issuer.key(), &int_issuer).unwrap().der().clone());
    }
    let r = record(vec![root.der().clone()]);
    let found = r.verified_paths(&presented);
    assert!(
        found.signature_checks <= MAX_SIGNATURE_CHECKS,
        "{} signature checks",
        found.signature_checks
    );
    assert!(found.paths.is_empty());
}

/// Serves `answers` in turn (status, extra header, body) on 127.0.0.1; returns the base URL and a request count.
async fn issuer_host(
    answers: Vec<(u16, Option<String>, Vec<u8>)>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let Some((status, header, body)) = answers.get(n).cloned() else {
                continue;
            };
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
    });
    (base, hits)
}

/// leaf <- intermediate (naming `url` as its issuer's) <- root; the intermediate is the trusted anchor.
fn pki_with_aia(url: &str) -> (Pki, Arc<ChainRecord>) {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let mut int_params = ca("intermediate");
    int_params.custom_extensions = vec![aia(url)];
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &int_issuer)
        .unwrap();
    let p = Pki {
        root: root.der().clone(),
        intermediate: intermediate.der().clone(),
        leaf: leaf.der().clone(),
    };
    let r = record(vec![p.intermediate.clone()]);
    r.record(&gitlab(), &p.leaf, std::slice::from_ref(&p.intermediate));
    (p, r)
}

fn count(pem: Option<String>) -> usize {
    pem.map_or(0, |p| p.matches("BEGIN CERTIFICATE").count())
}

#[tokio::test]
async fn an_issuer_url_serving_another_ca_ends_the_chain_before_it() {
    let stranger = pki().root;
    let (base, hits) = issuer_host(vec![(200, None, stranger.as_ref().to_vec())]).await;
    let (_, r) = pki_with_aia(&format!("{base}/root.der"));
    assert_eq!(count(r.job_chain(true).await), 2, "leaf and intermediate only");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_redirect_at_the_issuer_url_is_not_followed() {
    // Where the redirect points, another CA's root: followed, it would end the chain.
    let (base, hits) = issuer_host(vec![
        (302, Some("Location: /moved.der".to_string()), Vec::new()),
        (200, None, pki().root.as_ref().to_vec()),
    ])
    .await;
    let (_, r) = pki_with_aia(&format!("{base}/root.der"));
    assert_eq!(
        r.job_chain(true).await,
        None,
        "a fetch that did not answer 200 drops the chain"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn an_expired_issuer_in_the_system_roots_drops_the_chain() {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = ca("root");
    root_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    root_params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca("intermediate");
    let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &int_issuer)
        .unwrap();
    let r = record(vec![intermediate.der().clone(), root.der().clone()]);
    r.record(&gitlab(), leaf.der(), std::slice::from_ref(intermediate.der()));
    assert!(count(r.job_chain(false).await) >= 2);
    assert_eq!(r.job_chain(true).await, None);
}

/// Certificates that all carry one name but each its own key, every one signed by the next: the path through
/// them is long and every step tries every one of them. The signature budget ends the search early.
#[test]
fn the_signature_budget_ends_a_long_search() {
    let keys: Vec<KeyPair> = (0..31).map(|_| KeyPair::generate().unwrap()).collect();
    let issuers: Vec<Issuer<'_, &KeyPair>> = keys.iter().map(|k| Issuer::new(ca("same"), k)).collect();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuers[0])
        .unwrap();
    let mut presented = vec![leaf.der().clone()];
    for i in 0..keys.len() {
        let parent = &issuers[(i + 1) % issuers.len()];
        presented.push(ca("same").signed_by(&keys[i], parent).unwrap().der().clone());
    }
    let found = record(Vec::new()).verified_paths(&presented);
    assert_eq!(found.signature_checks, MAX_SIGNATURE_CHECKS);
    assert!(found.paths.is_empty());
}
