//! The cache and artifact stages as scripts, for executors whose job environment the runner cannot reach
//! (`FileAccess::InScript`): each stage calls this binary's helper commands (`cache-extractor`,
//! `artifacts-downloader`, `cache-archiver`, `artifacts-uploader`) in the project directory, as gitlab-runner's
//! shell writer does. Keys, archive paths and artifact specs are the ones the runner-side hooks use, so both modes
//! share one cache store layout. Nothing secret is written into the script: the helpers read `CI_JOB_TOKEN` from
//! the environment the stage's exports set.

use std::fmt::Write as _;
use std::path::Path;

use oxrunner_archive::CacheStore;
use oxrunner_core::script::words::{notice, print_line, quote, quote_path, warning};
use oxrunner_core::{CachePolicy, CacheSpec, HookError, Stage, StageCtx, TraceWriter, project_slug};

use super::RunnerHooks;
use super::artifacts::attempts;
use super::cache::resolve_key;
use super::remote::RemoteSetup;
use super::remote::flow::presign_for_script;

/// A helper command line: the binary, the command and its arguments, each quoted. Options carry their value as
/// `--flag=value`, so a value starting with `-` (an artifact path `-dist/`) is never read as a flag.
fn command(bin: &Path, name: &str, args: &[String]) -> String {
    let mut line = format!("{} {name}", quote_path(bin));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

/// gitlab-runner's `guardRunnerCommand`: run `body` only when the helper binary answers, else warn that `action`
/// is disabled (the job goes on, as upstream's does).
fn guarded(bin: &Path, action: &str, body: &str) -> String {
    format!(
        "if {} --version >/dev/null 2>&1; then\n{body}else\n{}fi\n",
        quote_path(bin),
        warning(&format!("Missing {}. {action} is disabled.", bin.display()))
    )
}

/// The script body for `ctx.stage`; `None` when the stage has nothing to do.
pub(crate) fn render(
    hooks: &RunnerHooks,
    bin: &Path,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
) -> Result<Option<String>, HookError> {
    let body = match ctx.stage {
        Stage::RestoreCache => restore_cache(hooks, bin, ctx, trace),
        Stage::DownloadArtifacts => download_artifacts(hooks, bin, ctx),
        Stage::ArchiveCache => archive_cache(hooks, bin, ctx, trace, false),
        Stage::ArchiveCacheOnFailure => archive_cache(hooks, bin, ctx, trace, true),
        Stage::UploadArtifactsOnSuccess => upload_artifacts(hooks, bin, ctx, false),
        Stage::UploadArtifactsOnFailure => upload_artifacts(hooks, bin, ctx, true),
        ref other => {
            return Err(HookError::new(format!(
                "the {other} stage has no cache or artifact work to render"
            )));
        }
    };
    Ok((!body.is_empty()).then_some(body))
}

fn has_files(spec: &CacheSpec) -> bool {
    !spec.paths.is_empty() || spec.untracked
}

fn restore_cache(hooks: &RunnerHooks, bin: &Path, ctx: &StageCtx<'_>, trace: &TraceWriter) -> String {
    let slug = project_slug(ctx.plan);
    let mut out = String::new();
    for spec in ctx.plan.caches.iter().filter(|s| has_files(s)) {
        let Some(key) = resolve_key(ctx, &spec.key, trace) else {
            trace.warning("Skipping cache extraction due to empty cache key");
            continue;
        };
        if spec.policy == CachePolicy::Push {
            trace.println(&format!("Not downloading cache {key} due to policy"));
            continue;
        }
        let fallbacks: Vec<String> = spec
            .fallback_keys
            .iter()
            .map(|k| ctx.variables.expand(k))
            .filter(|k| !k.trim().is_empty())
            .collect();
        let global = ctx
            .variables
            .value("CACHE_FALLBACK_KEY")
            .map(|k| ctx.variables.expand(k));
        let (keys, warnings) = CacheStore::keys_in_order(&key, &fallbacks, global.as_deref());
        for w in &warnings {
            trace.warning(w);
        }
        if let RemoteSetup::Broken(message) = &hooks.remote {
            trace.warning(message);
        }
        let files: Vec<(String, String, Option<String>)> = keys
            .into_iter()
            .map(|k| {
                let file = hooks.store_for(ctx).archive_path(&slug, &k);
                let url = match &hooks.remote {
                    RemoteSetup::Ready(r) => {
                        presign_for_script(r, ctx, &k, trace, false).map(|p| p.url.to_string())
                    }
                    _ => None,
                };
                (k, file.to_string_lossy().into_owned(), url)
            })
            .collect();
        // FF_CLEAN_UP_FAILED_CACHE_EXTRACT: a failed extraction may leave half an archive behind; upstream
        // removes the cache's paths (taken literally) before trying the next key. This runs inside the job's
        // own environment, as the job's user, so it can reach nothing the job could not.
        let cleanup: &[String] =
            if oxrunner_core::feature_flags::is_on(ctx.variables, "FF_CLEAN_UP_FAILED_CACHE_EXTRACT") {
                &spec.paths
            } else {
                &[]
            };
        out.push_str(&guarded(
            bin,
            "Extracting cache",
            &extract_chain(bin, &files, cleanup),
        ));
    }
    out
}

/// Tries each key in turn, like upstream's nested `if cache-extractor ...; else <next key>; fi`.
fn extract_chain(bin: &Path, files: &[(String, String, Option<String>)], cleanup: &[String]) -> String {
    let Some(((key, file, url), rest)) = files.split_first() else {
        return String::new();
    };
    let mut out = notice(&format!("Checking cache for {key}..."));
    let _ = writeln!(
        out,
        "if {}{}; then",
        url_env(url.as_deref()),
        command(bin, "cache-extractor", &[format!("--file={file}")])
    );
    out.push_str(&notice("Successfully extracted cache"));
    out.push_str("else\n");
    out.push_str(&warning("Failed to extract cache"));
    for path in cleanup {
        out.push_str(&print_line(&format!("Removing {path}")));
        let _ = writeln!(out, "rm -r -f -- {}", quote(path));
    }
    out.push_str(&extract_chain(bin, rest, cleanup));
    out.push_str("fi\n");
    out
}

/// The signed URL reaches the helper through its environment (`OXRUNNER_CACHE_URL=... oxrunner ...`), never its
/// argv, where any user of the machine could read it with `ps`. Without one the variable is set empty, so a job
/// variable of that name cannot send the runner's cache file elsewhere.
fn url_env(url: Option<&str>) -> String {
    format!("OXRUNNER_CACHE_URL={} ", quote(url.unwrap_or_default()))
}

fn download_artifacts(hooks: &RunnerHooks, bin: &Path, ctx: &StageCtx<'_>) -> String {
    let mut body = String::new();
    for dep in ctx
        .plan
        .dependencies
        .iter()
        .filter(|d| d.artifacts_file.is_some())
    {
        body.push_str(&notice(&format!(
            "Downloading artifacts for {} ({})...",
            dep.name, dep.id
        )));
        let mut args = hooks.transport.helper_download_args(dep);
        // ARTIFACT_DOWNLOAD_ATTEMPTS counts attempts, the helper's --retry counts the ones after the first.
        args.push(format!("--retry={}", attempts(ctx) - 1));
        let _ = writeln!(body, "{}", command(bin, "artifacts-downloader", &args));
    }
    if body.is_empty() {
        return body;
    }
    guarded(bin, "Artifacts downloading", &body)
}

fn archive_cache(
    hooks: &RunnerHooks,
    bin: &Path,
    ctx: &StageCtx<'_>,
    trace: &TraceWriter,
    on_failure: bool,
) -> String {
    let slug = project_slug(ctx.plan);
    let mut out = String::new();
    for spec in &ctx.plan.caches {
        if !spec.when.applies(on_failure) || !has_files(spec) {
            continue;
        }
        let Some(key) = resolve_key(ctx, &spec.key, trace) else {
            trace.warning("Skipping cache archiving due to empty cache key");
            continue;
        };
        if spec.policy == CachePolicy::Pull {
            trace.println(&format!("Not uploading cache {key} due to policy"));
            continue;
        }
        let file = hooks.store_for(ctx).archive_path(&slug, &key);
        let mut args = vec![format!("--file={}", file.display())];
        for p in &spec.paths {
            args.push(format!("--path={p}"));
        }
        if spec.untracked {
            args.push("--untracked".to_owned());
        }
        let mut url = None;
        match &hooks.remote {
            RemoteSetup::Ready(r) => {
                if let Some(signed) = presign_for_script(r, ctx, &key, trace, true) {
                    for (k, v) in &signed.headers {
                        args.push(format!("--header={k}: {v}"));
                    }
                    if let Some(limit) = r.max_upload {
                        args.push(format!("--max-uploaded-archive-size={limit}"));
                    }
                    url = Some(signed.url.to_string());
                }
            }
            RemoteSetup::Broken(message) => trace.warning(message),
            RemoteSetup::None => {}
        }
        let mut body = notice(&format!("Creating cache {key}..."));
        let _ = writeln!(
            body,
            "if {}{}; then",
            url_env(url.as_deref()),
            command(bin, "cache-archiver", &args)
        );
        body.push_str(&notice("Created cache"));
        body.push_str("else\n");
        body.push_str(&warning("Failed to create cache"));
        body.push_str("fi\n");
        out.push_str(&guarded(bin, "Creating cache", &body));
    }
    out
}

fn upload_artifacts(hooks: &RunnerHooks, bin: &Path, ctx: &StageCtx<'_>, on_failure: bool) -> String {
    let mut out = String::new();
    for spec in ctx.plan.artifacts.iter().filter(|a| a.when.applies(on_failure)) {
        if spec.paths.is_empty() && !spec.untracked {
            continue;
        }
        let mut args = hooks.transport.helper_upload_args();
        for p in &spec.paths {
            args.push(format!("--path={}", ctx.variables.expand(p)));
        }
        for p in &spec.exclude {
            args.push(format!("--exclude={}", ctx.variables.expand(p)));
        }
        if spec.untracked {
            args.push("--untracked".to_owned());
        }
        let name = ctx.variables.expand(&spec.name);
        if !name.trim().is_empty() {
            args.push(format!("--name={name}"));
        }
        if let Some(expire) = spec.expire_in.as_ref().filter(|e| !e.trim().is_empty()) {
            args.push(format!("--expire-in={expire}"));
        }
        if !spec.artifact_format.is_empty() {
            args.push(format!("--artifact-format={}", spec.artifact_format));
        }
        if !spec.artifact_type.is_empty() {
            args.push(format!("--artifact-type={}", spec.artifact_type));
        }
        let mut body = notice("Uploading artifacts...");
        let _ = writeln!(body, "{}", command(bin, "artifacts-uploader", &args));
        out.push_str(&guarded(bin, "Uploading artifacts", &body));
    }
    out
}
