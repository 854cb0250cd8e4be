//! The terminal side of a job log: every line prefixed with its job name, section markers removed, colours kept
//! only on a terminal without `NO_COLOR`. The full, untouched trace goes to `.oxrunner/logs/<job>.log`.
//!
//! Memory stays flat whatever the log size: the trace is read from the spool in chunks and only a bounded
//! partial line is ever held.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use oxrunner_core::trace::TraceFollower;

/// A line longer than this is printed in pieces, so a job printing without newlines cannot grow memory.
const MAX_PENDING: usize = 64 * 1024;

const PALETTE: [&str; 6] = ["36", "35", "33", "32", "34", "96"];

/// Shared stdout, so lines of concurrent jobs never interleave mid-line.
#[derive(Clone)]
pub struct Console {
    out: Arc<Mutex<()>>,
    pub colour: bool,
}

impl Console {
    pub fn new() -> Self {
        let colour = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Self {
            out: Arc::new(Mutex::new(())),
            colour,
        }
    }

    /// The `name | ` prefix, coloured by the job's index.
    pub fn prefix(&self, name: &str, index: usize, width: usize) -> Vec<u8> {
        let padded = format!("{name:<width$} | ");
        if self.colour {
            format!("\x1b[{}m{padded}\x1b[0m", PALETTE[index % PALETTE.len()]).into_bytes()
        } else {
            padded.into_bytes()
        }
    }

    /// Writes already-prefixed lines in one go.
    pub fn write(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let _guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = io::stdout().lock();
        // A closed stdout (e.g. piped into `head`) must not stop the pipeline; the log files stay complete.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    /// A line of the runner itself (not of a job).
    pub fn note(&self, msg: &str) {
        let mut line = msg.as_bytes().to_vec();
        line.push(b'\n');
        self.write(&line);
    }
}

/// Turns a job's raw trace into prefixed terminal lines.
pub struct LinePrinter {
    prefix: Vec<u8>,
    colour: bool,
    pending: Vec<u8>,
}

impl LinePrinter {
    pub fn new(prefix: Vec<u8>, colour: bool) -> Self {
        Self {
            prefix,
            colour,
            pending: Vec::new(),
        }
    }

    /// Feeds raw trace bytes; returns the complete lines, cleaned and prefixed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + chunk.len() / 8);
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&rest[..pos]);
            self.emit(&mut out);
            rest = &rest[pos + 1..];
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_PENDING {
            self.emit(&mut out);
        }
        out
    }

    /// The last line, if the trace did not end with a newline.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            self.emit(&mut out);
        }
        out
    }

    fn emit(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        // Section markers and colours always contain `\r` or ESC; most lines have neither and are copied as is.
        if self.pending.iter().any(|&b| b == b'\r' || b == 0x1b) {
            out.extend_from_slice(&clean_line(&self.pending, self.colour));
        } else {
            out.extend_from_slice(&self.pending);
        }
        self.pending.clear();
        if self.colour {
            // A colour left open by the job must not leak into the next job's prefix.
            out.extend_from_slice(b"\x1b[0m");
        }
        out.push(b'\n');
    }
}

/// Removes GitLab section markers, keeps what a terminal would show after a carriage return, and strips escape
/// sequences unless colour is on.
pub fn clean_line(raw: &[u8], colour: bool) -> Vec<u8> {
    let without_sections = strip_sections(raw);
    // `\r` redraws the line on a terminal; a prefixed copy only makes sense of the last redraw.
    let visible = match without_sections.iter().rposition(|&b| b == b'\r') {
        Some(pos) if pos + 1 < without_sections.len() => &without_sections[pos + 1..],
        Some(pos) => &without_sections[..pos],
        None => &without_sections[..],
    };
    let visible = visible.strip_suffix(b"\r").unwrap_or(visible);
    if colour {
        visible.to_vec()
    } else {
        strip_escapes(visible)
    }
}

/// `section_start:<ts>:<name>\r\x1b[0K` and `section_end:...` markers, as the driver writes them.
fn strip_sections(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        if (rest.starts_with(b"section_start:") || rest.starts_with(b"section_end:"))
            && let Some(end) = find(rest, b"\r\x1b[0K")
        {
            i += end + 5;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Drops CSI sequences (`ESC [ ... final`) and lone escapes.
fn strip_escapes(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == 0x1b {
            i += 1;
            if raw.get(i) == Some(&b'[') {
                i += 1;
                while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// Streams a job's trace to the terminal and to its log file until the trace is finished.
pub async fn follow(
    mut follower: TraceFollower,
    log_path: &Path,
    console: Console,
    mut printer: LinePrinter,
    append: bool,
) -> io::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log_path)?;
    // Unbuffered: chunks are already large when output is fast, and `tail -f` on the log stays live.
    let mut log = file;
    let mut log_ok = true;
    while let Some(chunk) = follower.next_chunk().await? {
        if log_ok && log.write_all(&chunk).is_err() {
            // A full disk loses the log copy, not the job.
            log_ok = false;
        }
        console.write(&printer.feed(&chunk));
    }
    console.write(&printer.finish());
    log.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_and_cleaned() {
        let mut p = LinePrinter::new(b"job | ".to_vec(), false);
        let mut out = p.feed(b"section_start:1:step_script\r\x1b[0K\x1b[36;1mExecuting\x1b[0;m\nhal");
        out.extend(p.feed(b"f\nsection_end:1:step_script\r\x1b[0K"));
        out.extend(p.finish());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "job | Executing\njob | half\njob | \n"
        );
    }

    #[test]
    fn carriage_returns_keep_the_last_redraw() {
        assert_eq!(clean_line(b"10%\r50%\r100%", false), b"100%");
        assert_eq!(clean_line(b"done\r", false), b"done");
    }

    #[test]
    fn colour_is_kept_on_terminals() {
        assert_eq!(clean_line(b"\x1b[32mok\x1b[0m", true), b"\x1b[32mok\x1b[0m");
        assert_eq!(clean_line(b"\x1b[32mok\x1b[0m", false), b"ok");
    }

    #[test]
    fn long_lines_are_cut_not_buffered() {
        let mut p = LinePrinter::new(Vec::new(), false);
        let out = p.feed(&vec![b'x'; MAX_PENDING + 10]);
        assert_eq!(out.len(), MAX_PENDING + 11);
        assert!(p.finish().is_empty());
    }
}
