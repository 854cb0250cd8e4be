//! The live board `oxrunner exec` shows when stdout is a terminal: the jobs by stage with their state, elapsed
//! time and the last line of the running ones, redrawn in place below the runner's own notes.
//!
//! Job output only updates the board's state (a short critical section on the trace followers); a separate
//! thread redraws at a fixed tick, so a chatty job never waits for the terminal and the async workers never
//! render. Full logs stay in `.oxrunner/logs/`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::scheduler::Status;

/// Lines of each job kept for the failure report at the end.
pub const TAIL_LINES: usize = 20;
/// A longer output line is cut: the board shows one line, and the tail must stay small.
const MAX_LINE_CHARS: usize = 500;
/// How often the board is redrawn while something changes (or a running job's clock moves).
pub const TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
enum State {
    Pending,
    Running(Instant),
    Done { status: Status, duration: Duration },
}

struct Job {
    name: String,
    stage: String,
    state: State,
    tail: VecDeque<String>,
}

/// The board's state, shared by the trace followers, the scheduler and the render thread.
pub struct Board {
    jobs: Mutex<Vec<Job>>,
    started: Instant,
    dirty: AtomicBool,
    pub(super) stop: AtomicBool,
}

impl Board {
    pub fn new() -> Arc<Board> {
        Arc::new(Board {
            jobs: Mutex::new(Vec::new()),
            started: Instant::now(),
            dirty: AtomicBool::new(true),
            stop: AtomicBool::new(false),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<Job>) -> R) -> R {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut jobs);
        self.dirty.store(true, Ordering::Release);
        r
    }

    /// Adds a job (pending) unless it is already on the board: a retried or re-registered job keeps its row.
    pub fn register(&self, name: &str, stage: &str) {
        self.with(|jobs| {
            if !jobs.iter().any(|j| j.name == name) {
                jobs.push(Job {
                    name: name.to_string(),
                    stage: stage.to_string(),
                    state: State::Pending,
                    tail: VecDeque::new(),
                });
            }
        });
    }

    pub fn started(&self, name: &str) {
        self.with(|jobs| {
            if let Some(j) = jobs.iter_mut().find(|j| j.name == name) {
                j.state = State::Running(Instant::now());
            }
        });
    }

    pub fn finished(&self, name: &str, status: &Status, duration: Duration) {
        self.with(|jobs| {
            if let Some(j) = jobs.iter_mut().find(|j| j.name == name) {
                j.state = State::Done {
                    status: status.clone(),
                    duration,
                };
            }
        });
    }

    /// Complete, clean lines of a job's output (no prefix, no colour).
    pub fn output(&self, name: &str, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        self.with(|jobs| {
            let Some(j) = jobs.iter_mut().find(|j| j.name == name) else {
                return;
            };
            let body = lines.strip_suffix(b"\n").unwrap_or(lines);
            for line in body.split(|&b| b == b'\n') {
                if j.tail.len() == TAIL_LINES {
                    j.tail.pop_front();
                }
                let text = String::from_utf8_lossy(line);
                j.tail.push_back(text.chars().take(MAX_LINE_CHARS).collect());
            }
        });
    }

