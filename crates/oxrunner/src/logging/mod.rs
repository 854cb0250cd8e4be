//! Runner log output in gitlab-runner's shapes: `--log-format runner|text|json` (logrus' text and JSON layouts,
//! fields as top-level keys) and `--log-level`, each also settable in config.toml (`log_format`, `log_level`),
//! where the command line wins and a reload applies a changed value. `--syslog` sends the lines to the system
//! log socket instead of stderr.
//!
//! One tracing layer does the filtering and formatting from atomics, so a reload changes both without rebuilding
//! the subscriber. It also counts warnings and errors for `gitlab_runner_errors_total`. `OXRUNNER_LOG` (an
//! `EnvFilter` directive) still overrides the level for debugging oxrunner itself.

mod format;
mod syslog;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

pub use self::format::Format;

/// The settings in force and where they came from.
struct State {
    level: AtomicU8,
    format: AtomicU8,
    level_from_flags: bool,
    format_from_flags: bool,
    /// `OXRUNNER_LOG` is set: its filter decides, the level atomic is ignored.
    env_filter: bool,
    ansi: bool,
    syslog: Mutex<Option<syslog::Syslog>>,
    syslog_requested: AtomicBool,
}

static STATE: OnceLock<State> = OnceLock::new();

fn level_code(l: LevelFilter) -> u8 {
    match l.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn code_allows(code: u8, level: Level) -> bool {
    let needed = match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    };
    needed <= code
}

/// gitlab-runner's level names; `None` for an unknown one.
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    match name.trim().to_ascii_lowercase().as_str() {
        "debug" => Some(LevelFilter::DEBUG),
        "info" => Some(LevelFilter::INFO),
        "warn" | "warning" => Some(LevelFilter::WARN),
        "error" | "fatal" | "panic" => Some(LevelFilter::ERROR),
        "trace" => Some(LevelFilter::TRACE),
        _ => None,
    }
}

/// Installs the logger from the command line; call once, before anything logs.
pub fn init(debug: bool, level: Option<&str>, format: Option<&str>) {
    let mut warnings = Vec::new();
    let flag_level = if debug {
        Some(LevelFilter::DEBUG)
    } else {
        level.and_then(|l| {
            let parsed = parse_level(l);
            if parsed.is_none() {
                warnings.push(format!(
                    "unknown log level {l:?} (--log-level / LOG_LEVEL); using info (expected one of: debug, info, warn, error, fatal, panic)"
                ));
            }
            parsed
        })
    };
    let flag_format = format.and_then(|f| {
        let parsed = Format::parse(f);
        if parsed.is_none() {
            warnings.push(format!(
                "unknown log format {f:?} (--log-format / LOG_FORMAT); using runner (expected one of: runner, text, json)"
            ));
        }
        parsed
    });
    let env = EnvFilter::try_from_env("OXRUNNER_LOG").ok();
    // Colours only on a terminal: service managers and `docker logs` keep the raw text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let state = State {
        level: AtomicU8::new(level_code(flag_level.unwrap_or(LevelFilter::INFO))),
        format: AtomicU8::new(flag_format.unwrap_or(Format::Runner) as u8),
        level_from_flags: flag_level.is_some(),
        format_from_flags: flag_format.is_some(),
        env_filter: env.is_some(),
        ansi,
        syslog: Mutex::new(None),
        syslog_requested: AtomicBool::new(false),
    };
    if STATE.set(state).is_err() {
        // A second init (tests) keeps the first logger.
        return;
    }
    let _ = tracing_subscriber::registry()
        .with(env)
        .with(RunnerLayer)
        .try_init();
    for w in warnings {
        tracing::warn!("{w}");
    }
}

/// Applies config.toml's `log_level` and `log_format` (at start and on every reload) where no flag set them;
/// unknown values are named in a warning and leave the setting as it was.
pub fn apply_config(level: Option<&str>, format: Option<&str>) {
    let Some(state) = STATE.get() else {
        return;
    };
    if !state.level_from_flags {
        let wanted = match level.map(str::trim).filter(|l| !l.is_empty()) {
            None => Some(LevelFilter::INFO),
            Some(l) => {
                let parsed = parse_level(l);
                if parsed.is_none() {
                    tracing::warn!(
                        "config.toml: unknown log_level {l:?}; keeping the current level (expected one of: debug, info, warn, error, fatal, panic)"
                    );
                }
                parsed
            }
        };
        if let Some(w) = wanted {
            state.level.store(level_code(w), Ordering::Relaxed);
        }
    }
    if !state.format_from_flags {
        let wanted = match format.map(str::trim).filter(|f| !f.is_empty()) {
            None => Some(Format::Runner),
            Some(f) => {
                let parsed = Format::parse(f);
                if parsed.is_none() {
                    tracing::warn!(
                        "config.toml: unknown log_format {f:?}; keeping the current format (expected one of: runner, text, json)"
                    );
                }
                parsed
            }
        };
        if let Some(w) = wanted {
            state.format.store(w as u8, Ordering::Relaxed);
        }
    }
}

/// `--syslog`: from now on lines go to the system log socket. When none answers, says so once and keeps stderr.
pub fn use_syslog() {
    let Some(state) = STATE.get() else {
        return;
    };
    if state.syslog_requested.swap(true, Ordering::SeqCst) {
        return;
    }
    match syslog::Syslog::connect() {
        Ok(s) => {
            tracing::info!(socket = %s.path().display(), "logging to the system log");
            *format::lock(&state.syslog) = Some(s);
        }
        Err(err) => tracing::warn!(
            "--syslog: no system log socket is reachable ({err}); logging to stderr instead\nhint: run under systemd (journald) or a syslog daemon listening on /dev/log"
        ),
    }
}

/// Libraries whose trace-level lines carry secrets: tungstenite traces the raw WebSocket upgrade request, with
/// the job router's `Authorization: Bearer <runner token>`. Dropped at every level setting, `OXRUNNER_LOG`
/// included.
const SECRET_TRACING_TARGETS: &[&str] = &["tungstenite", "tokio_tungstenite"];

fn leaks_secrets(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::TRACE
        && SECRET_TRACING_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Formats and writes every event that passes the level.
struct RunnerLayer;

impl<S: Subscriber> Layer<S> for RunnerLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change on reload: never let tracing cache a callsite as always-off.
        tracing::subscriber::Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        None
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        if leaks_secrets(meta) {
            return false;
        }
        match STATE.get() {
            Some(s) if !s.env_filter => code_allows(s.level.load(Ordering::Relaxed), *meta.level()),
            _ => true,
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some(state) = STATE.get() else {
            return;
        };
        let level = *event.metadata().level();
        match level {
            Level::WARN => crate::metrics::LOGGED_WARNINGS.fetch_add(1, Ordering::Relaxed),
            Level::ERROR => crate::metrics::LOGGED_ERRORS.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let fields = format::Fields::of(event);
        let format = Format::from_u8(state.format.load(Ordering::Relaxed));
        let mut syslog = format::lock(&state.syslog);
        if let Some(s) = syslog.as_mut() {
            let line = format.render(level, &fields, false);
            if s.send(level, line.trim_end()).is_ok() {
                return;
            }
        }
        drop(syslog);
        let line = format.render(level, &fields, state.ansi);
        // A closed stderr must not bring the runner down.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
