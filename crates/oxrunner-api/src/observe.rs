//! A seam for request metrics: the client reports each logical request (after its retries) and the attempts it
//! took to an observer the binary installs, so this crate needs no metrics library.

use std::time::Duration;

/// Receives what the client did; implemented by the daemon's metrics registry.
pub trait RequestObserver: Send + Sync {
    /// One request that got an answer (the last one, after retries): which Runner API endpoint it was (as
    /// gitlab-runner names the endpoints it measures; `None` for the others), its lower-case method, the final
    /// status and the time from the first attempt to the final answer.
    fn request(&self, endpoint: Option<&'static str>, method: &str, status: u16, elapsed: Duration);

    /// Attempts one request took, counted for every request whether or not it got an answer. `path` has its
    /// numeric segments replaced by `{id}`, so job ids do not become label values.
    fn attempts(&self, path: &str, method: &str, attempts: u32);
}

/// gitlab-runner's name for a measured endpoint (`request_job`, `update_job`, `patch_trace`, `reset_token`, `discovery`).
pub(crate) fn endpoint_name(method: &reqwest::Method, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(3).collect();
    let numeric = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["request", "jobs", ..]) => Some("request_job"),
        ("PUT", [id, "jobs", ..]) if numeric(id) => Some("update_job"),
        ("PATCH", ["trace", id, "jobs"]) if numeric(id) => Some("patch_trace"),
        ("POST", ["reset_authentication_token", ..]) => Some("reset_token"),
        ("GET", ["discovery", "router", "runners"]) => Some("discovery"),
        _ => None,
    }
}

/// `path` with every all-digit segment replaced by `{id}`, as gitlab-runner labels its retry counter.
pub(crate) fn normalized_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Method;

    #[test]
    fn names_the_measured_endpoints() {
        assert_eq!(
            endpoint_name(&Method::POST, "/api/v4/jobs/request"),
            Some("request_job")
        );
        assert_eq!(endpoint_name(&Method::PUT, "/api/v4/jobs/42"), Some("update_job"));
        assert_eq!(
            endpoint_name(&Method::GET, "/api/v4/runners/router/discovery"),
            Some("discovery")
        );
        assert_eq!(
            endpoint_name(&Method::PATCH, "/api/v4/jobs/42/trace"),
            Some("patch_trace")
        );
        assert_eq!(
            endpoint_name(&Method::POST, "/api/v4/runners/reset_authentication_token"),
            Some("reset_token")
        );
        assert_eq!(endpoint_name(&Method::POST, "/api/v4/jobs/42/artifacts"), None);
        assert_eq!(endpoint_name(&Method::PUT, "/api/v4/jobs/request"), None);
    }

    #[test]
    fn ids_become_placeholders() {
        assert_eq!(
            normalized_path("/api/v4/jobs/42/trace"),
            "/api/v4/jobs/{id}/trace"
        );
        assert_eq!(normalized_path("/"), "/");
    }
}