    /// The last lines a job printed (at most `TAIL_LINES`).
    pub fn tail(&self, name: &str) -> Vec<String> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .find(|j| j.name == name)
            .map(|j| j.tail.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// True when a redraw would show something new (state changed, or a running job's clock moved).
    pub fn needs_redraw(&self) -> bool {
        if self.dirty.swap(false, Ordering::AcqRel) {
            return true;
        }
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().any(|j| matches!(j.state, State::Running(_)))
    }

    /// The board's lines for a terminal of `cols` x `rows`, each shorter than `cols`.
    pub fn frame(&self, cols: usize, rows: usize, colour: bool) -> Vec<String> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        frame(&jobs, self.started.elapsed(), Instant::now(), cols, rows, colour)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The state word and its colour.
fn state_word(state: &State) -> (&'static str, &'static str) {
    match state {
        State::Pending => ("pending", "90"),
        State::Running(_) => ("running", "36;1"),
        State::Done { status, .. } => match status {
            Status::Passed => ("passed", "32"),
            Status::Failed { allowed: true, .. } => ("allowed", "33"),
            Status::Failed { .. } => ("FAILED", "31;1"),
            Status::Skipped(_) => ("skipped", "90"),
            Status::Manual => ("manual", "90"),
            // The pipeline waits for this job to be played (`--manual NAME`).
            Status::ManualBlocking => ("manual!", "33;1"),
            Status::Blocked(_) => ("blocked", "90"),
        },
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn job_row(j: &Job, w_name: usize, now: Instant, cols: usize, colour: bool) -> String {
    let (word, code) = state_word(&j.state);
    let elapsed = match &j.state {
        State::Pending => String::new(),
        State::Running(since) => secs(now.saturating_duration_since(*since)),
        State::Done { duration, .. } if duration.is_zero() => String::new(),
        State::Done { duration, .. } => secs(*duration),
    };
    let last = match &j.state {
        State::Running(_) => j.tail.back().map(|l| l.trim().to_string()).unwrap_or_default(),
        _ => String::new(),
    };
    let head = format!("  {:<w_name$}  ", cut(&j.name, w_name));
    let rest = format!("{word:<7} {elapsed:>7}  {last}");
    let room = cols.saturating_sub(1).saturating_sub(head.chars().count());
    let rest = cut(rest.trim_end(), room);
    if colour && rest.starts_with(word) {
        let tail = &rest[word.len()..];
        format!("{head}\x1b[{code}m{word}\x1b[0m{tail}")
    } else {
        format!("{head}{rest}")
    }
}

fn frame(jobs: &[Job], wall: Duration, now: Instant, cols: usize, rows: usize, colour: bool) -> Vec<String> {
    let cols = cols.max(20);
    let w_name = jobs
        .iter()
        .map(|j| j.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, (cols / 3).max(8));
    let done = jobs
        .iter()
        .filter(|j| matches!(j.state, State::Done { .. }))
        .count();
    let running = jobs
        .iter()
        .filter(|j| matches!(j.state, State::Running(_)))
        .count();
    let mut header = String::new();
    let _ = write!(
        header,
        "oxrunner exec: {done}/{} jobs done, {running} running, {}",
        jobs.len(),
        secs(wall)
    );
    let mut stages: Vec<&str> = Vec::new();
    for j in jobs {
        if !stages.contains(&j.stage.as_str()) {
            stages.push(&j.stage);
        }
    }
    let max_rows = rows.saturating_sub(1).max(3);
    let full = stage_lines(jobs, &stages, w_name, now, cols, colour, false);
    let mut lines = vec![cut(&header, cols - 1)];
    let body = if full.len() < max_rows {
        full
    } else {
        stage_lines(jobs, &stages, w_name, now, cols, colour, true)
    };
    lines.extend(body);
    if lines.len() > max_rows {
        let hidden = lines.len() - (max_rows - 1);
        lines.truncate(max_rows - 1);
        lines.push(format!("  … {hidden} more lines (full logs in .oxrunner/logs/)"));
    }
    lines
}

/// One header per stage and one row per job; with `compact`, a stage whose jobs are all done and none failed
/// takes a single line.
fn stage_lines(
    jobs: &[Job],
    stages: &[&str],
    w_name: usize,
    now: Instant,
    cols: usize,
    colour: bool,
    compact: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for stage in stages {
        let members: Vec<&Job> = jobs.iter().filter(|j| j.stage == *stage).collect();
        let settled = members.iter().all(|j| match &j.state {
            State::Done { status, .. } => !matches!(status, Status::Failed { allowed: false, .. }),
            _ => false,
        });
        if compact && settled {
            let passed = members
                .iter()
                .filter(|j| {
                    matches!(
                        &j.state,
                        State::Done {
                            status: Status::Passed,
                            ..
                        }
                    )
                })
                .count();
            let others = members.len() - passed;
            out.push(cut(
                &format!("{stage}: {passed} passed, {others} not run or allowed to fail"),
                cols - 1,
            ));
            continue;
        }
        out.push(cut(stage, cols - 1));
        out.extend(members.iter().map(|j| job_row(j, w_name, now, cols, colour)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Arc<Board> {
        let b = Board::new();
        b.register("compile", "build");
        b.register("unit", "test");
        b.register("lint", "test");
        b
    }

    #[test]
    fn rows_by_stage_with_state_and_last_line() {
        let b = board();
        b.finished("compile", &Status::Passed, Duration::from_millis(1200));
        b.started("unit");
        b.output("unit", b"first\nrunning test 3 of 9\n");
        let f = b.frame(80, 24, false);
        assert!(
            f[0].starts_with("oxrunner exec: 1/3 jobs done, 1 running"),
            "{f:?}"
        );
        assert_eq!(f[1], "build");
        assert_eq!(f[2], "  compile  passed     1.2s");
        assert_eq!(f[3], "test");
        assert!(
            f[4].starts_with("  unit     running ") && f[4].ends_with("  running test 3 of 9"),
            "{f:?}"
        );
        assert_eq!(f[5], "  lint     pending");
        assert!(f.iter().all(|l| l.chars().count() < 80));
    }

    #[test]
    fn narrow_and_short_terminals() {
        let b = board();
        b.started("unit");
        b.output("unit", "x".repeat(300).as_bytes());
        let f = b.frame(30, 24, false);
        assert!(f.iter().all(|l| l.chars().count() < 30), "{f:?}");
        for i in 0..40 {
            b.register(&format!("job-{i}"), "deploy");
        }
        b.finished("compile", &Status::Passed, Duration::from_secs(1));
        let f = b.frame(80, 10, false);
        assert_eq!(f.len(), 9, "{f:?}");
        assert_eq!(f[1], "build: 1 passed, 0 not run or allowed to fail");
        assert!(f[8].contains("more lines"), "{f:?}");
    }

    #[test]
    fn the_tail_is_bounded() {
        let b = board();
        for i in 0..100 {
            b.output("lint", format!("line {i}\n").as_bytes());
        }
        let tail = b.tail("lint");
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[TAIL_LINES - 1], "line 99");
    }
}
