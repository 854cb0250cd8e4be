//! The JSON document `config_exec` may print on stdout (gitlab-runner's `api.ConfigExecOutput`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `driver` in the config output: shown in the job log as `Using Custom executor with driver <name> <version>...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DriverInfo {
    /// Driver name.
    pub name: Option<String>,
    /// Driver version.
    pub version: Option<String>,
}

/// What `config_exec` printed. Every key is optional; unknown keys are ignored, as gitlab-runner ignores them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ConfigOutput {
    /// Replaces the runner's `builds_dir` for this job.
    pub builds_dir: Option<String>,
    /// Replaces the runner's `cache_dir` for this job.
    pub cache_dir: Option<String>,
    /// Whether the builds dir is shared between jobs (changes the project directory layout).
    pub builds_dir_is_shared: Option<bool>,
    /// Host name printed as `Running on ... via <hostname>`.
    pub hostname: Option<String>,
    /// Name and version of the driver.
    pub driver: Option<DriverInfo>,
    /// Extra variables for the environment of every later driver call.
    pub job_env: Option<BTreeMap<String, String>>,
    /// The shell the generated scripts are for; only bash-compatible shells are supported.
    pub shell: Option<String>,
}

impl ConfigOutput {
    /// Parses `config_exec`'s stdout. Empty output (only white space) means "no changes".
    pub fn parse(stdout: &[u8]) -> Result<Self, String> {
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(stdout).map_err(|e| {
            format!(
                "error while parsing JSON output of config_exec: {e} (line {}, column {})\n\
                 hint: config_exec must print nothing or one JSON object such as \
                 {{\"builds_dir\": \"/builds\", \"driver\": {{\"name\": \"my-driver\"}}}} on stdout; \
                 send diagnostics to stderr",
                e.line(),
                e.column()
            )
        })
    }

    /// The job-log line announcing the executor and its driver.
    pub fn usage_line(&self) -> String {
        const USAGE: &str = "Using Custom executor";
        match &self.driver {
            Some(DriverInfo {
                name: Some(name),
                version: Some(version),
            }) => format!("{USAGE} with driver {name} {version}..."),
            Some(DriverInfo {
                name: Some(name),
                version: None,
            }) => format!("{USAGE} with driver {name}..."),
            _ => format!("{USAGE}..."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_document_is_read() {
        let out = ConfigOutput::parse(
            br#"{"builds_dir": "/b", "cache_dir": "/c", "builds_dir_is_shared": true, "hostname": "vm-1",
                "driver": {"name": "test", "version": "v1.0"}, "job_env": {"A": "1"}, "shell": "bash",
                "something_new": 5}"#,
        )
        .unwrap();
        assert_eq!(out.builds_dir.as_deref(), Some("/b"));
        assert_eq!(out.cache_dir.as_deref(), Some("/c"));
        assert_eq!(out.builds_dir_is_shared, Some(true));
        assert_eq!(out.hostname.as_deref(), Some("vm-1"));
        assert_eq!(out.job_env.unwrap().get("A").map(String::as_str), Some("1"));
        assert_eq!(out.shell.as_deref(), Some("bash"));
    }

    #[test]
    fn usage_line_names_what_the_driver_told() {
        let line = |json: &str| ConfigOutput::parse(json.as_bytes()).unwrap().usage_line();
        assert_eq!(
            line(r#"{"driver": {"name": "d", "version": "2"}}"#),
            "Using Custom executor with driver d 2..."
        );
        assert_eq!(
            line(r#"{"driver": {"name": "d"}}"#),
            "Using Custom executor with driver d..."
        );
        assert_eq!(
            line(r#"{"driver": {"version": "2"}}"#),
            "Using Custom executor..."
        );
        assert_eq!(line(" \n"), "Using Custom executor...");
    }

    #[test]
    fn bad_json_names_the_place_and_gives_a_hint() {
        for bad in [
            "{\"builds_dir\": 5}",
            "not json",
            "{\"job_env\": {\"A\": 1}}",
            "[1]",
        ] {
            let err = ConfigOutput::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains("config_exec") && err.contains("line 1"), "{err}");
            assert!(err.contains("\nhint: "), "{err}");
        }
    }
}
