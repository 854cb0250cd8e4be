//! Reading CI files: `spec:inputs` headers, `include` of every kind, and GitLab's deep merge.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::dynamic::ArtifactText;
use crate::error::{Loc, PipelineError, Warning};
use crate::inputs::{InputArgs, interpolate, resolve_inputs};
use crate::rules::{Facts, Lookup, eval_include_rules};
use crate::vars::expand_with;
use crate::yaml::{Map, Node, Val, parse_documents};

/// GitLab's default limit on the number of included files per pipeline.
pub const MAX_INCLUDES: usize = 150;
/// GitLab's limit on include nesting.
pub const MAX_INCLUDE_DEPTH: usize = 100;
/// GitLab's default `max_yaml_size_bytes` (2 MiB since 17.3). GitLab measures the parsed objects, which are
/// larger than the text; the text size is the bound here, so a file GitLab accepts is never refused.
pub const MAX_YAML_SIZE_BYTES: usize = 2 * 1024 * 1024;
/// GitLab's default `ci_max_total_yaml_size_bytes`: `max_yaml_size_bytes` times `ci_max_includes`.
pub const MAX_TOTAL_YAML_SIZE_BYTES: usize = MAX_YAML_SIZE_BYTES * MAX_INCLUDES;
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Loader<'a> {
    pub facts: &'a Facts<'a>,
    pub lookup: Lookup<'a>,
    pub warnings: Vec<Warning>,
    count: usize,
    /// Bytes of every file read so far (`ci_max_total_yaml_size_bytes`).
    total_bytes: usize,
    stack: Vec<String>,
    /// The texts of a dynamic child pipeline's `artifact:` includes, read by the runner from the generators'
    /// archives; empty when resolving anything else.
    pub artifacts: &'a [ArtifactText],
}

/// Where a file's text comes from.
pub enum Source<'s> {
    Path(PathBuf),
    Text(&'s str),
}

impl<'a> Loader<'a> {
    pub fn new(facts: &'a Facts<'a>, lookup: Lookup<'a>) -> Loader<'a> {
        Loader {
            facts,
            lookup,
            warnings: Vec::new(),
            count: 0,
            total_bytes: 0,
            stack: Vec::new(),
            artifacts: &[],
        }
    }

    /// Load a file and everything it includes, merged as GitLab merges them.
    pub fn load(
        &mut self,
        name: &str,
        src: Source<'_>,
        args: &InputArgs,
        cli_inputs: bool,
        include_loc: Option<&Loc>,
    ) -> Result<Map, PipelineError> {
        let file: Arc<str> = Arc::from(name);
        let text = match src {
            Source::Text(t) => t.to_string(),
            Source::Path(p) => read_limited(&p).map_err(|e| match include_loc {
                Some(loc) => PipelineError::at_hint(
                    loc,
                    format!("Local file `{name}` does not exist!"),
                    format!("{}: {e}", p.display()),
                ),
                None => PipelineError::Io { path: p, source: e },
            })?,
        };
        let top = Loc::new(&file, 1, 1);
        self.check_size(text.len(), include_loc.unwrap_or(&top))?;
        let (docs, w) = parse_documents(&text, &file)?;
        self.warnings.extend(w);
        let (spec, mut content) = split_header(docs, &top)?;
        if spec.is_some() || !args.values.is_empty() {
            if spec.is_none() {
                return Err(PipelineError::at(
                    include_loc.unwrap_or(&top),
                    "Given inputs not defined in the `spec` section of the included configuration file",
                ));
            }
            let inputs = resolve_inputs(spec.as_ref(), args, cli_inputs)?;
            interpolate(&mut content, &inputs, self.lookup)?;
        }
        let mut map = match content.val {
            Val::Map(m) => m,
            Val::Null => Map::new(),
            _ => {
                return Err(PipelineError::at_hint(
                    &content.loc,
                    "Invalid configuration format",
                    "a CI file must be a mapping of job names and keywords",
                ));
            }
        };
        let Some(inc) = map.shift_remove("include") else {
            return Ok(map);
        };
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(PipelineError::at(
                &inc.loc,
                format!("Maximum of {MAX_INCLUDE_DEPTH} nested includes are allowed!"),
            ));
        }
        self.stack.push(name.to_string());
        let mut merged = Map::new();
        let items: Vec<Node> = match inc.val {
            Val::Seq(items) => items,
            _ => vec![inc],
        };
        for item in &items {
            for included in self.include(item)? {
                deep_merge(&mut merged, included);
            }
        }
        self.stack.pop();
        deep_merge(&mut merged, map);
        Ok(merged)
    }

