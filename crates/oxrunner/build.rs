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
    order_hot_symbols(&rustc_version);
    println!("cargo:rerun-if-env-changed=OXRUNNER_BUILD_REVISION");
    println!("cargo:rerun-if-env-changed=OXRUNNER_BUILD_BRANCH");
    // Rebuild when HEAD moves so the revision stays honest.
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}

/// Release builds lay out the functions the daemon and `exec` run (start-up, jobs, polling, metrics; recorded by
/// `scripts/hot-symbols`) next to each other at the front of `.text`. The kernel maps a binary's code in whole
/// page-cache folios (up to a few MiB on current kernels), so code spread over the binary makes most of it
/// resident; packed together it is a few folios (BENCHMARKS.md, idle RSS). Only with rust-lld, the default linker of
/// x86_64-unknown-linux-gnu since Rust 1.90: other linkers do not know the option. A symbol that is not in the
/// binary (renamed code, other features) is skipped. `OXRUNNER_NO_SYMBOL_ORDERING=1` turns it off.
fn order_hot_symbols(rustc_version: &str) {
    println!("cargo:rerun-if-env-changed=OXRUNNER_NO_SYMBOL_ORDERING");
    println!("cargo:rerun-if-changed=link/hot-symbols.txt");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var("OXRUNNER_NO_SYMBOL_ORDERING").is_ok_and(|v| v == "1");
    // rustc picks its linker from RUSTFLAGS/config too: any linker setting there may not be lld.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let custom_linker = flags.contains("linker") || std::env::var_os("RUSTC_LINKER").is_some();
    let minor = rustc_version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if !release || off || custom_linker || target != "x86_64-unknown-linux-gnu" || minor < 90 {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = std::path::Path::new(&dir).join("link/hot-symbols.txt");
    if list.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=oxrunner=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bin=oxrunner=-Wl,--no-warn-symbol-ordering");
    }
}
