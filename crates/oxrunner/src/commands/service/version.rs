//! Which systemd will run the unit, and what an older one cannot do.
//!
//! The unit's abort path after the graceful stop (`TimeoutStopFailureMode=abort` with `WatchdogSignal=SIGTERM`
//! and `TimeoutAbortSec=`) needs systemd 246 (`TimeoutStopFailureMode=` came in 246, `TimeoutAbortSec=` in 243).
//! An older systemd ignores the keys it does not know with a log line and, when the stop timeout runs out, kills
//! the whole unit with SIGKILL. Refusing to install there would leave the operators of Debian 10, Ubuntu 20.04
//! and RHEL 8 (systemd 241, 245, 239) without a service, although the graceful stop itself (SIGQUIT to the runner,
//! jobs drain) works the same; so the unit is written without the abort keys and the one behaviour lost is named.

/// The first systemd that has `TimeoutStopFailureMode=`.
pub const ABORT_ON_STOP_TIMEOUT: u32 = 246;

/// The version number in `systemctl --version`'s first line, e.g. `systemd 252 (252.38-1~deb12u1)` → 252.
pub fn parse(text: &str) -> Option<u32> {
    let first = text.lines().next()?.trim();
    let rest = first.strip_prefix("systemd ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether the abort keys go into the unit: yes unless the version is known to be older than 246 (an unknown
/// version, e.g. a unit written for another host, gets them: an old systemd only ignores them).
pub fn has_abort_on_stop_timeout(version: Option<u32>) -> bool {
    version.is_none_or(|v| v >= ABORT_ON_STOP_TIMEOUT)
}

/// The warning `install` prints when the unit is written without the abort path.
pub fn old_systemd_warning(version: u32, service: &str, graceful_stop_secs: u64) -> String {
    format!(
        "WARNING: systemd {version} is older than {ABORT_ON_STOP_TIMEOUT} and has no TimeoutStopFailureMode=: the \
         unit is written without TimeoutStopFailureMode=, WatchdogSignal= and TimeoutAbortSec=. `systemctl stop` \
         still lets running jobs finish, but when they take longer than {graceful_stop_secs} s systemd kills the \
         runner and its jobs with SIGKILL: those jobs stay `running` on GitLab until they time out and lose the \
         end of their logs.\n\
         hint: to end a long drain yourself, send the runner SIGTERM (`systemctl kill --kill-who=main \
         -s SIGTERM {service}`): it aborts the jobs, reports them to GitLab and exits"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_version_of_distribution_builds() {
        assert_eq!(parse("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT"), Some(252));
        assert_eq!(parse("systemd 239 (239-78.el8)\n+PAM"), Some(239));
        assert_eq!(parse("systemd 245 (245.4-4ubuntu3.24)"), Some(245));
        assert_eq!(parse("systemd 256.7-1\n"), Some(256));
        assert_eq!(parse("systemd 257~rc1 (257~rc1-1)"), Some(257));
        assert_eq!(parse(""), None);
        assert_eq!(parse("bash: systemctl: command not found"), None);
        assert_eq!(parse("systemd (unknown)"), None);
    }

    #[test]
    fn the_abort_path_needs_246() {
        assert!(!has_abort_on_stop_timeout(Some(239)));
        assert!(!has_abort_on_stop_timeout(Some(245)));
        assert!(has_abort_on_stop_timeout(Some(246)));
        assert!(has_abort_on_stop_timeout(Some(252)));
        assert!(has_abort_on_stop_timeout(None));
    }

    #[test]
    fn the_warning_names_the_lost_keys_and_the_way_out() {
        let w = old_systemd_warning(241, "oxrunner", 7200);
        for part in [
            "systemd 241",
            "TimeoutStopFailureMode=",
            "TimeoutAbortSec=",
            "SIGKILL",
            "7200 s",
            "\nhint: ",
            "-s SIGTERM oxrunner",
        ] {
            assert!(w.contains(part), "{part:?} missing in {w}");
        }
    }
}
