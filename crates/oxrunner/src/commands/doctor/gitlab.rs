//! The connection to GitLab: DNS, TCP, TLS (with the chain the server presented), whether git would trust the same
//! certificate, the token (`verify`), the clock against GitLab's `Date`, and `clone_url`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oxrunner_api::probe::{ProbeReport, TlsReport};
use oxrunner_api::redact::redact_url;
use oxrunner_api::{ApiError, ClientConfig};
use oxrunner_config::RunnerConfig;

use super::Context;
use super::report::{Check, Status};
use crate::runner::{client_for_runner, config_dir, runner_info};

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Beyond this the clocks disagree enough to matter (token expiry, certificate validity, job timeouts).
const MAX_SKEW: Duration = Duration::from_secs(60);

pub async fn checks(ctx: &Context, r: &RunnerConfig) -> Vec<Check> {
    let env = |k: &str| std::env::var(k).ok();
    if let Some((proxy, var)) = super::proxy::for_url(&r.url, &env) {
        // The direct probes would judge a path the runner does not take; verify goes through the proxy like jobs do.
        return vec![
            Check::warn(
                format!(
                    "connection: the runner reaches GitLab through the proxy {} ({var})",
                    redact_url(&proxy)
                ),
                "doctor's DNS, TCP and TLS checks connect directly, so they were skipped; the token check below went through the proxy",
                "if GitLab should be reached directly, add its host to NO_PROXY",
            ),
            token_accepted(ctx, r).await,
        ];
    }
    let cfg = client_config(ctx, r, &r.url);
    let report = match oxrunner_api::probe::probe(&cfg, PROBE_TIMEOUT).await {
        Ok(p) => p,
        Err(e) => {
            return vec![from_error(
                "the runner's url or TLS files cannot be used",
                &e.to_string(),
            )];
        }
    };
    let certs = oxrunner_config::certs_dir(&ctx.config_path);
    let mut out = connection(&report, "url", &certs);
    if let Some(tls) = &report.tls
        && !tls.chain.is_empty()
    {
        out.push(git_trust(tls, &report.host));
    }
    if let Some(Ok(head)) = &report.http {
        out.push(token_accepted(ctx, r).await);
        if let Some(date) = head.date {
            out.push(clock(date, SystemTime::now()));
        }
    } else {
        out.push(Check::warn(
            "token not checked",
            "GitLab could not be reached (see above)",
            "fix the connection, then run oxrunner doctor again",
        ));
    }
    out.extend(clone_url(ctx, r, &report).await);
    out
}

fn client_config(ctx: &Context, r: &RunnerConfig, url: &str) -> ClientConfig {
    ClientConfig {
        url: url.to_string(),
        tls_ca_file: r.tls_ca_file.clone(),
        tls_cert_file: r.tls_cert_file.clone(),
        tls_key_file: r.tls_key_file.clone(),
        certs_dir: Some(oxrunner_config::certs_dir(&ctx.config_path)),
    }
}

/// An error text with an optional `hint:` line as a failed check.
fn from_error(message: &str, text: &str) -> Check {
    match text.split_once("\nhint: ") {
        Some((cause, hint)) => Check::fail(message, cause, hint),
        None => Check::fail(message, text, "see the cause above"),
    }
}

fn connection(p: &ProbeReport, key: &str, certs: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let addrs = match &p.addresses {
        Ok(a) => a,
        Err(e) => {
            out.push(Check::fail(
                format!("DNS: cannot resolve {}", p.host),
                e.clone(),
                format!("check the host name in `{key}`, and this machine's DNS or /etc/hosts"),
            ));
            return out;
        }
    };
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    out.push(Check::ok(format!(
        "DNS: {} resolves to {}",
        p.host,
        list.join(", ")
    )));
    match &p.connected {
        Some(Ok(addr)) => out.push(Check::ok(format!("TCP: connected to {addr}"))),
        Some(Err(e)) => {
            out.push(Check::fail(
                format!("TCP: cannot connect to {}:{}", p.host, p.port),
                e.clone(),
                format!(
                    "check that GitLab listens on port {} and that no firewall blocks this host; check the port in `{key}`",
                    p.port
                ),
            ));
            return out;
        }
        None => return out,
    }
    if let Some(tls) = &p.tls {
        out.push(tls_check(tls, certs));
    }
    match &p.http {
        // A 5xx is GitLab (or a proxy before it) failing, which no later ✓ would explain.
        Some(Ok(head)) if head.status >= 500 => out.push(Check::warn(
            format!("HTTP: the server answers with status {}", head.status),
            "GitLab or a proxy in front of it reports a server error; jobs may fail to start or upload",
            format!("check GitLab's health (gitlab-ctl status) and the proxy in front of `{key}`"),
        )),
        Some(Ok(head)) => out.push(Check::ok(format!(
            "HTTP: the server answers (status {})",
            head.status
        ))),
        Some(Err(e)) => out.push(Check::fail(
            "HTTP: no answer to a request",
            e.clone(),
            format!("check that `{key}` points to GitLab itself (scheme and port), not to another service"),
        )),
        None => {}
    }
    out
}

