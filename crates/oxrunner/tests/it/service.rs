//! Issue #13 item 3: `install` / `uninstall` / `start` / `stop` / `restart` / `status`. The unit is written into
//! a sandbox directory (`OXRUNNER_SYSTEMD_UNIT_DIR`), checked field by field and with `systemd-analyze verify`;
//! without systemd as PID 1 (containers, CI) every command must fail with one clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{Output, Sandbox, bin};

const UNIT_DIR_ENV: &str = "OXRUNNER_SYSTEMD_UNIT_DIR";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `install` as root needs `--user`/`--init-user` and refuses `--user-service`; as another user it refuses both.
/// These tests cover the root behaviour (what a service install is); CI runs as root.
fn root_or_skip() -> bool {
    if nix::unistd::getuid().is_root() {
        return true;
    }
    assert!(!ci(), "CI=true: the service tests must run as root");
    eprintln!("skipping: installing a system service with --user needs root");
    false
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The unit's settings: section → key → values (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line}"));
        unit.entry(section.clone())
            .or_default()
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
    }
    unit
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let values = unit
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("{key}= missing in [{section}]: {unit:?}"));
    assert_eq!(values.len(), 1, "{key}= set more than once: {values:?}");
    &values[0]
}

/// `ExecStart=` split into words the way systemd unquotes them (double quotes, `\\`, `\"`, `%%`, `$$`).
fn exec_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let quoted = c == '"';
        if quoted {
            chars.next();
        }
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted => break,
                ' ' if !quoted => break,
                '\\' => word.push(chars.next().unwrap()),
                '%' | '$' => {
                    assert_eq!(
                        chars.next(),
                        Some(c),
                        "a lone {c} would be expanded by systemd: {line}"
                    );
                    word.push(c);
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// Runs `systemd-analyze verify` and asserts it accepts the unit without a single warning. Under `CI=true` the
/// tool must exist (scripts/ensure-deps installs the `systemd` package).
fn assert_verifies(unit: &Path) {
    let out = match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            assert!(!ci(), "CI=true but systemd-analyze cannot run: {e}");
            eprintln!("skipping systemd-analyze verify: {e} (apt-get install systemd)");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {} complained ({}):\n{stderr}\n--- unit ---\n{}",
        unit.display(),
        out.status,
        std::fs::read_to_string(unit).unwrap()
    );
}

struct Svc {
    sb: Sandbox,
    units: PathBuf,
}

impl Svc {
    fn new() -> Svc {
        let sb = Sandbox::new();
        let units = sb.path("units");
        Svc { sb, units }
    }
    async fn run(&self, args: &[&str]) -> Output {
        let units = self.units.to_string_lossy().into_owned();
        self.sb.run(args, &[(UNIT_DIR_ENV, units.as_str())], None).await
    }
    fn unit_path(&self, name: &str) -> PathBuf {
        self.units.join(format!("{name}.service"))
    }
}

