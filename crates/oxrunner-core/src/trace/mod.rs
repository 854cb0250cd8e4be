//! The trace pipeline: streaming masker, output limit, spool file.

mod mask;
mod writer;

pub use mask::{DEFAULT_TOKEN_PREFIXES, MASKED, MaskSet, Masker};
pub use writer::{DEFAULT_OUTPUT_LIMIT, TraceFollower, TraceHandle, TraceWriter, limit_message};
