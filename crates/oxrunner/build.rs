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
    println!("cargo:rerun-if-env-changed=OXRUNNER_BUILD_REVISION");
    println!("cargo:rerun-if-env-changed=OXRUNNER_BUILD_BRANCH");
    // Rebuild when HEAD moves so the revision stays honest.
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
