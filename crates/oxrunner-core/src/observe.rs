//! A seam for job metrics: the driver names each stage as it starts and ends, and whoever runs the job (the
//! daemon's metrics) may listen, so this crate needs no metrics library.

/// Told about the job's stages, under gitlab-runner's names (`prepare_executor`, `get_sources`, `step_script`, …).
/// Called on the driver's task: implementations must be quick and never block.
pub trait StageObserver: Send + Sync {
    fn stage_started(&self, stage: &str);
    fn stage_ended(&self, stage: &str);
}
