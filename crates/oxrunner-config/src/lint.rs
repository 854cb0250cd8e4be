//! Finds keys gitlab-runner does not know, with their position, by walking the parsed
//! document against the key sets of the typed sections.
//!
//! The key sets come from the serde derives themselves (see [`fields_of`]), so a field added to
//! a section struct is known here without a second list to keep in sync. Only the nesting
//! (which key opens which section) is written down, in [`ROOT`].

use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::model::cache::{CacheAzureConfig, CacheConfig, CacheGcsConfig, CacheS3Config};
use crate::model::docker::{DockerConfig, DockerService};
use crate::model::global::{Config, SessionServer};
use crate::model::runner::RunnerConfig;
use crate::model::sections::{ArtifactConfig, CustomBuildDir, CustomConfig};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Every key of the document with where it and its value are.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: Vec<Seg>,
    pub key_span: Option<Range<usize>>,
    pub value_span: Option<Range<usize>>,
}

/// `runners[0].docker.volumes`
pub(crate) fn full_key(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `runners.docker.volumes`: the form gitlab-runner's docs and lint messages use.
pub(crate) fn plain_key(path: &[Seg]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Lists every key in `doc` (tables, array-of-tables elements and inline tables included).
pub(crate) fn collect_entries(doc: &toml_edit::Table) -> Vec<Entry> {
    let mut out = Vec::new();
    walk_table(doc, &mut Vec::new(), &mut out);
    out
}

fn walk_table(table: &toml_edit::Table, path: &mut Vec<Seg>, out: &mut Vec<Entry>) {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        path.push(Seg::Key(name.to_owned()));
        out.push(Entry {
            path: path.clone(),
            key_span: key.span(),
            value_span: item.span(),
        });
        walk_item(item, path, out);
        path.pop();
    }
}

fn walk_item(item: &toml_edit::Item, path: &mut Vec<Seg>, out: &mut Vec<Entry>) {
    match item {
        toml_edit::Item::Table(t) => walk_table(t, path, out),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                walk_table(t, path, out);
                path.pop();
            }
        }
        toml_edit::Item::Value(v) => walk_value(v, path, out),
        toml_edit::Item::None => {}
    }
}

fn walk_value(value: &toml_edit::Value, path: &mut Vec<Seg>, out: &mut Vec<Entry>) {
    match value {
        toml_edit::Value::InlineTable(t) => {
            for (name, _) in t.iter() {
                let Some((key, item)) = t.get_key_value(name) else {
                    continue;
                };
                path.push(Seg::Key(name.to_owned()));
                out.push(Entry {
                    path: path.clone(),
                    key_span: key.span(),
                    value_span: item.span(),
                });
                walk_item(item, path, out);
                path.pop();
            }
        }
        toml_edit::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if matches!(v, toml_edit::Value::InlineTable(_)) {
                    path.push(Seg::Index(i));
                    walk_value(v, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// How a key's content is checked.
#[derive(Clone, Copy)]
enum Shape {
    /// A typed section whose keys are checked.
    Section(&'static Section),
    /// A list of typed sections (`[[runners]]`).
    List(&'static Section),
}

struct Section {
    /// Keys of the section; keys not listed in `children` are not looked into (maps such as
    /// `labels`, and tables kept verbatim such as `[runners.autoscaler]`).
    fields: fn() -> &'static [&'static str],
    children: &'static [(&'static str, Shape)],
}

static ROOT: Section = Section {
    fields: fields_of::<Config>,
    children: &[
        ("session_server", Shape::Section(&SESSION_SERVER)),
        ("runners", Shape::List(&RUNNER)),
    ],
};
static SESSION_SERVER: Section = Section {
    fields: fields_of::<SessionServer>,
    children: &[],
};
static RUNNER: Section = Section {
    fields: fields_of::<RunnerConfig>,
    children: &[
        ("docker", Shape::Section(&DOCKER)),
        ("cache", Shape::Section(&CACHE)),
        ("custom", Shape::Section(&CUSTOM)),
        ("custom_build_dir", Shape::Section(&CUSTOM_BUILD_DIR)),
        ("artifact", Shape::Section(&ARTIFACT)),
        ("kubernetes", Shape::Section(&KUBERNETES)),
    ],
};
static KUBERNETES: Section = Section {
    fields: kubernetes_keys,
    children: &[],
};
static DOCKER: Section = Section {
    fields: fields_of::<DockerConfig>,
    children: &[("services", Shape::List(&DOCKER_SERVICE))],
};
static DOCKER_SERVICE: Section = Section {
    fields: fields_of::<DockerService>,
    children: &[],
};
static CACHE: Section = Section {
    fields: fields_of::<CacheConfig>,
    children: &[
        ("s3", Shape::Section(&CACHE_S3)),
        ("gcs", Shape::Section(&CACHE_GCS)),
        ("azure", Shape::Section(&CACHE_AZURE)),
    ],
};
static CACHE_S3: Section = Section {
    fields: fields_of::<CacheS3Config>,
    children: &[],
};
static CACHE_GCS: Section = Section {
    fields: fields_of::<CacheGcsConfig>,
    children: &[],
};
static CACHE_AZURE: Section = Section {
    fields: fields_of::<CacheAzureConfig>,
    children: &[],
};
static CUSTOM: Section = Section {
    fields: fields_of::<CustomConfig>,
    children: &[],
};
static CUSTOM_BUILD_DIR: Section = Section {
    fields: fields_of::<CustomBuildDir>,
    children: &[],
};
static ARTIFACT: Section = Section {
    fields: fields_of::<ArtifactConfig>,
    children: &[],
};

fn kubernetes_keys() -> &'static [&'static str] {
    crate::model::kubernetes::KNOWN_KEYS
}

/// An unknown key and a close known spelling, if any.
pub(crate) struct Unknown {
    pub suggestion: Option<&'static str>,
}

/// Checks the last key of `path`. `None` = known, or below a key that is itself unknown or
/// not looked into (that key gets its own warning or none at all).
pub(crate) fn check_path(path: &[Seg]) -> Option<Unknown> {
    let mut section: &Section = &ROOT;
    for (i, seg) in path.iter().enumerate() {
        let Seg::Key(key) = seg else {
            // Indices only appear below lists; the list's element section is already selected.
            continue;
        };
        let last = i + 1 == path.len();
        if let Some((_, shape)) = section.children.iter().find(|(k, _)| k == key) {
            if last {
                return None;
            }
            section = match shape {
                Shape::Section(s) | Shape::List(s) => s,
            };
            continue;
        }
        if (section.fields)().contains(&key.as_str()) {
            return None;
        }
        return last.then(|| Unknown {
            suggestion: suggest(key, section),
        });
    }
    None
}

fn suggest(key: &str, section: &Section) -> Option<&'static str> {
    let candidates = (section.fields)()
        .iter()
        .copied()
        .chain(section.children.iter().map(|(k, _)| *k));
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d > 0 && *d <= 2.max(key.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The key names a serde-derived struct accepts, captured from the `fields` argument the
/// derive passes to `deserialize_struct`.
fn fields_of<T: Deserialize<'static>>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(ProbeError(Some(fields))) => fields,
        _ => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
struct ProbeError(Option<&'static [&'static str]>);

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        ProbeError(None)
    }
}

