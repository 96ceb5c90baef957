//! Whether a forge could reach `public_url`: a hosted forge cannot deliver to a
//! loopback, private (RFC 1918, ULA), link-local or `localhost` address, and a webhook
//! registered there fails every delivery. Self-hosted forges on the same network pass
//! `--allow-private`. Hostnames are not resolved: a name is taken as public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why the forge could not reach the URL; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "public_url {url} is {what}: the forge could not deliver to it. Set public_url in the \
     config to the address the forge reaches (e.g. https://ci.example.com), or pass \
     --allow-private for a forge on your own network"
)]
pub(crate) struct Unreachable {
    /// The URL as configured.
    url: String,
    /// What kind of address it is.
    what: &'static str,
}

/// Refuses a `public_url` whose host no forge outside this machine or network reaches.
pub(crate) fn check_public_url(url: &str) -> Result<(), Unreachable> {
    let refuse = |what| {
        Err(Unreachable {
            url: url.to_owned(),
            what,
        })
    };
    let Some(host) = host_of(url) else {
        return refuse("not an http(s) URL with a host");
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return refuse("localhost");
    }
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    };
    match ip.and_then(private_kind) {
        Some(what) => refuse(what),
        None => Ok(()),
    }
}

/// The host part of `scheme://[userinfo@]host[:port][/path]`, brackets kept for IPv6.
fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = match host_port.starts_with('[') {
        true => &host_port[..=host_port.find(']')?],
        false => host_port.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// What kind of non-public address `ip` is, if it is one.
fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private address (unique local, fc00::/7)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

fn v4_kind(v4: Ipv4Addr) -> Option<&'static str> {
    if v4.is_loopback() {
        Some("a loopback address")
    } else if v4.is_private() {
        Some("a private address (RFC 1918)")
    } else if v4.is_link_local() {
        Some("a link-local address")
    } else if v4.is_unspecified() {
        Some("the unspecified address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_no_forge_can_reach_are_refused_with_what_they_are() {
        let cases = [
            ("http://127.0.0.1:8080", "a loopback address"),
            ("http://127.8.9.10", "a loopback address"),
            ("http://[::1]:8080/x", "a loopback address"),
            ("https://localhost", "localhost"),
            ("https://ci.LOCALHOST.:8443", "localhost"),
            ("http://10.1.2.3", "a private address (RFC 1918)"),
            ("http://172.16.0.1", "a private address (RFC 1918)"),
            ("http://172.31.255.1", "a private address (RFC 1918)"),
            ("http://192.168.1.20:8080", "a private address (RFC 1918)"),
            (
                "http://[fd12:3456::1]",
                "a private address (unique local, fc00::/7)",
            ),
            ("http://169.254.1.1", "a link-local address"),
            ("http://[fe80::1]", "a link-local address"),
            (
                "http://[::ffff:192.168.0.1]",
                "a private address (RFC 1918)",
            ),
            ("http://0.0.0.0:8080", "the unspecified address"),
            ("http://user:pw@10.0.0.1/", "a private address (RFC 1918)"),
            ("ftp://example.com", "not an http(s) URL with a host"),
            ("http://", "not an http(s) URL with a host"),
        ];
        for (url, what) in cases {
            let err = check_public_url(url).expect_err(url);
            assert_eq!(err.what, what, "{url}");
            let text = err.to_string();
            assert!(
                text.contains(url) && text.contains("--allow-private"),
                "{text}"
            );
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for url in [
            "https://ci.example.com",
            "https://ci.example.com:8443/base",
            "http://172.32.0.1",
            "http://8.8.8.8",
            "http://[2001:db8::1]:80",
            "https://localhost.example.com",
        ] {
            assert_eq!(check_public_url(url), Ok(()), "{url}");
        }
    }
}
