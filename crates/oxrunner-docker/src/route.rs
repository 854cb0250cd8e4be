//! Reaching service containers from the runner process when the runner itself runs in a container.
//!
//! The readiness probe connects from the runner to the service's address on the per-job network. On a plain
//! host that address is routable (the engine's bridges are host interfaces). In the seed's setup the runner runs
//! in a container with only `/var/run/docker.sock` mounted: it sits on the default bridge, and the engine's
//! isolation rules drop traffic between bridge networks, so every probe would time out. Rather than a helper
//! image, the runner's own container joins the job network for the duration of the wait and leaves it right
//! after (before the network is removed at cleanup).
//!
//! The own container is found from `/proc/self/mountinfo` (the engine bind-mounts
//! `/var/lib/docker/containers/<id>/{hostname,hosts,resolv.conf}` into every container) or, failing that, from
//! a 12-hex-digit hostname (the engine's default for a container); either is only trusted once the engine confirms a container with that id exists, so
//! a runner in a container of some other engine (or a VM with a stray `/.dockerenv`) changes nothing.

use bollard::Docker;
use bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};

use crate::error::{DockerError, is_not_found};

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container ids named by the engine's per-container files in a `mountinfo` text, most specific first.
pub fn ids_from_mountinfo(mountinfo: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in mountinfo.lines() {
        let mut fields = line.split_whitespace();
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        if !matches!(mount_point, "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf") {
            continue;
        }
        let mut parts = root.split('/').skip_while(|p| *p != "containers").skip(1);
        if let Some(id) = parts.next()
            && is_container_id(id)
            && !out.iter().any(|o| o == id)
        {
            out.push(id.to_owned());
        }
    }
    out
}

/// Candidates for "the container this process runs in": ids from mountinfo, then a short-id hostname.
fn candidates() -> Vec<String> {
    let mut out = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| ids_from_mountinfo(&m))
        .unwrap_or_default();
    // The kernel's name (this UTS namespace) first: /etc/hostname may be a file the image or a bind left behind.
    for file in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(host) = std::fs::read_to_string(file) {
            let host = host.trim();
            if host.len() == 12
                && host.bytes().all(|b| b.is_ascii_hexdigit())
                && !out.iter().any(|o| o.starts_with(host))
            {
                out.push(host.to_owned());
            }
        }
    }
    out
}

/// The id of the container (on this engine) the runner runs in, if any.
pub async fn own_container(docker: &Docker) -> Option<String> {
    for candidate in candidates() {
        match docker.inspect_container(&candidate, None).await {
            Ok(info) => {
                if let Some(id) = info.id.filter(|id| id.starts_with(&candidate)) {
                    return Some(id);
                }
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::debug!(error = %e, candidate, "inspecting a possible own container"),
        }
    }
    None
}

/// Connects `container` to `network` unless it shares the host's network stack (already routable) or is on
/// that network already. Returns whether it joined (and so must [`leave`]).
pub async fn join(docker: &Docker, container: &str, network: &str) -> Result<bool, DockerError> {
    let info = docker
        .inspect_container(container, None)
        .await
        .map_err(DockerError::api(format!("inspecting container {container}")))?;
    let mode = info
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
        .unwrap_or_default();
    if mode == "host" {
        return Ok(false);
    }
    let on_network = info
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .is_some_and(|n| n.contains_key(network));
    if on_network {
        return Ok(false);
    }
    docker
        .connect_network(
            network,
            NetworkConnectRequest {
                container: container.to_owned(),
                endpoint_config: None,
            },
        )
        .await
        .map_err(DockerError::api(format!(
            "connecting container {container} to network {network}"
        )))?;
    Ok(true)
}

/// Disconnects `container` from `network`; failures are only logged (cleanup removes the network with force
/// anyway, and the job must not fail over it).
pub async fn leave(docker: &Docker, network: &str, container: &str) {
    let request = NetworkDisconnectRequest {
        container: container.to_owned(),
        force: Some(true),
    };
    if let Err(e) = docker.disconnect_network(network, request).await {
        tracing::warn!(error = %e, container, network, "disconnecting the runner's container from the job network");
    }
}

/// Joins the runner's own container to `network` when the runner runs in a container of this engine; returns
/// the container id to [`leave`] afterwards, or `None` when nothing was changed.
pub async fn join_if_needed(docker: &Docker, network: &str) -> Result<Option<String>, DockerError> {
    // Modes that are not networks a container can be connected to (a configured `network_mode`).
    if matches!(network, "host" | "none") || network.starts_with("container:") {
        return Ok(None);
    }
    let Some(own) = own_container(docker).await else {
        return Ok(None);
    };
    Ok(join(docker, &own, network).await?.then_some(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_from_mountinfo() {
        let id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
        let text = format!(
            "1000 990 0:50 / / rw,relatime master:1 - overlay overlay rw\n\
             1010 1000 8:1 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/sda1 rw\n\
             1011 1000 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n\
             1012 1000 8:1 /data/containers/{id}/other /mnt/other rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(ids_from_mountinfo(&text), vec![id.to_owned()]);
        assert!(ids_from_mountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\n").is_empty());
        assert!(
            ids_from_mountinfo("1 2 8:1 /var/lib/docker/containers/nothex/hosts /etc/hosts rw - ext4 x rw\n")
                .is_empty()
        );
    }
}