#[tokio::test]
async fn install_writes_upstreams_unit_for_a_custom_name_user_and_working_directory() {
    if !root_or_skip() {
        return;
    }
    let svc = Svc::new();
    let cfg = svc.sb.config();
    std::fs::write(&cfg, "concurrent = 2\nshutdown_timeout = 90\n").unwrap();
    // Blanks, `%` and `$` would be split or expanded by systemd unless quoted and escaped.
    let work = svc.sb.path("work dir %n $HOME");
    let out = svc
        .run(&[
            "install",
            "--service",
            "oxrt-svc-custom",
            "--config",
            &cfg.to_string_lossy(),
            "--working-directory",
            &work.to_string_lossy(),
            "--user",
            "oxrt-jobs",
        ])
        .await;
    out.assert_ok();
    let path = svc.unit_path("oxrt-svc-custom");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "a unit file is world-readable, not writable");
    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        unit.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );

    assert_eq!(one(&unit, "Unit", "Description"), "GitLab Runner (oxrunner)");
    assert_eq!(one(&unit, "Unit", "ConditionFileIsExecutable"), bin());
    assert_eq!(one(&unit, "Unit", "After"), "network.target");
    assert_eq!(one(&unit, "Unit", "StartLimitIntervalSec"), "5");
    assert_eq!(one(&unit, "Unit", "StartLimitBurst"), "10");

    // gitlab-runner's arguments, in its order: run --config --working-directory --service [--syslog] --user.
    assert_eq!(
        exec_words(one(&unit, "Service", "ExecStart")),
        [
            bin(),
            "run",
            "--config",
            &cfg.to_string_lossy(),
            "--working-directory",
            &work.to_string_lossy(),
            "--service",
            "oxrt-svc-custom",
            "--user",
            "oxrt-jobs",
        ]
    );
    assert!(
        !unit["Service"].contains_key("User"),
        "--user runs only the jobs as that user"
    );
    assert_eq!(one(&unit, "Service", "Restart"), "always");
    assert_eq!(one(&unit, "Service", "RestartSec"), "120");
    assert_eq!(
        one(&unit, "Service", "EnvironmentFile"),
        "-/etc/sysconfig/oxrt-svc-custom"
    );
    // Graceful stop: SIGQUIT to the runner only, two hours to drain, then SIGTERM (abort) with shutdown_timeout
    // (90 s in this config) plus a margin to report before systemd kills.
    assert_eq!(one(&unit, "Service", "KillSignal"), "SIGQUIT");
    assert_eq!(one(&unit, "Service", "KillMode"), "mixed");
    assert_eq!(one(&unit, "Service", "TimeoutStopSec"), "7200");
    assert_eq!(one(&unit, "Service", "TimeoutStopFailureMode"), "abort");
    assert_eq!(one(&unit, "Service", "WatchdogSignal"), "SIGTERM");
    assert_eq!(one(&unit, "Service", "TimeoutAbortSec"), "105");
    assert_eq!(one(&unit, "Service", "Delegate"), "yes");
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");
    assert_eq!(
        unit["Service"].len(),
        12,
        "unexpected settings: {:?}",
        unit["Service"]
    );

    assert_verifies(&path);
}

#[tokio::test]
async fn init_user_and_syslog_and_a_missing_config_file() {
    if !root_or_skip() {
        return;
    }
    let svc = Svc::new();
    let cfg = svc.sb.path("fresh/config.toml");
    let out = svc
        .run(&[
            "install",
            "-n",
            "oxrt-svc-init",
            "-c",
            &cfg.to_string_lossy(),
            "-d",
            "relative/work",
            "--init-user",
            "oxrt-svc",
            "--syslog",
        ])
        .await;
    out.assert_ok();
    // Like gitlab-runner, install creates the config file the service is going to read; it holds tokens later.
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let path = svc.unit_path("oxrt-svc-init");
    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(one(&unit, "Service", "User"), "oxrt-svc");
    // The service starts in /, so the relative working directory is made absolute against the caller's.
    let work = svc.sb.path("relative/work");
    assert_eq!(
        exec_words(one(&unit, "Service", "ExecStart"))[1..],
        [
            "run",
            "--config",
            &cfg.to_string_lossy(),
            "--working-directory",
            &work.to_string_lossy(),
            "--service",
            "oxrt-svc-init",
            "--syslog",
        ]
    );
    // The default shutdown_timeout (30 s) plus the margin.
    assert_eq!(one(&unit, "Service", "TimeoutAbortSec"), "45");
    // `systemctl reload` sends the daemon SIGHUP, which re-reads config.toml.
    assert_eq!(one(&unit, "Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_verifies(&path);

    let out = svc.run(&["uninstall", "-n", "oxrt-svc-init"]).await;
    out.assert_ok();
    assert!(!path.exists());
    let out = svc.run(&["uninstall", "-n", "oxrt-svc-init"]).await;
    out.assert_failed();
    assert!(
        out.stderr.contains("nothing to uninstall") && out.stderr.contains("hint:"),
        "{}",
        out.all()
    );
}

/// `--init-user U` runs everything as U, so the config file install creates (and the directories it makes for
/// it) belong to U.
#[tokio::test]
async fn init_user_owns_the_config_file_install_creates() {
    use std::os::unix::fs::MetadataExt;
    if !root_or_skip() {
        return;
    }
    let name = format!("oxrt-svcown-{}", std::process::id());
    let _ = std::process::Command::new("userdel").arg(&name).output();
    let made = std::process::Command::new("useradd")
        .args(["-M", "-U", "-s", "/usr/sbin/nologin", &name])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "useradd: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("userdel").arg(&self.0).output();
        }
    }
    let _gone = Gone(name.clone());
    let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
    let ids = (user.uid.as_raw(), user.gid.as_raw());

    let svc = Svc::new();
    let cfg = svc.sb.path("made/here/config.toml");
    let out = svc
        .run(&[
            "install",
            "-n",
            "oxrt-svc-own",
            "-c",
            &cfg.to_string_lossy(),
            "--init-user",
            &name,
        ])
        .await;
    out.assert_ok();
    for path in [cfg.clone(), svc.sb.path("made/here"), svc.sb.path("made")] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), ids, "{}", path.display());
    }
    let sandbox_root = std::fs::metadata(svc.sb.path("")).unwrap();
    assert_eq!(
        sandbox_root.uid(),
        0,
        "only the directories install made change owner"
    );
    svc.run(&["uninstall", "-n", "oxrt-svc-own"]).await.assert_ok();
}

