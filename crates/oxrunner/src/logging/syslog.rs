//! `--syslog`: lines go to the local system log socket (`/dev/log`, which journald serves on systemd hosts) in the
//! BSD syslog layout, tagged `oxrunner[pid]`, facility daemon.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::Level;

/// Sockets tried in order: the classic one (journald serves it too), then journald's syslog socket.
const SOCKETS: [&str; 3] = ["/dev/log", "/run/systemd/journal/dev-log", "/var/run/syslog"];

/// LOG_DAEMON.
const FACILITY: u8 = 3;

pub(super) struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
    pid: u32,
}

impl Syslog {
    pub(super) fn connect() -> io::Result<Syslog> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no socket at /dev/log");
        for path in SOCKETS {
            let socket = UnixDatagram::unbound()?;
            match socket.connect(path) {
                Ok(()) => {
                    return Ok(Syslog {
                        socket,
                        path: PathBuf::from(path),
                        pid: std::process::id(),
                    });
                }
                Err(err) => last = io::Error::new(err.kind(), format!("{path}: {err}")),
            }
        }
        Err(last)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn send(&self, level: Level, line: &str) -> io::Result<()> {
        let severity = match level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        let msg = format!("<{}>oxrunner[{}]: {line}", FACILITY * 8 + severity, self.pid);
        self.socket.send(msg.as_bytes()).map(|_| ())
    }
}
