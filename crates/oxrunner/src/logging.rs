//! Runner log output on stderr, with gitlab-runner's level names and `--log-format` choices.

use tracing_subscriber::EnvFilter;

pub fn init(debug: bool, level: Option<&str>, format: Option<&str>) {
    let level = if debug {
        "debug".to_string()
    } else {
        match level.map(str::to_ascii_lowercase).as_deref() {
            Some("warning") => "warn".to_string(),
            Some("fatal" | "panic") => "error".to_string(),
            Some(l @ ("debug" | "info" | "warn" | "error" | "trace")) => l.to_string(),
            _ => "info".to_string(),
        }
    };
    let filter = EnvFilter::try_from_env("OXRUNNER_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only on a terminal: service managers and `docker logs` keep the raw text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // On a closed stderr the subscriber would report its own write error with `eprintln!`, which panics.
        .log_internal_errors(false)
        .with_ansi(ansi);
    let result = match format {
        Some("json") => builder.json().try_init(),
        Some("text") => builder.with_ansi(false).try_init(),
        _ => builder.without_time().with_target(false).try_init(),
    };
    // A second init (tests) is harmless; ignore it.
    let _ = result;
}
