//! Errors of the Docker executor and how they map onto the core's `ExecError`.

use oxrunner_core::{ExecError, FailureReason};

/// What went wrong talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine address could not be turned into a client.
    #[error(
        "cannot use Docker host {host}: {source}\nhint: set [runners.docker] host (or DOCKER_HOST) to unix:///var/run/docker.sock or tcp://HOST:PORT"
    )]
    Client {
        /// Address as configured.
        host: String,
        /// Cause.
        source: bollard::errors::Error,
    },
    /// No engine answered at the address.
    #[error(
        "cannot reach the Docker daemon at {host}: {detail}\nhint: start dockerd on this machine (scripts/ensure-docker), or mount the socket into the runner's container (-v /var/run/docker.sock:/var/run/docker.sock), or point [runners.docker] host / DOCKER_HOST at a running daemon"
    )]
    Unreachable {
        /// Address as configured.
        host: String,
        /// Cause, already rendered.
        detail: String,
    },
    /// The job's image is not on the allow-list.
    #[error(
        "the \"{image}\" image is not present on list of allowed images: {allowed}\nhint: use one of the allowed images in the job, or add a pattern to [runners.docker] allowed_images"
    )]
    ImageNotAllowed {
        /// Requested image.
        image: String,
        /// The allow-list, joined.
        allowed: String,
    },
    /// Neither the job nor the config names an image.
    #[error(
        "no image to run the job in\nhint: set `image:` in .gitlab-ci.yml or [runners.docker] image in config.toml"
    )]
    NoImage,
    /// A pull policy value is unknown or not allowed.
    #[error("{0}")]
    PullPolicy(String),
    /// `never` and the image is not on the engine.
    #[error(
        "image \"{image}\" is not present on the Docker engine and pull_policy is \"never\"\nhint: load the image on the engine first (docker pull/load/import {image}), or allow pulling with pull_policy = \"if-not-present\""
    )]
    ImageMissing {
        /// Image reference.
        image: String,
    },
    /// Every pull attempt failed.
    #[error("failed to pull image \"{image}\": {detail}\n{}", pull_hint(.image, .detail))]
    Pull {
        /// Image reference.
        image: String,
        /// Last failure.
        detail: String,
    },
    /// A config value could not be parsed.
    #[error("invalid [runners.docker] {key} = {value:?}: {detail}\nhint: {hint}")]
    Config {
        /// Config key.
        key: &'static str,
        /// Value as written.
        value: String,
        /// What is wrong.
        detail: String,
        /// How to write it.
        hint: &'static str,
    },
    /// An engine call failed.
    #[error("docker: {action}: {source}")]
    Api {
        /// What was being done (names the object).
        action: String,
        /// Cause.
        source: bollard::errors::Error,
    },
    /// A runtime environment key cannot be resumed (`FF_SUSPENDABLE_ENVIRONMENTS`).
    #[error(
        "resuming the suspended environment failed: {0}\nhint: the key must come from a job of this runner, on this \
         machine and project, whose environment is still suspended; run the job without runtime_environment_key to \
         start afresh"
    )]
    Resume(String),
    /// Local file work (tar of a directory) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl DockerError {
    /// Shorthand for an `Api` error.
    pub(crate) fn api(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }

    /// The failure reason gitlab-runner would report for this error.
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::ImageMissing { .. } | Self::Pull { .. } => FailureReason::ImagePullFailure,
            Self::ImageNotAllowed { .. } | Self::NoImage | Self::PullPolicy(_) | Self::Config { .. } => {
                FailureReason::RunnerConfigurationError
            }
            Self::Client { .. }
            | Self::Unreachable { .. }
            | Self::Api { .. }
            | Self::Io { .. }
            | Self::Resume(_) => FailureReason::RunnerSystemFailure,
        }
    }
}

impl From<DockerError> for ExecError {
    fn from(err: DockerError) -> Self {
        if let DockerError::Resume(_) = &err {
            // The same key fails the same way: not retried like other system failures.
            return ExecError::Build {
                reason: FailureReason::RunnerSystemFailure,
                message: err.to_string(),
            };
        }
        match err.reason() {
            // System failures stay retryable (`ExecError::Other`), like gitlab-runner's non-build errors.
            FailureReason::RunnerSystemFailure => ExecError::Other(err.to_string()),
            reason => ExecError::Build {
                reason,
                message: err.to_string(),
            },
        }
    }
}

