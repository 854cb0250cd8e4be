//! The documentation cannot drift from the binary: every `oxrunner ...` command in a fenced shell block of
//! README.md and docs/**/*.md must name a subcommand and flags that `oxrunner <sub> --help` knows, and every
//! relative link must lead to a file (and to a heading, when it names an anchor).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::bin;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut files);
    files.sort();
    files
}

/// Lines of fenced shell blocks (continuations joined), and the prose lines outside any block.
fn split_blocks(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut shell, mut prose) = (Vec::new(), Vec::new());
    let mut fence: Option<bool> = None;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(info.trim(), "" | "sh" | "shell" | "bash" | "console")),
            };
            continue;
        }
        match fence {
            Some(true) => {
                let content = trimmed.strip_suffix('\\');
                pending.push_str(content.unwrap_or(trimmed));
                pending.push(' ');
                if content.is_none() {
                    shell.push(std::mem::take(&mut pending));
                }
            }
            Some(false) => {}
            None => prose.push(line.to_string()),
        }
    }
    (shell, prose)
}

/// The `oxrunner` command lines of one shell line: the words after `oxrunner` (or after an `oxrunner:<tag>` image
/// of `docker run`, or the `oxrunner` command of `docker exec <container named oxrunner>`).
fn oxrunner_commands(line: &str) -> Vec<Vec<String>> {
    let code = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    if code.trim_start().starts_with('#') {
        return Vec::new();
    }
    let code = without_placeholders(code);
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut out = Vec::new();
    for segment in words.split(|w| matches!(*w, "|" | "&&" | "||" | ";")) {
        let mut seg: Vec<&str> = segment.to_vec();
        while let Some(first) = seg.first() {
            if *first == "$" || *first == "sudo" || (first.contains('=') && !first.starts_with('-')) {
                seg.remove(0);
            } else {
                break;
            }
        }
        let is_bin = |w: &str| w == "oxrunner" || w.ends_with("/oxrunner");
        let start = match seg.first() {
            Some(w) if is_bin(w) => Some(1),
            // Only `docker run`/`create`/`exec` start the image; `docker build -t oxrunner:latest .` names it.
            Some(&"docker") if matches!(seg.get(1), Some(&"run" | &"create" | &"exec")) => seg
                .iter()
                .position(|w| w.starts_with("oxrunner:"))
                .or_else(|| {
                    seg.windows(2)
                        .position(|p| p[0] == "oxrunner" && p[1] == "oxrunner")
                        .map(|i| i + 1)
                })
                .map(|i| i + 1),
            _ => None,
        };
        if let Some(start) = start {
            let cmd: Vec<String> = seg[start..]
                .iter()
                .take_while(|w| !w.starts_with('>') && !w.starts_with('<') && !w.starts_with("2>"))
                .map(|w| (*w).to_string())
                .collect();
            if !cmd.is_empty() {
                out.push(cmd);
            }
        }
    }
    out
}

