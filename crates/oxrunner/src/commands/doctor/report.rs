//! The doctor's findings and how they are printed: one line per check (✓ / ✗ / !), with the cause
//! and the fix under every ✗ and !, or the same as JSON for scripts.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, but something is likely to bite (a job will fail in some cases, or a risk).
    Warn,
    /// Broken: jobs fail or the runner cannot work.
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: Status,
    /// What was checked and what was found, in one line.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(message: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            message: message.into(),
            cause: None,
            fix: None,
        }
    }

    pub fn warn(message: impl Into<String>, cause: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            message: message.into(),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(message: impl Into<String>, cause: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            message: message.into(),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
        }
    }
}

/// The checks of one part: the config file as a whole, or one runner.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    pub checks: Vec<Check>,
}

impl Section {
    pub fn new(title: impl Into<String>, runner: Option<&str>) -> Section {
        Section {
            title: title.into(),
            runner: runner.map(str::to_string),
            checks: Vec::new(),
        }
    }

    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: String,
    pub ok: bool,
    pub problems: usize,
    pub warnings: usize,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn new(config: String, sections: Vec<Section>) -> Report {
        let count = |s: Status| {
            sections
                .iter()
                .flat_map(|sec| &sec.checks)
                .filter(|c| c.status == s)
                .count()
        };
        let problems = count(Status::Fail);
        let warnings = count(Status::Warn);
        Report {
            config,
            ok: problems == 0,
            problems,
            warnings,
            sections,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            out.push_str(&section.title);
            out.push('\n');
            for c in &section.checks {
                let mark = match c.status {
                    Status::Ok => '✓',
                    Status::Warn => '!',
                    Status::Fail => '✗',
                };
                out.push_str(&format!("  {mark} {}\n", c.message));
                for (label, text) in [("cause", &c.cause), ("fix", &c.fix)] {
                    if let Some(text) = text {
                        for (i, line) in text.lines().enumerate() {
                            let head = if i == 0 {
                                format!("{label}:")
                            } else {
                                String::new()
                            };
                            out.push_str(&format!("      {head:<7}{line}\n"));
                        }
                    }
                }
            }
        }
        out.push_str(&match (self.problems, self.warnings) {
            (0, 0) => "all checks passed\n".to_string(),
            (p, w) => format!("{p} problem(s), {w} warning(s)\n"),
        });
        out
    }
}
