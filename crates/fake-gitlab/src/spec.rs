//! The compact job description tests enqueue; `payload.rs` expands it into what GitLab sends.

use serde::{Deserialize, Serialize};

/// Flags of a CI/CD variable as GitLab sends them to runners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VarFlags {
    pub public: bool,
    pub masked: bool,
    pub file: bool,
    pub raw: bool,
}

impl VarFlags {
    /// A variable defined in `.gitlab-ci.yml` (`variables:`): visible in the job definition.
    pub const YAML: VarFlags = VarFlags {
        public: true,
        masked: false,
        file: false,
        raw: false,
    };
    /// A masked project CI/CD variable.
    pub const MASKED: VarFlags = VarFlags {
        public: false,
        masked: true,
        file: false,
        raw: false,
    };
    /// A file-type project CI/CD variable.
    pub const FILE: VarFlags = VarFlags {
        public: false,
        masked: false,
        file: true,
        raw: false,
    };
}

/// `image:` or one entry of `services:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSpec {
    pub name: String,
    pub alias: Option<String>,
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    pub pull_policy: Vec<String>,
    pub variables: Vec<(String, String)>,
    /// `executor_opts` as GitLab forwards it, e.g. `{"docker": {"platform": "linux/amd64"}}`.
    pub executor_opts: Option<serde_json::Value>,
}

impl ImageSpec {
    pub fn new(name: &str) -> ImageSpec {
        ImageSpec {
            name: name.to_string(),
            ..ImageSpec::default()
        }
    }
    pub fn alias(mut self, alias: &str) -> ImageSpec {
        self.alias = Some(alias.to_string());
        self
    }
    pub fn entrypoint(mut self, entrypoint: &[&str]) -> ImageSpec {
        self.entrypoint = to_strings(entrypoint);
        self
    }
    pub fn command(mut self, command: &[&str]) -> ImageSpec {
        self.command = to_strings(command);
        self
    }
}

/// One `artifacts:` entry (GitLab sends the archive and each report as separate entries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArtifactSpec {
    pub name: Option<String>,
    pub untracked: bool,
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    /// `on_success` | `on_failure` | `always`.
    pub when: String,
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: Option<String>,
}

impl Default for ArtifactSpec {
    fn default() -> Self {
        ArtifactSpec {
            name: None,
            untracked: false,
            paths: Vec::new(),
            exclude: Vec::new(),
            when: "on_success".to_string(),
            artifact_type: "archive".to_string(),
            artifact_format: "zip".to_string(),
            expire_in: None,
        }
    }
}

impl ArtifactSpec {
    pub fn paths(paths: &[&str]) -> ArtifactSpec {
        ArtifactSpec {
            paths: to_strings(paths),
            ..ArtifactSpec::default()
        }
    }
}

/// One `cache:` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSpec {
    pub key: String,
    pub untracked: bool,
    /// `pull-push` | `pull` | `push`.
    pub policy: String,
    pub paths: Vec<String>,
    pub when: String,
    pub fallback_keys: Vec<String>,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            key: "default".to_string(),
            untracked: false,
            policy: "pull-push".to_string(),
            paths: Vec::new(),
            when: "on_success".to_string(),
            fallback_keys: Vec::new(),
        }
    }
}

impl CacheSpec {
    pub fn new(key: &str, paths: &[&str]) -> CacheSpec {
        CacheSpec {
            key: key.to_string(),
            paths: to_strings(paths),
            ..CacheSpec::default()
        }
    }
}

/// One job input (`inputs:` of the job in `.gitlab-ci.yml`) with the value GitLab resolved for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub key: String,
    /// `string`, `number`, `boolean`, `array` or `struct`.
    pub kind: String,
    pub content: serde_json::Value,
    pub sensitive: bool,
}

/// A job to put in the queue. Git strategy, depth etc. are plain variables (`GIT_STRATEGY`,
/// `GIT_DEPTH`), exactly as in `.gitlab-ci.yml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    /// Project id from [`crate::FakeGitlab::create_project`]; `None` = a job without a repository
    /// (git_info points at a project path that does not exist; use `GIT_STRATEGY=none`).
    pub project: Option<i64>,
    pub name: String,
    pub stage: String,
    pub script: Vec<String>,
    pub before_script: Vec<String>,
    pub after_script: Vec<String>,
    pub variables: Vec<(String, String, VarFlags)>,
    /// Job timeout in seconds (GitLab's project default is 3600).
    pub timeout: Option<u64>,
    pub image: Option<ImageSpec>,
    pub services: Vec<ImageSpec>,
    pub artifacts: Vec<ArtifactSpec>,
    pub cache: Vec<CacheSpec>,
    /// Ids of earlier jobs whose archive artifacts this job downloads.
    pub dependencies: Vec<i64>,
    /// Pipeline to put the job in; by default a job joins the pipeline of its first dependency,
    /// otherwise it gets a new pipeline.
    pub pipeline: Option<i64>,
    /// Send this payload instead of an expanded one. Only `id` and `token` are replaced (they must
    /// be the fake's so that the job can be updated).
    pub raw_payload: Option<serde_json::Value>,
    /// Top-level payload fields replaced after the payload is built, to hand out a job the way a GitLab
    /// with a different (or broken) API would, e.g. `variables` that is not an array.
    pub payload_fields: Vec<(String, serde_json::Value)>,
    pub allow_failure: bool,
    pub ref_name: String,
    pub tags: Vec<String>,
    /// Registry credentials entries to send (`credentials:`), as JSON objects.
    pub credentials: Vec<serde_json::Value>,
    /// Job inputs, sent as the payload's `inputs` when there are any.
    pub inputs: Vec<InputSpec>,
    /// `suspend_options` to send (`FF_SUSPENDABLE_ENVIRONMENTS`); `None` leaves the key out.
    pub suspend: Option<SuspendSpec>,
}

