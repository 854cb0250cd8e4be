//! Interactive terminals into a running job (GitLab's "Debug" button, `[session_server]`).
//!
//! An executor that can give a shell in its job environment answers [`crate::Executor::terminal`] with a
//! [`Terminal`]; the front end hands the driver a [`TerminalSession`] (the web terminal server's side of the job),
//! and the driver offers the executor's terminal to it once the environment exists, then waits after the job's
//! scripts while a terminal is attached. Nothing here touches the job's trace: what a terminal shows and what is
//! typed into it stays between the shell and the client.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::ExecError;

/// A terminal's size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Default for TermSize {
    fn default() -> Self {
        Self { cols: 80, rows: 24 }
    }
}

/// Output of the terminal's shell (what the client sees).
pub type TermOutput = Pin<Box<dyn AsyncRead + Send>>;
/// Input to the terminal's shell (what the client types).
pub type TermInput = Pin<Box<dyn AsyncWrite + Send>>;

/// One open terminal: its byte streams and its controls.
pub struct TerminalConn {
    /// Bytes the shell writes; ends when the shell is gone.
    pub output: TermOutput,
    /// Bytes for the shell.
    pub input: TermInput,
    /// Resize and close.
    pub control: Box<dyn TerminalControl>,
}

/// Controls of an open terminal.
pub trait TerminalControl: Send + Sync {
    /// Tells the shell its window changed size.
    fn resize(&self, size: TermSize) -> BoxFuture<'_, Result<(), ExecError>>;
    /// Ends the shell and whatever it started from the terminal. Idempotent.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// An executor's offer of interactive shells in its job environment.
pub trait Terminal: Send + Sync {
    /// Starts a shell on a new terminal of `size`.
    fn open(&self, size: TermSize) -> BoxFuture<'_, Result<TerminalConn, ExecError>>;
}

/// The web terminal server's side of one job, as the driver sees it.
pub trait TerminalSession: Send + Sync {
    /// The executor's terminal, once the job environment exists. Until then a client waits for it.
    fn offer(&self, terminal: Arc<dyn Terminal>);
    /// True while a client is attached.
    fn connected(&self) -> bool;
    /// Resolves once no client is attached (at once if none is).
    fn disconnected(&self) -> BoxFuture<'_, ()>;
    /// The longest the job waits for an attached terminal after its scripts (`session_timeout`).
    fn timeout(&self) -> Duration;
    /// Closes the attached terminal, if any, and refuses new ones: the job environment is going away. Resolves
    /// once the terminal's shell is gone (bounded), so the executor's cleanup never races a closing terminal.
    fn close(&self) -> BoxFuture<'_, ()>;
}
