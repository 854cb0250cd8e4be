//! The CA chain a job gets as `CI_SERVER_TLS_CA_FILE` when the runner trusts GitLab through the system's roots
//! (here `SSL_CERT_FILE`) rather than a `tls-ca-file`: gitlab-runner passes the chain that verified GitLab's
//! certificate (leaf, intermediate, trusted anchor), and with `FF_RESOLVE_FULL_TLS_CHAIN` extends it past an
//! anchor that is not self-signed by fetching the issuer its Authority Information Access URL names (served on
//! 127.0.0.1 here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fake_gitlab::{FakeOptions, JobSpec, TestChain};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::hooks::{Env, fake_options};

/// Answers every request with `body` (the root certificate, DER) and counts them.
async fn issuer_server(body: Arc<std::sync::Mutex<Vec<u8>>>) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-cert\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, hits)
}

fn ders(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect()
}

/// Runs one job on a runner that trusts `trusted` (PEM) as its system roots and returns the certificates of
/// the job's `CI_SERVER_TLS_CA_FILE` (empty when it has none).
async fn job_chain(chain: &TestChain, trusted: &str, runner_extra: &str) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, trusted).unwrap();
    let opts = FakeOptions {
        tls: Some(chain.server.clone()),
        ..fake_options()
    };
    let env = Env::start_with(
        opts,
        1,
        &[
            ("SSL_CERT_FILE", roots.to_str().unwrap()),
            ("SSL_CERT_DIR", dir.path().to_str().unwrap()),
        ],
        runner_extra,
    )
    .await;
    let id = env.fake.enqueue_job(
        JobSpec::new(
            "chain",
            &[
                "echo \"ca-file=${CI_SERVER_TLS_CA_FILE:-none}\"",
                "cat \"${CI_SERVER_TLS_CA_FILE:-/dev/null}\"",
            ],
        )
        .variable("GIT_STRATEGY", "empty"),
    );
    let job = env.succeeded(id).await;
    ders(&job.trace_text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_gets_the_verified_chain_up_to_the_trusted_root() {
    let chain = TestChain::generate(None).unwrap();
    let got = job_chain(&chain, &chain.root_pem, "").await;
    let want: Vec<Vec<u8>> = [&chain.leaf_pem, &chain.intermediate_pem, &chain.root_pem]
        .iter()
        .flat_map(|p| ders(p))
        .collect();
    assert!(
        got == want,
        "want leaf, intermediate and root in that order; got {} certificates",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_chain_flag_fetches_the_issuer_of_a_trusted_intermediate() {
    let body = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (port, hits) = issuer_server(body.clone()).await;
    let chain = TestChain::generate(Some(&format!("http://127.0.0.1:{port}/root.der"))).unwrap();
    *body.lock().unwrap() = chain.root_der.clone();
    let leaf_and_intermediate: Vec<Vec<u8>> = [&chain.leaf_pem, &chain.intermediate_pem]
        .iter()
        .flat_map(|p| ders(p))
        .collect();

    // Without the flag the chain ends at the trusted intermediate, and nothing is fetched.
    let got = job_chain(&chain, &chain.intermediate_pem, "").await;
    assert!(
        got == leaf_and_intermediate,
        "want leaf and intermediate; got {} certificates",
        got.len()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let got = job_chain(
        &chain,
        &chain.intermediate_pem,
        "  [runners.feature_flags]\n    FF_RESOLVE_FULL_TLS_CHAIN = true\n",
    )
    .await;
    let mut want = leaf_and_intermediate.clone();
    want.push(chain.root_der.clone());
    assert_eq!(
        got, want,
        "the root fetched from the intermediate's caIssuers URL"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// Object storage is another host with its own chain: downloading a dependency from it must not turn the next
/// job's `CI_SERVER_TLS_CA_FILE` into the store's chain (git would then refuse GitLab's certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_from_object_storage_leaves_the_next_job_with_gitlabs_chain() {
    let gitlab = TestChain::generate(None).unwrap();
    let store = TestChain::generate(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, format!("{}{}", gitlab.root_pem, store.root_pem)).unwrap();
    let opts = FakeOptions {
        tls: Some(gitlab.server.clone()),
        object_storage_tls: Some(store.server.clone()),
        ..fake_options()
    };
    let env = Env::start_with(
        opts,
        1,
        &[
            ("SSL_CERT_FILE", roots.to_str().unwrap()),
            ("SSL_CERT_DIR", dir.path().to_str().unwrap()),
        ],
        "",
    )
    .await;
    assert_ne!(env.fake.object_storage_url(), env.fake.url());
    let producer = env.fake.enqueue_job(
        JobSpec::new("build", &["echo built > out.txt"])
            .variable("GIT_STRATEGY", "empty")
            .artifact(fake_gitlab::ArtifactSpec {
                paths: vec!["out.txt".into()],
                ..fake_gitlab::ArtifactSpec::default()
            }),
    );
    env.succeeded(producer).await;
    let consumer = env.fake.enqueue_job(
        JobSpec::new("test", &["grep built out.txt"])
            .variable("GIT_STRATEGY", "empty")
            .dependency(producer),
    );
    env.succeeded(consumer).await;
    let store_gets = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/object-storage/"))
        .count();
    assert!(store_gets > 0, "the dependency came from object storage");

    let id = env.fake.enqueue_job(
        JobSpec::new("chain", &["cat \"${CI_SERVER_TLS_CA_FILE:-/dev/null}\""])
            .variable("GIT_STRATEGY", "empty"),
    );
    let got = ders(&env.succeeded(id).await.trace_text());
    let want: Vec<Vec<u8>> = [&gitlab.leaf_pem, &gitlab.intermediate_pem, &gitlab.root_pem]
        .iter()
        .flat_map(|p| ders(p))
        .collect();
    let store_leaf = ders(&store.leaf_pem);
    assert!(
        !got.iter().any(|c| store_leaf.contains(c)),
        "the job got the object store's chain"
    );
    assert!(got == want, "want GitLab's chain; got {} certificates", got.len());
}