/// Replacing a runner unit keeps its `--config`, `--working-directory`, `--user` and `--syslog` when `install`
/// does not give them again (gitlab-runner's package scripts and the README's `install --service gitlab-runner`).
#[tokio::test]
async fn replacing_a_runner_unit_keeps_its_config_workdir_user_and_syslog() {
    if !root_or_skip() {
        return;
    }
    let svc = Svc::new();
    std::fs::create_dir_all(&svc.units).unwrap();
    let path = svc.unit_path("oxrt-carry");
    let cfg = svc.sb.config_str();
    let work = svc.sb.path("old-work").to_string_lossy().into_owned();
    std::fs::write(
        &path,
        format!(
            "[Service]\nExecStart=/usr/bin/gitlab-runner \"run\" \"--config\" \"{cfg}\" \"--working-directory\" \
             \"{work}\" \"--service\" \"oxrt-carry\" \"--syslog\" \"--user\" \"oxrt-jobs\"\n"
        ),
    )
    .unwrap();
    let out = svc.run(&["install", "-n", "oxrt-carry"]).await;
    out.assert_ok();
    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        exec_words(one(&unit, "Service", "ExecStart"))[1..],
        [
            "run",
            "--config",
            cfg.as_str(),
            "--working-directory",
            work.as_str(),
            "--service",
            "oxrt-carry",
            "--syslog",
            "--user",
            "oxrt-jobs",
        ]
    );
    svc.run(&["uninstall", "-n", "oxrt-carry"]).await.assert_ok();
}

/// `uninstall` leaves a unit that does not start a runner alone (`uninstall -n ssh`), and a service name that
/// starts with `-` (it would read as an option to systemctl) is refused.
#[tokio::test]
async fn uninstall_leaves_foreign_units_alone_and_dash_names_are_refused() {
    if !root_or_skip() {
        return;
    }
    let svc = Svc::new();
    std::fs::create_dir_all(&svc.units).unwrap();
    let other = svc.unit_path("oxrt-sshd");
    let sshd = "[Service]\nExecStart=/usr/sbin/sshd -D\n";
    std::fs::write(&other, sshd).unwrap();
    let out = svc.run(&["uninstall", "-n", "oxrt-sshd"]).await;
    out.assert_failed();
    assert!(
        out.stderr.contains("does not start a GitLab runner") && out.stderr.contains("hint:"),
        "{}",
        out.all()
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), sshd);

    let cfg = svc.sb.config_str();
    let out = svc
        .run(&["install", "--service=-oxrt-dash", "-c", &cfg, "-u", "oxrt-jobs"])
        .await;
    out.assert_failed();
    assert!(out.stderr.contains("invalid service name"), "{}", out.all());
    assert!(!svc.unit_path("-oxrt-dash").exists());
}