/// `<your token>` placeholders become one word, so they are not read as redirections.
fn without_placeholders(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        match tail.find('>') {
            Some(end) if !tail.starts_with(['/', '&', ' ']) && !tail[..end].contains('<') => {
                out.push_str("PLACEHOLDER");
                rest = &tail[end + 1..];
            }
            _ => {
                out.push('<');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

fn help(sub: Option<&str>) -> Option<String> {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if let Some(s) = sub {
        cmd.arg(s);
    }
    let out = cmd.arg("--help").output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn flag_known(help: &str, flag: &str) -> bool {
    let bytes = help.as_bytes();
    help.match_indices(flag).any(|(i, _)| {
        let before = i
            .checked_sub(1)
            .and_then(|j| bytes.get(j))
            .copied()
            .unwrap_or(b' ');
        let after = bytes.get(i + flag.len()).copied().unwrap_or(b' ');
        !before.is_ascii_alphanumeric()
            && before != b'-'
            && !after.is_ascii_alphanumeric()
            && after != b'-'
            && after != b'_'
    })
}

#[test]
fn every_oxrunner_command_in_the_docs_parses() {
    let allow_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/docs_allowlist.txt"),
    )
    .unwrap();
    let allowlist: BTreeSet<String> = allow_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut used = BTreeSet::new();
    let mut helps: HashMap<String, Option<String>> = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let (shell, _) = split_blocks(&std::fs::read_to_string(&file).unwrap());
        for line in shell {
            for cmd in oxrunner_commands(&line) {
                checked += 1;
                let sub = cmd.first().filter(|w| !w.starts_with('-')).cloned();
                if let Some(s) = &sub
                    && allowlist.contains(s)
                {
                    used.insert(s.clone());
                    continue;
                }
                let key = sub.clone().unwrap_or_default();
                let text = helps.entry(key.clone()).or_insert_with(|| help(sub.as_deref()));
                let Some(text) = text.clone() else {
                    problems.push(format!(
                        "{}: unknown command `oxrunner {key}` in: {line}",
                        file.display()
                    ));
                    continue;
                };
                for word in cmd.iter().skip(usize::from(sub.is_some())) {
                    if !word.starts_with('-') || *word == "-" || *word == "--" {
                        continue;
                    }
                    let flag = word.split('=').next().unwrap_or(word);
                    let entry = format!("{key} {flag}");
                    if allowlist.contains(&entry) {
                        used.insert(entry);
                    } else if !flag_known(&text, flag) {
                        problems.push(format!(
                            "{}: `oxrunner {key}` has no flag {flag} in: {line}",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} commands found: is the extraction broken?"
    );
    for stale in allowlist.difference(&used) {
        problems.push(format!(
            "docs_allowlist.txt: no doc uses `{stale}` any more: remove it"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor of a heading: lower case, punctuation dropped (letters of any script kept), spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

fn anchors(file: &Path) -> BTreeSet<String> {
    let (_, prose) = split_blocks(&std::fs::read_to_string(file).unwrap());
    prose
        .iter()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| slug(h.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let (_, prose) = split_blocks(&std::fs::read_to_string(&file).unwrap());
        for line in prose {
            let mut rest = line.as_str();
            while let Some(i) = rest.find("](") {
                let after = &rest[i + 2..];
                let Some(end) = after.find(')') else { break };
                let target = after[..end].split_whitespace().next().unwrap_or_default();
                rest = &after[end..];
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target, None),
                };
                let dest = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !dest.exists() {
                    problems.push(format!("{}: link to missing {target}", file.display()));
                    continue;
                }
                if let Some(a) = anchor
                    && !anchors(&dest).contains(a)
                {
                    problems.push(format!(
                        "{}: no heading for #{a} in {} (have: {:?})",
                        file.display(),
                        dest.display(),
                        anchors(&dest)
                    ));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the extraction broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_links_both_languages() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains("](docs/en/README.md)"),
        "README.md must link docs/en"
    );
    assert!(
        readme.contains("](docs/zh-TW/README.md)"),
        "README.md must link docs/zh-TW"
    );
}

#[test]
fn the_extraction_finds_what_the_docs_write() {
    assert_eq!(
        oxrunner_commands("sudo oxrunner doctor --user x | tee log # comment --nope"),
        vec![vec!["doctor".to_string(), "--user".to_string(), "x".to_string()]]
    );
    assert_eq!(
        oxrunner_commands("docker run --rm -v /a:/etc/gitlab-runner oxrunner:latest register -n --url u"),
        vec![
            vec!["register", "-n", "--url", "u"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        ]
    );
    assert_eq!(
        oxrunner_commands("docker exec -it oxrunner oxrunner verify"),
        vec![vec!["verify".to_string()]]
    );
    assert!(oxrunner_commands("docker exec -it oxrunner bash").is_empty());
    assert_eq!(
        oxrunner_commands("oxrunner register --registration-token <your token> --executor shell </dev/null"),
        vec![
            vec![
                "register",
                "--registration-token",
                "PLACEHOLDER",
                "--executor",
                "shell"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        ]
    );
    assert!(oxrunner_commands("scripts/docker-images --oxrunner target/release/oxrunner").is_empty());
    assert!(oxrunner_commands("docker build -t oxrunner:latest .").is_empty());
    assert!(flag_known("  -c, --config <CONFIG>", "--config"));
    assert!(flag_known("  -c, --config <CONFIG>", "-c"));
    assert!(!flag_known("  --config-file <X>", "--config"));
    assert_eq!(slug("2. 進入 runner 列表"), "2-進入-runner-列表");
    assert_eq!(
        slug("Uploading artifacts ... too large archive (HTTP 413)"),
        "uploading-artifacts--too-large-archive-http-413"
    );
}
