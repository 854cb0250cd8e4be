//! Waiting for services to accept TCP connections before the job starts, as gitlab-runner's
//! `wait_for_services` does, but probed from the runner process instead of a helper container.
//!
//! The ports come from the service's `HEALTHCHECK_TCP_PORT` variable, else its image's exposed TCP ports (at most
//! 20, lowest first); a service is up once any of them accepts a connection. When the service's address does
//! not answer at all (not routable from the runner), the service's own socket table is asked instead (see
//! [`listen`]). A service that is not up within
//! `wait_for_services_timeout`, that exits, or that exposes no port gets a warning block in the trace with its
//! recent logs, and the job goes on (the service may still come up, or the job may not need its port).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;
use oxrunner_core::TraceWriter;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::listen;
use crate::route;

/// Most ports probed per service (gitlab-runner's cap).
const MAX_PORTS: usize = 20;
/// Cap on the service log shown in a warning.
const LOG_LIMIT: usize = 64 * 1024;
/// Log lines shown in a warning.
const LOG_TAIL: &str = "100";
/// One connection attempt; a dropped SYN (unroutable address) must not eat the whole budget at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between rounds of attempts.
const RETRY: Duration = Duration::from_millis(200);

/// A started service container, as the wait needs it.
#[derive(Clone, Debug)]
pub struct StartedService {
    /// Container id.
    pub id: String,
    /// Container name (shown in the warning, like gitlab-runner's).
    pub name: String,
    /// Image reference.
    pub image: String,
}

/// Why a service did not come up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// No port to probe.
    NoPorts,
    /// The container stopped before accepting a connection.
    Exited {
        /// Exit code reported by the engine.
        code: i64,
    },
    /// The timeout passed.
    Timeout {
        /// Address probed.
        ip: IpAddr,
        /// Ports probed.
        ports: Vec<u16>,
        /// Seconds waited.
        secs: u64,
        /// The last connection error.
        last_error: String,
    },
    /// The engine could not tell the container's state.
    Inspect(String),
}

impl NotReady {
    /// The "Health check error" line of the warning.
    pub fn describe(&self, service: &StartedService) -> String {
        let who = format!("service {:?} (image {})", service.name, service.image);
        match self {
            Self::NoPorts => format!(
                "{who} exposes no TCP port to wait for\nhint: EXPOSE a port in the image, or set the service variable HEALTHCHECK_TCP_PORT"
            ),
            Self::Exited { code } => {
                format!("{who} exited with code {code} before accepting connections")
            }
            Self::Timeout {
                ip,
                ports,
                secs,
                last_error,
            } => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!(
                    "{who} did not accept TCP connections on {ip} port {} within {secs} s (last error: {last_error})",
                    ports.join(", ")
                )
            }
            Self::Inspect(e) => format!("{who}: cannot inspect the container: {e}"),
        }
    }
}

