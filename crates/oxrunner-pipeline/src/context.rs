//! The pipeline context: which commit, ref and event a pipeline is created for, and the predefined
//! variables GitLab derives from it. `from_git` fills it from a working copy for a push pipeline; tag,
//! merge-request and schedule pipelines are simulated by changing `source` and the related fields.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::PipelineError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PipelineSource {
    #[default]
    Push,
    Tag,
    MergeRequest,
    Schedule,
    Web,
    Api,
    /// Created with a pipeline trigger token (`CI_PIPELINE_TRIGGERED`).
    Trigger,
    /// A child pipeline created by a `trigger:include` job.
    ParentPipeline,
}

impl PipelineSource {
    /// The value of `CI_PIPELINE_SOURCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineSource::Push | PipelineSource::Tag => "push",
            PipelineSource::MergeRequest => "merge_request_event",
            PipelineSource::Schedule => "schedule",
            PipelineSource::Web => "web",
            PipelineSource::Api => "api",
            PipelineSource::Trigger => "trigger",
            PipelineSource::ParentPipeline => "parent_pipeline",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeRequest {
    pub iid: u64,
    pub source_branch: String,
    pub target_branch: String,
    pub title: String,
    /// `CI_MERGE_REQUEST_LABELS`, in the order given.
    pub labels: Vec<String>,
    /// `CI_MERGE_REQUEST_DIFF_BASE_SHA`: the merge base of the source and target branches.
    pub diff_base_sha: Option<String>,
}

#[derive(Clone, Default)]
pub struct PipelineContext {
    pub project_dir: PathBuf,
    /// Relative to `project_dir` unless absolute. Default `.gitlab-ci.yml`.
    pub ci_file: PathBuf,
    pub source: PipelineSource,
    /// Branch name, or the tag name for `PipelineSource::Tag` or when `ref_is_tag`.
    pub ref_name: Option<String>,
    /// A web, API, schedule or trigger pipeline run for a tag (`PipelineSource::Tag` is the tag push).
    pub ref_is_tag: bool,
    /// Branch pipelines of a branch with an open merge request see it in `CI_OPEN_MERGE_REQUESTS`.
    pub open_merge_request: Option<u64>,
    pub sha: Option<String>,
    pub before_sha: Option<String>,
    /// CLI `--variable K=V`: highest precedence.
    pub variables: Vec<(String, String)>,
    /// `spec:inputs` values for the main file (`--input K=V`).
    pub inputs: Vec<(String, String)>,
    pub default_branch: Option<String>,
    pub remote_url: Option<String>,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub commit_timestamp: Option<String>,
    pub merge_request: Option<MergeRequest>,
    pub pipeline_id: u64,
    pub pipeline_iid: u64,
    /// Files considered changed by `rules:changes`/`only:changes`. `None`: computed with git.
    pub changed_files: Option<Vec<String>>,
    /// Refuse `include:remote` instead of fetching it.
    pub offline: bool,
}

/// CLI variables and inputs may hold secrets: `Debug` lists their names only.
impl std::fmt::Debug for PipelineContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("PipelineContext")
            .field("project_dir", &self.project_dir)
            .field("ci_file", &self.ci_file)
            .field("source", &self.source)
            .field("ref_name", &self.ref_name)
            .field("sha", &self.sha)
            .field("variables", &keys(&self.variables))
            .field("inputs", &keys(&self.inputs))
            .field("default_branch", &self.default_branch)
            .field("merge_request", &self.merge_request)
            .field("pipeline_id", &self.pipeline_id)
            .field("pipeline_iid", &self.pipeline_iid)
            .field("offline", &self.offline)
            .finish_non_exhaustive()
    }
}

const NULL_SHA: &str = "0000000000000000000000000000000000000000";

impl PipelineContext {
    /// A context with defaults and no git: useful for tests and for `resolve_str`.
    pub fn new(project_dir: &Path) -> PipelineContext {
        PipelineContext {
            project_dir: project_dir.to_path_buf(),
            ci_file: PathBuf::from(".gitlab-ci.yml"),
            pipeline_id: 1,
            pipeline_iid: 1,
            ..PipelineContext::default()
        }
    }

