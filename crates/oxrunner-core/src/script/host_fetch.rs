//! Guards for a get_sources script that runs on the runner host (executors whose files are remote fetch there).
//!
//! That git runs with the runner's privileges, often root, outside any container, while the job's author controls
//! its variables: git reads configuration (`GIT_CONFIG_COUNT/KEY_n/VALUE_n`, so `core.fsmonitor` or `core.hooksPath`,
//! which are commands), `GIT_SSH_COMMAND`, `GIT_TRACE=<file>`, and the dynamic loader reads `LD_PRELOAD`. So the
//! script gets an environment the runner builds from an allowlist, and the job's extra git flags are refused when
//! they run a program or load configuration. The `GIT_*` settings (strategy, depth, clean flags, ...) still apply:
//! `GitSettings` turns them into script text before any of this. The shell executor is not concerned: its script
//! runs as the job's user in the job's environment, where none of this gains the author anything.

use std::fmt;

use super::git::GitSettings;
use crate::plan::JobPlan;
use crate::variables::{Variable, Variables};

/// Variables the runner-side script keeps. The script itself reads only `CI_JOB_TOKEN` (the credential helper),
/// `GIT_LFS_SKIP_SMUDGE` and the runner's CA file; the rest describe the job to a human reading a failed fetch, and
/// the proxy settings let the fetch reach GitLab the way the job's author asked. None of these names is read as a
/// program, a library or a file to write by bash, git, git-lfs or the dynamic loader.
const PASSED: &[&str] = &[
    "CI_JOB_TOKEN",
    "CI_JOB_ID",
    "CI_PROJECT_ID",
    "CI_PROJECT_PATH",
    "CI_PROJECT_DIR",
    "CI_BUILDS_DIR",
    "CI_COMMIT_SHA",
    "CI_COMMIT_BEFORE_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_SERVER",
    "CI_SERVER_URL",
    "CI_SERVER_HOST",
    "CI_SERVER_PORT",
    "CI_SERVER_PROTOCOL",
    "CI_SERVER_FQDN",
    "CI_RUNNER_VERSION",
    "CI_RUNNER_REVISION",
    "CI_CONCURRENT_ID",
    "CI_CONCURRENT_PROJECT_ID",
    "GIT_LFS_SKIP_SMUDGE",
    "GIT_SSL_NO_VERIFY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The variables of the runner-side fetch, from the job's expanded list: the allowlisted plain variables, the
/// runner's own job token and CA file. No file variable of the job is written on the host.
pub(crate) fn runner_side_variables(plan: &JobPlan, expanded: &Variables) -> Variables {
    let mut vars = Variables::new();
    for v in expanded
        .iter()
        .filter(|v| !v.file && PASSED.contains(&v.key.as_str()) && v.key != "CI_JOB_TOKEN")
    {
        vars.push(v.clone());
    }
    let token = plan.job_token.expose();
    match expanded.find("CI_JOB_TOKEN") {
        _ if !token.is_empty() => vars.push(raw(Variable::masked("CI_JOB_TOKEN", token.to_owned()))),
        Some(v) if !v.file => vars.push(v.clone()),
        _ => {}
    }
    vars.extend(crate::driver::env::tls_variables(plan));
    vars
}

fn raw(mut v: Variable) -> Variable {
    v.raw = true;
    v
}

/// First lines of the runner-side script: drops what the runner's own environment passes on to git and the
/// dynamic loader (a runner started from a shell with `GIT_DIR` set, a job marker), before anything runs git.
/// `env` and `sed` rather than bash's `compgen`: the script may run under a POSIX `sh`.
pub(crate) const CLEAN_INHERITED_ENV: &str = "for __oxr_name in $(env | sed -n -e 's/^\\(GIT_[A-Za-z0-9_]*\\)=.*/\\1/p' -e 's/^\\(LD_[A-Za-z0-9_]*\\)=.*/\\1/p' -e 's/^\\(OXRUNNER_JOB_MARKER\\)=.*/\\1/p'); do unset \"$__oxr_name\"; done\nunset __oxr_name\n";

/// Long options that make git run a program, read configuration, hooks, bundles or objects from a path, or act on
/// another repository; refused in any spelling git accepts (`--opt`, `--opt=value`, a unique abbreviation).
const REFUSED_LONG: &[&str] = &[
    "upload-pack",
    "bundle-uri",
    "receive-pack",
    "exec",
    "exec-path",
    "config",
    "config-env",
    "template",
    "separate-git-dir",
    "reference",
    "reference-if-able",
    "git-dir",
    "work-tree",
];

/// Short options with the same effect (`git clone -u <program>`, `-c key=value`).
const REFUSED_SHORT: &[char] = &['u', 'c'];

/// Short options whose value follows in the same word (`-j4`, `-ecache`): letters after them are not options.
const SHORT_WITH_VALUE: &[char] = &['e', 'j', 'o'];

/// An extra git flag the runner-side fetch will not pass to git.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RefusedFlag {
    variable: &'static str,
    flag: String,
}

