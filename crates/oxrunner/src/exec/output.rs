//! The terminal side of a job log: every line prefixed with its job name, section markers removed, colours kept
//! only on a terminal without `NO_COLOR`; on a terminal the lines feed the live board (`board.rs`) instead. The
//! full, untouched trace goes to `.oxrunner/logs/<job>.log`.
//!
//! Memory stays flat whatever the log size: the trace is read from the spool in chunks and only a bounded
//! partial line is ever held.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxrunner_core::trace::TraceFollower;

use super::board::{Board, TICK};
use super::scheduler::Status;

/// A line longer than this is printed in pieces, so a job printing without newlines cannot grow memory.
const MAX_PENDING: usize = 64 * 1024;

const PALETTE: [&str; 6] = ["36", "35", "33", "32", "34", "96"];

/// What is on the terminal below the notes: the number of board lines drawn last.
struct Screen {
    board_lines: usize,
}

/// Shared stdout, so lines of concurrent jobs never interleave mid-line. On a terminal (unless `TERM=dumb` or
/// `OXRUNNER_EXEC_PLAIN` is set) job output feeds the live board instead of scrolling past.
#[derive(Clone)]
pub struct Console {
    out: Arc<Mutex<Screen>>,
    pub colour: bool,
    board: Option<Arc<Board>>,
    ticker: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Console {
    pub fn new() -> Self {
        let tty = io::stdout().is_terminal();
        let colour = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let plain =
            std::env::var("OXRUNNER_EXEC_PLAIN").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        let console = Self {
            out: Arc::new(Mutex::new(Screen { board_lines: 0 })),
            colour,
            board: (tty && !dumb && !plain).then(Board::new),
            ticker: Arc::new(Mutex::new(None)),
        };
        if let Some(board) = &console.board {
            let (board, out) = (board.clone(), console.out.clone());
            let spawned = std::thread::Builder::new()
                .name("exec-board".into())
                .spawn(move || render_loop(&board, &out, colour));
            if let Ok(handle) = spawned {
                *lock(&console.ticker) = Some(handle);
            }
        }
        console
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

    /// The printer of a job's trace: prefixed lines, or bare clean lines for the board.
    pub fn printer(&self, name: &str, index: usize, width: usize) -> LinePrinter {
        if self.board.is_some() {
            LinePrinter::new(Vec::new(), false).for_job(name)
        } else {
            LinePrinter::new(self.prefix(name, index, width), self.colour).for_job(name)
        }
    }

    /// Lines from a job's printer: on the board (its last line, and a tail for the failure report) or printed.
    pub fn job_output(&self, job: &str, lines: &[u8]) {
        match &self.board {
            Some(board) => board.output(job, lines),
            None => self.write(lines),
        }
    }

    pub fn register(&self, job: &str, stage: &str) {
        if let Some(b) = &self.board {
            b.register(job, stage);
        }
    }

    pub fn job_started(&self, job: &str) {
        if let Some(b) = &self.board {
            b.started(job);
        }
    }

    pub fn job_finished(&self, job: &str, status: &Status, duration: Duration) {
        if let Some(b) = &self.board {
            b.finished(job, status, duration);
        }
    }

    /// The last lines of a job's output the board kept (nothing without a board: they were printed).
    pub fn tail(&self, job: &str) -> Vec<String> {
        self.board.as_ref().map(|b| b.tail(job)).unwrap_or_default()
    }

    /// Stops the board and removes it from the screen; later output is printed as plain lines.
    pub fn close_board(&self) {
        let Some(board) = &self.board else {
            return;
        };
        board.stop.store(true, Ordering::Release);
        if let Some(handle) = lock(&self.ticker).take() {
            let _ = handle.join();
        }
        let mut screen = lock(&self.out);
        let mut out = io::stdout().lock();
        let _ = out.write_all(&erase(screen.board_lines));
        let _ = out.flush();
        screen.board_lines = 0;
    }

    /// Writes already-prefixed lines in one go (above the board, which is drawn again below them).
    pub fn write(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut screen = lock(&self.out);
        let live = self.board.as_ref().filter(|b| !b.stop.load(Ordering::Acquire));
        let Some(board) = live else {
            // Piped output: the lines go out as they are, without a copy (a big log is most of exec's work). The
            // screen lock is held until then, so lines of concurrent jobs never interleave.
            let mut out = io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
            return;
        };
        let mut buf = Vec::with_capacity(bytes.len() + 256);
        buf.extend_from_slice(&erase(screen.board_lines));
        buf.extend_from_slice(bytes);
        screen.board_lines = draw(board, self.colour, &mut buf);
        let mut out = io::stdout().lock();
        // A closed stdout (e.g. piped into `head`) must not stop the pipeline; the log files stay complete.
        let _ = out.write_all(&buf);
        let _ = out.flush();
    }

    /// A line of the runner itself (not of a job).
    pub fn note(&self, msg: &str) {
        let mut line = msg.as_bytes().to_vec();
        line.push(b'\n');
        self.write(&line);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Blanks the board's lines one by one and leaves the cursor on the first of them. Not "clear to the end of the
/// screen": with the board at the top, that clears the whole screen, which tmux (`scroll-on-clear`) and some
/// terminals copy into the scroll-back, leaving a stale board there.
fn erase(lines: usize) -> Vec<u8> {
    if lines == 0 {
        return Vec::new();
    }
    let mut out = format!("\x1b[{lines}A\r").into_bytes();
    for _ in 0..lines {
        // Down without scrolling (CUD stops at the last row), so the lines above the board are never touched.
        out.extend_from_slice(b"\x1b[2K\x1b[1B");
    }
    out.extend_from_slice(format!("\x1b[{lines}A").as_bytes());
    out
}

/// Appends the board to `buf`; returns how many lines it took.
fn draw(board: &Board, colour: bool, buf: &mut Vec<u8>) -> usize {
    let (cols, rows) = rustix::termios::tcgetwinsize(io::stdout())
        .ok()
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map_or((80, 24), |w| (usize::from(w.ws_col), usize::from(w.ws_row)));
    let lines = board.frame(cols, rows, colour);
    for l in &lines {
        buf.extend_from_slice(l.as_bytes());
        buf.extend_from_slice(b"\x1b[K\n");
    }
    lines.len()
}

/// The render tick: redraws the board in place while it changes, off the async workers.
fn render_loop(board: &Board, out: &Mutex<Screen>, colour: bool) {
    while !board.stop.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        if board.stop.load(Ordering::Acquire) || !board.needs_redraw() {
            continue;
        }
        let mut screen = lock(out);
        // Up to the board's first line, then each line overwritten in place: no blank frame, no flicker.
        let mut buf = Vec::with_capacity(4096);
        if screen.board_lines > 0 {
            buf.extend_from_slice(format!("\x1b[{}A\r", screen.board_lines).as_bytes());
        }
        let drawn = draw(board, colour, &mut buf);
        buf.extend_from_slice(b"\x1b[J");
        screen.board_lines = drawn;
        let mut stdout = io::stdout().lock();
        let _ = stdout.write_all(&buf);
        let _ = stdout.flush();
    }
}

/// Turns a job's raw trace into prefixed terminal lines.
pub struct LinePrinter {
    prefix: Vec<u8>,
    colour: bool,
    pending: Vec<u8>,
    job: String,
}

impl LinePrinter {
    pub fn new(prefix: Vec<u8>, colour: bool) -> Self {
        Self {
            prefix,
            colour,
            pending: Vec::new(),
            job: String::new(),
        }
    }

    /// The job whose output this prints (the live board's row).
    pub fn for_job(mut self, job: &str) -> Self {
        self.job = job.to_string();
        self
    }

    /// Feeds raw trace bytes; returns the complete lines, cleaned and prefixed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + chunk.len() / 8);
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if self.pending.is_empty() {
                // A whole line inside the chunk goes straight to the output, not through `pending`.
                self.emit_line(&rest[..pos], &mut out);
            } else {
                self.pending.extend_from_slice(&rest[..pos]);
                self.emit(&mut out);
            }
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
        let line = std::mem::take(&mut self.pending);
        self.emit_line(&line, out);
        self.pending = line;
        self.pending.clear();
    }

    fn emit_line(&self, line: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        // Section markers and colours always contain `\r` or ESC; most lines have neither and are copied as is.
        if memchr::memchr2(b'\r', 0x1b, line).is_some() {
            out.extend_from_slice(&clean_line(line, self.colour));
        } else {
            out.extend_from_slice(line);
        }
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
        let lines = printer.feed(&chunk);
        console.job_output(&printer.job, &lines);
    }
    let last = printer.finish();
    console.job_output(&printer.job, &last);
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
