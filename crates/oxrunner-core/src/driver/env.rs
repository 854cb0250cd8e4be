//! The job's full variable list (runner-api.md §2.4) and Go-duration settings.

use std::path::Path;
use std::time::Duration;

use crate::plan::{JobPlan, RunnerContext};
use crate::script::bash::file_var_path;
use crate::script::git::go_arch;
use crate::variables::{Variable, Variables};

/// Executors whose environment outlives the job (gitlab-runner sets `CI_SHARED_ENVIRONMENT` for them).
const SHARED_ENV_EXECUTORS: &[&str] = &["shell", "ssh", "custom", "parallels", "virtualbox"];

/// Runner variables and job variables in gitlab-runner's order (later entries win), unexpanded.
pub fn job_variables(plan: &JobPlan, ctx: &RunnerContext, project_dir: &Path, tmp_dir: &Path) -> Variables {
    let mut vars = Variables::new();
    if let Some(image) = &plan.image {
        vars.push(Variable::new("CI_JOB_IMAGE", image.name.clone()));
    }
    vars.push(Variable::new("CI_RUNNER_SHORT_TOKEN", ctx.short_token.clone()));
    for entry in &ctx.environment {
        // Entries without `=` are ignored, as gitlab-runner does.
        if let Some((key, value)) = entry.split_once('=') {
            vars.push(Variable::new(key, value));
        }
    }
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vars.push(Variable::new("CI_BUILDS_DIR", path(&ctx.builds_dir)));
    vars.push(Variable::new("CI_PROJECT_DIR", path(project_dir)));
    vars.push(Variable::new("CI_CONCURRENT_ID", ctx.concurrent_id.to_string()));
    vars.push(Variable::new(
        "CI_CONCURRENT_PROJECT_ID",
        ctx.concurrent_project_id.to_string(),
    ));
    vars.push(Variable::new("CI_SERVER", "yes"));
    vars.push(Variable::new("CI_JOB_STATUS", "running"));
    vars.push(Variable::new(
        "CI_JOB_TIMEOUT",
        plan.effective_timeout().as_secs().to_string(),
    ));
    for v in tls_variables(plan) {
        vars.push(v);
    }
    vars.extend(plan.variables.iter().cloned());
    // GitLab always sends CI_JOB_TOKEN; git's credential helper reads it, so a hand-made plan gets it too.
    if plan.variables.value("CI_JOB_TOKEN").is_none() && !plan.job_token.is_empty() {
        let mut v = Variable::masked("CI_JOB_TOKEN", plan.job_token.expose().to_owned());
        v.raw = true;
        vars.push(v);
    }
    if SHARED_ENV_EXECUTORS.contains(&ctx.executor.as_str()) {
        vars.push(Variable::new("CI_SHARED_ENVIRONMENT", "true"));
    } else {
        vars.push(Variable::new("CI_DISPOSABLE_ENVIRONMENT", "true"));
    }
    vars.push(Variable::new("CI_RUNNER_VERSION", ctx.version.clone()));
    vars.push(Variable::new("CI_RUNNER_REVISION", ctx.revision.clone()));
    vars.push(Variable::new(
        "CI_RUNNER_EXECUTABLE_ARCH",
        format!("{}/{}", std::env::consts::OS, go_arch()),
    ));
    vars.push(Variable::new("RUNNER_TEMP_PROJECT_DIR", path(tmp_dir)));
    if crate::feature_flags::is_on(&plan.variables, "FF_NETWORK_PER_BUILD") {
        vars.push(Variable::new(
            "CI_BUILD_NETWORK_NAME",
            crate::feature_flags::build_network_name(
                &ctx.short_token,
                plan.project_id,
                ctx.concurrent_project_id,
                plan.job_id,
            ),
        ));
    }
    vars
}

/// gitlab-runner's `GetCITLSVariables`: the CA chain in use and the runner's client certificate and key, as raw
/// file variables (the job's git and tools read the files).
pub fn tls_variables(plan: &JobPlan) -> Vec<Variable> {
    let s = &plan.sources;
    let pairs = [
        ("CI_SERVER_TLS_CA_FILE", s.ca_file.as_deref()),
        ("CI_SERVER_TLS_CERT_FILE", s.tls_cert.as_deref()),
        ("CI_SERVER_TLS_KEY_FILE", s.tls_key.as_ref().map(|k| k.expose())),
    ];
    pairs
        .into_iter()
        .filter_map(|(key, value)| {
            let value = value.filter(|v| !v.is_empty())?;
            let mut v = Variable::new(key, value).into_file();
            v.raw = true;
            Some(v)
        })
        .collect()
}

/// Expands the list once; file variables expand to the path of their file.
pub fn expand(vars: &Variables, tmp_dir: &Path) -> Variables {
    vars.expanded(&|v| file_var_path(tmp_dir, &v.key))
}

/// The job's variables as gitlab-runner's `GetAllVariables` gives them to `secrets:` expansion: runner and
/// predefined variables included, expanded once as the job's script sees them, and each file variable's value
/// replaced by the path of its file (`$FILE_VAR` in a secret names the file, not its content).
pub fn all_variables_with_file_paths(plan: &JobPlan, ctx: &RunnerContext) -> Variables {
    let project_dir = crate::builddir::build_dir(plan, ctx);
    let tmp_dir = crate::builddir::tmp_dir(&project_dir);
    expand(&job_variables(plan, ctx, &project_dir, &tmp_dir), &tmp_dir)
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if v.file {
                v.value = file_var_path(&tmp_dir, &v.key);
                v.file = false;
            }
            v
        })
        .collect()
}

/// Parses a Go duration (`90s`, `1h30m`, `1.5h`, `300ms`). A bare number is not a Go duration.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_see_runner_variables_expanded_and_file_variables_as_paths() {
        let plan = JobPlan {
            variables: Variables::from(vec![
                Variable::new("PREFIX", "apps/$CI_CONCURRENT_ID/$FROM_RUNNER"),
                Variable::new("CREDS", "file content").into_file(),
            ]),
            ..JobPlan::default()
        };
        let ctx = RunnerContext {
            builds_dir: "/builds".into(),
            concurrent_id: 3,
            environment: vec!["FROM_RUNNER=env-value".into()],
            ..RunnerContext::default()
        };
        let vars = all_variables_with_file_paths(&plan, &ctx);
        assert_eq!(vars.expand("$PREFIX/db"), "apps/3/env-value/db");
        let tmp = crate::builddir::tmp_dir(&crate::builddir::build_dir(&plan, &ctx));
        assert_eq!(vars.expand("$CREDS"), file_var_path(&tmp, "CREDS"));
        assert!(vars.expand("$CI_PROJECT_DIR").starts_with("/builds/"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("abc"), None);
    }
}
