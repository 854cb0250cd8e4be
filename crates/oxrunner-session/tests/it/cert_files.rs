//! The certificate pair on disk: one the operator put there is never replaced, however old its files; one the
//! runner generated is renewed when due.

use std::path::Path;
use std::process::Command;

use oxrunner_session::cert;

/// Backdates a file's modification time by `days` with touch(1).
fn age(path: &Path, days: u32) {
    let out = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("{days} days ago"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "touch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_operators_old_pair_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = cert::paths(dir.path(), "runner.example.test");
    let own = cert::generate("runner.example.test").unwrap();
    std::fs::write(&crt, &own.cert_pem).unwrap();
    std::fs::write(&key, &own.key_pem).unwrap();
    age(&crt, 800);
    age(&key, 800);
    let loaded = cert::load_or_create(dir.path(), "runner.example.test").unwrap();
    assert_eq!(
        loaded.cert_pem, own.cert_pem,
        "the operator's certificate was replaced"
    );
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), own.cert_pem);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), own.key_pem);
}

#[test]
fn a_generated_pair_is_renewed_when_due_and_kept_before() {
    let dir = tempfile::tempdir().unwrap();
    let first = cert::load_or_create(dir.path(), "runner.example.test").unwrap();
    let again = cert::load_or_create(dir.path(), "runner.example.test").unwrap();
    assert_eq!(again.cert_pem, first.cert_pem);
    let (crt, key) = cert::paths(dir.path(), "runner.example.test");
    age(&crt, 800);
    age(&key, 800);
    let renewed = cert::load_or_create(dir.path(), "runner.example.test").unwrap();
    assert_ne!(
        renewed.cert_pem, first.cert_pem,
        "an expiring generated certificate was kept"
    );
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), renewed.cert_pem);
}
