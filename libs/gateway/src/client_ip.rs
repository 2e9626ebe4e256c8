//! The client's IP: the socket peer, unless the peer is a trusted proxy, in which case
//! the right-most `X-Forwarded-For` entry that is not itself trusted. A header sent by an
//! untrusted peer changes nothing.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, connect_info::MockConnectInfo};
use http::HeaderName;
use ipnet::IpNet;

/// `TRUSTED_PROXIES`: CIDRs whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

impl TrustedProxies {
    /// Parses a comma list of CIDRs or addresses; the error names the bad entry.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a CIDR or IP address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client IP for a peer and its `X-Forwarded-For` values.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for entry in forwarded_for.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// An IP address as text (IPv4 written by hand: this runs on every request).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The rate-limit key of an IP: the address, or its /64 for IPv6 (one subscriber).
pub fn rate_key(ip: IpAddr) -> String {
    match canonical(ip) {
        v4 @ IpAddr::V4(_) => ip_text(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The socket peer of a request served by [`crate::serve`] (or given by axum's
/// `ConnectInfo` / `MockConnectInfo` in tests); loopback when unknown.
pub fn peer_ip(request: &Request) -> IpAddr {
    let extensions = request.extensions();
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0))
        .map_or(IpAddr::from([127, 0, 0, 1]), |addr| addr.ip())
}

/// The client behind a request, as the proxy forwards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Its IP address.
    pub ip: IpAddr,
    /// Whether it spoke HTTPS to the first proxy: `X-Forwarded-Proto: https` from a
    /// trusted proxy (one terminating TLS in front of the gateway).
    pub https: bool,
}

impl TrustedProxies {
    /// The client of `request` arriving from `peer`.
    pub fn client_of(&self, peer: IpAddr, request: &Request) -> Client {
        const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
        let headers = request.headers();
        let forwarded: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let https = self.trusts(canonical(peer))
            && headers
                .get(FORWARDED_PROTO)
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
        Client {
            ip: self.client_ip(peer, &forwarded),
            https,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_ip() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &["1.2.3.4"]),
            ip("1.2.3.4")
        );
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &["6.6.6.6, 1.2.3.4, 10.9.9.9"]),
            ip("1.2.3.4")
        );
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &["6.6.6.6", "1.2.3.4"]),
            ip("1.2.3.4")
        );
        assert_eq!(trusted.client_ip(ip("192.168.1.1"), &[]), ip("192.168.1.1"));
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &["garbage, 1.2.3.4"]),
            ip("1.2.3.4")
        );
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &["1.2.3.4, garbage"]),
            ip("10.1.2.3")
        );
        assert!(
            TrustedProxies::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("10.0.0.0/33")
        );
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64() {
        assert_eq!(
            rate_key(ip("2001:db8:1:2:aaaa::1")),
            rate_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        for text in ["0.0.0.0", "10.0.100.9", "255.255.255.255", "2001:db8::1"] {
            assert_eq!(ip_text(ip(text)), text);
        }
    }
}
