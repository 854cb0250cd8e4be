//! Global keys and `[session_server]` (gitlab-runner `Config`, `SessionServer`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::raw::RawSection;
use super::runner::RunnerConfig;
use crate::duration::parse_go_duration;

/// Default poll period when `check_interval` is unset or not positive.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// Default forceful-shutdown timeout.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default age after which idle HTTP connections are closed.
pub const DEFAULT_CONNECTION_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Default `[session_server] session_timeout`, in seconds.
pub const DEFAULT_SESSION_TIMEOUT: i64 = 1800;
/// Port of the metrics server when `listen_address` has none.
pub const DEFAULT_METRICS_PORT: u16 = 9252;

/// The whole `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Metrics/debug HTTP server address (`host[:port]`, port defaults to 9252).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// Interactive web terminal server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_server: Option<SessionServer>,
    /// Maximum number of jobs across all runners. 1 when absent, as in a fresh gitlab-runner file.
    pub concurrent: i64,
    /// Poll period in seconds; `<= 0` means 3 s (see [`Config::check_interval`]).
    pub check_interval: i64,
    /// `debug`, `info`, `warn`/`warning`, `error`, `fatal`, `panic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// `runner`, `text` or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// User the shell executor runs jobs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The runners this process serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<RunnerConfig>,
    /// Sentry DSN for error reporting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentry_dsn: Option<String>,
    /// Go duration after which idle API connections are closed (default 15m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_max_age: Option<String>,
    /// Forceful shutdown timeout in seconds; `<= 0` means 30 s.
    #[serde(skip_serializing_if = "is_zero")]
    pub shutdown_timeout: i64,
    /// Default labels for every runner (sent as `info.labels`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `[machine]`: docker-machine settings, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<RawSection>,
    /// `[experimental]`: kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experimental: Option<RawSection>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_address: None,
            session_server: None,
            concurrent: 1,
            check_interval: 0,
            log_level: None,
            log_format: None,
            user: None,
            runners: Vec::new(),
            sentry_dsn: None,
            connection_max_age: None,
            shutdown_timeout: 0,
            labels: BTreeMap::new(),
            machine: None,
            experimental: None,
        }
    }
}

impl Config {
    /// Poll period: `check_interval` seconds, or 3 s when it is zero or negative.
    pub fn check_interval(&self) -> Duration {
        positive_secs(self.check_interval).unwrap_or(DEFAULT_CHECK_INTERVAL)
    }

    /// Forceful shutdown timeout: `shutdown_timeout` seconds, or 30 s when not positive.
    pub fn shutdown_timeout(&self) -> Duration {
        positive_secs(self.shutdown_timeout).unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// How long connections to GitLab may be kept: 15 min when unset or unparsable (load already rejected
    /// unparsable values, so the fallback only covers hand-built configs); `None` for zero, which upstream
    /// takes as "no limit".
    pub fn connection_max_age(&self) -> Option<Duration> {
        let age = self
            .connection_max_age
            .as_deref()
            .and_then(|s| parse_go_duration(s).ok())
            .unwrap_or(DEFAULT_CONNECTION_MAX_AGE);
        (!age.is_zero()).then_some(age)
    }

    /// Session timeout of the web terminal server in seconds (1800 by default).
    pub fn session_timeout(&self) -> Duration {
        let secs = self
            .session_server
            .as_ref()
            .map_or(DEFAULT_SESSION_TIMEOUT, |s| s.session_timeout);
        positive_secs(secs).unwrap_or(Duration::from_secs(DEFAULT_SESSION_TIMEOUT as u64))
    }

    /// `listen_address` with the default metrics port added when it has none.
    pub fn metrics_listen_address(&self) -> Option<String> {
        let addr = self.listen_address.as_deref()?.trim();
        if addr.is_empty() {
            return None;
        }
        Some(with_default_port(addr, DEFAULT_METRICS_PORT))
    }
}

fn positive_secs(secs: i64) -> Option<Duration> {
    u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

fn with_default_port(addr: &str, port: u16) -> String {
    // `[::1]` and `host` have no port; `[::1]:9000`, `:9000` and `host:9000` do.
    let has_port = if let Some(rest) = addr.strip_prefix('[') {
        rest.split_once(']')
            .is_some_and(|(_, tail)| tail.starts_with(':'))
    } else {
        addr.matches(':').count() == 1
    };
    if has_port {
        addr.to_owned()
    } else if addr.matches(':').count() > 1 && !addr.starts_with('[') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// `[session_server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionServer {
    /// Address the terminal server listens on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// Address advertised to GitLab.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<String>,
    /// Seconds a session may stay open.
    pub session_timeout: i64,
}

impl Default for SessionServer {
    fn default() -> Self {
        Self {
            listen_address: None,
            advertise_address: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_and_timeout_fallbacks() {
        let mut c = Config::default();
        assert_eq!(c.check_interval(), Duration::from_secs(3));
        assert_eq!(c.shutdown_timeout(), Duration::from_secs(30));
        c.check_interval = -4;
        c.shutdown_timeout = 7;
        assert_eq!(c.check_interval(), Duration::from_secs(3));
        assert_eq!(c.shutdown_timeout(), Duration::from_secs(7));
        c.check_interval = 10;
        assert_eq!(c.check_interval(), Duration::from_secs(10));
    }

    #[test]
    fn metrics_address_gets_default_port() {
        let mut c = Config::default();
        assert_eq!(c.metrics_listen_address(), None);
        for (given, want) in [
            (":9252", ":9252"),
            ("localhost", "localhost:9252"),
            ("0.0.0.0:9000", "0.0.0.0:9000"),
            ("[::1]", "[::1]:9252"),
            ("[::1]:8080", "[::1]:8080"),
            ("::1", "[::1]:9252"),
        ] {
            c.listen_address = Some(given.to_owned());
            assert_eq!(c.metrics_listen_address().as_deref(), Some(want), "{given}");
        }
    }
}