fn chain_text(tls: &TlsReport) -> String {
    let mut text = String::from("the server presented:");
    for (i, c) in tls.chain.iter().enumerate() {
        text.push_str(&format!(
            "\n  [{i}] subject \"{}\"\n      issuer  \"{}\"{} (valid until {})",
            c.subject,
            c.issuer,
            if c.self_signed { ", self-signed" } else { "" },
            c.not_after
        ));
    }
    text
}

/// `certs`: the real `<config dir>/certs`, so the fix names the file to create.
fn tls_check(tls: &TlsReport, certs: &Path) -> Check {
    let Some(f) = &tls.failure else {
        let what = tls
            .chain
            .first()
            .map(|c| format!(" (\"{}\", issued by \"{}\")", c.subject, c.issuer))
            .unwrap_or_default();
        return Check::ok(format!("TLS: certificate verified{what}"));
    };
    let mut cause = f.detail.clone();
    if !tls.chain.is_empty() {
        cause.push('\n');
        cause.push_str(&chain_text(tls));
    }
    if let Some(m) = &f.missing {
        cause.push_str(&format!("\nmissing: {m}"));
    }
    if let Some(t) = &tls.trust_file {
        cause.push_str(&format!("\nCA file in use: {}", t.display()));
    }
    let fix = if f.hint.is_empty() {
        "check the server's TLS setup".to_string()
    } else {
        f.hint
            .replace("<config dir>/certs", &certs.display().to_string())
            .replace(
                "pass --tls-ca-file <ca.pem>",
                "set tls-ca-file = \"<ca.pem>\" in [[runners]]",
            )
    };
    Check::fail("TLS: the server's certificate is not trusted", cause, fix)
}

/// Where git looks for CA certificates: `GIT_SSL_CAINFO`, `git config http.sslCAInfo`, else the system bundle.
fn git_ca_bundle() -> Option<(PathBuf, &'static str)> {
    if let Some(p) = std::env::var_os("GIT_SSL_CAINFO").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), "GIT_SSL_CAINFO"));
    }
    let out = std::process::Command::new("git")
        .args(["config", "--get", "http.sslCAInfo"])
        .output()
        .ok()?;
    let configured = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !configured.is_empty() {
        return Some((PathBuf::from(configured), "git config http.sslCAInfo"));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .map(|p| (p.to_path_buf(), "the system CA bundle"))
}

fn git_trust(tls: &TlsReport, host: &str) -> Check {
    let Some((bundle, source)) = git_ca_bundle() else {
        return Check::warn(
            "git: no CA bundle found",
            "neither GIT_SSL_CAINFO, git's http.sslCAInfo nor a system CA bundle exists",
            "install the ca-certificates package",
        );
    };
    let verdict = std::fs::read(&bundle)
        .map_err(|e| e.to_string())
        .and_then(|pem| tls.trusted_by_bundle(&pem, host));
    let runner_trusts = tls.failure.is_none();
    let where_ = format!("{} ({source})", bundle.display());
    match (verdict, runner_trusts) {
        (Ok(()), true) => Check::ok(format!("git on this host trusts the certificate too ({where_})")),
        (Ok(()), false) => Check::ok(format!(
            "git on this host trusts the certificate ({where_}): the runner can use the same file as tls-ca-file"
        )),
        (Err(_), true) => Check::ok(format!(
            "git in jobs gets the runner's CA through CI_SERVER_TLS_CA_FILE; git used by hand here would not trust {host} ({where_})"
        )),
        (Err(e), false) => Check {
            status: Status::Warn,
            message: format!("git on this host would not trust {host} either ({where_})"),
            cause: Some(e),
            fix: Some(format!(
                "once the CA file works for the runner, let git outside jobs use it too: git config --global http.https://{host}/.sslCAInfo <ca file>"
            )),
        },
    }
}

/// The system id the runner already uses, so `verify` adds no runner manager in GitLab; none yet: none sent.
fn existing_system_id(config_path: &Path) -> String {
    let path = config_dir(config_path).join(oxrunner_config::system_id::FILE_NAME);
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| oxrunner_config::system_id::is_valid(t))
        .unwrap_or_default()
}

