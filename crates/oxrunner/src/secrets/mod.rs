//! The job's `secrets:` resolved into variables before the executor is prepared, as gitlab-runner's
//! `resolve_secrets` stage: each entry goes to the first resolver that handles its provider (`vault`,
//! `gitlab_secrets_manager`), and its value becomes a masked, raw variable, a file variable unless the job says
//! `file: false`. A secret that is not found fails the job with `FF_SECRET_RESOLVING_FAILS_IF_MISSING` (the
//! default) and is an empty variable without it. Providers gitlab-runner resolves that this build does not
//! (AWS, GCP, Azure) fail the job: it never runs without a secret it asked for.
//!
//! What is printed goes to the job log through [`LogLine`]s; no line holds a value, a token or a JWT.

mod gsm;
mod http;
mod vault;

use std::time::Duration;

use oxrunner_api::{Secret, Secrets};
use oxrunner_core::{FailureReason, Variable, Variables, feature_flags};
use serde_json::Value;

/// The job log's section for this stage.
pub const SECTION: &str = "resolve_secrets";
/// Its header, as gitlab-runner prints it.
pub const HEADER: &str = "Resolving secrets";

/// A line for the job log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    Println(String),
    Warning(String),
}

/// Why the job cannot run: the failure reason GitLab gets and the message for the log (ending in a `hint:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsFailure {
    pub reason: FailureReason,
    pub message: String,
}

/// Why one secret could not be resolved, classified as gitlab-runner classifies it.
#[derive(Debug)]
pub struct ResolveError {
    reason: FailureReason,
    message: String,
    hint: Option<String>,
}

impl ResolveError {
    /// The job's configuration is wrong (Vault's 4xx): `runner_configuration_error`.
    pub fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            reason: FailureReason::RunnerConfigurationError,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The secrets server failed (5xx): `runner_external_dependency_failure`.
    pub fn external(message: impl Into<String>) -> Self {
        Self {
            reason: FailureReason::RunnerExternalDependencyFailure,
            message: message.into(),
            hint: Some(
                "the secrets server failed; retry the job, or raise SECRETS_RETRIEVAL_ATTEMPTS".into(),
            ),
        }
    }