impl<'de> Deserializer<'de> for FieldProbe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(ProbeError(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(ProbeError(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(parts: &[&str]) -> Vec<Seg> {
        parts
            .iter()
            .map(|p| match p.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key((*p).to_owned()),
            })
            .collect()
    }

    #[test]
    fn probe_sees_renamed_fields() {
        let runner = fields_of::<RunnerConfig>();
        assert!(runner.contains(&"tls-ca-file"));
        assert!(runner.contains(&"executor"));
        let cache = fields_of::<CacheConfig>();
        assert!(cache.contains(&"MaxUploadedArchiveSize"));
        assert!(fields_of::<CacheS3Config>().contains(&"ServerSideEncryptionKeyID"));
    }

    #[test]
    fn known_and_unknown_paths() {
        assert!(check_path(&keys(&["concurrent"])).is_none());
        assert!(check_path(&keys(&["runners", "0", "docker", "volumes"])).is_none());
        assert!(check_path(&keys(&["runners", "0", "docker", "services", "1", "alias"])).is_none());
        assert!(check_path(&keys(&["runners", "0", "autoscaler", "policy", "0", "x"])).is_none());
        assert!(check_path(&keys(&["runners", "0", "labels", "anything"])).is_none());
        assert!(check_path(&keys(&["runners", "0", "kubernetes", "volumes", "pvc", "0", "x"])).is_none());
        assert!(
            check_path(&keys(&[
                "runners",
                "0",
                "kubernetes",
                "build_container_security_context"
            ]))
            .is_none()
        );
        let u = check_path(&keys(&["runners", "0", "kubernetes", "namespce"]));
        assert_eq!(u.and_then(|u| u.suggestion), Some("namespace"));
        let u = check_path(&keys(&["runners", "0", "docker", "colume"]));
        assert!(u.is_some());
        let u = check_path(&keys(&["runners", "0", "buids_dir"]));
        assert_eq!(u.and_then(|u| u.suggestion), Some("builds_dir"));
        // Below an unknown key only the unknown key itself is reported.
        assert!(check_path(&keys(&["runner", "kubernetes"])).is_none());
        assert!(check_path(&keys(&["runner"])).is_some());
    }
}
