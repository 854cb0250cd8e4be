//! Running one stage: attach to the job container, start it, feed the script on stdin, stream the output.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{AttachContainerOptions, KillContainerOptions, WaitContainerOptions};
use futures::StreamExt;
use oxrunner_core::{CancellationToken, ExitStatus, StageCommand, TraceWriter};
use tokio::io::AsyncWriteExt;

use crate::error::DockerError;

/// The container command: exec the first shell found, preferring bash (scripts use bash features when present)
/// and falling back to POSIX sh and busybox. It reads the stage script on stdin.
pub const DETECT_SHELL: &str = "for s in /usr/local/bin/bash /usr/bin/bash /bin/bash /usr/local/bin/sh /usr/bin/sh /bin/sh /busybox/sh; do if [ -x \"$s\" ]; then exec \"$s\"; fi; done; echo 'oxrunner: no shell (bash or sh) found in the image' >&2; exit 1";

/// Exit code the engine reports for a container killed with SIGKILL.
const KILLED: i64 = 128 + 9;

/// What a docker CLI in the job prints when no daemon answers.
const NO_DAEMON: &[u8] = b"Cannot connect to the Docker daemon at";

/// The hint printed after a failed stage whose output showed "Cannot connect to the Docker daemon at" (the
/// seed's question: a `docker` command in a job of the Docker executor).
pub const NO_DAEMON_HINT: &str = "hint: the job container has no Docker daemon of its own, so `docker` commands in the job find none.\n\
hint: either share the host's daemon: add \"/var/run/docker.sock:/var/run/docker.sock\" to [runners.docker] volumes in config.toml,\n\
hint: or run Docker-in-Docker: add a `docker:dind` service to the job, set privileged = true in [runners.docker], and set the job variables DOCKER_HOST=tcp://docker:2375 and DOCKER_TLS_CERTDIR=\"\"";

/// Looks for a fixed byte string in a stream of chunks, also across chunk boundaries, keeping only a tail
/// shorter than the needle.
#[derive(Debug)]
pub(crate) struct Scanner {
    needle: &'static [u8],
    tail: Vec<u8>,
    found: bool,
}

impl Scanner {
    pub(crate) fn new(needle: &'static [u8]) -> Self {
        Self {
            needle,
            tail: Vec::with_capacity(needle.len()),
            found: false,
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.found || chunk.is_empty() {
            return;
        }
        let keep = self.needle.len().saturating_sub(1);
        // Only a match that straddles the boundary needs the tail: it starts in the tail and ends in the
        // first `keep` bytes of the chunk.
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(&chunk[..chunk.len().min(keep)]);
        if Self::contains(&joined, self.needle) || Self::contains(chunk, self.needle) {
            self.found = true;
            return;
        }
        let source: &[u8] = if chunk.len() >= keep { chunk } else { &joined };
        self.tail = source[source.len().saturating_sub(keep)..].to_vec();
    }

    pub(crate) fn found(&self) -> bool {
        self.found
    }
}

/// The bytes fed to the shell: enter the stage directory (creating it), then the stage script.
fn stdin_payload(cmd: &StageCommand) -> Vec<u8> {
    let dir = cmd.shell_workdir.to_string_lossy();
    let quoted = shlex::try_quote(&dir)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| {
            // try_quote only fails on NUL bytes, which no path can hold; keep a safe fallback anyway.
            "/".to_owned()
        });
    let mut out = format!("mkdir -p {quoted} && cd {quoted} || exit 1\n").into_bytes();
    out.extend_from_slice(cmd.script.as_bytes());
    if !cmd.script.ends_with('\n') {
        out.push(b'\n');
    }
    out
}

async fn kill(docker: &Docker, container: &str) {
    let opts = KillContainerOptions {
        signal: "KILL".to_owned(),
    };
    // 409 (not running) and 404 (gone) both mean there is nothing left to stop.
    if let Err(e) = docker.kill_container(container, Some(opts)).await {
        tracing::debug!(error = %e, container, "killing the job container");
    }
}

async fn exit_code(docker: &Docker, container: &str) -> Result<i64, DockerError> {
    let mut wait = docker.wait_container(container, None::<WaitContainerOptions>);
    match wait.next().await {
        Some(Ok(resp)) => Ok(resp.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(DockerError::api(format!("waiting for container {container}"))(e)),
        None => Err(DockerError::Io {
            context: format!("waiting for container {container}"),
            source: std::io::Error::other("the engine closed the wait stream without a status"),
        }),
    }
}

/// Runs `cmd` in the (stopped) job container and returns how the shell ended. On `cancel` the container is
/// killed; the call returns once it has stopped.
pub async fn run_stage(
    docker: &Docker,
    container: &str,
    cmd: &StageCommand,
    trace: &TraceWriter,
    cancel: CancellationToken,
) -> Result<ExitStatus, DockerError> {
    let attach = docker
        .attach_container(
            container,
            Some(AttachContainerOptions {
                stream: true,
                stdin: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(DockerError::api(format!("attaching to container {container}")))?;
    let mut output = attach.output;
    let mut input = attach.input;
    docker
        .start_container(container, None)
        .await
        .map_err(DockerError::api(format!("starting container {container}")))?;

    // Fed from its own task: a script larger than the pipe buffer must not block reading the output.
    let payload = stdin_payload(cmd);
    let feeder = tokio::spawn(async move {
        let _ = input.write_all(&payload).await;
        let _ = input.shutdown().await;
    });

    let mut canceled = false;
    let mut no_daemon = Scanner::new(NO_DAEMON);
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message })) => {
                    no_daemon.feed(&message);
                    trace.write(&message);
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, container, "attach stream ended with an error");
                    break;
                }
                None => break,
            },
            _ = cancel.cancelled(), if !canceled => {
                canceled = true;
                kill(docker, container).await;
            }
        }
    }
    feeder.abort();
    trace.flush();
    if canceled {
        // The stream may end before the engine records the exit; make sure the container is down.
        kill(docker, container).await;
    }
    let code = exit_code(docker, container).await?;
    if code != 0 && !canceled && no_daemon.found() {
        for line in NO_DAEMON_HINT.lines() {
            trace.println(line);
        }
    }
    Ok(if canceled && code == KILLED {
        ExitStatus::Signal(9)
    } else {
        ExitStatus::Code(i32::try_from(code).unwrap_or(-1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut s = Scanner::new(NO_DAEMON);
        for c in chunks {
            s.feed(c);
        }
        s.found()
    }

    #[test]
    fn finds_the_daemon_message_across_chunks() {
        let msg: &[u8] =
            b"x\nCannot connect to the Docker daemon at unix:///var/run/docker.sock. Is it running?\n";
        assert!(scan(&[msg]));
        for split in 1..msg.len() {
            assert!(scan(&[&msg[..split], &msg[split..]]), "split at {split}");
        }
        // One byte at a time: the tail must carry the whole prefix.
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert!(scan(&bytes));
        assert!(!scan(&[b"Cannot connect to the Docker", b" registry at all"]));
        assert!(!scan(&[b"Cannot connect to the ", b"", b"Docker daemon"]));
    }

    #[test]
    fn the_tail_stays_small() {
        let mut s = Scanner::new(NO_DAEMON);
        s.feed(&[b'a'; 100_000]);
        assert!(s.tail.len() < NO_DAEMON.len());
        s.feed(b"bc");
        assert!(s.tail.len() < NO_DAEMON.len());
    }
}