/// The registry `host[:port]` a pull error names (`Get "https://host:port/v2/": ...`), else the image's.
fn registry_in(image: &str, detail: &str) -> String {
    for scheme in ["https://", "http://"] {
        if let Some(start) = detail.find(scheme) {
            let rest = &detail[start + scheme.len()..];
            let end = rest
                .find(|c: char| c == '/' || c == '"' || c.is_whitespace())
                .unwrap_or(rest.len());
            if end > 0 {
                return rest[..end].to_ascii_lowercase();
            }
        }
    }
    crate::auth::registry_of(image)
}

/// The `hint:` lines for a failed pull, chosen by the registry's answer.
pub fn pull_hint(image: &str, detail: &str) -> String {
    let registry = registry_in(image, detail);
    let lower = detail.to_ascii_lowercase();
    let certs = format!("/etc/docker/certs.d/{registry}");
    if lower.contains("x509: certificate signed by unknown authority")
        || lower.contains("certificate is not trusted")
    {
        format!(
            "hint: the Docker daemon pulls images, not oxrunner: it is the daemon that does not trust the certificate of {registry}.\n\
             hint: put the registry's CA certificate on the Docker host as {certs}/ca.crt (read on the next pull, no restart needed).\n\
             hint: in that directory *.crt files are CA certificates, while *.cert files are client certificates that need a matching *.key; a CA saved as ca.cert fails with \"Missing key ca.key for client certificate ca.cert\"."
        )
    } else if lower.contains("missing key") && lower.contains("client certificate") {
        format!(
            "hint: {certs} holds a *.cert file, which the Docker daemon reads as a client certificate and wants a matching *.key beside it.\n\
             hint: a registry's CA certificate must be named with the .crt extension instead: rename it to {certs}/ca.crt."
        )
    } else if lower.contains("unauthorized")
        || lower.contains("denied")
        || lower.contains("authentication required")
    {
        format!(
            "hint: {registry} refused the credentials: check DOCKER_AUTH_CONFIG (or the runner's ~/.docker/config.json) for {registry}, and that the image exists and is visible to that user"
        )
    } else if lower.contains("manifest unknown") || lower.contains("not found") {
        "hint: check the image name and tag; the registry has no such image".to_owned()
    } else {
        "hint: check the image name and tag, that the registry is reachable from the Docker engine, and registry credentials (DOCKER_AUTH_CONFIG)".to_owned()
    }
}

/// True when the engine answered 404 (object already gone).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_error_explains_an_untrusted_registry_certificate() {
        let err = DockerError::Pull {
            image: "registry.example.com:5050/group/app:1".into(),
            detail:
                "Get \"https://registry.example.com:5050/v2/\": x509: certificate signed by unknown authority"
                    .into(),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("failed to pull image \"registry.example.com:5050/group/app:1\": Get"),
            "{text}"
        );
        assert!(
            text.contains("the Docker daemon pulls images, not oxrunner"),
            "{text}"
        );
        assert!(
            text.contains("/etc/docker/certs.d/registry.example.com:5050/ca.crt"),
            "{text}"
        );
        assert!(text.contains("*.cert files are client certificates"), "{text}");
        assert!(
            text.contains("Missing key ca.key for client certificate ca.cert"),
            "{text}"
        );
        assert_eq!(err.reason(), FailureReason::ImagePullFailure);
    }

    #[test]
    fn pull_hints_by_answer() {
        // No URL in the answer: the registry comes from the image name.
        let hint = pull_hint(
            "reg.local:5000/app",
            "x509: certificate signed by unknown authority",
        );
        assert!(
            hint.contains("/etc/docker/certs.d/reg.local:5000/ca.crt"),
            "{hint}"
        );
        let hint = pull_hint(
            "reg.local:5000/app",
            "Missing key ca.key for client certificate ca.cert. CA certificates must use the extension .crt.",
        );
        assert!(
            hint.contains("rename it to /etc/docker/certs.d/reg.local:5000/ca.crt"),
            "{hint}"
        );
        let hint = pull_hint("reg.local:5000/app", "unauthorized: authentication required");
        assert!(hint.contains("DOCKER_AUTH_CONFIG"), "{hint}");
        assert!(pull_hint("app", "manifest unknown").contains("no such image"));
        assert!(pull_hint("app", "connection refused").contains("reachable"));
    }
}