/// gitlab-runner's own unit (as `gitlab-runner install --user gitlab-runner` writes it) is replaced in place by
/// `--service gitlab-runner`; an unrelated unit of that name is left alone.
#[tokio::test]
async fn service_gitlab_runner_takes_over_the_existing_unit() {
    if !root_or_skip() {
        return;
    }
    let svc = Svc::new();
    std::fs::create_dir_all(&svc.units).unwrap();
    let path = svc.unit_path("gitlab-runner");
    std::fs::write(
        &path,
        "[Unit]\nDescription=GitLab Runner\nConditionFileIsExecutable=/usr/bin/gitlab-runner\n\
         After=network.target\n\n[Service]\nStartLimitInterval=5\nStartLimitBurst=10\n\
         ExecStart=/usr/bin/gitlab-runner \"run\" \"--config\" \"/etc/gitlab-runner/config.toml\" \
         \"--working-directory\" \"/home/gitlab-runner\" \"--service\" \"gitlab-runner\" \"--user\" \"gitlab-runner\"\n\
         Restart=always\nRestartSec=120\nEnvironmentFile=-/etc/sysconfig/gitlab-runner\n\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let cfg = svc.sb.config_str();
    let out = svc
        .run(&[
            "install",
            "--service",
            "gitlab-runner",
            "-c",
            &cfg,
            "-u",
            "gitlab-runner",
        ])
        .await;
    out.assert_ok();
    assert!(
        out.stderr.contains("Replacing the existing runner unit"),
        "{}",
        out.all()
    );
    let unit = parse_unit(&std::fs::read_to_string(&path).unwrap());
    let words = exec_words(one(&unit, "Service", "ExecStart"));
    assert_eq!(words[0], bin());
    assert_eq!(
        words[words.len() - 4..],
        ["--service", "gitlab-runner", "--user", "gitlab-runner"]
    );
    assert_eq!(
        one(&unit, "Service", "EnvironmentFile"),
        "-/etc/sysconfig/gitlab-runner"
    );
    assert_verifies(&path);

    let other = svc.unit_path("oxrt-web");
    let nginx = "[Service]\nExecStart=/usr/sbin/nginx -g 'daemon off;'\n";
    std::fs::write(&other, nginx).unwrap();
    let fresh_cfg = svc.sb.path("web/config.toml");
    let out = svc
        .run(&[
            "install",
            "-n",
            "oxrt-web",
            "-c",
            &fresh_cfg.to_string_lossy(),
            "-u",
            "oxrt-jobs",
        ])
        .await;
    out.assert_failed();
    assert!(
        out.stderr.contains("does not start a GitLab runner") && out.stderr.contains("hint:"),
        "{}",
        out.all()
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), nginx);
    assert!(
        !fresh_cfg.exists(),
        "a refused install must not create the config file"
    );
}

#[tokio::test]
async fn install_refuses_what_gitlab_runner_refuses_as_root() {
    if !root_or_skip() {
        return;
    }
    let svc = Svc::new();
    let cfg = svc.sb.config_str();
    for (args, says) in [
        (vec!["install", "-c", &cfg], "say which user"),
        (
            vec!["install", "-c", &cfg, "-u", "a", "-i", "b"],
            "only one of --user and --init-user",
        ),
        (
            vec!["install", "-c", &cfg, "-u", "a", "--user-service"],
            "--user-service is for non-root",
        ),
        (
            vec!["install", "-c", &cfg, "-n", "../escape", "-u", "a"],
            "invalid service name",
        ),
        (
            vec!["install", "-c", &cfg, "-u", "a\nExecStartPre=/bin/sh"],
            "invalid user name",
        ),
    ] {
        let out = svc.run(&args).await;
        out.assert_failed();
        assert!(
            out.stderr.contains(says) && out.stderr.contains("hint:"),
            "{args:?}:\n{}",
            out.all()
        );
    }
    assert!(
        !svc.units.exists(),
        "nothing may be written for a refused install"
    );
}

