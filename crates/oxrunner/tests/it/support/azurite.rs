//! Azurite (Microsoft's Azure Storage emulator, blob service only) on a free 127.0.0.1 port in a temporary
//! directory, with the published development account and one container, for the Azure cache tests. Dropped: the
//! process is killed and its directory removed.
//!
//! The program comes from `scripts/ensure-azurite` (`$OXRUNNER_AZURITE`, else its default install path). Without
//! it the tests skip with a message, except under `CI=true`, where they fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const DEFAULT_BIN: &str = "/var/cache/oxrunner-test/azurite/node_modules/.bin/azurite-blob";
/// Azurite's built-in development account and its published key (public values, not secrets).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const CONTAINER: &str = "oxrt-cache";
const SETUP_DEADLINE: Duration = Duration::from_secs(120);

/// The `azurite-blob` program, or `None` (with the reason printed) when the test should skip.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("OXRUNNER_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "no azurite-blob at {} (run scripts/ensure-azurite, or set OXRUNNER_AZURITE)",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("skipping: {msg}");
    None
}

pub struct Azurite {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Azurite {
    /// Starts the blob service and creates [`CONTAINER`] (retried until the emulator answers).
    pub async fn start(bin: &Path) -> Azurite {
        let dir = tempfile::Builder::new()
            .prefix("oxrt-azurite-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("azurite.log")).unwrap();
        let child = Command::new(bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--location",
            ])
            .arg(dir.path().join("data"))
            .args(["--skipApiVersionCheck", "--loose"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let azurite = Azurite { dir, port, child };
        azurite.create_container().await;
        azurite
    }

    /// The blob service endpoint, as `StorageDomain` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }

    /// Create Container, authorized with Shared Key (Microsoft's "Authorize with Shared Key"; Azurite puts the
    /// account in front of the path-style URL path in the canonicalized resource).
    async fn create_container(&self) {
        let url = format!("{}/{CONTAINER}?restype=container", self.endpoint());
        let deadline = Instant::now() + SETUP_DEADLINE;
        let http = reqwest::Client::new();
        loop {
            let date = http_date(time::OffsetDateTime::now_utc());
            let version = "2022-11-02";
            let to_sign = format!(
                "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
                 /{ACCOUNT}/{ACCOUNT}/{CONTAINER}\nrestype:container"
            );
            let key = base64::engine::general_purpose::STANDARD.decode(KEY).unwrap();
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            mac.update(to_sign.as_bytes());
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            let answer = http
                .put(&url)
                .header("x-ms-date", &date)
                .header("x-ms-version", version)
                .header("authorization", format!("SharedKey {ACCOUNT}:{sig}"))
                .header("content-length", "0")
                .send()
                .await;
            match answer {
                Ok(resp) if resp.status().is_success() => return,
                Ok(resp) => panic!(
                    "Azurite refused to create the container: {} {}\n{}",
                    resp.status(),
                    resp.text().await.unwrap_or_default(),
                    self.log()
                ),
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "Azurite did not answer on port {}: {e}\n{}",
                    self.port,
                    self.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn http_date(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap()
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
