//! Asking a service container which TCP ports it listens on, for when its address is not routable from the
//! runner (a remote engine, Docker Desktop's VM, a runner container that could not join the job network).
//!
//! The kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`) seen from inside the service's network
//! namespace tell it without any helper image; reading them only needs `cat` in the service image, which nearly
//! every image has. Sockets bound to loopback only are left out: the job could not reach them either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;

/// Socket state `TCP_LISTEN` in the tables.
const LISTEN: &str = "0A";

/// Decodes a table address (`0100007F` or 32 hex digits for IPv6): the kernel prints each 32-bit word of the
/// network-order address as a native-endian number.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => word(hex).map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&hex[i * 8..i * 8 + 8])?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// The ports with a listening socket reachable from outside the namespace, from `/proc/net/tcp{,6}` text.
pub fn listening_ports(tables: &str) -> Vec<u16> {
    let mut out: Vec<u16> = tables
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let ip = parse_addr(addr)?;
            let loopback = match ip {
                IpAddr::V4(v4) => v4.is_loopback(),
                IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
            };
            (!loopback).then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Runs `cat /proc/net/tcp /proc/net/tcp6` in the container and returns the listening ports; `Err` when the
/// image has no `cat` or the engine refuses the exec.
pub async fn ports_in_container(docker: &Docker, container: &str) -> Result<Vec<u16>, String> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["cat", "/proc/net/tcp", "/proc/net/tcp6"]),
                attach_stdout: Some(true),
                attach_stderr: Some(false),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("the engine detached the exec".to_owned());
    };
    let mut text = Vec::new();
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) => text.extend_from_slice(&message),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let inspect = docker.inspect_exec(&exec.id).await.map_err(|e| e.to_string())?;
    // tcp6 is missing on hosts without IPv6; the IPv4 table alone still answers.
    if inspect.exit_code.unwrap_or(0) != 0 && text.is_empty() {
        return Err(format!(
            "`cat /proc/net/tcp` failed in the service container (exit code {})",
            inspect.exit_code.unwrap_or(-1)
        ));
    }
    Ok(listening_ports(&String::from_utf8_lossy(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_tables() {
        let v4 = [0u8, 0, 0, 0];
        let any = format!("{:08X}", u32::from_ne_bytes(v4));
        let lo = format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]));
        let ip = format!("{:08X}", u32::from_ne_bytes([172, 18, 0, 2]));
        let v6_any = "0".repeat(32);
        let mut v6_lo = [0u8; 16];
        v6_lo[15] = 1;
        let v6_lo: String = v6_lo
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {any}:1F90 {any}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n\
             1: {lo}:0CEA {any}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 2 1\n\
             2: {ip}:1F90 {ip}:C350 01 00000000:00000000 00:00000000 00000000 0 0 3 1\n\
             3: {ip}:0016 {any}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4 1\n\
             0: {v6_any}:0CEB {v6_any}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 5 1\n\
             1: {v6_lo}:0CEC {v6_any}:0000 0A 00000000:00000000 00:00000000 00000000 0 0 6 1\n"
        );
        // 8080 on 0.0.0.0, 22 on the container address, 3307 on [::]; 3306 and 3308 are loopback only; the
        // established connection does not count.
        assert_eq!(listening_ports(&text), vec![22, 3307, 8080]);
        assert!(listening_ports("").is_empty());
    }
}
