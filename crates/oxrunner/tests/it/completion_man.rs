//! `oxrunner completion` and `oxrunner man` produce scripts and pages the tools accept: bash parses the completion
//! and completes the commands from it, the man page is roff that groff reads without warnings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use crate::support::Sandbox;

#[tokio::test(flavor = "multi_thread")]
async fn bash_completion_parses_and_completes_commands_and_flags() {
    let sb = Sandbox::new();
    let out = sb.run(&["completion", "bash"], &[], None).await;
    out.assert_ok();
    let script = sb.path("oxrunner.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _oxrunner oxrunner \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").arg("-c").arg(program).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commands = complete("oxrunner do");
    assert_eq!(commands.trim(), "doctor", "{commands}");
    let flags = complete("oxrunner doctor --");
    for flag in ["--config", "--runner", "--json", "--user"] {
        assert!(flags.lines().any(|l| l == flag), "{flag} missing: {flags}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zsh_and_fish_completions_name_every_command() {
    let sb = Sandbox::new();
    for (shell, head) in [("zsh", "#compdef oxrunner"), ("fish", "# Print an optspec")] {
        let out = sb.run(&["completion", shell], &[], None).await;
        out.assert_ok();
        assert!(out.stdout.starts_with(head), "{shell}:\n{}", out.stdout);
        for cmd in ["register", "run", "exec", "doctor", "completion", "man"] {
            let named = match shell {
                "zsh" => format!("'{cmd}:"),
                _ => format!("-a \"{cmd}\""),
            };
            assert!(
                out.stdout.contains(&named),
                "{shell} lacks {named}:\n{}",
                out.stdout
            );
        }
    }
    let out = sb.run(&["completion", "tcsh"], &[], None).await;
    out.assert_failed();
    assert!(out.stderr.contains("possible values"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn man_page_is_roff_groff_accepts_with_one_page_per_command() {
    let sb = Sandbox::new();
    let out = sb.run(&["man"], &[], None).await;
    out.assert_ok();
    assert!(out.stdout.contains(".TH oxrunner 1"), "{}", out.stdout);
    assert!(out.stdout.contains("doctor"), "{}", out.stdout);
    let page = sb.path("oxrunner.1");
    std::fs::write(&page, &out.stdout).unwrap();
    match Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
    {
        Ok(g) => {
            assert!(
                g.status.success(),
                "groff: {}",
                String::from_utf8_lossy(&g.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&g.stderr), "", "groff warnings");
        }
        Err(e) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true: groff is required: {e}"
            );
            eprintln!("SKIPPED the groff parse: {e}");
        }
    }

    let dir = sb.path("man1");
    let dir_s = dir.to_string_lossy().into_owned();
    sb.run(&["man", "--output-dir", &dir_s], &[], None)
        .await
        .assert_ok();
    for name in [
        "oxrunner.1",
        "oxrunner-doctor.1",
        "oxrunner-run.1",
        "oxrunner-register.1",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
}
