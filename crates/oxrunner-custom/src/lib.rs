//! oxrunner-custom: gitlab-runner's `custom` executor. Every stage is handed to programs the administrator
//! configures in `[runners.custom]` (`config_exec`, `prepare_exec`, `run_exec <script> <stage>`, `cleanup_exec`);
//! the executor only runs them and maps their exit codes, it never looks at what a stage means.
//!
//! - [`settings`]: `[runners.custom]` with gitlab-runner's defaults.
//! - [`config_output`]: the JSON `config_exec` may print.
//! - [`call`]: one driver program call (environment, output, timeout, graceful then forced kill, exit codes).
//! - [`executor`]: the `Executor` implementation.

pub mod call;
pub mod config_output;
pub mod executor;
pub mod settings;

pub use call::{BUILD_FAILURE_EXIT_CODE, SYSTEM_FAILURE_EXIT_CODE};
pub use config_output::ConfigOutput;
pub use executor::CustomExecutor;
pub use settings::CustomSettings;
