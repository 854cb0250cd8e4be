//! `cache:key` as a hash (`files`, `files_commits`, `prefix`), computed as current GitLab does it
//! (`Gitlab::Ci::Pipeline::Seed::Build::Cache` after GitLab merge request 203233, 2025): `files` hashes the
//! files' contents (the SHA-1 of their sorted git blob ids joined by `-`); `files_commits` keeps the older form,
//! the ids of the last commits that changed them. GitLab reads the blobs at the pipeline's commit; a local run
//! hashes the files the jobs see (the working tree), which gives the same key whenever they are committed. A key
//! that cannot be computed is `default`, as on GitLab, and said so in a warning.

use std::io::Read;
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::context::PipelineContext;
use crate::error::{Loc, PipelineError, Warning};
use crate::payload::strings;
use crate::yaml::{Map, Val};

/// GitLab's default limit on `cache:key:files` entries (`increase_ci_cache_key_files_limit` is off by default).
const MAX_FILES: usize = 2;

/// The key for `key: {files | files_commits, prefix}`; `notices` receives the reason when it falls back.
pub(crate) fn files_key(
    km: &Map,
    index: usize,
    ctx: &PipelineContext,
    loc: &Loc,
    path: &str,
    notices: &mut Vec<Warning>,
) -> Result<String, PipelineError> {
    let list = |k: &str| -> Result<Option<Vec<String>>, PipelineError> {
        let Some(n) = km.get(k) else {
            return Ok(None);
        };
        let raw = strings(n, &format!("{path}:key:{k}"))?;
        if raw.len() > MAX_FILES {
            return Err(PipelineError::at(
                &n.loc,
                format!("{path}:key:{k} config has too many items (maximum is {MAX_FILES})"),
            ));
        }
        let mut v: Vec<String> = Vec::new();
        for f in raw {
            let f = f.trim_start_matches('/').to_string();
            if !f.is_empty() && !v.contains(&f) {
                v.push(f);
            }
        }
        Ok(Some(v))
    };
    let (kind, digest, files) = if let Some(files) = list("files")? {
        ("files", content_digest(ctx, &files, loc)?, files)
    } else if let Some(files) = list("files_commits")? {
        ("files_commits", commits_digest(ctx, &files), files)
    } else {
        ("files", None, Vec::new())
    };
    let prefix = match km.get("prefix") {
        Some(n) if !matches!(n.val, Val::Null) => n.scalar_string().unwrap_or_default(),
        _ => default_prefix(km, index),
    };
    let digest = digest.unwrap_or_else(|| {
        let named = files
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let why = if kind == "files" {
            "missing from the repository"
        } else {
            "missing from the history of the pipeline's commit"
        };
        notices.push(Warning::at(
            loc,
            format!("{path}:key:{kind}: {named} {why}; the cache key falls back to `default`, as on GitLab"),
        ));
        "default".to_string()
    });
    Ok(if prefix.is_empty() {
        digest
    } else {
        format!("{prefix}-{digest}")
    })
}

/// GitLab's prefix when `key:prefix` is not given (`Gitlab::Ci::Build::Cache#cache_prefix`, the fix for GitLab
/// issue 388374): the cache's index in the job's list, so two caches keyed on the same files stay apart, followed
/// for `files` by each entry's name up to its first dot (`0_Gemfile_package`). The raw entries are used, as
/// GitLab does, before any normalisation.
fn default_prefix(km: &Map, index: usize) -> String {
    let names: Vec<String> = km
        .get("files")
        .and_then(|n| strings(n, "").ok())
        .unwrap_or_default()
        .iter()
        .map(|f| f.split('.').next().unwrap_or_default().to_string())
        .collect();
    if names.is_empty() {
        index.to_string()
    } else {
        format!("{index}_{}", names.join("_"))
    }
}

fn digest_of(mut ids: Vec<String>) -> Option<String> {
    ids.sort();
    ids.dedup();
    (!ids.is_empty()).then(|| hex::encode(Sha1::digest(ids.join("-").as_bytes())))
}

/// Blob ids of the files the patterns name (a pattern with `*` is matched against the repository's files).
fn content_digest(
    ctx: &PipelineContext,
    patterns: &[String],
    loc: &Loc,
) -> Result<Option<String>, PipelineError> {
    let root = &ctx.project_dir;
    let mut paths: Vec<String> = Vec::new();
    for p in patterns {
        if p.contains('*') {
            paths.extend(crate::wildcard::files_matching(root, p, loc)?);
        } else {
            paths.push(p.clone());
        }
    }
    let ids = paths
        .iter()
        .filter(|p| !p.split('/').any(|c| c == ".." || c == "." || c == ".git"))
        .filter_map(|p| blob_id(&root.join(p)))
        .collect();
    Ok(digest_of(ids))
}

/// The id git gives the file's content: SHA-1 of `blob <size>\0<bytes>`; a symbolic link is stored as its
/// target, never followed.
fn blob_id(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mut h = Sha1::new();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok()?;
        let bytes = target.as_os_str().as_encoded_bytes();
        h.update(format!("blob {}\0", bytes.len()).as_bytes());
        h.update(bytes);
    } else if meta.is_file() {
        let mut f = std::fs::File::open(path).ok()?;
        h.update(format!("blob {}\0", meta.len()).as_bytes());
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update(&buf[..n]);
        }
        // A file that changed size while it was read would give a key for neither version.
        if total != meta.len() {
            return None;
        }
    } else {
        return None;
    }
    Some(hex::encode(h.finalize()))
}

fn commits_digest(ctx: &PipelineContext, files: &[String]) -> Option<String> {
    let rev = ctx.sha.clone().unwrap_or_else(|| "HEAD".into());
    let ids = files
        .iter()
        .filter_map(|f| {
            crate::context::git(&ctx.project_dir, &["rev-list", "--max-count=1", &rev, "--", f]).ok()
        })
        .filter(|s| !s.is_empty())
        .collect();
    digest_of(ids)
}
