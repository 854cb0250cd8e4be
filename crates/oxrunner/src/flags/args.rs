//! The table's flags as clap arguments, built with clap's builder API and flattened into the derived structs of
//! `cli.rs` (the flattened field goes last, so it sees and skips every flag a typed field already defines).
//!
//! Values are kept as the strings given; [`super::overlay`] parses them with the error messages a user needs.
//! gitlab-runner (go-flags) semantics: a slice or map flag appends one element per occurrence and its env
//! variable gives exactly one element (no `env-delim` tag exists upstream), so nothing is split on commas; a
//! boolean is `--flag` or `--flag=VALUE`; a repeated scalar keeps the last value.

use std::fmt;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::{FlagRow, Kind, rows};

/// Where a value came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
}

/// One flag of the table that was given, with its raw values in order.
#[derive(Clone)]
pub struct GivenFlag {
    pub row: FlagRow,
    pub source: Source,
    pub values: Vec<String>,
}

impl GivenFlag {
    /// `--docker-image` or `$DOCKER_IMAGE`, whichever the user wrote.
    pub fn spelled(&self) -> String {
        match (self.source, self.row.env) {
            (Source::Env, Some(env)) => format!("${env}"),
            _ => format!("--{}", self.row.long),
        }
    }
}

/// The table flags given on one command line.
#[derive(Clone, Default)]
pub struct Given {
    pub flags: Vec<GivenFlag>,
}

impl Given {
    fn collect(m: &ArgMatches, command: &str) -> Given {
        let mut flags = Vec::new();
        for row in rows(command) {
            // Rows a typed field defines were not added here: clap reports them as unknown ids.
            let Ok(Some(raw)) = m.try_get_raw(row.long) else {
                continue;
            };
            let source = match m.value_source(row.long) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env,
                _ => continue,
            };
            let values = raw.map(|v| v.to_string_lossy().into_owned()).collect();
            flags.push(GivenFlag { row, source, values });
        }
        Given { flags }
    }

    /// The given flag with this long name.
    pub fn get(&self, long: &str) -> Option<&GivenFlag> {
        self.flags.iter().find(|f| f.row.long == long)
    }
}

// Values may be secrets (`--cache-s3-secret-key`, `--ssh-password`): Debug names the flags only.
impl fmt::Debug for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.flags.iter().map(|g| g.row.long))
            .finish()
    }
}

fn already_defined(cmd: &Command, row: &FlagRow) -> bool {
    cmd.get_arguments().any(|a| {
        a.get_long() == Some(row.long)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&row.long))
    })
}

fn short_taken(cmd: &Command, c: char) -> bool {
    cmd.get_arguments().any(|a| a.get_short() == Some(c))
}

fn help_for(row: &FlagRow) -> String {
    let mut help = if row.config_key.is_empty() {
        String::from("gitlab-runner flag")
    } else {
        format!("sets `{}` of [[runners]]", row.config_key)
    };
    match row.kind {
        Kind::List(_) => help.push_str("; repeat for more values"),
        Kind::Map(_) | Kind::MapOfLists => help.push_str("; KEY:VALUE, repeat for more"),
        _ => {}
    }
    if let Some(d) = row.default {
        help.push_str(&format!(" (gitlab-runner default {d})"));
    }
    help
}

fn arg_for(row: &FlagRow, short_free: bool) -> Arg {
    let mut arg = Arg::new(row.long)
        .long(row.long)
        .help(help_for(row))
        .help_heading(row.group)
        .hide_env_values(true);
    if let Some(env) = row.env {
        arg = arg.env(env);
    }
    if let (Some(c), true) = (row.short, short_free) {
        arg = arg.short(c);
    }
    match row.kind {
        Kind::Bool => arg
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .action(ArgAction::Set)
            .overrides_with(row.long),
        k if k.repeatable() => arg.num_args(1).action(ArgAction::Append),
        _ => arg
            .num_args(1)
            .action(ArgAction::Set)
            .allow_hyphen_values(true)
            .overrides_with(row.long),
    }
}

fn augment(mut cmd: Command, command: &str) -> Command {
    for row in rows(command) {
        if already_defined(&cmd, &row) {
            continue;
        }
        let short_free = row.short.is_some_and(|c| !short_taken(&cmd, c));
        cmd = cmd.arg(arg_for(&row, short_free));
    }
    cmd
}

macro_rules! flag_set {
    ($(#[$doc:meta])* $name:ident, $command:literal) => {
        $(#[$doc])*
        #[derive(Clone, Default, Debug)]
        pub struct $name(pub Given);

        impl FromArgMatches for $name {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                Ok($name(Given::collect(m, $command)))
            }
            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        // Deferred: clap builds a subcommand only when it is the one given (or for help, completion and man
        // pages), so `run` and every other command start without parsing the table into ~700 arguments.
        impl Args for $name {
            fn augment_args(cmd: Command) -> Command {
                cmd.defer(|cmd| augment(cmd, $command))
            }
            fn augment_args_for_update(cmd: Command) -> Command {
                cmd.defer(|cmd| augment(cmd, $command))
            }
        }
    };
}

flag_set!(
    /// `register`'s table flags.
    RegisterFlags,
    "register"
);
flag_set!(
    /// `run-single`'s table flags.
    RunSingleFlags,
    "run-single"
);
