//! Output for `oxrunner exec --list`, `--list --json` and `--print-config`.

use std::fmt::Write;

use serde_json::json;

use crate::model::{AllowFailure, Pipeline, PipelineJob, When};
use crate::yaml::{Node, Val, plain_scalar};

fn needs_text(j: &PipelineJob) -> String {
    match &j.needs {
        None => "-".into(),
        Some(n) if n.is_empty() => "[]".into(),
        Some(n) => n.iter().map(|n| n.job.as_str()).collect::<Vec<_>>().join(", "),
    }
}

fn when_text(w: &When) -> String {
    match w {
        When::Delayed { start_in } => format!("delayed ({}s)", start_in.as_secs()),
        other => other.as_str().into(),
    }
}

fn allow_text(a: &AllowFailure) -> String {
    match a {
        AllowFailure::No => "false".into(),
        AllowFailure::Yes => "true".into(),
        AllowFailure::ExitCodes(c) => format!(
            "exit codes {}",
            c.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
        ),
    }
}

/// A plain-text table: name, stage, when, allow_failure, needs.
pub fn render_list(p: &Pipeline) -> String {
    let header = ["NAME", "STAGE", "WHEN", "ALLOW_FAILURE", "NEEDS"];
    let rows: Vec<[String; 5]> = p
        .jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                j.stage.clone(),
                when_text(&j.when),
                allow_text(&j.allow_failure),
                needs_text(j),
            ]
        })
        .collect();
    let mut w = header.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<width$}  ", width = w[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

/// The same information as JSON (one object per job, in pipeline order).
pub fn render_list_json(p: &Pipeline) -> String {
    let jobs: Vec<serde_json::Value> = p
        .jobs
        .iter()
        .map(|j| {
            json!({
                "name": j.name,
                "stage": j.stage,
                "when": j.when.as_str(),
                "start_in": match &j.when { When::Delayed { start_in } => Some(start_in.as_secs()), _ => None },
                "allow_failure": match &j.allow_failure { AllowFailure::ExitCodes(c) => json!({"exit_codes": c}), a => json!(a.allowed()) },
                "needs": j.needs.as_ref().map(|n| n.iter().map(|x| json!({"job": x.job, "artifacts": x.artifacts, "optional": x.optional})).collect::<Vec<_>>()),
                "dependencies": j.dependencies,
                "trigger": j.trigger.is_some(),
                "coverage": j.coverage,
                "blocks_pipeline": j.blocks_pipeline(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&jobs).unwrap_or_else(|_| "[]".into())
}

/// Block-style YAML; strings are quoted whenever a plain scalar would read back differently.
pub fn to_yaml(n: &Node) -> String {
    let mut out = String::new();
    emit(n, 0, &mut out, false);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && matches!(plain_scalar(s), Val::Str(_))
        && !s.starts_with(|c: char| " -?:,[]{}#&*!|>'\"%@`~".contains(c))
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\t', '\r'])
        && s.chars().all(|c| !c.is_control());
    if plain_ok {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn leaf(n: &Node) -> Option<String> {
    Some(match &n.val {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf".into() } else { "-.inf".into() }
            } else {
                crate::yaml::ruby_float(*f)
            }
        }
        Val::Str(s) => scalar(s),
        Val::Seq(s) if s.is_empty() => "[]".into(),
        Val::Map(m) if m.is_empty() => "{}".into(),
        Val::Ref(r) => format!(
            "!reference [{}]",
            r.iter().filter_map(leaf).collect::<Vec<_>>().join(", ")
        ),
        _ => return None,
    })
}

fn emit(n: &Node, indent: usize, out: &mut String, inline_first: bool) {
    let pad = " ".repeat(indent);
    match &n.val {
        Val::Map(m) if !m.is_empty() => {
            for (i, (k, v)) in m.iter().enumerate() {
                if !(i == 0 && inline_first) {
                    out.push_str(&pad);
                }
                out.push_str(&scalar(k));
                out.push(':');
                match leaf(v) {
                    Some(l) => {
                        out.push(' ');
                        out.push_str(&l);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        let child = if matches!(v.val, Val::Seq(_)) {
                            indent
                        } else {
                            indent + 2
                        };
                        emit(v, child, out, false);
                    }
                }
            }
        }
        Val::Seq(s) if !s.is_empty() => {
            for (i, item) in s.iter().enumerate() {
                if !(i == 0 && inline_first) {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                match leaf(item) {
                    Some(l) => {
                        out.push_str(&l);
                        out.push('\n');
                    }
                    None => emit(item, indent + 2, out, true),
                }
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&leaf(n).unwrap_or_default());
            out.push('\n');
        }
    }
}
