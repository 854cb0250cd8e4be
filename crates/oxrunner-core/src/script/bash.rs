//! Bash building blocks: quoting, the stage wrapper, variable exports and echoed commands.

use std::fmt::Write as _;
use std::path::Path;

use super::escape::Quoting;
use crate::variables::Variables;

/// Name of the env file that `GITLAB_ENV` points to (inside the temp dir).
pub const ENV_FILE: &str = "gitlab_runner_env";

/// Single-quotes `s` for bash and POSIX sh (any byte except NUL survives).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes a path.
pub fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// A line printing `text` verbatim. `printf` rather than `echo`: dash's `echo` interprets backslashes and dash
/// has no `$'...'`, while the escape bytes themselves are fine inside single quotes for every shell.
pub fn print_line(text: &str) -> String {
    format!("printf '%s\\n' {}\n", quote(text))
}

/// A line that prints `text` in green (gitlab-runner's `Noticef`).
pub fn notice(text: &str) -> String {
    print_line(&format!("\x1b[32;1m{text}\x1b[0;m"))
}

/// A line that prints `text` as a yellow warning.
pub fn warning(text: &str) -> String {
    print_line(&format!("\x1b[0;33m{text}\x1b[0;m"))
}

fn is_valid_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

/// Path a file variable's content is written to.
pub fn file_var_path(tmp_dir: &Path, key: &str) -> String {
    tmp_dir.join(key).to_string_lossy().into_owned()
}

/// Exports every variable in order (file variables are written to `<tmp>/<KEY>` first), then `GITLAB_ENV`.
///
/// The values end up only in the script text the shell reads on stdin, never on a command line.
pub fn exports(vars: &Variables, tmp_dir: &Path, quoting: Quoting) -> String {
    let mut out = String::new();
    // `[` is a builtin: an existing tmp dir (every stage after the first, or one the executor made) costs no
    // `mkdir` process.
    let tmp = quote_path(tmp_dir);
    let _ = writeln!(out, "[ -d {tmp} ] || mkdir -p {tmp}");
    for v in vars {
        if !is_valid_name(&v.key) {
            continue;
        }
        if v.file {
            let path = file_var_path(tmp_dir, &v.key);
            let _ = writeln!(out, "printf '%s' {} > {}", quoting.word(&v.value), quote(&path));
            let _ = writeln!(out, "export {}={}", v.key, quote(&path));
        } else {
            let _ = writeln!(out, "export {}={}", v.key, quoting.word(&v.value));
        }
    }
    let env_file = tmp_dir.join(ENV_FILE);
    let _ = writeln!(out, "export GITLAB_ENV={}", quote_path(&env_file));
    out
}

/// Loads `KEY=value` lines an earlier step appended to `$GITLAB_ENV`.
pub fn load_env_file() -> &'static str {
    "if [ -f \"$GITLAB_ENV\" ]; then\n  while IFS= read -r __oxr_env_line || [ -n \"$__oxr_env_line\" ]; do\n    if [ -n \"$__oxr_env_line\" ]; then export \"$__oxr_env_line\"; fi\n  done < \"$GITLAB_ENV\"\nfi\n"
}

/// Echo text for a command: the command itself, or its first line plus a note for multi-line commands.
pub fn command_echo(command: &str) -> String {
    match command.split_once('\n') {
        Some((first, _)) => format!("$ {first} # collapsed multi-line command"),
        None => format!("$ {command}"),
    }
}

/// gitlab-runner's `FF_ENABLE_BASH_EXIT_CODE_CHECK` line: ends the script with a command's non-zero status even
/// where `errexit` does not apply (`false && true`, a failing command inside a function called in a condition).
const EXIT_CODE_CHECK: &str =
    "_runner_exit_code=$?; if [ $_runner_exit_code -ne 0 ]; then exit $_runner_exit_code; fi\n";

/// How user commands are rendered: gitlab-runner's `FF_ENABLE_BASH_EXIT_CODE_CHECK` and, with
/// `FF_SCRIPT_SECTIONS` (and GitLab's trace sections), the name prefix of the collapsed section that shows a
/// multi-line command in full.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommandStyle<'a> {
    pub exit_code_check: bool,
    pub sections: Option<&'a str>,
}

/// A collapsed section holding a multi-line command, opened and closed before the command runs (as gitlab-runner
/// writes it, so the section shows the command without timing it).
fn command_section(id: &str, command: &str) -> String {
    format!(
        "printf 'section_start:%s:section_%s[hide_duration=true,collapsed=true]\\r\\033[0K%s\\n' \"$(date +%s)\" {} {}\n\
         printf 'section_end:%s:section_%s\\r\\033[0K\\n' \"$(date +%s)\" {}\n",
        quote(id),
        quote(&format!("\x1b[32;1m$ {command}\x1b[0;m")),
        quote(id)
    )
}

/// Echoes each non-empty command in green and then runs it, styled by `style`.
pub fn commands_styled(lines: &[String], style: CommandStyle<'_>) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        match style.sections.filter(|_| command.contains('\n')) {
            Some(prefix) => out.push_str(&command_section(&format!("{prefix}_{i}"), command)),
            None => out.push_str(&print_line(&format!(
                "\x1b[32;1m{}\x1b[0;m",
                command_echo(command)
            ))),
        }
        out.push_str(command);
        out.push('\n');
        if style.exit_code_check {
            out.push_str(EXIT_CODE_CHECK);
        }
    }
    out
}

/// Echoes each non-empty command in green and then runs it.
pub fn commands(lines: &[String]) -> String {
    commands_styled(lines, CommandStyle::default())
}

/// Wraps a stage body the way gitlab-runner's bash writer does: strict mode, optional xtrace, the body run by
/// `eval` in a subshell whose stdin is `/dev/null` (so commands cannot eat the rest of the script, which the
/// shell itself reads from stdin), and `exit 0`.
///
/// `legacy_eval` (`FF_USE_LEGACY_BASH_EVAL`) restores gitlab-runner's older `: | eval '...'` form; `quoting`
/// is the form the body is quoted in.
pub fn wrap(body: &str, xtrace: bool, legacy_eval: bool, quoting: Quoting) -> String {
    let mut out = String::new();
    out.push_str("trap 'exit 1' TERM\n");
    // dash has no pipefail; probing in a subshell keeps `sh` from exiting on the unknown option.
    out.push_str("if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi\n");
    out.push_str("set -o errexit\n");
    out.push_str("set +o noclobber\n");
    if xtrace {
        out.push_str("set -o xtrace\n");
    }
    if legacy_eval {
        let _ = writeln!(out, ": | eval {}", quoting.word(body));
    } else {
        let _ = writeln!(
            out,
            "(trap 'exit 1' TERM; eval {}) < /dev/null",
            quoting.word(body)
        );
    }
    out.push_str("exit 0\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(
            command_echo("if true; then\n echo x\nfi"),
            "$ if true; then # collapsed multi-line command"
        );
    }
}
