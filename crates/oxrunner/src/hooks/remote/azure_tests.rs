//! The Azure SAS: string-to-sign and signature against values computed outside this code, the URL a blob gets,
//! and what configuration errors and `Debug` show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use oxrunner_config::{CacheAzureConfig, CacheConfig, Secret};

use super::AzureStore;
use crate::hooks::RemoteSetup;
use crate::hooks::remote::transfer::clean_url;

/// Azurite's published development account key (a public, well-known value).
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn cfg(extra: impl FnOnce(&mut CacheAzureConfig)) -> CacheAzureConfig {
    let mut c = CacheAzureConfig {
        account_name: Some("devstoreaccount1".into()),
        account_key: Some(Secret::new(DEV_KEY)),
        container_name: Some("oxrt-cache".into()),
        storage_domain: None,
    };
    extra(&mut c);
    c
}

fn broken(c: CacheAzureConfig) -> String {
    let cache = CacheConfig {
        cache_type: Some("azure".into()),
        azure: Some(c),
        ..CacheConfig::default()
    };
    match RemoteSetup::from_config(Some(&cache), "abcdefghi") {
        RemoteSetup::Broken(why) => why,
        other => panic!("not broken: {other:?}"),
    }
}

fn query(url: &reqwest::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

fn fixed_now() -> time::OffsetDateTime {
    time::macros::datetime!(2026-01-02 03:04:05 UTC)
}

/// The expected signatures were computed independently with Python's standard library:
///
/// ```text
/// python3 -c '
/// import hmac,hashlib,base64
/// k=base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
/// for p,proto in (("r","https"),("w","https,http")):
///   s="\n".join([p,"2026-01-02T02:04:05Z","2026-01-02T04:04:05Z",
///       "/blob/devstoreaccount1/oxrt-cache/fleet/project/42/deps main","","",proto,"2022-11-02","b",
///       "","","","","","",""])
///   print(p, base64.b64encode(hmac.new(k,s.encode(),hashlib.sha256).digest()).decode())'
/// ```
#[test]
fn string_to_sign_and_signature_match_an_independent_computation() {
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, DEV_KEY).unwrap();
    let text = super::string_to_sign(&super::SasFields {
        permissions: "r",
        start: "2026-01-02T02:04:05Z",
        expiry: "2026-01-02T04:04:05Z",
        account: "devstoreaccount1",
        container: "oxrt-cache",
        blob: "fleet/project/42/deps main",
        protocol: "https",
        version: "2022-11-02",
    });
    assert_eq!(
        text,
        "r\n2026-01-02T02:04:05Z\n2026-01-02T04:04:05Z\n/blob/devstoreaccount1/oxrt-cache/fleet/project/42/deps main\n\
         \n\nhttps\n2022-11-02\nb\n\n\n\n\n\n\n"
    );
    assert_eq!(
        super::signature(&key, &text),
        "EE5H5iuKtIVupHzSeYopVjMeG1VMmblyvaTiGCu38YI="
    );
}

#[test]
fn urls_on_azure_are_virtual_host_https_with_upstreams_sas_fields() {
    let store = AzureStore::from_config(&cfg(|c| c.account_name = Some("acct".into()))).unwrap();
    let url = store.sas_url(
        "fleet/project/42/deps main",
        "r",
        fixed_now(),
        Duration::from_secs(3600),
    );
    assert_eq!(
        clean_url(url.as_str()),
        "https://acct.blob.core.windows.net/oxrt-cache/fleet/project/42/deps%20main"
    );
    assert_eq!(query(&url, "sv"), "2022-11-02");
    assert_eq!(query(&url, "spr"), "https");
    assert_eq!(query(&url, "st"), "2026-01-02T02:04:05Z");
    assert_eq!(query(&url, "se"), "2026-01-02T04:04:05Z");
    assert_eq!(query(&url, "sr"), "b");
    assert_eq!(query(&url, "sp"), "r");

    let other = AzureStore::from_config(&cfg(|c| {
        c.account_name = Some("acct".into());
        c.storage_domain = Some("blob.core.chinacloudapi.cn".into());
    }))
    .unwrap();
    assert!(
        other
            .presign_get("a/b", Duration::from_secs(60))
            .url
            .as_str()
            .starts_with("https://acct.blob.core.chinacloudapi.cn/oxrt-cache/a/b?")
    );
}

/// An emulator endpoint (scheme, host, port, account path) is addressed path-style and signs `https,http`; the
/// signature is the one Python computed for the `w` line above.
#[test]
fn an_endpoint_with_a_scheme_is_addressed_path_style() {
    let store = AzureStore::from_config(&cfg(|c| {
        c.storage_domain = Some("http://127.0.0.1:10000/devstoreaccount1".into());
    }))
    .unwrap();
    let url = store.sas_url(
        "fleet/project/42/deps main",
        "w",
        fixed_now(),
        Duration::from_secs(3600),
    );
    assert_eq!(
        clean_url(url.as_str()),
        "http://127.0.0.1:10000/devstoreaccount1/oxrt-cache/fleet/project/42/deps%20main"
    );
    assert_eq!(query(&url, "spr"), "https,http");
    assert_eq!(query(&url, "sig"), "c7gLOUzkrF+5i501FJ76771rO32Anhxv1Qt1M0/R3MY=");
    assert_eq!(
        store.describe(),
        "Azure container \"oxrt-cache\" at http://127.0.0.1:10000/devstoreaccount1"
    );
    let put = store.presign_put("k", Duration::from_secs(60));
    assert_eq!(
        put.headers,
        vec![("x-ms-blob-type".to_owned(), "BlockBlob".to_owned())]
    );
    assert_eq!(query(&put.url, "sp"), "w");
    assert_eq!(
        query(&store.presign_head("k", Duration::from_secs(60)).url, "sp"),
        "r"
    );
}

#[test]
fn missing_or_invalid_settings_name_the_key_and_never_show_it() {
    let why = broken(cfg(|c| c.account_name = None));
    assert!(
        why.contains("AccountName is missing") && why.contains("hint:"),
        "{why}"
    );
    let why = broken(cfg(|c| c.container_name = Some(" ".into())));
    assert!(
        why.contains("ContainerName is missing") && why.contains("hint:"),
        "{why}"
    );
    let why = broken(cfg(|c| c.account_key = None));
    assert!(
        why.contains("AccountKey is missing") && why.contains("hint:"),
        "{why}"
    );
    let bad_key = "not base64 at all: s3cr3t!";
    let why = broken(cfg(|c| c.account_key = Some(Secret::new(bad_key))));
    assert!(why.contains("AccountKey is not valid base64"), "{why}");
    assert!(!why.contains(bad_key), "{why}");
    let why = broken(cfg(|c| c.storage_domain = Some("ftp://x".into())));
    assert!(why.contains("StorageDomain") && why.contains("hint:"), "{why}");
    assert!(why.contains("local cache_dir"), "{why}");
}

#[test]
fn debug_shows_no_key() {
    let store = AzureStore::from_config(&cfg(|_| {})).unwrap();
    let shown = format!("{store:?}");
    assert!(
        shown.contains("oxrt-cache") && shown.contains("devstoreaccount1"),
        "{shown}"
    );
    assert!(!shown.contains(DEV_KEY) && !shown.contains("key"), "{shown}");
    let signed = store.presign_get("k", Duration::from_secs(60));
    let shown = format!("{signed:?}");
    assert!(!shown.contains("sig="), "{shown}");
}