    /// Anything else: `runner_system_failure`, as upstream reports unclassified errors.
    pub fn system(message: impl Into<String>) -> Self {
        Self {
            reason: FailureReason::RunnerSystemFailure,
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with gitlab-runner's default class (`runner_system_failure`): for failures upstream does
    /// not classify.
    pub fn unclassified(mut self) -> Self {
        self.reason = FailureReason::RunnerSystemFailure;
        self
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: String) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    fn with_hint(mut self, hint: &str) -> Self {
        self.hint.get_or_insert_with(|| hint.to_owned());
        self
    }

    fn into_failure(self) -> SecretsFailure {
        let hint = self
            .hint
            .unwrap_or_else(|| "check the secret's server and that the runner can reach it".into());
        SecretsFailure {
            reason: self.reason,
            message: format!("resolving secrets: {}\nhint: {hint}", self.message),
        }
    }
}

/// What resolving produced: the log lines and the variables, or why the job fails.
pub struct Resolution {
    pub lines: Vec<LogLine>,
    pub result: Result<Vec<Variable>, SecretsFailure>,
}

/// Resolves every secret of the job, retried as a whole up to `SECRETS_RETRIEVAL_ATTEMPTS` times (1..10,
/// default 1) with the stage retry backoff. `vars` expands `$VARIABLE`s in the entries (the ID token is one).
pub async fn resolve(secrets: &Secrets, vars: &Variables) -> Resolution {
    let mut lines = Vec::new();
    let (attempts, problem) = retrieval_attempts(vars);
    lines.extend(problem.map(LogLine::Warning));
    lines.extend(
        http::ignored_tls_settings(&|name: &str| std::env::var(name).ok())
            .into_iter()
            .map(LogLine::Warning),
    );
    // A provider this build lacks can never resolve: refuse the job before any login, and without retries.
    if let Some(failure) = unavailable(secrets) {
        return Resolution {
            lines,
            result: Err(failure),
        };
    }
    let mut attempt = 1;
    loop {
        match resolve_once(secrets, vars, &mut lines).await {
            Ok(variables) => {
                return Resolution {
                    lines,
                    result: Ok(variables),
                };
            }
            Err(failure) if attempt < attempts => {
                let first_line = failure.message.lines().next().unwrap_or_default().to_owned();
                lines.push(LogLine::Warning(format!("Retrying... {first_line}")));
                tokio::time::sleep(backoff(vars, attempt)).await;
                attempt += 1;
            }
            Err(failure) => {
                return Resolution {
                    lines,
                    result: Err(failure),
                };
            }
        }
    }
}

/// `SECRETS_RETRIEVAL_ATTEMPTS` as gitlab-runner reads it (`build_settings.go`): empty is the default (1), a
/// non-integer is the default with a warning, an integer outside 1..=10 is clamped into it with a warning.
fn retrieval_attempts(vars: &Variables) -> (u32, Option<String>) {
    const NAME: &str = "SECRETS_RETRIEVAL_ATTEMPTS";
    const DEFAULT: u32 = 1;
    let raw = vars.value(NAME).unwrap_or_default();
    if raw.is_empty() {
        return (DEFAULT, None);
    }
    let Ok(n) = raw.parse::<i64>() else {
        return (
            DEFAULT,
            Some(format!(
                "{NAME}: expected int got {raw:?}, using default value: {DEFAULT}"
            )),
        );
    };
    let clamped = n.clamp(1, 10);
    let problem = (clamped != n)
        .then(|| format!("{NAME}: number of attempts out of the range [1, 10], clamping to: {clamped}"));
    (u32::try_from(clamped).unwrap_or(DEFAULT), problem)
}

fn backoff(vars: &Variables, retry: u32) -> Duration {
    feature_flags::stage_retry_backoff(vars, retry)
}

async fn resolve_once(
    secrets: &Secrets,
    vars: &Variables,
    lines: &mut Vec<LogLine>,
) -> Result<Vec<Variable>, SecretsFailure> {
    let expand = |text: &str| vars.expand(text);
    let fail_if_missing = feature_flags::is_on(vars, "FF_SECRET_RESOLVING_FAILS_IF_MISSING");
    let mut out = Vec::new();
    for (key, secret) in secrets.iter() {
        lines.push(LogLine::Println(format!("Resolving secret {key:?}...")));
        let value = match resolver_of(secret) {
            Resolver::Vault => {
                lines.push(LogLine::Println("Using \"vault\" secret resolver...".into()));
                let Some(v) = &secret.vault else { continue };
                vault::resolve(v, &expand).await
            }
            Resolver::GitLabSecretsManager => {
                lines.push(LogLine::Println(
                    "Using \"gitlab_secrets_manager\" secret resolver...".into(),
                ));
                let Some(g) = &secret.gitlab_secrets_manager else {
                    continue;
                };
                gsm::resolve(g).await
            }
            Resolver::NotBuilt { name, id } => return Err(not_built(key, name, &id)),
            Resolver::None => {
                lines.push(LogLine::Warning(
                    "Not resolved: no resolver that can handle the secret".into(),
                ));
                continue;
            }
        };
        let value = match value {
            Ok(Some(v)) => v,
            Ok(None) if fail_if_missing => {
                return Err(ResolveError::system(format!("secret not found: {key}"))
                    .with_hint(
                        "check the secret's path and field, or set FF_SECRET_RESOLVING_FAILS_IF_MISSING=false to \
                         run with an empty variable",
                    )
                    .into_failure());
            }
            Ok(None) => String::new(),
            Err(e) => return Err(e.context(format!("secret {key:?}")).into_failure()),
        };
        out.push(Variable {
            key: key.clone(),
            value,
            public: false,
            masked: true,
            file: secret.is_file(),
            raw: true,
        });
    }
    Ok(out)
}

/// The failure for the first secret whose provider this build lacks.
fn unavailable(secrets: &Secrets) -> Option<SecretsFailure> {
    secrets
        .iter()
        .find_map(|(key, secret)| match resolver_of(secret) {
            Resolver::NotBuilt { name, id } => Some(not_built(key, name, &id)),
            _ => None,
        })
}

fn not_built(key: &str, name: &str, id: &str) -> SecretsFailure {
    ResolveError::system(format!(
        "secret {key:?}{id}: the {name:?} secret resolver is not available in oxrunner"
    ))
    .with_hint(&format!(
        "run this job on a runner with the {name:?} resolver (gitlab-runner), or keep the secret in Vault or \
         GitLab's secrets manager"
    ))
    .into_failure()
}

enum Resolver {
    Vault,
    GitLabSecretsManager,
    /// A provider gitlab-runner resolves and this build does not; `id` names the secret (` (name "x")`).
    NotBuilt {
        name: &'static str,
        id: String,
    },
    None,
}

fn resolver_of(secret: &Secret) -> Resolver {
    if secret.vault.is_some() {
        return Resolver::Vault;
    }
    if secret.gitlab_secrets_manager.is_some() {
        return Resolver::GitLabSecretsManager;
    }
    let others = [
        ("aws_secrets_manager", &secret.aws_secrets_manager, "secret_id"),
        ("gcp_secret_manager", &secret.gcp_secret_manager, "name"),
        ("azure_key_vault", &secret.azure_key_vault, "name"),
    ];
    for (name, entry, id_key) in others {
        if let Some(o) = entry {
            let id = o
                .text(id_key)
                .map(|v| format!(" ({id_key} {v:?})"))
                .unwrap_or_default();
            return Resolver::NotBuilt { name, id };
        }
    }
    Resolver::None
}

/// A JSON value as Go's `%v` prints it after `encoding/json` decoded it (numbers are float64), which is how
/// gitlab-runner turns a Vault field into the variable's value.
pub fn go_text(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), go_float),
        Value::Array(items) => format!("[{}]", items.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_text(&map[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form (`1e+06`) when the exponent is below -4 or at
/// least 6 (`%g`'s rule for the shortest precision).
fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return f.to_string();
    };
    if (-4..6).contains(&exp) {
        return f.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_gitlab_runner_prints_them() {
        let cases = [
            (serde_json::json!("s3cr3t"), "s3cr3t"),
            (serde_json::json!(true), "true"),
            (serde_json::json!(42), "42"),
            (serde_json::json!(1.5), "1.5"),
            (serde_json::json!(100000), "100000"),
            (serde_json::json!(1000000), "1e+06"),
            (serde_json::json!(123456789), "1.23456789e+08"),
            (serde_json::json!(0.0001), "0.0001"),
            (serde_json::json!(0.00001), "1e-05"),
            (serde_json::json!(null), "<nil>"),
            (serde_json::json!(["a", 1]), "[a 1]"),
            (serde_json::json!({"b": 2, "a": "x"}), "map[a:x b:2]"),
        ];
        for (value, want) in cases {
            assert_eq!(go_text(&value), want, "{value}");
        }
    }

    #[test]
    fn retrieval_attempts_are_clamped_as_upstream() {
        let vars = |v: &str| Variables::from(vec![Variable::new("SECRETS_RETRIEVAL_ATTEMPTS", v)]);
        assert_eq!(retrieval_attempts(&Variables::new()), (1, None));
        assert_eq!(retrieval_attempts(&vars("")), (1, None));
        assert_eq!(retrieval_attempts(&vars("4")), (4, None));
        let clamp = |n: u32| {
            Some(format!(
                "SECRETS_RETRIEVAL_ATTEMPTS: number of attempts out of the range [1, 10], clamping to: {n}"
            ))
        };
        assert_eq!(retrieval_attempts(&vars("20")), (10, clamp(10)));
        assert_eq!(retrieval_attempts(&vars("0")), (1, clamp(1)));
        assert_eq!(retrieval_attempts(&vars("-3")), (1, clamp(1)));
        assert_eq!(
            retrieval_attempts(&vars("many")),
            (
                1,
                Some("SECRETS_RETRIEVAL_ATTEMPTS: expected int got \"many\", using default value: 1".into())
            )
        );
    }

    #[tokio::test]
    async fn out_of_range_attempts_warn_in_the_job_log() {
        let vars = Variables::from(vec![Variable::new("SECRETS_RETRIEVAL_ATTEMPTS", "20")]);
        let resolution = resolve(&Secrets::default(), &vars).await;
        assert_eq!(
            resolution.lines,
            vec![LogLine::Warning(
                "SECRETS_RETRIEVAL_ATTEMPTS: number of attempts out of the range [1, 10], clamping to: 10"
                    .into()
            )]
        );
    }

    #[test]
    fn providers_pick_their_resolver() {
        let parse = |j: serde_json::Value| -> Secret { serde_json::from_value(j).unwrap() };
        assert!(matches!(
            resolver_of(&parse(serde_json::json!({"vault": {}}))),
            Resolver::Vault
        ));
        assert!(matches!(
            resolver_of(&parse(serde_json::json!({"gitlab_secrets_manager": {}}))),
            Resolver::GitLabSecretsManager
        ));
        match resolver_of(&parse(
            serde_json::json!({"aws_secrets_manager": {"secret_id": "prod/db"}}),
        )) {
            Resolver::NotBuilt { name, id } => {
                assert_eq!(
                    (name, id.as_str()),
                    ("aws_secrets_manager", " (secret_id \"prod/db\")")
                );
            }
            _ => panic!("aws is not built"),
        }
        assert!(matches!(
            resolver_of(&parse(serde_json::json!({"file": true}))),
            Resolver::None
        ));
    }
}
