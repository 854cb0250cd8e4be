//! The trace pipeline: streaming masker, output limit, spool file.

mod mask;
mod timestamps;
mod writer;

pub use mask::{CHUNK, DEFAULT_TOKEN_PREFIXES, MASKED, MAX_MASK_BYTES, MaskError, MaskSet, Masker};
pub use timestamps::strip_timestamps;
pub use writer::{DEFAULT_OUTPUT_LIMIT, TraceFollower, TraceHandle, TraceWriter, cut_message, limit_message};