    /// Read HEAD, branch, remote and default branch from git for a push pipeline.
    pub fn from_git(project_dir: &Path) -> Result<PipelineContext, PipelineError> {
        let mut ctx = PipelineContext::new(project_dir);
        // The four queries are independent: run them concurrently, `--list` should feel instant.
        let mut out = git_many(
            project_dir,
            &[
                &["log", "-1", "--format=%H%x00%an <%ae>%x00%cI%x00%B"],
                &["symbolic-ref", "-q", "--short", "HEAD"],
                &["remote", "get-url", "origin"],
                &["symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD"],
            ],
        )
        .into_iter();
        let log = out.next().unwrap_or_else(|| Err(PipelineError::pipeline("git")));
        let log = log.map_err(|e| match e {
            PipelineError::Git { message, hint, .. } => PipelineError::Git {
                args: "rev-parse HEAD".into(),
                message,
                hint,
            },
            other => other,
        })?;
        let mut parts = log.splitn(4, '\0');
        ctx.sha = parts.next().map(str::to_string).filter(|s| !s.is_empty());
        ctx.commit_author = parts.next().map(str::to_string);
        ctx.commit_timestamp = parts.next().map(str::to_string);
        ctx.commit_message = parts.next().map(str::to_string);
        ctx.ref_name = out.next().and_then(Result::ok);
        ctx.remote_url = out.next().and_then(Result::ok);
        ctx.default_branch = out
            .next()
            .and_then(Result::ok)
            .map(|s| s.strip_prefix("origin/").map(str::to_string).unwrap_or(s));
        Ok(ctx)
    }

    pub fn ci_path(&self) -> PathBuf {
        if self.ci_file.as_os_str().is_empty() {
            self.project_dir.join(".gitlab-ci.yml")
        } else {
            self.project_dir.join(&self.ci_file)
        }
    }

    pub fn default_branch(&self) -> String {
        self.default_branch.clone().unwrap_or_else(|| "main".into())
    }

    /// True for pipelines that run for a tag (`CI_COMMIT_TAG` set, no `CI_COMMIT_BRANCH`).
    pub fn is_tag(&self) -> bool {
        self.source == PipelineSource::Tag || (self.ref_is_tag && self.source != PipelineSource::MergeRequest)
    }

    fn branch(&self) -> String {
        self.ref_name.clone().unwrap_or_else(|| self.default_branch())
    }

