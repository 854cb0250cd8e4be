//! Pure interpretation of `[runners.docker]` values: sizes, CPUs, pull policies, image allow-lists, volumes.

use globset::{GlobBuilder, GlobMatcher};

use crate::error::DockerError;

/// How to get the job image onto the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every job.
    Always,
    /// Pull only when the engine lacks the image.
    IfNotPresent,
    /// Never pull; the image must be on the engine.
    Never,
}

impl PullPolicy {
    /// Parses a policy name (`always`, `if-not-present`, `never`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "always" => Some(Self::Always),
            "if-not-present" => Some(Self::IfNotPresent),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::IfNotPresent => "if-not-present",
            Self::Never => "never",
        }
    }
}

fn parse_policies(list: &[String], key: &'static str) -> Result<Vec<PullPolicy>, DockerError> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            PullPolicy::parse(s).ok_or_else(|| DockerError::Config {
                key,
                value: s.clone(),
                detail: "unknown pull policy".to_owned(),
                hint: "use \"always\", \"if-not-present\" or \"never\"",
            })
        })
        .collect()
}

/// The policies to try, in order: the job's `image.pull_policy` restricted to `allowed_pull_policies` (which
/// defaults to the config's `pull_policy`), else the config's `pull_policy`, else `always`.
pub fn effective_pull_policies(
    config: &[String],
    allowed: &[String],
    job: &[String],
) -> Result<Vec<PullPolicy>, DockerError> {
    let mut config = parse_policies(config, "pull_policy")?;
    if config.is_empty() {
        config.push(PullPolicy::Always);
    }
    let allowed = match parse_policies(allowed, "allowed_pull_policies")? {
        a if a.is_empty() => config.clone(),
        a => a,
    };
    let job = parse_policies(job, "image:pull_policy")?;
    if job.is_empty() {
        return Ok(config);
    }
    let chosen: Vec<PullPolicy> = job.iter().copied().filter(|p| allowed.contains(p)).collect();
    if chosen.is_empty() {
        let names = |v: &[PullPolicy]| v.iter().map(PullPolicy::as_str).collect::<Vec<_>>().join(", ");
        return Err(DockerError::PullPolicy(format!(
            "the job's pull_policy [{}] is not allowed by the runner (allowed: [{}])\nhint: use an allowed policy in the job's image:pull_policy, or extend [runners.docker] allowed_pull_policies",
            names(&job),
            names(&allowed)
        )));
    }
    Ok(chosen)
}

fn glob(pattern: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// True when `image` matches one of the `allowed_images` patterns (or the list is empty). `*` stays within a path
/// segment and `**` crosses them, like gitlab-runner's doublestar matching.
pub fn image_allowed(image: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    allowed.iter().filter_map(|p| glob(p)).any(|m| m.is_match(image))
}

/// Parses a Docker size (`128m`, `1g`, `512mb`, `1024`) into bytes.
pub fn parse_size(key: &'static str, value: &str) -> Result<i64, DockerError> {
    let err = |detail: &str| DockerError::Config {
        key,
        value: value.to_owned(),
        detail: detail.to_owned(),
        hint: "write a number of bytes with an optional unit: b, k, m, g (e.g. \"512m\")",
    };
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&v);
    let (num, mult) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1i64 << 10),
        Some('m') => (&v[..v.len() - 1], 1 << 20),
        Some('g') => (&v[..v.len() - 1], 1 << 30),
        Some('t') => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| err("not a size"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(err("must be a positive size"));
    }
    let bytes = n * mult as f64;
    if bytes > i64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(bytes as i64)
}

/// Parses `cpus` (`1.5`) into nano-CPUs.
pub fn parse_cpus(value: &str) -> Result<i64, DockerError> {
    let n: f64 = value.trim().parse().map_err(|_| DockerError::Config {
        key: "cpus",
        value: value.to_owned(),
        detail: "not a number".to_owned(),
        hint: "write a decimal number of CPUs, e.g. \"1.5\"",
    })?;
    if !n.is_finite() || n <= 0.0 || n > 1e6 {
        return Err(DockerError::Config {
            key: "cpus",
            value: value.to_owned(),
            detail: "out of range".to_owned(),
            hint: "write a positive number of CPUs, e.g. \"2\"",
        });
    }
    Ok((n * 1e9).round() as i64)
}

/// A `volumes` entry, split into what the engine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `src:dst[:mode]`: a host path or a named volume, passed as a bind.
    Bind(String),
    /// `dst`: an anonymous volume at that container path, removed with the container.
    Anonymous(String),
}

/// Splits a `volumes` entry.
pub fn parse_volume(spec: &str) -> Result<VolumeSpec, DockerError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = |detail: &str| DockerError::Config {
        key: "volumes",
        value: spec.to_owned(),
        detail: detail.to_owned(),
        hint: "write \"/container/path\" or \"/host/path:/container/path[:ro]\"",
    };
    match parts.as_slice() {
        [dst] if dst.starts_with('/') => Ok(VolumeSpec::Anonymous((*dst).to_owned())),
        [src, dst] | [src, dst, _] if !src.is_empty() && dst.starts_with('/') => {
            Ok(VolumeSpec::Bind(spec.to_owned()))
        }
        [_] | [_, _] | [_, _, _] => Err(bad("the container path must be absolute")),
        _ => Err(bad("too many ':'")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn pull_policy_defaults_and_intersection() {
        assert_eq!(
            effective_pull_policies(&[], &[], &[]).unwrap(),
            vec![PullPolicy::Always]
        );
        assert_eq!(
            effective_pull_policies(&s(&["never"]), &[], &[]).unwrap(),
            vec![PullPolicy::Never]
        );
        assert_eq!(
            effective_pull_policies(
                &s(&["always"]),
                &s(&["always", "if-not-present"]),
                &s(&["if-not-present"])
            )
            .unwrap(),
            vec![PullPolicy::IfNotPresent]
        );
        let err = effective_pull_policies(&s(&["never"]), &[], &s(&["always"])).unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
        assert!(effective_pull_policies(&s(&["sometimes"]), &[], &[]).is_err());
    }

    #[test]
    fn allowed_images_globs() {
        let allowed = s(&["busybox:*", "registry.example.com/**"]);
        assert!(image_allowed("busybox:latest", &allowed));
        assert!(image_allowed("registry.example.com/a/b:1", &allowed));
        assert!(!image_allowed("alpine:3", &allowed));
        assert!(!image_allowed("evil/busybox:latest", &allowed));
        assert!(image_allowed("anything", &[]));
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_size("memory", "128m").unwrap(), 128 << 20);
        assert_eq!(parse_size("memory", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("memory", "512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size("memory", "1024").unwrap(), 1024);
        assert!(parse_size("memory", "lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/cache").unwrap(),
            VolumeSpec::Anonymous("/cache".into())
        );
        assert_eq!(
            parse_volume("/var/run/docker.sock:/var/run/docker.sock").unwrap(),
            VolumeSpec::Bind("/var/run/docker.sock:/var/run/docker.sock".into())
        );
        assert!(parse_volume("/a:/b:ro").is_ok());
        assert!(parse_volume("relative").is_err());
        assert!(parse_volume("a:b:c:d").is_err());
    }
}