/// The TCP ports to probe: `HEALTHCHECK_TCP_PORT` from the container environment (any key case, as upstream),
/// else the exposed TCP ports, sorted, at most 20.
pub fn probe_ports(env: &[String], exposed: &[String]) -> Result<Vec<u16>, String> {
    for entry in env {
        if let Some((key, value)) = entry.split_once('=')
            && key.eq_ignore_ascii_case("HEALTHCHECK_TCP_PORT")
        {
            return value
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(|p| vec![p])
                .ok_or_else(|| format!("invalid HEALTHCHECK_TCP_PORT {value:?}: not a TCP port number"));
        }
    }
    let mut ports: Vec<u16> = Vec::new();
    for spec in exposed {
        let (range, proto) = spec.split_once('/').unwrap_or((spec.as_str(), "tcp"));
        if proto != "tcp" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap_or((range, range));
        let (Ok(start), Ok(end)) = (start.parse::<u16>(), end.parse::<u16>()) else {
            continue;
        };
        for p in start..=end {
            if ports.len() >= MAX_PORTS {
                break;
            }
            ports.push(p);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// The container's address on `network`, else on any network; loopback when it has none (host network).
fn address(info: &ContainerInspectResponse, network: &str) -> IpAddr {
    let networks = info.network_settings.as_ref().and_then(|n| n.networks.as_ref());
    let parse = |s: &Option<String>| s.as_deref().and_then(|a| a.parse::<IpAddr>().ok());
    networks
        .and_then(|n| n.get(network))
        .and_then(|e| parse(&e.ip_address))
        .or_else(|| networks.and_then(|n| n.values().find_map(|e| parse(&e.ip_address))))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// How one round of connection attempts went.
enum Probe {
    /// A port accepted.
    Open,
    /// The address answered (refused): the service is reachable but not listening yet.
    Refused(String),
    /// No answer or no route: the address may not be routable from the runner at all.
    Unreachable(String),
}

async fn probe(ip: IpAddr, ports: &[u16]) -> Probe {
    let attempts = ports.iter().map(|p| {
        let addr = SocketAddr::new(ip, *p);
        async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err((
                    e.kind() == std::io::ErrorKind::ConnectionRefused,
                    format!("{addr}: {e}"),
                )),
                Err(_) => Err((
                    false,
                    format!("{addr}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                )),
            }
        }
    });
    let results = futures::future::join_all(attempts).await;
    if results.iter().any(Result::is_ok) {
        return Probe::Open;
    }
    let refused = results.iter().any(|r| matches!(r, Err((true, _))));
    let last = results
        .into_iter()
        .filter_map(Result::err)
        .map(|(_, e)| e)
        .next_back()
        .unwrap_or_else(|| "no port".to_owned());
    if refused {
        Probe::Refused(last)
    } else {
        Probe::Unreachable(last)
    }
}

fn stopped(info: &ContainerInspectResponse) -> Option<i64> {
    let state = info.state.as_ref()?;
    (state.running == Some(false)).then(|| state.exit_code.unwrap_or(-1))
}

/// Waits until `service` accepts a connection on one of its ports, it stops, or `timeout` passes.
pub async fn wait_one(
    docker: &Docker,
    service: &StartedService,
    network: &str,
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    let inspect = |id: String| async move {
        docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| NotReady::Inspect(e.to_string()))
    };
    let info = inspect(service.id.clone()).await?;
    let config = info.config.clone().unwrap_or_default();
    let ports = probe_ports(
        config.env.as_deref().unwrap_or_default(),
        config.exposed_ports.as_deref().unwrap_or_default(),
    )
    .map_err(NotReady::Inspect)?;
    if ports.is_empty() {
        return match stopped(&info) {
            Some(code) => Err(NotReady::Exited { code }),
            None => Err(NotReady::NoPorts),
        };
    }
    let ip = address(&info, network);
    let mut info = Some(info);
    // Whether asking the container itself works (its image has `cat`); tried once the address proves unroutable.
    let mut ask_container = true;
    loop {
        let current = match info.take() {
            Some(i) => i,
            None => inspect(service.id.clone()).await?,
        };
        if let Some(code) = stopped(&current) {
            return Err(NotReady::Exited { code });
        }
        let last_error = match probe(ip, &ports).await {
            Probe::Open => return Ok(()),
            Probe::Refused(e) => e,
            Probe::Unreachable(e) if ask_container => {
                match listen::ports_in_container(docker, &service.id).await {
                    Ok(open) if open.iter().any(|p| ports.contains(p)) => return Ok(()),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, service = %service.name, "cannot list the service's sockets");
                        ask_container = false;
                    }
                }
                e
            }
            Probe::Unreachable(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(NotReady::Timeout {
                ip,
                ports,
                secs: timeout.as_secs(),
                last_error,
            });
        }
        tokio::time::sleep(RETRY.min(deadline - now)).await;
    }
}

/// The last lines of the container's output (stdout and stderr, with timestamps), capped at 64 KiB.
pub async fn recent_logs(docker: &Docker, id: &str) -> String {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        timestamps: true,
        tail: LOG_TAIL.to_owned(),
        ..Default::default()
    };
    let mut out: Vec<u8> = Vec::new();
    let mut stream = docker.logs(id, Some(options));
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                let bytes = chunk.into_bytes();
                let room = LOG_LIMIT.saturating_sub(out.len());
                out.extend_from_slice(&bytes[..bytes.len().min(room)]);
                if out.len() >= LOG_LIMIT {
                    break;
                }
            }
            Err(e) => {
                out.extend_from_slice(format!("(reading the logs failed: {e})").as_bytes());
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

/// The warning block for a service that did not come up, in gitlab-runner's layout.
pub fn warning_block(service: &StartedService, reason: &NotReady, logs: &str) -> String {
    const YELLOW: &str = "\x1b[0;33m";
    const RESET: &str = "\x1b[0;m";
    let logs = if logs.is_empty() { "(no output)" } else { logs };
    format!(
        "\n{YELLOW}*** WARNING:{RESET} Service {} probably didn't start properly.\n\nHealth check error:\n{}\n\nService container logs:\n{logs}\n\n{YELLOW}*********{RESET}\n\n",
        service.name,
        reason.describe(service).trim()
    )
}

/// Waits for all `services` in parallel (up to `timeout` each) and writes a warning block for each that did not
/// come up. When the runner itself runs in a container of the same engine, that container joins `network` for
/// the wait (see [`route`]).
pub async fn wait_for_services(
    docker: &Docker,
    services: &[StartedService],
    network: &str,
    timeout: Duration,
    trace: &TraceWriter,
) {
    if services.is_empty() {
        return;
    }
    trace.println(&format!(
        "Waiting for services to be up and running (timeout {} seconds)...",
        timeout.as_secs()
    ));
    let joined = route::join_if_needed(docker, network).await;
    if let Err(e) = &joined {
        trace.warning(&format!(
            "could not attach the runner's container to network {network} to probe the services: {e}"
        ));
    }
    let results = futures::future::join_all(
        services
            .iter()
            .map(|s| async move { (s, wait_one(docker, s, network, timeout).await) }),
    )
    .await;
    if let Ok(Some(own)) = &joined {
        route::leave(docker, network, own).await;
    }
    for (service, result) in results {
        if let Err(reason) = result {
            let logs = recent_logs(docker, &service.id).await;
            trace.write(warning_block(service, &reason, &logs).as_bytes());
        }
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
    fn ports_from_variable_or_image() {
        assert_eq!(
            probe_ports(&s(&["A=1", "healthcheck_tcp_port=5432"]), &s(&["80/tcp"])).unwrap(),
            vec![5432]
        );
        assert!(probe_ports(&s(&["HEALTHCHECK_TCP_PORT=x"]), &[]).is_err());
        assert_eq!(
            probe_ports(&[], &s(&["2376/tcp", "53/udp", "2375/tcp", "7000-7002/tcp"])).unwrap(),
            vec![2375, 2376, 7000, 7001, 7002]
        );
        assert_eq!(probe_ports(&[], &s(&["1-100/tcp"])).unwrap().len(), MAX_PORTS);
        assert!(probe_ports(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn warning_names_service_image_port_and_logs() {
        let svc = StartedService {
            id: "abc".into(),
            name: "runner-x-project-1-concurrent-0-deadbeef-postgres-0".into(),
            image: "postgres:16".into(),
        };
        let reason = NotReady::Timeout {
            ip: "172.18.0.2".parse().unwrap(),
            ports: vec![5432],
            secs: 30,
            last_error: "connection refused".into(),
        };
        let block = warning_block(&svc, &reason, "FATAL: bad config");
        assert!(block.contains(
            "Service runner-x-project-1-concurrent-0-deadbeef-postgres-0 probably didn't start properly."
        ));
        assert!(block.contains("image postgres:16"), "{block}");
        assert!(block.contains("port 5432 within 30 s"), "{block}");
        assert!(
            block.contains("Service container logs:\nFATAL: bad config"),
            "{block}"
        );
        let exited = warning_block(&svc, &NotReady::Exited { code: 3 }, "");
        assert!(exited.contains("exited with code 3"), "{exited}");
        assert!(exited.contains("(no output)"), "{exited}");
    }
}
