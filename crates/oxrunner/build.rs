//! Records the git revision and build time so `oxrunner -v` can print them like `gitlab-runner -v`.
use std::process::Command;

/// First line of a command's output, if it ran and printed something.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let unknown = || "unknown".to_string();
    // Builds without a .git (the Docker image: .dockerignore leaves it out) pass the revision in instead.
    let given = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let revision = given("OXRUNNER_BUILD_REVISION")
        .or_else(|| output("git", &["rev-parse", "--short=8", "HEAD"]))
        .unwrap_or_else(unknown);
    let branch = given("OXRUNNER_BUILD_BRANCH")
        .or_else(|| output("git", &["rev-parse", "--abbrev-ref", "HEAD"]))
        .unwrap_or_else(unknown);
    let built = output("date", &["-u", "+%Y-%m-%dT%H:%M:%S+0000"]).unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_default();
    println!("cargo:rustc-env=OXRUNNER_REVISION={revision}");
    println!("cargo:rustc-env=OXRUNNER_BRANCH={branch}");
    println!("cargo:rustc-env=OXRUNNER_BUILT={built}");
    println!("cargo:rustc-env=OXRUNNER_RUSTC={rustc_version}");
    println!(
        "cargo:rustc-env=OXRUNNER_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    order_hot_symbols();
    println!("cargo:rerun-if-env-changed=OXRUNNER_BUILD_REVISION");
    println!("cargo:rerun-if-env-changed=OXRUNNER_BUILD_BRANCH");
    // Rebuild when HEAD moves so the revision stays honest.
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}

/// Release builds lay out the functions the daemon and `exec` run (start-up, jobs, polling, metrics; recorded by
/// `scripts/hot-symbols`) next to each other at the front of `.text`. The kernel maps a binary's code in whole
/// page-cache folios (up to a few MiB on current kernels), so code spread over the binary makes most of it
/// resident; packed together it is a few folios (BENCHMARKS.md, idle RSS). The option is lld's (rustup's Rust
/// links x86_64 Linux with rust-lld since 1.90); whether this build's linker takes it is tried on an empty program
/// first, since a distribution's rustc or a RUSTFLAGS `-fuse-ld=` may link with GNU ld, which does not. A symbol
/// that is not in the binary (renamed code, other features) is skipped. `OXRUNNER_NO_SYMBOL_ORDERING=1` turns it
/// off.
fn order_hot_symbols() {
    println!("cargo:rerun-if-env-changed=OXRUNNER_NO_SYMBOL_ORDERING");
    println!("cargo:rerun-if-changed=link/hot-symbols.txt");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var("OXRUNNER_NO_SYMBOL_ORDERING").is_ok_and(|v| v == "1");
    if !release || off || !target.ends_with("-linux-gnu") {
        return;
    }
    let (Ok(dir), Ok(out)) = (std::env::var("CARGO_MANIFEST_DIR"), std::env::var("OUT_DIR")) else {
        return;
    };
    let list = std::path::Path::new(&dir).join("link/hot-symbols.txt");
    if !list.is_file() {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", list.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if !links_with(&out, &target, &args) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file: hot functions are not grouped \
             (the daemon's idle RSS is a few MiB higher; rustup's Rust links with rust-lld, which does)"
        );
        return;
    }
    for arg in args {
        println!("cargo:rustc-link-arg-bin=oxrunner={arg}");
    }
}

/// Whether an empty program links for `target` with this build's rustc, RUSTFLAGS and linker plus `args`.
fn links_with(out: &str, target: &str, args: &[String]) -> bool {
    let dir = std::path::Path::new(out).join("link-probe");
    if std::fs::create_dir_all(&dir).is_err()
        || std::fs::write(dir.join("probe.rs"), "fn main() {}\n").is_err()
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg("--target")
        .arg(target)
        .arg("-o")
        .arg(dir.join("probe"))
        .arg(dir.join("probe.rs"));
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={}", linker.to_string_lossy()));
    }
    for arg in args {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.status().is_ok_and(|s| s.success())
}
