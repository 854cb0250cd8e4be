//! `install` over an existing runner unit keeps what that unit's `ExecStart` said (`--config`,
//! `--working-directory`, `--user`, `--syslog`) unless given again: `install --service gitlab-runner` must not
//! move a running installation to a different config file or run its jobs as root.

use std::path::PathBuf;

use super::InstallArgs;

/// Fills the flags `args` leaves out from the `ExecStart=` of `existing` (a unit `runs_a_runner` accepted).
pub fn carry_over(existing: &str, args: &mut InstallArgs) {
    let Some(words) = existing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .map(exec_words)
        .find(|w| w.iter().any(|x| x == "run"))
    else {
        return;
    };
    let value = |long: &str, short: Option<&str>| {
        words.iter().enumerate().find_map(|(i, w)| {
            if let Some(v) = w.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
            (w == long || Some(w.as_str()) == short)
                .then(|| words.get(i + 1).cloned())
                .flatten()
        })
    };
    if args.config.is_none() && args.init_user.is_none() {
        args.config = value("--config", Some("-c")).map(PathBuf::from);
    }
    if args.working_directory.is_none() {
        args.working_directory = value("--working-directory", Some("-d")).map(PathBuf::from);
    }
    if args.user.is_none() && args.init_user.is_none() {
        args.user = value("--user", Some("-u"));
    }
    if args.syslog.is_none() && words.iter().any(|w| w == "--syslog" || w == "--syslog=true") {
        args.syslog = Some(true);
    }
}

/// The words of an `ExecStart=` command line, unquoting `"..."` as systemd does (no escapes inside: the units
/// gitlab-runner and oxrunner write quote plain paths).
fn exec_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    words
}
