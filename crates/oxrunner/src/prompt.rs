//! Interactive questions asked by `register` when a value was not given, worded as gitlab-runner asks them.

use std::io::{self, BufRead, Write};

/// Asks `question`, showing `default` in brackets; an empty answer takes the default.
pub fn ask(question: &str, default: Option<&str>) -> io::Result<String> {
    let stdin = io::stdin();
    let mut out = io::stdout();
    let mut shown = writeln!(out, "{question}");
    if let Some(d) = default.filter(|d| !d.is_empty()) {
        shown = shown.and_then(|()| write!(out, "[{d}]: "));
    }
    shown.and_then(|()| out.flush()).map_err(|e| {
        // Tagged so that `main` ends quietly, as for any other command whose output reader went away.
        if e.kind() == io::ErrorKind::BrokenPipe {
            io::Error::new(io::ErrorKind::BrokenPipe, crate::stdio::StdoutClosed)
        } else {
            e
        }
    })?;
    let mut line = String::new();
    if stdin.lock().read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "no answer to `{question}` (stdin closed)\nhint: pass the value as a flag and use --non-interactive"
            ),
        ));
    }
    let answer = line.trim().to_string();
    if answer.is_empty() {
        Ok(default.unwrap_or_default().to_string())
    } else {
        Ok(answer)
    }
}

/// Asks until a non-empty answer is given.
pub fn ask_required(question: &str, default: Option<&str>) -> io::Result<String> {
    loop {
        let answer = ask(question, default)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
    }
}
