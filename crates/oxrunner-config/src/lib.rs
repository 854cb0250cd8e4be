//! gitlab-runner's `config.toml` for oxrunner: typed model, loading with positioned errors and
//! unknown-key warnings, and comment-preserving edits for `register`/`unregister`/token
//! rotation.
//!
//! # Layout
//! - [`model`] has one file per section (`global`, `runner`, `docker`, `cache`, `kubernetes`,
//!   `sections` for the small ones), and [`ExecutorKind`] for `executor = "..."`. Key names are gitlab-runner's, including the PascalCase
//!   cache keys and the hyphenated `tls-*-file` keys.
//! - [`load`], [`parse_str`] and [`parse_fragment`] turn text into [`Loaded`] (config + warnings).
//! - [`ConfigDocument`] does toml_edit-backed editing and atomic 0600 saving.
//! - [`support`] classifies every upstream key (acted on or warned) and names the warned ones a config sets.
//! - [`system_id`] manages the `.runner_system_id` file.
//! - [`Secret`] is the token wrapper whose `Debug`/`Display` print `[REDACTED]`.

mod document;
mod duration;
mod error;
mod expand;
mod lint;
mod load;
pub mod model;
mod ranges;
mod secret;
pub mod support;
pub mod system_id;
mod token;

pub use document::ConfigDocument;
pub use duration::{DurationError, parse_go_duration};
pub use error::{ConfigError, ConfigWarning};
pub use expand::{expand_env, expand_env_with};
pub use load::{Loaded, certs_dir, default_config_path, load, parse_fragment, parse_str};
pub use model::cache::{CacheAzureConfig, CacheConfig, CacheGcsConfig, CacheS3Config};
pub use model::docker::{DockerConfig, DockerService, volume_target};
pub use model::executor::ExecutorKind;
pub use model::global::{Config, SessionServer};
pub use model::kubernetes::KubernetesConfig;
pub use model::raw::RawSection;
pub use model::runner::{RunnerConfig, is_docker_executor};
pub use model::sections::{ArtifactConfig, CustomBuildDir, CustomConfig};
pub use secret::Secret;
pub use token::short_token;