/// A job's `suspend_options`: keep its environment at its end, or resume one an earlier job suspended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SuspendSpec {
    pub on_success: bool,
    pub on_failure: bool,
    /// The `runtime_environment_key` an earlier job reported (see `JobRecord::runtime_environment_key`).
    pub key: Option<String>,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            project: None,
            name: "job".to_string(),
            stage: "test".to_string(),
            script: Vec::new(),
            before_script: Vec::new(),
            after_script: Vec::new(),
            variables: Vec::new(),
            timeout: None,
            image: None,
            services: Vec::new(),
            artifacts: Vec::new(),
            cache: Vec::new(),
            dependencies: Vec::new(),
            pipeline: None,
            raw_payload: None,
            payload_fields: Vec::new(),
            allow_failure: false,
            ref_name: "main".to_string(),
            tags: Vec::new(),
            credentials: Vec::new(),
            inputs: Vec::new(),
            suspend: None,
        }
    }
}

impl JobSpec {
    pub fn new(name: &str, script: &[&str]) -> JobSpec {
        JobSpec {
            name: name.to_string(),
            script: to_strings(script),
            ..JobSpec::default()
        }
    }
    /// A job whose payload is `payload` as-is (apart from `id` and `token`).
    pub fn raw(payload: serde_json::Value) -> JobSpec {
        JobSpec {
            raw_payload: Some(payload),
            ..JobSpec::default()
        }
    }
    /// Replace the top-level payload field `key` with `value` (`id` and `token` stay the fake's).
    pub fn payload_field(mut self, key: &str, value: serde_json::Value) -> JobSpec {
        self.payload_fields.push((key.to_string(), value));
        self
    }
    pub fn project(mut self, id: i64) -> JobSpec {
        self.project = Some(id);
        self
    }
    pub fn stage(mut self, stage: &str) -> JobSpec {
        self.stage = stage.to_string();
        self
    }
    pub fn before_script(mut self, lines: &[&str]) -> JobSpec {
        self.before_script = to_strings(lines);
        self
    }
    pub fn after_script(mut self, lines: &[&str]) -> JobSpec {
        self.after_script = to_strings(lines);
        self
    }
    /// A `.gitlab-ci.yml` variable (public).
    pub fn variable(self, key: &str, value: &str) -> JobSpec {
        self.variable_with(key, value, VarFlags::YAML)
    }
    /// A masked project variable.
    pub fn masked_variable(self, key: &str, value: &str) -> JobSpec {
        self.variable_with(key, value, VarFlags::MASKED)
    }
    /// A file-type project variable.
    pub fn file_variable(self, key: &str, value: &str) -> JobSpec {
        self.variable_with(key, value, VarFlags::FILE)
    }
    pub fn variable_with(mut self, key: &str, value: &str, flags: VarFlags) -> JobSpec {
        self.variables.push((key.to_string(), value.to_string(), flags));
        self
    }
    pub fn timeout(mut self, seconds: u64) -> JobSpec {
        self.timeout = Some(seconds);
        self
    }
    pub fn image(mut self, image: ImageSpec) -> JobSpec {
        self.image = Some(image);
        self
    }
    pub fn service(mut self, service: ImageSpec) -> JobSpec {
        self.services.push(service);
        self
    }
    pub fn artifact(mut self, artifact: ArtifactSpec) -> JobSpec {
        self.artifacts.push(artifact);
        self
    }
    pub fn cache(mut self, cache: CacheSpec) -> JobSpec {
        self.cache.push(cache);
        self
    }
    pub fn dependency(mut self, job_id: i64) -> JobSpec {
        self.dependencies.push(job_id);
        self
    }
    pub fn pipeline(mut self, pipeline_id: i64) -> JobSpec {
        self.pipeline = Some(pipeline_id);
        self
    }
    pub fn allow_failure(mut self, allow: bool) -> JobSpec {
        self.allow_failure = allow;
        self
    }
    pub fn ref_name(mut self, ref_name: &str) -> JobSpec {
        self.ref_name = ref_name.to_string();
        self
    }
    pub fn tags(mut self, tags: &[&str]) -> JobSpec {
        self.tags = to_strings(tags);
        self
    }
    /// A job input of type `kind` (`string`, `number`, `boolean`, `array`, `struct`) whose value is `content`.
    pub fn input(mut self, key: &str, kind: &str, content: serde_json::Value) -> JobSpec {
        self.inputs.push(InputSpec {
            key: key.to_string(),
            kind: kind.to_string(),
            content,
            sensitive: false,
        });
        self
    }
    /// A sensitive job input (its value is hidden in GitLab's UI).
    pub fn sensitive_input(mut self, key: &str, kind: &str, content: serde_json::Value) -> JobSpec {
        self = self.input(key, kind, content);
        if let Some(last) = self.inputs.last_mut() {
            last.sensitive = true;
        }
        self
    }
}

fn to_strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
