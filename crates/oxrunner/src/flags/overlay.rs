//! Table flags → the keys they set in a `[[runners]]` TOML table → a `RunnerConfig` read back through the model.
//!
//! Values are parsed here, before `register` contacts GitLab, so a malformed value never leaves a runner behind.
//! As gitlab-runner's `register` does (`askExecutorOptions`), the sections of executors other than the chosen one
//! are not written; the flags that set them are named in one warning instead of aborting.

use anyhow::{Context, bail};
use oxrunner_config::RunnerConfig;
use toml::{Table, Value};

use super::args::{Given, GivenFlag};
use super::{EXECUTOR_GROUPS, Kind, Scalar, executor_sections};
use crate::cli::parse_go_bool;

/// The keys the flags set, ready to lay over a runner.
#[derive(Clone, Default)]
pub struct Overlay {
    table: Table,
    /// Flags (as spelled) whose executor section the chosen executor does not use.
    not_written: Vec<String>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("keys", &self.table.keys().collect::<Vec<_>>())
            .field("not_written", &self.not_written)
            .finish()
    }
}

impl Overlay {
    /// Parses every given flag for a runner of `executor`.
    pub fn build(given: &Given, executor: &str) -> anyhow::Result<Overlay> {
        let kept = executor_sections(executor);
        let mut overlay = Overlay::default();
        for flag in &given.flags {
            if flag.row.config_key.is_empty() {
                continue;
            }
            let value = parse_value(flag)?;
            if EXECUTOR_GROUPS.contains(&flag.row.group) && !kept.contains(&flag.row.group) {
                overlay.not_written.push(flag.spelled());
                continue;
            }
            overlay.set(flag.row.config_key, value);
        }
        Ok(overlay)
    }

    /// Sets the dotted `key` (creating the tables on the way), replacing what was there.
    pub fn set(&mut self, key: &str, value: Value) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let Some(last) = parts.pop() else { return };
        let mut table = &mut self.table;
        for p in parts {
            let entry = table
                .entry(p.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(t) = entry else { return };
            table = t;
        }
        table.insert(last.to_string(), value);
    }

    /// The flags whose settings were not written because the executor does not use their section, for the
    /// one warning the command prints.
    pub fn not_written(&self) -> &[String] {
        &self.not_written
    }

    /// `base` with the flags' keys laid over it and, when given, the template's runner filling what is still
    /// unset (gitlab-runner merges the template with mergo: a value already set wins, a zero value does not
    /// count as set).
    pub fn apply(&self, base: &RunnerConfig, template: Option<&Table>) -> anyhow::Result<RunnerConfig> {
        let mut table = Table::try_from(base).context("cannot encode the runner")?;
        merge_over(&mut table, &self.table);
        if let Some(t) = template {
            fill_from(&mut table, t);
        }
        Value::Table(table).try_into::<RunnerConfig>().map_err(|e| {
            anyhow::anyhow!(
                "the flags describe an invalid runner: {}\nhint: check the values given to the flags named above",
                e.message()
            )
        })
    }
}

/// The one warning naming every flag whose section is not written.
pub fn warn_not_written(overlay: &Overlay, executor: &str) {
    if overlay.not_written().is_empty() {
        return;
    }
    errln!(
        "WARNING: {} not written to config.toml: they configure another executor than `{executor}` (gitlab-runner drops them too)",
        overlay.not_written().join(", ")
    );
}

