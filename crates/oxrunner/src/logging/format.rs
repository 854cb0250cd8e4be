//! The three layouts of gitlab-runner's `--log-format`: `runner` (message, then sorted `key=value` fields),
//! `text` (logrus' `time=… level=… msg=… key=value`) and `json` (logrus' one object per line with `level`, `msg`,
//! `time` and every field as a top-level key).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Format {
    Runner = 0,
    Text = 1,
    Json = 2,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name.trim().to_ascii_lowercase().as_str() {
            "runner" => Some(Format::Runner),
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub(super) fn from_u8(v: u8) -> Format {
        match v {
            1 => Format::Text,
            2 => Format::Json,
            _ => Format::Runner,
        }
    }

    /// One line, newline included.
    pub(super) fn render(self, level: Level, fields: &Fields, ansi: bool) -> String {
        match self {
            Format::Runner => runner(level, fields, ansi),
            Format::Text => text(level, fields),
            Format::Json => json(level, fields),
        }
    }
}

/// An event's message and fields, in the order given.
#[derive(Default)]
pub(super) struct Fields {
    message: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    pub(super) fn of(event: &Event<'_>) -> Fields {
        let mut f = Fields::default();
        event.record(&mut f);
        f
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_string(), Value::String(text)));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), Value::String(value.to_string())));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name().to_string(), Value::from(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name().to_string(), Value::from(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name().to_string(), Value::from(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name().to_string(), Value::from(value)));
    }
}

/// logrus' level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A field's value as `%v` prints it: strings bare, everything else as JSON does.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sorted(fields: &Fields) -> BTreeMap<&str, &Value> {
    fields.fields.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

fn runner(level: Level, fields: &Fields, ansi: bool) -> String {
    let (color, prefix) = match level {
        Level::DEBUG | Level::TRACE => ("\x1b[1;37m", ""),
        Level::WARN => ("\x1b[0;33m", "WARNING: "),
        Level::ERROR => ("\x1b[31;1m", "ERROR: "),
        Level::INFO => ("", ""),
    };
    let (color, reset) = if ansi { (color, "\x1b[0;m") } else { ("", "") };
    let width = 50 - prefix.len();
    let mut out = format!("{color}{prefix}{:<width$}{reset} ", fields.message);
    for (k, v) in sorted(fields) {
        let _ = write!(out, " {color}{k}{reset}={}", plain(v));
    }
    out.push('\n');
    out
}

/// logrus quotes a value unless it is made only of these characters.
fn needs_quoting(s: &str) -> bool {
    s.chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+')))
}

fn quoted(s: &str) -> String {
    if needs_quoting(s) {
        Value::String(s.to_string()).to_string()
    } else {
        s.to_string()
    }
}

fn text(level: Level, fields: &Fields) -> String {
    let mut out = format!(
        "time={} level={} msg={}",
        quoted(&now()),
        level_name(level),
        quoted(&fields.message)
    );
    for (k, v) in sorted(fields) {
        let _ = write!(out, " {k}={}", quoted(&plain(v)));
    }
    out.push('\n');
    out
}

fn json(level: Level, fields: &Fields) -> String {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in &fields.fields {
        // logrus keeps a field that collides with its own keys under `fields.<name>`.
        let key = if matches!(k.as_str(), "time" | "level" | "msg") {
            format!("fields.{k}")
        } else {
            k.clone()
        };
        map.insert(key, v.clone());
    }
    map.insert("level".into(), Value::from(level_name(level)));
    map.insert("msg".into(), Value::String(fields.message.clone()));
    map.insert("time".into(), Value::String(now()));
    let mut line = serde_json::to_string(&map).unwrap_or_default();
    line.push('\n');
    line
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(msg: &str, kv: &[(&str, Value)]) -> Fields {
        Fields {
            message: msg.into(),
            fields: kv.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect(),
        }
    }

    #[test]
    fn runner_layout_pads_the_message_and_sorts_fields() {
        let f = fields("Job succeeded", &[("runner", "abc".into()), ("job", 7.into())]);
        let line = Format::Runner.render(Level::WARN, &f, false);
        assert_eq!(
            line,
            format!("WARNING: {:<41}  job=7 runner=abc\n", "Job succeeded")
        );
    }

    #[test]
    fn text_layout_quotes_like_logrus() {
        let f = fields("a b", &[("runner", "abc".into()), ("path", "x y".into())]);
        let line = Format::Text.render(Level::INFO, &f, false);
        assert!(
            line.contains(" level=info msg=\"a b\" path=\"x y\" runner=abc\n"),
            "{line}"
        );
    }

    #[test]
    fn json_layout_has_fields_at_the_top_level() {
        let f = fields("hi", &[("job", 7.into()), ("msg", "clash".into())]);
        let line = Format::Json.render(Level::ERROR, &f, false);
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "hi");
        assert_eq!(v["job"], 7);
        assert_eq!(v["fields.msg"], "clash");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
