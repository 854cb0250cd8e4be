//! gitlab-runner's `register` and `run-single` flags, built from data instead of by hand.
//!
//! `data/upstream-flags.tsv` is generated from gitlab-runner's struct tags by `scripts/gen-upstream-flags`: one
//! row per command and flag with its env variable, default, value kind and the `config.toml` key it sets. Every
//! row the hand-written clap structs in `cli.rs` do not already define becomes a clap argument here
//! ([`args`]), and its value is written at its key into the runner's TOML table ([`overlay`]), which is then
//! read back through the config model. A key gitlab-runner adds therefore gets its flag by regenerating the
//! table; the model decides what the runner does with it.

pub mod args;
pub mod commands;
pub mod overlay;
pub mod template;

pub use args::{RegisterFlags, RunSingleFlags};
pub use overlay::Overlay;

/// The generated table, compiled in.
pub const UPSTREAM_FLAGS_TSV: &str = include_str!("../../data/upstream-flags.tsv");

/// The gitlab-runner version the table was generated from (its header names it).
pub const UPSTREAM_VERSION: &str = "19.4.0";

/// How a flag's value is parsed and written (Go type of the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
    /// A Go `time.Duration`, written as the string given.
    Duration,
    Str,
    /// A slice: each occurrence of the flag (or the env variable, once) adds one element, never split.
    List(Scalar),
    /// A map: each occurrence is `KEY:VALUE` (go-flags' map syntax).
    Map(Scalar),
    /// `map[string][]string`: each `KEY:VALUE` appends VALUE to KEY's list.
    MapOfLists,
}

/// Element type of lists and maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Bool,
    Int,
    Float,
    Str,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        let scalar = |s: &str| match s {
            "bool" => Some(Scalar::Bool),
            "int" => Some(Scalar::Int),
            "float" => Some(Scalar::Float),
            "string" | "duration" => Some(Scalar::Str),
            _ => None,
        };
        Some(match s {
            "bool" => Kind::Bool,
            "int" => Kind::Int,
            "float" => Kind::Float,
            "duration" => Kind::Duration,
            "string" => Kind::Str,
            "map:list:string" => Kind::MapOfLists,
            _ => {
                if let Some(e) = s.strip_prefix("list:") {
                    Kind::List(scalar(e)?)
                } else if let Some(e) = s.strip_prefix("map:") {
                    Kind::Map(scalar(e)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// Whether the flag may be given more than once.
    pub fn repeatable(self) -> bool {
        matches!(self, Kind::List(_) | Kind::Map(_) | Kind::MapOfLists)
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    pub command: &'static str,
    /// Long name without the leading `--`.
    pub long: &'static str,
    pub short: Option<char>,
    pub env: Option<&'static str>,
    pub default: Option<&'static str>,
    pub kind: Kind,
    /// Dotted `config.toml` path inside `[[runners]]` (`docker.image`, `cache.s3.BucketName`); empty for flags
    /// that configure the command itself.
    pub config_key: &'static str,
    /// The flag group: `runner`, `cache`, `docker`, `kubernetes`, `ssh`, ...
    pub group: &'static str,
}

/// The rows of `command` (`register` or `run-single`). The table is compiled in and checked by a unit test, so a
/// line that does not parse cannot occur at run time; it would be skipped rather than abort a command.
pub fn rows(command: &str) -> Vec<FlagRow> {
    all_rows().into_iter().filter(|r| r.command == command).collect()
}

/// Every row of the table.
pub fn all_rows() -> Vec<FlagRow> {
    UPSTREAM_FLAGS_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("command\t"))
        .filter_map(parse_row)
        .collect()
}

fn parse_row(line: &'static str) -> Option<FlagRow> {
    let cols: Vec<&'static str> = line.split('\t').collect();
    let [command, flag, short, env, default, kind, config_key, group] = cols.as_slice() else {
        return None;
    };
    let nonempty = |s: &'static str| (!s.is_empty()).then_some(s);
    Some(FlagRow {
        command,
        long: flag.strip_prefix("--")?,
        short: short.chars().next(),
        env: nonempty(env),
        default: nonempty(default),
        kind: Kind::parse(kind)?,
        config_key,
        group,
    })
}

/// The executor sections gitlab-runner's `register` keeps for `executor` (`askExecutorOptions`): the others are
/// dropped before the file is written, whatever flags set them.
pub fn executor_sections(executor: &str) -> &'static [&'static str] {
    match executor {
        "kubernetes" => &["kubernetes"],
        "docker+machine" => &["machine", "docker"],
        "docker" | "docker-autoscaler" | "docker-windows" => &["docker"],
        "ssh" => &["ssh"],
        "parallels" => &["ssh", "parallels"],
        "virtualbox" => &["ssh", "virtualbox"],
        "custom" => &["custom"],
        _ => &[],
    }
}

/// Groups that are an executor's own section (as opposed to runner-wide settings such as `cache`).
pub const EXECUTOR_GROUPS: [&str; 7] = [
    "docker",
    "kubernetes",
    "ssh",
    "parallels",
    "virtualbox",
    "machine",
    "custom",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_table_parses() {
        let data_lines = UPSTREAM_FLAGS_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("command\t"))
            .count();
        assert_eq!(all_rows().len(), data_lines);
        // compat-audit §1c: 360 register and 352 run-single flags in gitlab-runner 19.4.
        assert_eq!(rows("register").len(), 360);
        assert_eq!(rows("run-single").len(), 352);
    }

    #[test]
    fn header_names_the_version_the_constant_claims() {
        let header = UPSTREAM_FLAGS_TSV.lines().next().unwrap_or_default();
        assert!(
            header.contains(&format!("(VERSION {UPSTREAM_VERSION})")),
            "{header}"
        );
    }

    #[test]
    fn kinds_of_known_flags() {
        let reg = rows("register");
        let find = |l: &str| reg.iter().find(|r| r.long == l).cloned();
        assert_eq!(find("env").map(|r| r.kind), Some(Kind::List(Scalar::Str)));
        assert_eq!(
            find("feature-flags").map(|r| r.kind),
            Some(Kind::Map(Scalar::Bool))
        );
        assert_eq!(find("docker-image").map(|r| r.config_key), Some("docker.image"));
        assert_eq!(
            find("cache-s3-bucket-name").map(|r| r.config_key),
            Some("cache.s3.BucketName")
        );
    }
}
