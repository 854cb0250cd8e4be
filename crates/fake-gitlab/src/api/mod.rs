pub(crate) mod artifacts;
pub(crate) mod jobs;
pub(crate) mod runners;
