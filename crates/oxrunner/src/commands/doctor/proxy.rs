//! Whether the runner's HTTP client reaches a URL through a proxy from the environment (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, minus `NO_PROXY`), the way reqwest picks it. Doctor's raw DNS/TCP/TLS probes connect
//! directly, so with a proxy they would describe a path the runner does not take.

use std::net::IpAddr;

/// The proxy the client uses for `url` and the variable it came from, or `None` for a direct connection.
pub fn for_url(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, &'static str)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let get = |name: &'static str| {
        env(name)
            .or_else(|| env(&name.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
            .map(|v| (v, name))
    };
    let found = match parsed.scheme() {
        "https" => get("HTTPS_PROXY"),
        _ => get("HTTP_PROXY"),
    }
    .or_else(|| get("ALL_PROXY"))?;
    let no_proxy = get("NO_PROXY").map(|(v, _)| v).unwrap_or_default();
    if excluded(host, &no_proxy) {
        return None;
    }
    Some(found)
}

/// `NO_PROXY`: `*`, exact hosts or IPs, domain suffixes (with or without a leading dot), and IP/prefix ranges.
fn excluded(host: &str, no_proxy: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some(ip) = ip {
                return in_range(ip, &entry);
            }
            let domain = entry.trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        })
}

fn in_range(ip: IpAddr, entry: &str) -> bool {
    let (net, bits) = match entry.split_once('/') {
        Some((n, b)) => match b.parse::<u32>() {
            Ok(b) => (n, Some(b)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let Ok(net) = net.trim_matches(['[', ']']).parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix_eq(&a.octets(), &n.octets(), bits.unwrap_or(32)),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix_eq(&a.octets(), &n.octets(), bits.unwrap_or(128)),
        _ => false,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    let bits = bits.min(u32::try_from(a.len() * 8).unwrap_or(u32::MAX));
    (0..bits).all(|i| {
        let (byte, bit) = ((i / 8) as usize, 7 - (i % 8));
        (a[byte] >> bit) & 1 == (b[byte] >> bit) & 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_scheme_picks_the_variable_and_no_proxy_excludes() {
        let e = env(&[("https_proxy", "http://p:3128"), ("NO_PROXY", ".corp,10.0.0.0/8")]);
        assert_eq!(
            for_url("https://gitlab.example.com/", &e),
            Some(("http://p:3128".into(), "HTTPS_PROXY"))
        );
        assert_eq!(for_url("http://gitlab.example.com/", &e), None);
        assert_eq!(for_url("https://gitlab.corp/", &e), None);
        assert_eq!(for_url("https://a.gitlab.corp/", &e), None);
        assert_eq!(for_url("https://10.1.2.3/", &e), None);
        assert!(for_url("https://11.1.2.3/", &e).is_some());
        assert_eq!(
            for_url(
                "https://x/",
                &env(&[("ALL_PROXY", "socks5://s"), ("no_proxy", "*")])
            ),
            None
        );
    }
}