fn merge_over(dst: &mut Table, src: &Table) {
    for (k, v) in src {
        match (dst.get_mut(k), v) {
            (Some(Value::Table(d)), Value::Table(s)) => merge_over(d, s),
            _ => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Integer(i) => *i == 0,
        Value::Float(f) => *f == 0.0,
        Value::Boolean(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Table(t) => t.is_empty(),
        Value::Datetime(_) => false,
    }
}

/// mergo.Merge without override: every key of `src` missing or zero in `dst` is copied; tables merge deeply;
/// maps (tables without a fixed shape, such as `feature_flags`) gain the keys they lack. A `false` counts as set
/// where gitlab-runner's field is a `*bool` ([`pointer_bool`]): mergo sees a non-nil pointer there.
pub fn fill_from(dst: &mut Table, src: &Table) {
    fill_at(dst, src, "");
}

fn fill_at(dst: &mut Table, src: &Table, prefix: &str) {
    for (k, v) in src {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match dst.get_mut(k) {
            Some(Value::Table(d)) => {
                if let Value::Table(s) = v {
                    fill_at(d, s, &path);
                }
            }
            Some(Value::Boolean(false)) if pointer_bool(&path) => {}
            Some(existing) if !is_zero(existing) => {}
            _ => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The `[[runners]]` settings gitlab-runner declares as `*bool` (common/config.go), by dotted path.
fn pointer_bool(path: &str) -> bool {
    const PATHS: [&str; 14] = [
        "proxy_exec",
        "safe_directory_checkout",
        "clean_git_config",
        "strict_check_interval",
        "custom_build_dir.enabled",
        "ssh.disable_strict_host_key_checking",
        "docker.services_privileged",
        "autoscaler.reservation_throttling",
        "kubernetes.privileged",
        "kubernetes.allow_privilege_escalation",
        "kubernetes.automount_service_account_token",
        "kubernetes.print_pod_warning_events",
        "kubernetes.pod_disruption_budget",
        "kubernetes.pod_security_context.run_as_non_root",
    ];
    const CONTAINER_FIELDS: [&str; 4] = [
        "privileged",
        "run_as_non_root",
        "read_only_root_filesystem",
        "allow_privilege_escalation",
    ];
    if PATHS.contains(&path) {
        return true;
    }
    path.strip_prefix("kubernetes.")
        .and_then(|rest| rest.split_once("_container_security_context."))
        .is_some_and(|(_, field)| CONTAINER_FIELDS.contains(&field))
}

fn parse_value(flag: &GivenFlag) -> anyhow::Result<Value> {
    let name = flag.spelled();
    let last = flag.values.last().map(String::as_str).unwrap_or_default();
    Ok(match flag.row.kind {
        Kind::Bool => scalar(Scalar::Bool, last, &name)?,
        Kind::Int => scalar(Scalar::Int, last, &name)?,
        Kind::Float => scalar(Scalar::Float, last, &name)?,
        Kind::Str => Value::String(last.to_string()),
        Kind::Duration => {
            oxrunner_config::parse_go_duration(last).map_err(|e| {
                anyhow::anyhow!(
                    "{name}: `{last}` is not a duration ({e})\nhint: write it as Go does, for example 90s or 1h30m"
                )
            })?;
            Value::String(last.to_string())
        }
        Kind::List(s) => Value::Array(
            flag.values
                .iter()
                .map(|v| scalar(s, v, &name))
                .collect::<anyhow::Result<_>>()?,
        ),
        Kind::Map(s) => {
            let mut t = Table::new();
            for v in &flag.values {
                let (k, val) = map_entry(v, &name, s == Scalar::Bool)?;
                t.insert(k.to_string(), scalar(s, val, &name)?);
            }
            Value::Table(t)
        }
        Kind::MapOfLists => {
            let mut t = Table::new();
            for v in &flag.values {
                let (k, val) = map_entry(v, &name, false)?;
                let list = t.entry(k.to_string()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = list {
                    a.push(Value::String(val.to_string()));
                }
            }
            Value::Table(t)
        }
    })
}

/// go-flags' `KEY:VALUE`. `KEY=VALUE` is accepted too when the text has no colon (earlier oxrunner releases
/// took feature flags that way); a bare key of a boolean map means true.
fn map_entry<'a>(text: &'a str, name: &str, boolean: bool) -> anyhow::Result<(&'a str, &'a str)> {
    let pair = text.split_once(':').or_else(|| text.split_once('='));
    match pair {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
        None if boolean && !text.trim().is_empty() => Ok((text.trim(), "true")),
        _ => bail!(
            "{name}: `{text}` is not KEY:VALUE\nhint: write one entry per flag, as in {name} FF_EXAMPLE:true"
        ),
    }
}

fn scalar(kind: Scalar, text: &str, name: &str) -> anyhow::Result<Value> {
    Ok(match kind {
        Scalar::Bool => Value::Boolean(
            parse_go_bool(text.trim())
                .map_err(|e| anyhow::anyhow!("{name}: {e}\nhint: use {name}=true or {name}=false"))?,
        ),
        Scalar::Int => Value::Integer(text.trim().parse().map_err(|_| {
            anyhow::anyhow!("{name}: `{text}` is not a whole number\nhint: give a number such as {name}=10")
        })?),
        Scalar::Float => Value::Float(text.trim().parse().map_err(|_| {
            anyhow::anyhow!("{name}: `{text}` is not a number\nhint: give a number such as 0.5")
        })?),
        Scalar::Str => Value::String(text.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_keeps_set_values_and_takes_zero_ones() {
        let mut dst: Table = toml::from_str("a = \"x\"\nb = false\n[t]\nc = 1\n").unwrap();
        let src: Table = toml::from_str("a = \"y\"\nb = true\nd = [\"z\"]\n[t]\nc = 2\ne = 3\n").unwrap();
        fill_from(&mut dst, &src);
        let want: Table = toml::from_str("a = \"x\"\nb = true\nd = [\"z\"]\n[t]\nc = 1\ne = 3\n").unwrap();
        assert_eq!(dst, want);
    }

    /// gitlab-runner's `*bool` settings: a given `false` is set and the template does not replace it; a plain
    /// `bool` such as `docker.privileged` still takes the template's `true`.
    #[test]
    fn a_false_pointer_bool_is_set() {
        let mut dst: Table = toml::from_str(
            "clean_git_config = false\n[docker]\nprivileged = false\nservices_privileged = false\n[kubernetes.build_container_security_context]\nprivileged = false\n",
        )
        .unwrap();
        let src: Table = toml::from_str(
            "clean_git_config = true\n[docker]\nprivileged = true\nservices_privileged = true\n[kubernetes.build_container_security_context]\nprivileged = true\n",
        )
        .unwrap();
        fill_from(&mut dst, &src);
        let want: Table = toml::from_str(
            "clean_git_config = false\n[docker]\nprivileged = true\nservices_privileged = false\n[kubernetes.build_container_security_context]\nprivileged = false\n",
        )
        .unwrap();
        assert_eq!(dst, want);
    }

    #[test]
    fn map_entries_use_the_first_colon() {
        assert_eq!(map_entry("FF_X:true", "--f", true).unwrap(), ("FF_X", "true"));
        assert_eq!(
            map_entry("kubernetes.io/os:linux", "--f", false).unwrap(),
            ("kubernetes.io/os", "linux")
        );
        assert_eq!(map_entry("FF_X", "--f", true).unwrap(), ("FF_X", "true"));
        assert!(map_entry("nokey", "--f", false).is_err());
    }
}
