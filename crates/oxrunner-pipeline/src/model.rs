//! The resolved pipeline: what GitLab would create for a given context.

use std::fmt;
use std::time::Duration;

use oxrunner_wire::JobResponse;
use serde::Serialize;

use crate::error::Warning;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum When {
    OnSuccess,
    OnFailure,
    Always,
    Manual,
    Delayed {
        #[serde(serialize_with = "ser_secs")]
        start_in: Duration,
    },
    Never,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl When {
    pub fn as_str(&self) -> &'static str {
        match self {
            When::OnSuccess => "on_success",
            When::OnFailure => "on_failure",
            When::Always => "always",
            When::Manual => "manual",
            When::Delayed { .. } => "delayed",
            When::Never => "never",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Need {
    pub job: String,
    pub artifacts: bool,
    pub optional: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowFailure {
    No,
    Yes,
    ExitCodes(Vec<i32>),
}

impl AllowFailure {
    pub fn allowed(&self) -> bool {
        !matches!(self, AllowFailure::No)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Retry {
    pub max: u32,
    pub when: Vec<String>,
    pub exit_codes: Vec<i32>,
}

/// A `trigger` job. For local `include`s the child pipeline is resolved too.
#[derive(Clone, Debug, Serialize)]
pub struct ChildPipeline {
    /// `trigger:strategy: depend`.
    pub strategy_depend: bool,
    /// `trigger:project` for multi-project pipelines (not runnable locally).
    pub project: Option<String>,
    pub pipeline: Option<Box<Pipeline>>,
    /// `trigger:include:artifact`: the child is resolved from a job's artifact when the trigger job runs.
    pub dynamic: Option<crate::dynamic::DynamicChild>,
}

/// A variable as GitLab sends it to a runner.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct JobVariable {
    pub key: String,
    pub value: String,
    pub public: bool,
    pub masked: bool,
    pub file: bool,
    pub raw: bool,
}

#[derive(Clone, Serialize)]
pub struct PipelineJob {
    pub name: String,
    pub stage: String,
    pub stage_index: usize,
    pub when: When,
    pub needs: Option<Vec<Need>>,
    pub dependencies: Option<Vec<String>>,
    pub allow_failure: AllowFailure,
    pub retry: Retry,
    #[serde(serialize_with = "ser_opt_secs")]
    pub timeout: Option<Duration>,
    pub resource_group: Option<String>,
    pub interruptible: bool,
    pub environment: Option<serde_json::Value>,
    pub trigger: Option<ChildPipeline>,
    pub tags: Vec<String>,
    /// `coverage:` as written (`/regex/`); [`crate::extract_coverage`] reads the value from a log.
    pub coverage: Option<String>,
    /// Exactly the job payload GitLab would send a runner (ids and tokens are filled by the caller); the default
    /// (no steps) for trigger jobs, which are never sent to a runner.
    pub payload: JobResponse,
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

impl PipelineJob {
    /// A manual job that may not fail (`when: manual` only from `rules:`, or `allow_failure: false`): GitLab starts
    /// nothing that waits for it until it is played, and the pipeline is `blocked` meanwhile.
    pub fn blocks_pipeline(&self) -> bool {
        self.when == When::Manual && self.allow_failure == AllowFailure::No
    }

    /// The variables of the payload, in payload order (later entries win, as in the runner).
    pub fn variables(&self) -> Vec<JobVariable> {
        crate::payload::payload_variables(&self.payload)
    }

    /// Value of a variable as the runner would see it before expansion (last definition wins).
    pub fn variable(&self, key: &str) -> Option<String> {
        self.variables()
            .into_iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value)
    }

    /// Variables expanded as the runner expands them (one pass, `raw` values untouched).
    pub fn expanded_variables(&self) -> Vec<(String, String)> {
        crate::vars::runner_expand(&self.variables())
    }

    /// `before_script` + `script`, as sent in the `script` step.
    pub fn script(&self) -> Vec<String> {
        self.step("script")
    }

    pub fn after_script(&self) -> Vec<String> {
        self.step("after_script")
    }

    fn step(&self, name: &str) -> Vec<String> {
        self.payload
            .steps
            .iter()
            .filter(|s| s.name == name)
            .flat_map(|s| s.script.iter().cloned())
            .collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Pipeline {
    pub stages: Vec<String>,
    pub jobs: Vec<PipelineJob>,
    pub warnings: Vec<Warning>,
    /// Pipeline-level variables (predefined, global YAML, workflow rules, CLI) in precedence order.
    pub variables: Vec<JobVariable>,
    /// `workflow:name`, expanded.
    pub name: Option<String>,
}

impl Pipeline {
    pub fn job(&self, name: &str) -> Option<&PipelineJob> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// Non-public and masked values (CLI variables may be secrets) never show in `Debug`.
impl fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &str = if self.public && !self.masked {
            &self.value
        } else {
            "[REDACTED]"
        };
        f.debug_struct("JobVariable")
            .field("key", &self.key)
            .field("value", &value)
            .field("public", &self.public)
            .field("masked", &self.masked)
            .field("file", &self.file)
            .field("raw", &self.raw)
            .finish()
    }
}

/// The payload carries every variable value, so `Debug` shows only its shape.
impl fmt::Debug for PipelineJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vars = self.payload.variables.len();
        f.debug_struct("PipelineJob")
            .field("name", &self.name)
            .field("stage", &self.stage)
            .field("stage_index", &self.stage_index)
            .field("when", &self.when)
            .field("needs", &self.needs)
            .field("dependencies", &self.dependencies)
            .field("allow_failure", &self.allow_failure)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("resource_group", &self.resource_group)
            .field("interruptible", &self.interruptible)
            .field("environment", &self.environment)
            .field("trigger", &self.trigger)
            .field("tags", &self.tags)
            .field("coverage", &self.coverage)
            .field("payload", &format_args!("{{ {vars} variables, .. }}"))
            .finish()
    }
}
