//! Writing the command output without panicking when its reader went away.
//!
//! `println!`/`eprintln!` panic on a write error, so `oxrunner exec --list --json | head -n 3` used to end in a
//! panic message. Output to stdout goes through [`out`]: a closed pipe becomes [`StdoutClosed`], which `main`
//! turns into a quiet exit with status 141 (128 + SIGPIPE), the status a shell shows for a Unix tool stopped by
//! a closed pipe. Diagnostics go through [`err`], which drops what cannot be written: nobody is left to read it.

use std::fmt;
use std::io::{self, Write};

/// The exit status of a command whose stdout reader went away (128 + SIGPIPE, as the shell reports `yes | head`).
pub const CLOSED_PIPE_STATUS: u8 = 141;

/// Marker error: stdout is a pipe (or socket) whose reading end was closed.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
pub struct StdoutClosed;

/// Writes `args` to stdout and flushes. A closed reader gives [`StdoutClosed`]; other errors say what failed.
pub fn out(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Maps a stdout write error: a broken pipe becomes [`StdoutClosed`].
pub fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// Writes `args` to stderr; a failed write is dropped (the message had nowhere else to go).
pub fn err(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(args).and_then(|()| stderr.flush());
}

/// True when `err` (or one of its causes) says stdout was closed.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<StdoutClosed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// `print!` that returns an error instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdio::out(format_args!($($arg)*)) };
}

/// `println!` that returns an error instead of panicking.
macro_rules! outln {
    () => { $crate::stdio::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdio::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => { $crate::stdio::err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdio::err(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_stdout_is_recognised_directly_and_inside_io_errors() {
        let direct = stdout_error(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_stdout_closed(&direct));
        let wrapped =
            anyhow::Error::new(io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)).context("asking");
        assert!(is_stdout_closed(&wrapped));
        let other = stdout_error(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_stdout_closed(&other));
        assert!(other.to_string().contains("standard output"));
    }
}
