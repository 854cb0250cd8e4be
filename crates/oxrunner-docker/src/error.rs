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
    #[error(
        "failed to pull image \"{image}\": {detail}\nhint: check the image name and tag, that the registry is reachable from the Docker engine, and registry credentials (DOCKER_AUTH_CONFIG)"
    )]
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
            Self::Client { .. } | Self::Unreachable { .. } | Self::Api { .. } | Self::Io { .. } => {
                FailureReason::RunnerSystemFailure
            }
        }
    }
}

impl From<DockerError> for ExecError {
    fn from(err: DockerError) -> Self {
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

/// True when the engine answered 404 (object already gone).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}
