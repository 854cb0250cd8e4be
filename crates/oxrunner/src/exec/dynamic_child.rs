//! Dynamic child pipelines (`trigger: include: - artifact: FILE, job: GENERATOR`): when the trigger job runs, its
//! child pipeline's configuration is read from FILE in the artifacts archive GENERATOR left in the local store,
//! and resolved the way GitLab resolves it when it creates the downstream pipeline (merged with the list's other
//! entries, `local`, `project`, ..., when there are any).

use std::io::Read;

use oxrunner_pipeline::{ArtifactFile, DynamicChild, Pipeline};

use super::job::{Env, JobSpec, archive_in};
use crate::hooks::LocalTransport;

/// GitLab's `max_yaml_size_bytes` default: a bigger configuration is refused before it is parsed.
const MAX_CONFIG_BYTES: u64 = 2 * 1024 * 1024;

/// The child pipeline of `spec` from its generators' artifacts, or the message the trigger job fails with.
pub async fn load(env: &Env, spec: &JobSpec, dynamic: &DynamicChild) -> Result<Pipeline, String> {
    let mut texts = Vec::with_capacity(dynamic.files.len());
    for file in &dynamic.files {
        texts.push(read_file(env, spec, file).await?);
    }
    let dynamic = dynamic.clone();
    tokio::task::spawn_blocking(move || dynamic.resolve(&texts))
        .await
        .map_err(|e| format!("resolving the child pipeline stopped: {e}"))?
        .map_err(|e| e.to_string())
}

/// One `artifact:` entry's text, from the archive its generator left in the local store.
async fn read_file(env: &Env, spec: &JobSpec, file: &ArtifactFile) -> Result<String, String> {
    let not_found = || DynamicChild::not_found(file);
    let Some((id, name, _)) = spec.deps.iter().find(|(_, n, _)| *n == file.job) else {
        return Err(not_found());
    };
    let store = LocalTransport::new(env.artifacts(), spec.id, spec.job.name.clone());
    let dir = store.job_dir(*id, name).join("archive");
    let archive = archive_in(&dir).ok_or_else(not_found)?;
    let path = dir.join(&archive.filename);
    let (entry, generator) = (file.artifact.clone(), file.job.clone());
    tokio::task::spawn_blocking(move || read_entry(&path, &entry, &generator))
        .await
        .map_err(|e| format!("reading the artifact stopped: {e}"))?
}

/// One regular file of a zip archive, as text; links and oversized files are refused. Messages are GitLab's
/// (`Gitlab::Ci::ArtifactFileReader` and the artifact include).
fn read_entry(archive: &std::path::Path, name: &str, generator: &str) -> Result<String, String> {
    let missing = || format!("Path `{name}` does not exist inside the `{generator}` artifacts archive!");
    let directory = || format!("Path `{name}` was expected to be a file but it was a directory!");
    let file = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{}: not a zip archive: {e}", archive.display()))?;
    let inner = name.trim_start_matches("./");
    let as_dir = format!("{}/", inner.trim_end_matches('/'));
    if inner.ends_with('/') || zip.index_for_name(&as_dir).is_some() {
        return Err(if zip.index_for_name(&as_dir).is_some() {
            directory()
        } else {
            missing()
        });
    }
    let entry = zip.by_name(inner).map_err(|_| missing())?;
    if entry.is_dir() {
        return Err(directory());
    }
    if entry.is_symlink() || !entry.is_file() {
        return Err(format!("`{name}` in the artifacts is not a regular file"));
    }
    if entry.size() > MAX_CONFIG_BYTES {
        return Err(format!(
            "`{name}` is larger than {MAX_CONFIG_BYTES} bytes (GitLab's max_yaml_size_bytes)"
        ));
    }
    let mut bytes = Vec::new();
    entry
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading `{name}` from {}: {e}", archive.display()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(missing());
    }
    if bytes.is_empty() {
        return Err(format!("File `{name}` is empty!"));
    }
    String::from_utf8(bytes).map_err(|_| format!("`{name}` is not UTF-8 text"))
}