async fn token_accepted(ctx: &Context, r: &RunnerConfig) -> Check {
    let client = match client_for_runner(r, &ctx.config_path) {
        Ok(c) => c,
        Err(e) => return from_error("token not checked: no client", &format!("{e:#}")),
    };
    let info = runner_info(&r.executor_kind(), r.shell.as_deref());
    let system_id = existing_system_id(&ctx.config_path);
    match client.verify_runner(r.token.expose(), &system_id, &info).await {
        Ok(v) if v.id > 0 => Check::ok(format!("GitLab accepts the token (runner id {})", v.id)),
        Ok(_) => Check::ok("GitLab accepts the token"),
        Err(ApiError::Forbidden { .. }) => Check::fail(
            format!("GitLab refuses the token {}", r.short_token()),
            "403 Forbidden on POST /api/v4/runners/verify: the token is wrong, was reset, or the runner was deleted in GitLab",
            format!(
                "copy the token from GitLab again, or register anew (oxrunner register --url {} --token glrt-...); `oxrunner verify --delete` removes the dead entry",
                redact_url(&r.url)
            ),
        ),
        Err(e) => from_error("token not checked: verify failed", &e.to_string()),
    }
}

fn clock(server: SystemTime, now: SystemTime) -> Check {
    let (skew, ahead) = match now.duration_since(server) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    if skew <= MAX_SKEW {
        return Check::ok(format!("clock: within {}s of GitLab's", skew.as_secs()));
    }
    Check::warn(
        format!(
            "clock: {}s {} GitLab's",
            skew.as_secs(),
            if ahead { "ahead of" } else { "behind" }
        ),
        "token expiry, certificate validity and job timeouts are judged by this clock",
        "synchronise the clock: timedatectl set-ntp true (or install chrony/ntp)",
    )
}

async fn clone_url(ctx: &Context, r: &RunnerConfig, api: &ProbeReport) -> Vec<Check> {
    let Some(clone) = r.clone_url.as_deref().filter(|c| !c.trim().is_empty()) else {
        if is_internal(&api.host) {
            // Informational: the usual self-hosted setup (url = external_url on a private address) works, so
            // without evidence that GitLab's external name differs this is no warning.
            return vec![Check::ok(format!(
                "url uses the internal address {}; if GitLab's external_url is another name, set clone_url = \"{}\"",
                api.host,
                redact_url(&r.url).trim_end_matches('/')
            ))];
        }
        return Vec::new();
    };
    let shown = redact_url(clone);
    let cfg = client_config(ctx, r, clone);
    let report = match oxrunner_api::probe::probe(&cfg, PROBE_TIMEOUT).await {
        Ok(p) => p,
        Err(e) => {
            return vec![from_error(
                &format!("clone_url {shown} cannot be used"),
                &e.to_string(),
            )];
        }
    };
    let certs = oxrunner_config::certs_dir(&ctx.config_path);
    // The same address as `url`: its failure is already reported above, once is enough.
    if report.host == api.host
        && report.port == api.port
        && connection(api, "url", &certs)
            .iter()
            .any(|c| c.status == Status::Fail)
    {
        return Vec::new();
    }
    let failed = connection(&report, "clone_url", &certs)
        .into_iter()
        .find(|c| c.status == Status::Fail);
    vec![match failed {
        None => Check::ok(format!("clone_url {shown} is reachable")),
        Some(c) => Check::fail(
            format!("clone_url {shown} is not reachable: {}", c.message),
            c.cause.unwrap_or_default(),
            format!(
                "{}; or set clone_url to an address of GitLab this host and its jobs can reach",
                c.fix.unwrap_or_default()
            ),
        ),
    }]
}

/// An address only meaningful inside some network: a private, loopback or link-local IP, or a name without a
/// public suffix.
pub(crate) fn is_internal(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
        };
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !host.contains('.')
        || [
            ".local",
            ".internal",
            ".lan",
            ".corp",
            ".home",
            ".intranet",
            ".localdomain",
            ".home.arpa",
        ]
        .iter()
        .any(|s| host.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for h in [
            "10.0.0.5",
            "192.168.1.2",
            "127.0.0.1",
            "gitlab",
            "gitlab.corp",
            "git.lan",
            "fd00::1",
            "::1",
        ] {
            assert!(is_internal(h), "{h}");
        }
        for h in ["gitlab.com", "8.8.8.8", "gitlab.example.com", "2001:db8::1"] {
            assert!(!is_internal(h), "{h}");
        }
    }

    #[test]
    fn skew_is_reported_both_ways() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(clock(now - Duration::from_secs(5), now).status, Status::Ok);
        let ahead = clock(now - Duration::from_secs(600), now);
        assert_eq!(ahead.status, Status::Warn);
        assert!(ahead.message.contains("600s ahead of"), "{}", ahead.message);
        let behind = clock(now + Duration::from_secs(600), now);
        assert!(behind.message.contains("behind"), "{}", behind.message);
    }
}