/// Where systemd is not PID 1 (containers, CI), every service command says so once, with what to do instead,
/// and writes nothing.
#[tokio::test]
async fn without_systemd_every_command_explains_instead_of_failing_in_systemctl() {
    if systemd_running() {
        eprintln!("skipping: systemd runs on this machine, so the service commands would act for real");
        return;
    }
    let sb = Sandbox::new();
    let cfg = sb.config_str();
    let commands: [&[&str]; 6] = [
        &[
            "install",
            "-n",
            "oxrt-svc-none",
            "-c",
            &cfg,
            "--user",
            "oxrt-jobs",
        ],
        &["uninstall", "-n", "oxrt-svc-none"],
        &["start", "-n", "oxrt-svc-none"],
        &["stop", "-n", "oxrt-svc-none"],
        &["restart", "-n", "oxrt-svc-none"],
        &["status", "-n", "oxrt-svc-none"],
    ];
    for args in commands {
        let out = sb.run(args, &[], None).await;
        out.assert_failed();
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 2, "one error and one hint expected:\n{err}");
        assert!(
            err.starts_with(&format!(
                "FATAL: `oxrunner {}` manages a systemd service, but systemd is not running here",
                args[0]
            )),
            "{err}"
        );
        assert!(err.contains("\nhint: run `oxrunner run` under"), "{err}");
        assert!(
            !err.contains("D-Bus") && !err.contains("Failed to connect"),
            "{err}"
        );
    }
    assert!(
        !sb.config().exists(),
        "install must not create the config file when it cannot install"
    );
}

/// The unit shipped for packagers passes `systemd-analyze verify` (with this build standing in for
/// /usr/bin/oxrunner, which verify requires to exist); the lib test `shipped_unit_is_the_generated_one` keeps it
/// equal to what `install` writes.
#[test]
fn shipped_unit_verifies() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/oxrunner.service");
    let text = std::fs::read_to_string(&shipped).unwrap();
    assert!(text.contains("ExecStart=\"/usr/bin/oxrunner\" \"run\""), "{text}");
    let dir = tempfile::Builder::new().prefix("oxrt-unit-").tempdir().unwrap();
    let copy = dir.path().join("oxrunner.service");
    std::fs::write(&copy, text.replace("/usr/bin/oxrunner", bin())).unwrap();
    assert_verifies(&copy);
}

