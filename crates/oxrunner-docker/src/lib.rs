//! oxrunner-docker: the Docker executor.
//!
//! The job runs in one container of the job image, started once; every stage is an exec in it whose shell (bash
//! when the image has it, else sh) reads the stage script on stdin, and its output goes to the job trace. The project lives in a
//! per-job build volume; the runner moves files in and out through the engine's archive API instead of a helper
//! image or bind mounts of runner paths, so it works unchanged when the runner itself runs in a container with
//! only the Docker socket mounted.
//!
//! # Layout
//! - [`connect`]: engine address (`host`, `DOCKER_HOST`, TLS) and version negotiation.
//! - [`settings`]: pull policies, `allowed_images`, sizes, CPUs and `volumes` entries.
//! - [`executor`]: [`DockerExecutor`], the `oxrunner_core::Executor` implementation.
//! - [`auth`]: registry credentials for pulls.
//! - [`services`]: service containers on a per-job network; [`health`] waits for their ports, [`route`] lets a
//!   runner that itself runs in a container reach them, [`listen`] asks a service that stays unreachable.
//! - [`gpus`]: `gpus`/`service_gpus` as device requests.
//! - [`hostcfg`]: the remaining `[runners.docker]` keys as engine host config; [`unsupported_keys`].
//! - get_sources is the core driver's: it fetches on the runner and pushes the tree through the executor's
//!   `JobFiles` ([`archive::ContainerFiles`]); the executor reports what its prepare established
//!   (`Executor::environment`) so the driver can spare scripts.
//! - `terminal`: the web terminal, a `docker exec` with a TTY in the job container.
//! - [`archive`]: copying trees into and out of containers.
//! - [`cleanup`]: per-object removal and [`remove_leftovers`] for the daemon's start.
//! - [`labels`]: the labels put on every object.

pub mod archive;
pub mod auth;
pub mod cleanup;
pub mod connect;
pub mod error;
pub mod executor;
pub mod gpus;
pub mod health;
pub mod hostcfg;
pub mod image;
pub mod labels;
pub mod listen;
pub mod route;
mod run;
pub mod services;
pub mod settings;
mod shortcuts;
mod stop;
mod terminal;

pub use archive::Permissions;
pub use cleanup::{Removed, SUSPENDED_MAX_AGE, remove_leftovers, remove_leftovers_keeping};
pub use connect::{DEFAULT_DOCKER_HOST, Endpoint, connect};
pub use error::DockerError;
pub use executor::{DEFAULT_BUILDS_DIR, DockerExecutor};
pub use hostcfg::unsupported_keys;
pub use run::{DETECT_SHELL, NO_DAEMON_HINT};
pub use settings::PullPolicy;
pub use terminal::container_terminal;