    fn include(&mut self, item: &Node) -> Result<Vec<Map>, PipelineError> {
        let (kind, target, m) = self.include_location(item)?;
        if let Some(rules) = m.and_then(|m| m.get("rules"))
            && !eval_include_rules(rules, self.facts, self.lookup)?
        {
            return Ok(Vec::new());
        }
        let args = InputArgs {
            values: m
                .and_then(|m| m.get("inputs"))
                .and_then(Node::as_map)
                .cloned()
                .unwrap_or_default(),
            loc: item.loc.clone(),
        };
        let target = expand_with(&target, self.lookup, false);
        match kind {
            "local" => self.include_local(&target, &args, &item.loc),
            "remote" => self.include_remote(&target, &args, &item.loc),
            "template" => Err(PipelineError::at_hint(
                &item.loc,
                format!("include:template `{target}` cannot be fetched offline"),
                "copy the template from GitLab's lib/gitlab/ci/templates into the repository and use include:local",
            )),
            "project" => self.include_project(&target, m, &args, &item.loc),
            "component" => Err(PipelineError::at_hint(
                &item.loc,
                format!(
                    "include:component `{target}` cannot be fetched: no GitLab server is available locally"
                ),
                "vendor the component's template into the repository and use include:local with inputs",
            )),
            _ => self.include_artifact(&target, m, &args, &item.loc),
        }
    }

    /// `artifact: FILE` with `job: GENERATOR`: only a dynamic child pipeline's root has it, and the runner has
    /// read FILE from GENERATOR's archive by the time the child is resolved.
    fn include_artifact(
        &mut self,
        target: &str,
        m: Option<&Map>,
        args: &InputArgs,
        loc: &Loc,
    ) -> Result<Vec<Map>, PipelineError> {
        let job = m.and_then(|m| m.get("job")).and_then(Node::scalar_string);
        let path = crate::dynamic::normalize(target);
        let found = self
            .artifacts
            .iter()
            .find(|a| a.file.artifact == path && Some(&a.file.job) == job.as_ref());
        let Some(found) = found else {
            return Err(PipelineError::at(
                loc,
                "include:artifact is only allowed in trigger:include of a child pipeline, and needs job artifacts that do not exist locally",
            ));
        };
        self.count_one(loc)?;
        Ok(vec![self.load(
            &path,
            Source::Text(&found.text),
            args,
            false,
            Some(loc),
        )?])
    }

