//! `rules`, `only`/`except`, `workflow:rules` and `include:rules`, plus the repository facts they look at
//! (`exists`, `changes`).

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::context::{PipelineContext, PipelineSource, git};
use crate::error::{Loc, PipelineError};
use crate::expr::Expr;
use crate::vars::{VarDef, expand_with, parse_defs};
use crate::yaml::{Node, Val};

/// GitLab stops comparing `exists` patterns after this many files.
const MAX_EXISTS_FILES: usize = 50_000;

pub struct Facts<'a> {
    pub ctx: &'a PipelineContext,
    files: OnceCell<Vec<String>>,
    changed: RefCell<HashMap<String, Option<Vec<String>>>>,
}

impl<'a> Facts<'a> {
    pub fn new(ctx: &'a PipelineContext) -> Facts<'a> {
        Facts {
            ctx,
            files: OnceCell::new(),
            changed: RefCell::new(HashMap::new()),
        }
    }

    fn files(&self) -> &[String] {
        self.files.get_or_init(|| {
            let mut out = Vec::new();
            walk(&self.ctx.project_dir, "", &mut out);
            out
        })
    }

    pub fn exists(&self, patterns: &[String], loc: &Loc) -> Result<bool, PipelineError> {
        let matchers = patterns
            .iter()
            .map(|p| glob(p.trim_start_matches('/'), loc))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .files()
            .iter()
            .any(|f| matchers.iter().any(|m| m.is_match(f))))
    }

    /// Changed files against `compare_to` (or the push's before-sha / the default branch). `None`
    /// when nothing can be compared, in which case GitLab treats `changes` as true.
    fn changed(&self, compare_to: Option<&str>) -> Option<Vec<String>> {
        if compare_to.is_none() {
            if let Some(c) = &self.ctx.changed_files {
                return Some(c.clone());
            }
            if matches!(
                self.ctx.source,
                PipelineSource::Schedule
                    | PipelineSource::Web
                    | PipelineSource::Api
                    | PipelineSource::Trigger
                    | PipelineSource::Tag
            ) || self.ctx.is_tag()
            {
                return None;
            }
        }
        let key = compare_to.unwrap_or("").to_string();
        if let Some(v) = self.changed.borrow().get(&key) {
            return v.clone();
        }
        let v = self.compute_changed(compare_to);
        self.changed.borrow_mut().insert(key, v.clone());
        v
    }

    fn compute_changed(&self, compare_to: Option<&str>) -> Option<Vec<String>> {
        let dir = &self.ctx.project_dir;
        let base = match compare_to {
            Some(r) => git(dir, &["merge-base", r, "HEAD"]).ok()?,
            None => match (&self.ctx.before_sha, &self.ctx.merge_request) {
                (Some(b), _) if b.trim_matches('0').is_empty() => return None,
                (Some(b), _) => b.clone(),
                (None, Some(mr)) if self.ctx.source == PipelineSource::MergeRequest => {
                    let target = &mr.target_branch;
                    git(dir, &["merge-base", &format!("origin/{target}"), "HEAD"])
                        .or_else(|_| git(dir, &["merge-base", target, "HEAD"]))
                        .ok()?
                }
                (None, _) => {
                    let default = self.ctx.default_branch();
                    let on_default = self.ctx.ref_name.as_deref() == Some(default.as_str());
                    if on_default {
                        git(dir, &["rev-parse", "HEAD~1"]).ok()?
                    } else {
                        git(dir, &["merge-base", &format!("origin/{default}"), "HEAD"])
                            .or_else(|_| git(dir, &["merge-base", &default, "HEAD"]))
                            .ok()?
                    }
                }
            },
        };
        let mut files: Vec<String> = git(dir, &["diff", "--name-only", &base])
            .ok()?
            .lines()
            .map(str::to_string)
            .collect();
        // Local runs usually test uncommitted work: count untracked files as changed too.
        if let Ok(untracked) = git(dir, &["ls-files", "--others", "--exclude-standard"]) {
            files.extend(untracked.lines().map(str::to_string));
        }
        Some(files)
    }

