//! What one job's interpolation may cost. Templates and inputs are written by the job's author and are evaluated
//! inside the daemon, next to every other job, so memory and work are bounded per string, per job and per step of
//! evaluation: a limit is enforced while a value is being built, never only after it exists.

use std::cell::Cell;

use super::eval::EvalError;

/// Largest string an expression or a whole interpolated field may produce (4 MiB).
pub const MAX_TEXT: usize = 4 << 20;

/// The interpolated fields of one job together may produce this much more than their raw text (16 MiB)...
pub const JOB_OUTPUT_BASE: usize = 16 << 20;
/// ...plus this many times their raw text, so a job whose own fields are large is not refused for that.
pub const JOB_OUTPUT_FACTOR: usize = 2;

/// Work units one job's evaluation may spend: one per expression node evaluated and one per byte or element
/// copied, compared or looked through (256 Mi, well under a second of work).
pub const MAX_WORK: u64 = 256 << 20;

/// Most elements an array or object literal may spell out.
pub const MAX_ITEMS: usize = 10_000;

/// The work spent so far in one job.
#[derive(Default)]
pub struct Meter {
    spent: Cell<u64>,
}

impl Meter {
    /// Spends `units`, failing once the job's budget is exhausted.
    pub fn charge(&self, units: usize) -> Result<(), EvalError> {
        let spent = self.spent.get().saturating_add(units as u64);
        self.spent.set(spent);
        if spent > MAX_WORK {
            return Err(EvalError(format!(
                "expression too expensive: the job's expressions read, copy and compare more than {} Mi \
                 bytes and values",
                MAX_WORK >> 20
            )));
        }
        Ok(())
    }
}

/// Fails when `len` bytes of text would exceed [`MAX_TEXT`].
pub fn bounded(len: usize) -> Result<(), EvalError> {
    if len > MAX_TEXT {
        return Err(EvalError(format!("result longer than {} MiB", MAX_TEXT >> 20)));
    }
    Ok(())
}