    /// An `include` entry's kind, its unexpanded target and, for the hash form, its other keys; a bare
    /// string is `remote` when it is a URL and `local` otherwise.
    fn include_location<'n>(
        &mut self,
        item: &'n Node,
    ) -> Result<(&'n str, String, Option<&'n Map>), PipelineError> {
        match &item.val {
            Val::Str(s) if s.starts_with("http://") || s.starts_with("https://") => {
                Ok(("remote", s.clone(), None))
            }
            Val::Str(s) => Ok(("local", s.clone(), None)),
            Val::Map(m) => {
                let known = ["local", "remote", "template", "project", "component", "artifact"];
                let Some((k, v)) = m.iter().find(|(k, _)| known.contains(&k.as_str())) else {
                    return Err(PipelineError::at_hint(
                        &item.loc,
                        "include config does not have a valid location",
                        "use one of local, remote, template, project or component",
                    ));
                };
                for key in m.keys() {
                    if !matches!(
                        key.as_str(),
                        "local"
                            | "remote"
                            | "template"
                            | "project"
                            | "component"
                            | "artifact"
                            | "file"
                            | "ref"
                            | "inputs"
                            | "rules"
                            | "job"
                            | "integrity"
                    ) {
                        self.warnings.push(Warning::at(
                            &item.loc,
                            format!("include config contains unknown key: {key}"),
                        ));
                    }
                }
                let t = v
                    .scalar_string()
                    .ok_or_else(|| PipelineError::at(&v.loc, format!("include:{k} should be a string")))?;
                Ok((k.as_str(), t, Some(m)))
            }
            _ => Err(PipelineError::at(
                &item.loc,
                "include config should be a hash, a string or an array containing strings and hashes",
            )),
        }
    }

    fn include_remote(
        &mut self,
        target: &str,
        args: &InputArgs,
        loc: &Loc,
    ) -> Result<Vec<Map>, PipelineError> {
        if self.facts.ctx.offline {
            return Err(PipelineError::at_hint(
                loc,
                format!("Remote file `{target}` could not be fetched: offline mode"),
                "vendor the file and use include:local, or allow network access",
            ));
        }
        let text = fetch_remote(target, loc)?;
        self.count_one(loc)?;
        Ok(vec![self.load(
            target,
            Source::Text(&text),
            args,
            false,
            Some(loc),
        )?])
    }

    /// Only the project itself can be included (from the local git repository, at the requested ref);
    /// any other project would need a GitLab server.
    fn include_project(
        &mut self,
        target: &str,
        m: Option<&Map>,
        args: &InputArgs,
        loc: &Loc,
    ) -> Result<Vec<Map>, PipelineError> {
        let files = m.and_then(|m| m.get("file")).map_or_else(Vec::new, |f| {
            crate::yaml::Node::as_seq(f)
                .map(|s| s.iter().filter_map(Node::scalar_string).collect())
                .unwrap_or_else(|| f.scalar_string().into_iter().collect())
        });
        if (self.lookup)("CI_PROJECT_PATH").as_deref() != Some(target) {
            return Err(PipelineError::at_hint(
                loc,
                format!(
                    "include:project `{target}` ({}) cannot be fetched: no GitLab server is available locally",
                    files.join(", ")
                ),
                "clone the project next to this one and include its files with include:local, or run the pipeline on GitLab",
            ));
        }
        let rev = m
            .and_then(|m| m.get("ref"))
            .and_then(Node::scalar_string)
            .map_or_else(|| "HEAD".to_string(), |r| expand_with(&r, self.lookup, false));
        let mut out = Vec::new();
        for f in files {
            let f = f.trim_start_matches('/').to_string();
            let spec = format!("{rev}:{f}");
            let text = crate::context::git(&self.facts.ctx.project_dir, &["show", &spec]).map_err(|e| {
                PipelineError::at(
                    loc,
                    format!(
                        "Project `{target}` file `{f}` does not exist at `{rev}`: {}",
                        e.message()
                    ),
                )
            })?;
            self.count_one(loc)?;
            out.push(self.load(&f, Source::Text(&text), args, false, Some(loc))?);
        }
        Ok(out)
    }

    /// GitLab's size limits, checked before a file is parsed so an oversized one costs no parsing.
    fn check_size(&mut self, len: usize, loc: &Loc) -> Result<(), PipelineError> {
        if len > MAX_YAML_SIZE_BYTES {
            return Err(PipelineError::at_hint(
                loc,
                "The parsed YAML is too big",
                format!(
                    "a CI file may hold at most {MAX_YAML_SIZE_BYTES} bytes (GitLab's max_yaml_size_bytes); split it into files joined with include:local"
                ),
            ));
        }
        self.total_bytes = self.total_bytes.saturating_add(len);
        if self.total_bytes > MAX_TOTAL_YAML_SIZE_BYTES {
            return Err(PipelineError::at_hint(
                loc,
                "Total size of combined CI/CD configuration is too big",
                format!(
                    "all included files together may hold at most {MAX_TOTAL_YAML_SIZE_BYTES} bytes (GitLab's ci_max_total_yaml_size_bytes)"
                ),
            ));
        }
        Ok(())
    }

    fn count_one(&mut self, loc: &Loc) -> Result<(), PipelineError> {
        self.count += 1;
        if self.count > MAX_INCLUDES {
            return Err(PipelineError::at_hint(
                loc,
                format!("Maximum of {MAX_INCLUDES} nested includes are allowed!"),
                "an include cycle (a file including itself) also ends here",
            ));
        }
        Ok(())
    }

    fn include_local(
        &mut self,
        target: &str,
        args: &InputArgs,
        loc: &Loc,
    ) -> Result<Vec<Map>, PipelineError> {
        let rel = target.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") || target.starts_with("./") {
            return Err(PipelineError::at_hint(
                loc,
                format!("Local file `{target}` does not exist!"),
                "include:local paths are relative to the repository root and may not contain `./` or `..`",
            ));
        }
        let root = self.facts.ctx.project_dir.clone();
        let files: Vec<String> = if rel.contains('*') {
            crate::wildcard::files_matching(&root, rel, loc)?
        } else {
            vec![rel.to_string()]
        };
        if files.is_empty() {
            return Err(PipelineError::at(
                loc,
                format!("Included file `{target}` does not exist!"),
            ));
        }
        let mut out = Vec::new();
        for f in files {
            if !(f.ends_with(".yml") || f.ends_with(".yaml")) {
                return Err(PipelineError::at(
                    loc,
                    format!("Included file `{f}` does not have YAML extension!"),
                ));
            }
            if self.stack.iter().any(|s| s == &f) {
                return Err(PipelineError::at_hint(
                    loc,
                    format!("Included file `{f}` is already being included (include cycle)"),
                    "remove the include that points back to an including file",
                ));
            }
            self.count_one(loc)?;
            out.push(self.load(&f, Source::Path(root.join(&f)), args, false, Some(loc))?);
        }
        Ok(out)
    }
}