    pub fn changes(
        &self,
        patterns: &[String],
        compare_to: Option<&str>,
        loc: &Loc,
    ) -> Result<bool, PipelineError> {
        let Some(changed) = self.changed(compare_to) else {
            return Ok(true);
        };
        let matchers = patterns
            .iter()
            .map(|p| glob(p.trim_start_matches('/'), loc))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(changed.iter().any(|f| matchers.iter().any(|m| m.is_match(f))))
    }
}

pub(crate) fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if out.len() >= MAX_EXISTS_FILES {
            return;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        // `.oxrunner` is `oxrunner exec`'s state (ignored by git): its job copies of the repository are not files
        // of the repository.
        if prefix.is_empty() && (name == ".git" || name == ".oxrunner") {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path(), &rel, out),
            Ok(_) => out.push(rel),
            Err(_) => {}
        }
    }
}

/// GitLab matches with `File.fnmatch?(p, f, FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB)`.
pub fn glob(p: &str, loc: &Loc) -> Result<GlobMatcher, PipelineError> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| PipelineError::at(loc, format!("invalid glob pattern `{p}`: {e}")))
}

pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What a matching rule contributes to the job.
#[derive(Clone, Debug, Default)]
pub struct RuleMatch {
    pub when: Option<Node>,
    pub start_in: Option<Node>,
    pub allow_failure: Option<Node>,
    pub variables: Vec<VarDef>,
    pub needs: Option<Node>,
    pub interruptible: Option<Node>,
}

fn str_list(n: &Node, what: &str) -> Result<Vec<String>, PipelineError> {
    match &n.val {
        Val::Str(s) => Ok(vec![s.clone()]),
        Val::Seq(items) => items
            .iter()
            .map(|i| {
                i.scalar_string()
                    .ok_or_else(|| PipelineError::at(&i.loc, format!("{what} should be an array of strings")))
            })
            .collect(),
        _ => Err(PipelineError::at(
            &n.loc,
            format!("{what} should be an array of strings"),
        )),
    }
}

pub fn eval_if(n: &Node, lookup: Lookup<'_>, path: &str) -> Result<bool, PipelineError> {
    let src = n
        .as_str()
        .ok_or_else(|| PipelineError::at(&n.loc, format!("{path}:if should be a string")))?;
    let e = Expr::parse(src).map_err(|e| PipelineError::at(&n.loc, format!("{path}:if {}", e.0)))?;
    e.eval(lookup)
        .map_err(|e| PipelineError::at(&n.loc, format!("{path}:if {}", e.0)))
}

fn eval_changes(n: &Node, facts: &Facts<'_>, lookup: Lookup<'_>, path: &str) -> Result<bool, PipelineError> {
    let (paths, compare_to) = match &n.val {
        Val::Map(m) => {
            let paths = m
                .get("paths")
                .map(|p| str_list(p, &format!("{path}:changes:paths")))
                .transpose()?
                .unwrap_or_default();
            let cmp = m
                .get("compare_to")
                .and_then(Node::scalar_string)
                .map(|c| expand_with(&c, lookup, false));
            (paths, cmp)
        }
        _ => (str_list(n, &format!("{path}:changes"))?, None),
    };
    let paths: Vec<String> = paths.iter().map(|p| expand_with(p, lookup, false)).collect();
    facts.changes(&paths, compare_to.as_deref(), &n.loc)
}

fn eval_exists(n: &Node, facts: &Facts<'_>, lookup: Lookup<'_>, path: &str) -> Result<bool, PipelineError> {
    let paths = match &n.val {
        Val::Map(m) => m
            .get("paths")
            .map(|p| str_list(p, &format!("{path}:exists:paths")))
            .transpose()?
            .unwrap_or_default(),
        _ => str_list(n, &format!("{path}:exists"))?,
    };
    let paths: Vec<String> = paths.iter().map(|p| expand_with(p, lookup, false)).collect();
    facts.exists(&paths, &n.loc)
}