/// A daemon started from the `ExecStart=` line `install` wrote, running a shell job whose first line has reached
/// the trace and whose script then waits for the file `release` (returned with the job's id); then SIGQUIT, as
/// `systemctl stop` sends it, has been seen and has left the job running.
async fn unit_daemon_with_a_job_at_sigquit(
    svc: &Svc,
    fake: &fake_gitlab::FakeGitlab,
    name: &str,
    release: &Path,
) -> (crate::support::Daemon, i64) {
    let token = fake.create_runner_token("svc");
    let mut cfg_text = crate::support::global_toml(1, "");
    cfg_text.push_str(&crate::support::shell_runner_toml(
        "svc",
        &fake.url(),
        &token,
        &svc.sb.path("w"),
        "",
    ));
    std::fs::write(svc.sb.config(), cfg_text).unwrap();
    let work = svc.sb.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = svc
        .run(&[
            "install",
            "-n",
            name,
            "-c",
            &svc.sb.config_str(),
            "-d",
            &work.to_string_lossy(),
            "--init-user",
            "oxrt-svc",
            "--syslog",
        ])
        .await;
    out.assert_ok();
    let unit = parse_unit(&std::fs::read_to_string(svc.unit_path(name)).unwrap());
    assert_eq!(one(&unit, "Service", "KillSignal"), "SIGQUIT");
    let words = exec_words(one(&unit, "Service", "ExecStart"));
    assert_eq!(words[0], bin());
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let mut daemon = svc.sb.spawn(&args);
    let wait = std::time::Duration::from_secs(60);
    crate::support::wait_polling(fake, &daemon, wait).await;
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; echo released",
        release.display()
    );
    let id = fake.enqueue_job(
        fake_gitlab::JobSpec::new("long", &["echo started", &script]).variable("GIT_STRATEGY", "none"),
    );
    let deadline = tokio::time::Instant::now() + wait;
    // The script is running once its first line reached the trace.
    while !fake.job(id).unwrap().trace_text().contains("\nstarted") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never started:\n{}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    daemon.signal(nix::sys::signal::Signal::SIGQUIT);
    let deadline = tokio::time::Instant::now() + wait;
    while !daemon.log().contains("SIGQUIT received") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGQUIT was not seen:\n{}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        fake.job(id).unwrap().status,
        "running",
        "SIGQUIT must let the job run"
    );
    assert!(
        daemon.wait(std::time::Duration::ZERO).await.is_none(),
        "the runner left its job"
    );
    (daemon, id)
}

/// The generated `ExecStart=` is a command line `oxrunner run` accepts, and the runner honours the unit's stop
/// sequence: `KillSignal=SIGQUIT` lets the running job go on, the escalation to `WatchdogSignal=SIGTERM` (after
/// `TimeoutStopSec`) aborts and reports it, and the runner exits 0 (before `TimeoutAbortSec` runs out).
#[tokio::test(flavor = "multi_thread")]
async fn the_units_exec_start_runs_the_daemon_and_its_stop_sequence_drains_then_aborts() {
    if !root_or_skip() {
        return;
    }
    let fake = crate::support::fake(1, 1).await;
    let svc = Svc::new();
    let release = svc.sb.path("never-released");
    let (mut daemon, id) = unit_daemon_with_a_job_at_sigquit(&svc, &fake, "oxrt-svc-exec", &release).await;
    let wait = std::time::Duration::from_secs(60);

    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let job = crate::support::wait_status(&fake, id, "failed", wait).await;
    assert!(
        job.trace_text().contains("\nstarted"),
        "the job's log was lost:\n{}",
        job.trace_text()
    );
    let status = daemon
        .wait(wait)
        .await
        .expect("the runner did not exit after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
}

/// The drain half of `systemctl stop`: after SIGQUIT the running job goes on to finish with success on GitLab,
/// with its whole log, no further job is taken, and the runner then exits 0 by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_units_stop_signal_lets_the_running_job_succeed_then_the_runner_exits_0() {
    if !root_or_skip() {
        return;
    }
    let fake = crate::support::fake(1, 1).await;
    let svc = Svc::new();
    let release = svc.sb.path("release");
    let (mut daemon, id) = unit_daemon_with_a_job_at_sigquit(&svc, &fake, "oxrt-svc-drain", &release).await;
    let wait = std::time::Duration::from_secs(60);
    let second = fake.enqueue_job(
        fake_gitlab::JobSpec::new("after-stop", &["echo too-late"]).variable("GIT_STRATEGY", "none"),
    );

    std::fs::write(&release, "").unwrap();
    let job = crate::support::wait_status(&fake, id, "success", wait).await;
    assert!(
        job.trace_text().contains("\nreleased"),
        "the job's log after SIGQUIT was lost:\n{}",
        job.trace_text()
    );
    let status = daemon
        .wait(wait)
        .await
        .expect("the runner did not exit after its last job");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert_eq!(
        fake.job(second).unwrap().status,
        "pending",
        "a job was taken after SIGQUIT"
    );
}
