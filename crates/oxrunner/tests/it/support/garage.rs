//! A three-node Garage cluster (an S3-compatible object store, replication factor 3) on 127.0.0.1 ports in a
//! temporary directory, with one bucket and one key, for the distributed-cache tests. Dropped: every node is
//! killed and its directory removed.
//!
//! The binary comes from `scripts/ensure-garage` (`$OXRUNNER_GARAGE`, else its default install path). Without it
//! the tests skip with a message, except under `CI=true`, where they fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_BIN: &str = "/var/cache/oxrunner-test/garage/bin/garage";
/// The region the cluster signs for (`s3_region`): the runners must be configured with it.
pub const REGION: &str = "garage";
pub const BUCKET: &str = "oxrt-cache";
const SETUP_DEADLINE: Duration = Duration::from_secs(120);

/// The Garage binary, or `None` (with the reason printed) when the test should skip.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("OXRUNNER_GARAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "no Garage binary at {} (run scripts/ensure-garage, or set OXRUNNER_GARAGE)",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("skipping: {msg}");
    None
}

pub struct Node {
    pub config: PathBuf,
    pub s3_port: u16,
    pub rpc_port: u16,
    child: Option<Child>,
}

pub struct Cluster {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub key_id: String,
    pub secret: String,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Cluster {
    /// Starts three nodes, joins them, applies a layout with all three (capacity 1 GB each) and creates the
    /// bucket [`BUCKET`] with a read/write key.
    pub fn start(bin: &Path) -> Cluster {
        let dir = tempfile::Builder::new().prefix("oxrt-garage-").tempdir().unwrap();
        let secret: String = (0..4).map(|_| format!("{:016x}", rand_u64())).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let root = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).unwrap();
            let (s3_port, rpc_port) = (free_port(), free_port());
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{m}\"\ndata_dir = \"{d}\"\ndb_engine = \"lmdb\"\nreplication_factor = 3\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret}\"\n\n[s3_api]\ns3_region = \"{REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\nroot_domain = \".s3.garage.localhost\"\n",
                    m = root.join("meta").display(),
                    d = root.join("data").display(),
                ),
            )
            .unwrap();
            nodes.push(Node {
                config,
                s3_port,
                rpc_port,
                child: None,
            });
        }
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            nodes,
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.join();
        cluster.make_bucket();
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.config.with_file_name("garage.log")).unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// `garage -c <node 0> args...`, retried until it succeeds (the nodes take a moment to listen and connect).
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + SETUP_DEADLINE;
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.nodes[node].config)
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} kept failing: {}{}\nnode log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log(node)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.nodes[node].config.with_file_name("garage.log")).unwrap_or_default()
    }

    fn join(&self) {
        let ids: Vec<String> = (0..3)
            .map(|i| self.cli(i, &["node", "id", "-q"]).trim().to_owned())
            .collect();
        for id in &ids[1..] {
            self.cli(0, &["node", "connect", id]);
        }
        for id in &ids {
            let short = id.split('@').next().unwrap();
            self.cli(0, &["layout", "assign", "-z", "dc1", "-c", "1G", short]);
        }
        self.cli(0, &["layout", "apply", "--version", "1"]);
    }

    fn make_bucket(&mut self) {
        let out = self.cli(0, &["key", "create", "oxrt-key"]);
        let field = |label: &str| {
            out.lines()
                .find(|l| l.to_ascii_lowercase().contains(label))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {label} in `garage key create` output:\n{out}"))
        };
        self.key_id = field("key id");
        self.secret = field("secret key");
        self.cli(0, &["bucket", "create", BUCKET]);
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "oxrt-key",
            ],
        );
    }

    /// `host:port` of a node's S3 API.
    pub fn s3_address(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[node].s3_port)
    }

    /// Kills a node (SIGKILL, as a crashed machine) and reaps it.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}
