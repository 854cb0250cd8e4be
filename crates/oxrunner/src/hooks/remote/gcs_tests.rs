//! The V4 signer against Google's published conformance vectors (`tests/data/gcs-v4/`), byte for byte, and the
//! store's configuration: credentials sources, errors with hints, nothing secret in `Debug` or shown URLs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;

use super::{Signer, V4Request, encode_path};

/// Vectors this signer does not run, each with the reason. Every other `signingV4Tests` case must match.
const NOT_RUN: &[(&str, &str)] = &[];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gcs-v4")
        .join(name)
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

pub(crate) fn test_account() -> (String, String) {
    let account = read_json("test_service_account.not-a-test.json");
    (
        account["client_email"].as_str().unwrap().to_owned(),
        account["private_key"].as_str().unwrap().to_owned(),
    )
}

fn without_scheme(endpoint: &str) -> &str {
    endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest)
}

fn string_pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The vector's URL as our signer makes it. Where the client libraries take the host from (`hostname`, then a
/// client endpoint, then an emulator, then the universe domain) is the libraries' option handling; the signer is
/// given the result.
fn sign_vector(signer: &Signer, t: &Value) -> String {
    let s = |k: &str| t[k].as_str().filter(|v| !v.is_empty());
    let scheme = s("scheme").unwrap_or("https");
    let universe = format!("storage.{}", s("universeDomain").unwrap_or("googleapis.com"));
    let mut host = s("hostname")
        .or(s("clientEndpoint").map(without_scheme))
        .or(s("emulatorHostname").map(without_scheme))
        .unwrap_or(&universe)
        .to_owned();
    let bucket = s("bucket").unwrap();
    let object = s("object");
    let path = match s("urlStyle") {
        Some("VIRTUAL_HOSTED_STYLE") => {
            host = format!("{bucket}.{host}");
            encode_path(&[object.unwrap_or_default()])
        }
        Some("BUCKET_BOUND_HOSTNAME") => {
            host = s("bucketBoundHostname").unwrap().to_owned();
            encode_path(&[object.unwrap_or_default()])
        }
        _ => match object {
            Some(o) => encode_path(&[bucket, o]),
            None => encode_path(&[bucket]),
        },
    };
    let timestamp = time::OffsetDateTime::parse(
        s("timestamp").unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let req = V4Request {
        method: s("method").unwrap(),
        scheme,
        host: &host,
        path: &path,
        headers: &string_pairs(&t["headers"]),
        query: &string_pairs(&t["queryParameters"]),
        timestamp,
        expires_secs: t["expiration"].as_u64().unwrap(),
    };
    signer.sign_url(&req).unwrap()
}

#[test]
fn signed_urls_match_googles_v4_conformance_vectors() {
    let (email, key) = test_account();
    let signer = Signer::new(&email, &key, "the test account").unwrap();
    let vectors = read_json("v4_signatures.json");
    let cases = vectors["signingV4Tests"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for t in cases {
        let name = t["description"].as_str().unwrap();
        if NOT_RUN.iter().any(|(n, _)| *n == name) {
            continue;
        }
        ran += 1;
        let got = sign_vector(&signer, t);
        let want = t["expectedUrl"].as_str().unwrap();
        if got != want {
            failures.push(format!("{name}:\n  got  {got}\n  want {want}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} vectors differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The skip list names real vectors only, and most of them run.
    for (skipped, why) in NOT_RUN {
        assert!(!why.is_empty());
        assert!(
            cases.iter().any(|t| t["description"] == *skipped),
            "{skipped:?} is not a vector"
        );
    }
    assert_eq!(ran + NOT_RUN.len(), cases.len());
    assert!(ran >= 25, "only {ran} vectors ran");
}
