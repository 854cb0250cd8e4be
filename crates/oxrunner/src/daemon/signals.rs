//! The daemon's control signals as data. `run`/`run-single` forward the real Unix signals into a channel; tests
//! send the same values directly, so shutdown and reload are tested in-process under a paused clock.

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What the daemon is asked to do, with gitlab-runner's meaning of each Unix signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGQUIT: stop asking for jobs, let the running ones finish.
    Quit,
    /// SIGTERM: abort running jobs and exit within `shutdown_timeout`; a second one exits at once.
    Terminate,
    /// SIGINT: as SIGTERM.
    Interrupt,
    /// SIGHUP: reload config.toml without touching running jobs.
    Reload,
}

/// The receiving end the daemon reads its signals from.
pub type Signals = mpsc::UnboundedReceiver<Signal>;

/// A sender and the daemon's end, for callers that produce the signals themselves (tests, embedding).
pub fn channel() -> (mpsc::UnboundedSender<Signal>, Signals) {
    mpsc::unbounded_channel()
}

/// Installs the Unix signal handlers now (so a signal sent right after start is not lost) and forwards each
/// signal until the daemon drops its end.
pub fn unix() -> anyhow::Result<Signals> {
    let mut quit = signal(SignalKind::quit()).context("cannot handle SIGQUIT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let (tx, rx) = channel();
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = quit.recv() => Signal::Quit,
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Interrupt,
                _ = hup.recv() => Signal::Reload,
            };
            if tx.send(sig).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The next signal; once every sender is gone no signal can come any more, so this then waits forever instead of
/// ending the caller's `select!` loop.
pub async fn next(signals: &mut Signals) -> Signal {
    match signals.recv().await {
        Some(sig) => sig,
        None => std::future::pending().await,
    }
}