const RULE_KEYS: &[&str] = &[
    "if",
    "changes",
    "exists",
    "when",
    "start_in",
    "allow_failure",
    "variables",
    "needs",
    "interruptible",
];

/// Evaluate `rules`: the first matching rule decides. `Ok(None)` means no rule matched (job not created).
pub fn eval_rules(
    rules: &Node,
    facts: &Facts<'_>,
    lookup: Lookup<'_>,
    path: &str,
) -> Result<Option<RuleMatch>, PipelineError> {
    let list = flatten(rules);
    if !matches!(rules.val, Val::Seq(_)) {
        return Err(PipelineError::at(
            &rules.loc,
            format!("{path} config should be an array of hashes"),
        ));
    }
    for rule in list {
        let Val::Map(m) = &rule.val else {
            return Err(PipelineError::at(
                &rule.loc,
                format!("{path}:rule config should be a hash"),
            ));
        };
        let unknown: Vec<&str> = m
            .keys()
            .filter(|k| !RULE_KEYS.contains(&k.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(PipelineError::at(
                &rule.loc,
                format!("{path}:rule config contains unknown keys: {}", unknown.join(", ")),
            ));
        }
        if let Some(c) = m.get("if")
            && !eval_if(c, lookup, &format!("{path}:rule"))?
        {
            continue;
        }
        if let Some(c) = m.get("changes")
            && !eval_changes(c, facts, lookup, &format!("{path}:rule"))?
        {
            continue;
        }
        if let Some(c) = m.get("exists")
            && !eval_exists(c, facts, lookup, &format!("{path}:rule"))?
        {
            continue;
        }
        let variables = match m.get("variables") {
            Some(v) => parse_defs(v, &format!("{path}:rule:variables"))?,
            None => Vec::new(),
        };
        return Ok(Some(RuleMatch {
            when: m.get("when").cloned(),
            start_in: m.get("start_in").cloned(),
            allow_failure: m.get("allow_failure").cloned(),
            variables,
            needs: m.get("needs").cloned(),
            interruptible: m.get("interruptible").cloned(),
        }));
    }
    Ok(None)
}

/// `rules: [!reference [...], ...]` nests arrays; GitLab flattens them.
pub fn flatten(n: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    fn go<'n>(n: &'n Node, out: &mut Vec<&'n Node>, depth: usize) {
        match &n.val {
            Val::Seq(items) if depth < 10 => {
                for i in items {
                    go(i, out, depth + 1);
                }
            }
            _ => out.push(n),
        }
    }
    match &n.val {
        Val::Seq(items) => {
            for i in items {
                go(i, &mut out, 1);
            }
        }
        _ => out.push(n),
    }
    out
}

/// `only`/`except`. Returns whether the job is created.
pub fn eval_only_except(
    only: Option<&Node>,
    except: Option<&Node>,
    facts: &Facts<'_>,
    lookup: Lookup<'_>,
    job: &str,
) -> Result<bool, PipelineError> {
    let default_only = only.is_none();
    if let Some(o) = only {
        if !policy_matches(o, facts, lookup, &format!("jobs:{job}:only"), true)? {
            return Ok(false);
        }
    } else {
        // GitLab's default is `only: [branches, tags]`, so such jobs are absent from MR pipelines.
        let refs = ["branches".to_string(), "tags".to_string()];
        if !refs_match(&refs, facts.ctx, lookup) {
            return Ok(false);
        }
    }
    let _ = default_only;
    if let Some(e) = except
        && policy_matches(e, facts, lookup, &format!("jobs:{job}:except"), false)?
    {
        return Ok(false);
    }
    Ok(true)
}