/// A file whose first document has a `spec` key has a header; the second document is the content.
fn split_header(mut docs: Vec<Node>, top: &Loc) -> Result<(Option<Node>, Node), PipelineError> {
    let first_is_spec = docs
        .first()
        .and_then(Node::as_map)
        .is_some_and(|m| m.contains_key("spec"));
    match docs.len() {
        0 => Ok((None, Node::new(Val::Null, top.clone()))),
        1 if first_is_spec && docs[0].as_map().is_some_and(|m| m.len() == 1) => {
            let h = docs.remove(0);
            let spec = h.as_map().and_then(|m| m.get("spec")).cloned();
            Ok((spec, Node::new(Val::Null, top.clone())))
        }
        1 => Ok((None, docs.remove(0))),
        2 if first_is_spec => {
            let content = docs.remove(1);
            let h = docs.remove(0);
            let spec = h.as_map().and_then(|m| m.get("spec")).cloned();
            Ok((spec, content))
        }
        _ => Err(PipelineError::at_hint(
            &docs[1].loc,
            "Invalid configuration format: more than one YAML document",
            "only a `spec:` header may come before the `---` separator",
        )),
    }
}

/// Ruby `Hash#deep_merge`: nested hashes merge, anything else is replaced by `over`.
pub fn deep_merge(base: &mut Map, over: Map) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (
                Some(Node {
                    val: Val::Map(bm), ..
                }),
                Node {
                    val: Val::Map(om),
                    loc,
                },
            ) => {
                deep_merge(bm, om);
                let _ = loc;
            }
            (Some(slot), v) => *slot = v,
            (None, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Reads at most one byte more than [`MAX_YAML_SIZE_BYTES`]: enough to tell an oversized file, never more, so
/// a huge (or endless, e.g. a FIFO or device) file cannot exhaust memory.
fn read_limited(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = u64::try_from(MAX_YAML_SIZE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit).read_to_string(&mut text)?;
    Ok(text)
}

/// `include:remote`: fetched with curl (time-limited), since no other network stack is linked here.
fn fetch_remote(url: &str, loc: &Loc) -> Result<String, PipelineError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| PipelineError::at(loc, format!("Remote file `{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PipelineError::at(
            loc,
            format!("Remote file `{url}` must use http or https"),
        ));
    }
    let shown = redact(&parsed);
    // The URL goes through curl's stdin config, not argv, so credentials in it never show in `ps`.
    let mut child = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--location", "--max-time"])
        .arg(REMOTE_TIMEOUT.as_secs().to_string())
        // A larger file is refused anyway; this stops curl from buffering it first.
        .arg("--max-filesize")
        .arg((MAX_YAML_SIZE_BYTES + 1).to_string())
        .args(["--config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            PipelineError::at_hint(
                loc,
                format!("Remote file `{shown}` could not be fetched: {e}"),
                "install curl, or vendor the file and use include:local",
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(stdin, "url = \"{quoted}\"");
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PipelineError::at(loc, format!("Remote file `{shown}` could not be fetched: {e}")))?;
    if !out.status.success() {
        return Err(PipelineError::at_hint(
            loc,
            format!(
                "Remote file `{shown}` could not be fetched, because of an HTTP error or a timeout: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "check the network (no network is available in offline runs), or vendor the file and use include:local",
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| PipelineError::at(loc, format!("Remote file `{shown}` is not UTF-8 text")))
}

fn redact(u: &url::Url) -> String {
    let mut u = u.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("REDACTED");
        let _ = u.set_password(None);
    }
    u.set_query(None);
    u.to_string()
}