    /// Predefined pipeline-level variables, in the order GitLab sends them.
    pub fn predefined(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, val: String| v.push((k.to_string(), val));
        let project = ProjectInfo::from_remote(self.remote_url.as_deref(), &self.project_dir);
        let sha = self.sha.clone().unwrap_or_else(|| NULL_SHA.to_string());
        let ref_name = match (&self.source, &self.merge_request) {
            (PipelineSource::MergeRequest, Some(mr)) => mr.source_branch.clone(),
            _ => self.branch(),
        };
        put("CI", "true".into());
        put("GITLAB_CI", "true".into());
        put("CI_SERVER_URL", project.server_url.clone());
        put("CI_SERVER_HOST", project.host.clone());
        put("CI_SERVER_PORT", project.port.to_string());
        put("CI_SERVER_PROTOCOL", project.scheme.clone());
        put("CI_SERVER_NAME", "GitLab".into());
        put("CI_PROJECT_ID", "1".into());
        put("CI_PROJECT_NAME", project.name.clone());
        put("CI_PROJECT_TITLE", project.name.clone());
        put("CI_PROJECT_PATH", project.path.clone());
        put("CI_PROJECT_PATH_SLUG", slug(&project.path, usize::MAX));
        put("CI_PROJECT_NAMESPACE", project.namespace.clone());
        put("CI_PROJECT_ROOT_NAMESPACE", project.root_namespace.clone());
        put(
            "CI_PROJECT_URL",
            format!("{}/{}", project.server_url, project.path),
        );
        put("CI_PROJECT_VISIBILITY", "private".into());
        put(
            "CI_REPOSITORY_URL",
            format!("{}/{}.git", project.server_url, project.path),
        );
        put("CI_DEFAULT_BRANCH", self.default_branch());
        put("CI_CONFIG_PATH", self.ci_file_name());
        put("CI_PIPELINE_ID", self.pipeline_id.to_string());
        put("CI_PIPELINE_IID", self.pipeline_iid.to_string());
        put("CI_PIPELINE_SOURCE", self.source.as_str().into());
        put(
            "CI_PIPELINE_URL",
            format!(
                "{}/{}/-/pipelines/{}",
                project.server_url, project.path, self.pipeline_id
            ),
        );
        put("CI_COMMIT_SHA", sha.clone());
        put("CI_COMMIT_SHORT_SHA", sha.chars().take(8).collect());
        put(
            "CI_COMMIT_BEFORE_SHA",
            self.before_sha.clone().unwrap_or_else(|| NULL_SHA.into()),
        );
        put("CI_COMMIT_REF_NAME", ref_name.clone());
        put("CI_COMMIT_REF_SLUG", slug(&ref_name, 63));
        put("CI_COMMIT_REF_PROTECTED", "false".into());
        if self.is_tag() {
            put("CI_COMMIT_TAG", ref_name.clone());
        } else if self.source != PipelineSource::MergeRequest {
            put("CI_COMMIT_BRANCH", ref_name.clone());
        }
        if self.source == PipelineSource::Trigger {
            put("CI_PIPELINE_TRIGGERED", "true".into());
        }
        let message = self.commit_message.clone().unwrap_or_default();
        let title = message.lines().next().unwrap_or_default().to_string();
        let description = message
            .split_once('\n')
            .map(|(_, rest)| rest.trim_start_matches('\n').to_string())
            .unwrap_or_default();
        put("CI_COMMIT_MESSAGE", message.clone());
        put("CI_COMMIT_TITLE", title);
        put("CI_COMMIT_DESCRIPTION", description);
        if let Some(a) = &self.commit_author {
            put("CI_COMMIT_AUTHOR", a.clone());
        }
        if let Some(t) = &self.commit_timestamp {
            put("CI_COMMIT_TIMESTAMP", t.clone());
        }
        if let (PipelineSource::MergeRequest, Some(mr)) = (&self.source, &self.merge_request) {
            put("CI_MERGE_REQUEST_ID", mr.iid.to_string());
            put("CI_MERGE_REQUEST_IID", mr.iid.to_string());
            put("CI_MERGE_REQUEST_TITLE", mr.title.clone());
            put("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", mr.source_branch.clone());
            put("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", mr.target_branch.clone());
            put("CI_MERGE_REQUEST_EVENT_TYPE", "detached".into());
            put("CI_MERGE_REQUEST_PROJECT_PATH", project.path.clone());
            put(
                "CI_MERGE_REQUEST_PROJECT_URL",
                format!("{}/{}", project.server_url, project.path),
            );
            put(
                "CI_MERGE_REQUEST_REF_PATH",
                format!("refs/merge-requests/{}/head", mr.iid),
            );
            put("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH", project.path.clone());
            put(
                "CI_MERGE_REQUEST_SOURCE_PROJECT_URL",
                format!("{}/{}", project.server_url, project.path),
            );
            // GitLab fills the two branch SHAs only in merged-results pipelines; a plain MR pipeline has them empty.
            put("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA", String::new());
            put("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", String::new());
            if let Some(base) = &mr.diff_base_sha {
                put("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.clone());
            }
            if !mr.labels.is_empty() {
                put("CI_MERGE_REQUEST_LABELS", mr.labels.join(","));
            }
        }
        // GitLab sets it in branch and MR pipelines of a source branch with open merge requests.
        let open_mr = match (&self.source, &self.merge_request, self.open_merge_request) {
            (PipelineSource::MergeRequest, Some(mr), _) => Some(mr.iid),
            (_, _, Some(iid)) if !self.is_tag() => Some(iid),
            _ => None,
        };
        if let Some(iid) = open_mr {
            put("CI_OPEN_MERGE_REQUESTS", format!("{}!{iid}", project.path));
        }
        put("GITLAB_USER_LOGIN", "local".into());
        v
    }

    fn ci_file_name(&self) -> String {
        if self.ci_file.as_os_str().is_empty() {
            ".gitlab-ci.yml".into()
        } else {
            self.ci_file.to_string_lossy().into_owned()
        }
    }
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String, PipelineError> {
    git_many(dir, &[args])
        .pop()
        .unwrap_or_else(|| Err(PipelineError::pipeline("git")))
}

fn git_error(args: &[&str], message: String, dir: &Path) -> PipelineError {
    PipelineError::Git {
        args: args.join(" "),
        message,
        hint: Some(format!(
            "run oxrunner in a git working copy (is {} a repository with at least one commit?)",
            dir.display()
        )),
    }
}

/// Run several git commands concurrently; results in the same order.
pub(crate) fn git_many(dir: &Path, cmds: &[&[&str]]) -> Vec<Result<String, PipelineError>> {
    let children: Vec<_> = cmds
        .iter()
        .map(|args| {
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(*args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect();
    children
        .into_iter()
        .zip(cmds)
        .map(|(child, args)| {
            let out = child
                .and_then(std::process::Child::wait_with_output)
                .map_err(|e| PipelineError::Git {
                    args: args.join(" "),
                    message: e.to_string(),
                    hint: Some("install git and make sure it is on PATH".into()),
                })?;
            if !out.status.success() {
                let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
                return Err(git_error(args, msg, dir));
            }
            let s = String::from_utf8_lossy(&out.stdout);
            Ok(s.trim_end_matches('\n').to_string())
        })
        .collect()
}

/// `CI_COMMIT_REF_SLUG` rules: lowercase, anything outside `[a-z0-9]` becomes `-`, trimmed to `max`,
/// no leading or trailing `-`.
pub fn slug(s: &str, max: usize) -> String {
    let mut out: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if out.len() > max {
        out.truncate(max);
    }
    out.trim_matches('-').to_string()
}

struct ProjectInfo {
    server_url: String,
    scheme: String,
    host: String,
    port: u16,
    path: String,
    name: String,
    namespace: String,
    root_namespace: String,
}

impl ProjectInfo {
    fn from_remote(remote: Option<&str>, dir: &Path) -> ProjectInfo {
        let parsed = remote.and_then(parse_remote);
        let (scheme, host, port, path) = parsed.unwrap_or_else(|| {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "project".into());
            (
                "https".into(),
                "gitlab.example.com".into(),
                443,
                format!("local/{name}"),
            )
        });
        let (namespace, name) = match path.rsplit_once('/') {
            Some((ns, n)) => (ns.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        let root_namespace = namespace.split('/').next().unwrap_or_default().to_string();
        let default_port = if scheme == "http" { 80 } else { 443 };
        let server_url = if port == default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        ProjectInfo {
            server_url,
            scheme,
            host,
            port,
            path,
            name,
            namespace,
            root_namespace,
        }
    }
}

/// `git@host:group/proj.git`, `ssh://git@host:2222/group/proj.git`, `https://host/group/proj.git`.
fn parse_remote(remote: &str) -> Option<(String, String, u16, String)> {
    let strip = |p: &str| {
        p.trim_matches('/')
            .trim_end_matches(".git")
            .trim_matches('/')
            .to_string()
    };
    if let Ok(u) = url::Url::parse(remote) {
        let host = u.host_str()?.to_string();
        let path = strip(u.path());
        if path.is_empty() {
            return None;
        }
        // An ssh remote tells us nothing about the web port: assume https.
        return Some(match u.scheme() {
            "http" | "https" => (
                u.scheme().to_string(),
                host,
                u.port_or_known_default().unwrap_or(443),
                path,
            ),
            _ => ("https".into(), host, 443, path),
        });
    }
    let (userhost, path) = remote.split_once(':')?;
    let host = userhost.rsplit('@').next()?.to_string();
    let path = strip(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(("https".into(), host, 443, path))
}