fn policy_matches(
    n: &Node,
    facts: &Facts<'_>,
    lookup: Lookup<'_>,
    path: &str,
    is_only: bool,
) -> Result<bool, PipelineError> {
    match &n.val {
        Val::Str(_) | Val::Seq(_) => Ok(refs_match(&str_list(n, path)?, facts.ctx, lookup)),
        Val::Map(m) => {
            for k in m.keys() {
                if !matches!(k.as_str(), "refs" | "variables" | "changes" | "kubernetes") {
                    return Err(PipelineError::at(
                        &n.loc,
                        format!("{path} config contains unknown keys: {k}"),
                    ));
                }
            }
            // `only`: every given condition must hold; `except`: any one excludes.
            let mut results = Vec::new();
            if let Some(r) = m.get("refs") {
                results.push(refs_match(
                    &str_list(r, &format!("{path}:refs"))?,
                    facts.ctx,
                    lookup,
                ));
            }
            if let Some(v) = m.get("variables") {
                let mut any = false;
                for e in str_list(v, &format!("{path}:variables"))? {
                    let node = Node::new(Val::Str(e), v.loc.clone());
                    any |= eval_if(&node, lookup, &format!("{path}:variables"))?;
                }
                results.push(any);
            }
            if let Some(c) = m.get("changes") {
                results.push(eval_changes(c, facts, lookup, path)?);
            }
            if let Some(k) = m.get("kubernetes") {
                if k.as_str() != Some("active") {
                    return Err(PipelineError::at(
                        &k.loc,
                        format!("{path}:kubernetes config should be `active`"),
                    ));
                }
                // No Kubernetes integration is configured for a local run.
                results.push(false);
            }
            Ok(if is_only {
                results.iter().all(|r| *r)
            } else {
                results.iter().any(|r| *r)
            })
        }
        Val::Null => Ok(is_only),
        _ => Err(PipelineError::at(
            &n.loc,
            format!("{path} has to be either an array of conditions or a hash"),
        )),
    }
}

fn refs_match(refs: &[String], ctx: &PipelineContext, lookup: Lookup<'_>) -> bool {
    let ref_name = lookup("CI_COMMIT_REF_NAME").unwrap_or_default();
    let is_tag = ctx.is_tag();
    let is_mr = ctx.source == PipelineSource::MergeRequest;
    refs.iter().any(|r| {
        let r = r.split_once('@').map_or(r.as_str(), |(name, _)| name);
        match r {
            "branches" => !is_tag && !is_mr,
            "tags" => is_tag,
            "merge_requests" => is_mr,
            "pushes" => matches!(ctx.source, PipelineSource::Push | PipelineSource::Tag),
            "schedules" => ctx.source == PipelineSource::Schedule,
            "web" => ctx.source == PipelineSource::Web,
            "api" => ctx.source == PipelineSource::Api,
            "pipelines" => ctx.source == PipelineSource::ParentPipeline,
            "triggers" => ctx.source == PipelineSource::Trigger,
            "external" | "chat" | "chats" | "external_pull_requests" => false,
            _ => {
                if let Some(body) = r.strip_prefix('/')
                    && let Some((p, f)) = body.rsplit_once('/')
                {
                    let node = format!("$CI_COMMIT_REF_NAME =~ /{p}/{f}");
                    return Expr::parse(&node).and_then(|e| e.eval(lookup)).unwrap_or(false);
                }
                !is_mr && r == ref_name
            }
        }
    })
}

/// `include:rules`: `if`, `exists`, `changes` and `when: never|always`.
pub fn eval_include_rules(
    rules: &Node,
    facts: &Facts<'_>,
    lookup: Lookup<'_>,
) -> Result<bool, PipelineError> {
    match eval_rules(rules, facts, lookup, "include:rules")? {
        None => Ok(false),
        Some(m) => Ok(m.when.as_ref().and_then(Node::as_str) != Some("never")),
    }
}