impl fmt::Display for RefusedFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the flag {:?} is not allowed here: it can run a program, load git configuration or read a file\n\
             hint: this executor fetches the repository on the runner host (the Docker executor does), where a \
             flag like this would run a program with the runner's privileges; remove it from {}",
            self.variable, self.flag, self.variable
        )
    }
}

fn refused_word(word: &str) -> bool {
    if let Some(long) = word.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(name, _)| name);
        return !name.is_empty() && REFUSED_LONG.iter().any(|r| r.starts_with(name));
    }
    let Some(shorts) = word.strip_prefix('-') else {
        return false;
    };
    for c in shorts.chars() {
        if REFUSED_SHORT.contains(&c) {
            return true;
        }
        if SHORT_WITH_VALUE.contains(&c) {
            break;
        }
    }
    false
}

/// The first refused word of `flags` (split on white space, as the script passes them). Every word is checked: a
/// `--` is not the end of the options when it is the value of the option before it (`--server-option -- -c x=y`
/// sets `x`), and telling the two apart means knowing which options of which git version take a value. So a bare
/// `--` is refused too: no flag list here needs pathspecs.
fn first_refused(flags: &str) -> Option<&str> {
    flags.split_whitespace().find(|w| *w == "--" || refused_word(w))
}

/// Checks every job-supplied flag list the runner-side script hands to git.
pub(crate) fn check_flags(settings: &GitSettings) -> Result<(), RefusedFlag> {
    let lists = [
        ("GIT_FETCH_EXTRA_FLAGS", settings.fetch_extra_flags.as_str()),
        ("GIT_CLONE_EXTRA_FLAGS", settings.clone_extra_flags.as_str()),
        ("GIT_CLEAN_FLAGS", settings.clean_flags.as_deref().unwrap_or("")),
        (
            "GIT_SUBMODULE_UPDATE_FLAGS",
            settings.submodule_update_flags.as_str(),
        ),
    ];
    for (variable, flags) in lists {
        if let Some(flag) = first_refused(flags) {
            return Err(RefusedFlag {
                variable,
                flag: flag.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Sources;

    #[test]
    fn flags_that_run_or_load_are_refused_in_every_spelling() {
        for flags in [
            "--upload-pack=touch",
            "--prune --upload-pack touch",
            "--upload-p=x",
            "--upl x",
            "--exec=/bin/sh",
            "-u /bin/sh",
            "-qu /bin/sh",
            "-c core.fsmonitor=x",
            "-vc core.hooksPath=/tmp",
            "--config=core.sshCommand=x",
            "--template=/tmp/t",
            "--separate-git-dir /tmp/x",
            "--reference /srv/other/.git",
            "--reference-if-able=/srv/x",
            "--receive-pack=x",
            "--git-dir=/x",
            "--server-option -- --config=core.fsmonitor=touch${IFS}/tmp/pwned",
            "--origin -- --config=core.fsmonitor=x",
            "-o -- -c core.fsmonitor=x",
            "--jobs -- --upload-pack=x",
            "-ffdx -- --upload-pack=x",
            "--",
            "--bundle-uri=file:///etc/shadow",
            "--bundle-uri /root/x.bundle",
            "--bundle=file:///x",
        ] {
            assert!(first_refused(flags).is_some(), "{flags:?} passed");
        }
    }

    #[test]
    fn ordinary_flags_pass() {
        for flags in [
            "",
            "--prune --quiet",
            "-j4 --depth 3",
            "-ffdx -e cache",
            "-ffdx -ecache",
            "--no-tags --filter=blob:none",
            "--jobs 2 --recommend-shallow",
            "--no-template",
        ] {
            assert_eq!(first_refused(flags), None, "{flags:?} refused");
        }
    }

    #[test]
    fn a_refusal_names_the_variable_and_gives_a_hint() {
        let plan = JobPlan::default();
        let mut vars = Variables::new();
        vars.push(Variable::new("GIT_SUBMODULE_UPDATE_FLAGS", "--jobs 2 -c x=y"));
        let settings = GitSettings::resolve(&plan, &vars);
        let err = check_flags(&settings).unwrap_err().to_string();
        assert!(
            err.starts_with("GIT_SUBMODULE_UPDATE_FLAGS: the flag \"-c\""),
            "{err}"
        );
        assert!(err.contains("\nhint: "), "{err}");
    }

    #[test]
    fn clone_flags_are_checked_too() {
        let mut vars = Variables::new();
        vars.push(Variable::new(
            "GIT_CLONE_EXTRA_FLAGS",
            "--config=core.sshCommand=x",
        ));
        let settings = GitSettings::resolve(&JobPlan::default(), &vars);
        let err = check_flags(&settings).unwrap_err().to_string();
        assert!(err.starts_with("GIT_CLONE_EXTRA_FLAGS: "), "{err}");
    }

    #[test]
    fn only_allowlisted_plain_variables_and_the_runners_own_secrets_pass() {
        let plan = JobPlan {
            job_token: "runner-token".into(),
            sources: Sources {
                ca_file: Some("CA".into()),
                ..Sources::default()
            },
            ..JobPlan::default()
        };
        let mut vars = Variables::new();
        for (k, v) in [
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "core.fsmonitor"),
            ("LD_PRELOAD", "/tmp/x.so"),
            ("GIT_SSH_COMMAND", "x"),
            ("PATH", "/tmp"),
            ("BASH_ENV", "/tmp/x"),
            ("CI_JOB_TOKEN", "job-set"),
            ("CI_PROJECT_DIR", "/builds/p"),
            ("https_proxy", "http://proxy:3128"),
        ] {
            vars.push(Variable::new(k, v));
        }
        vars.push(Variable::new("CI_SERVER_TLS_CA_FILE", "job CA").into_file());
        vars.push(Variable::new("SECRET_FILE", "s").into_file());
        let out = runner_side_variables(&plan, &vars);
        let keys: Vec<&str> = out.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "CI_PROJECT_DIR",
                "https_proxy",
                "CI_JOB_TOKEN",
                "CI_SERVER_TLS_CA_FILE"
            ]
        );
        assert_eq!(out.value("CI_JOB_TOKEN"), Some("runner-token"));
        assert_eq!(out.value("CI_SERVER_TLS_CA_FILE"), Some("CA"));
    }

    #[test]
    fn the_inherited_git_and_loader_variables_are_dropped() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{CLEAN_INHERITED_ENV}env"))
            .env("GIT_DIR", "/tmp/elsewhere")
            .env("GIT_CONFIG_COUNT", "1")
            .env("LD_LIBRARY_PATH", "/tmp/lib")
            .env("OXRUNNER_JOB_MARKER", "m")
            .env("KEEP_ME", "yes")
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        for gone in [
            "GIT_DIR=",
            "GIT_CONFIG_COUNT=",
            "LD_LIBRARY_PATH=",
            "OXRUNNER_JOB_MARKER=",
        ] {
            assert!(!env.lines().any(|l| l.starts_with(gone)), "{gone} kept:\n{env}");
        }
        assert!(env.lines().any(|l| l == "KEEP_ME=yes"), "{env}");
    }
}
