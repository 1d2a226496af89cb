//! The endpoint name of a discovered device. Pure: no I/O.
//!
//! A device that names itself with an `ep` attribute in its `/.well-known/core` links keeps
//! that name. Otherwise the name is derived from the address it answered from, injectively:
//! every IPv4 octet, every IPv6 16-bit group (fully expanded), the scope id when there is one,
//! and the port, so two different addresses never share a name (the original design's
//! generated names could collide).

use std::net::SocketAddr;

use crate::registry::EndpointName;
use link_format::Link;

/// Prefix of every generated name.
pub(crate) const GENERATED_PREFIX: &str = "disc-";

/// The name to register a discovered device under.
pub(crate) fn endpoint_name(links: &[Link], addr: SocketAddr) -> EndpointName {
    offered_name(links).unwrap_or_else(|| generated_name(addr))
}

/// The first valid `ep` attribute among `links`, if any.
pub(crate) fn offered_name(links: &[Link]) -> Option<EndpointName> {
    links
        .iter()
        .flat_map(|l| l.values("ep"))
        .find_map(|v| EndpointName::new(v).ok())
}

/// `disc-127-0-0-1-40003`, `disc-fe80-0-0-0-0-0-0-1-s2-5683` (scope 2), at most 50 bytes.
pub(crate) fn generated_name(addr: SocketAddr) -> EndpointName {
    let mut name = String::from(GENERATED_PREFIX);
    match addr {
        SocketAddr::V4(a) => {
            for octet in a.ip().octets() {
                name.push_str(&format!("{octet}-"));
            }
        }
        SocketAddr::V6(a) => {
            for group in a.ip().segments() {
                name.push_str(&format!("{group:x}-"));
            }
            if a.scope_id() != 0 {
                name.push_str(&format!("s{}-", a.scope_id()));
            }
        }
    }
    name.push_str(&addr.port().to_string());
    // Invariant: ASCII digits, hex and '-' only, at most 5+8*5+11+5 = 61 bytes, so valid.
    EndpointName::new(name).expect("a generated name is short ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{Ipv6Addr, SocketAddrV6};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn generated_names_read_like_the_address() {
        assert_eq!(
            generated_name(sa("127.0.0.1:40003")).as_str(),
            "disc-127-0-0-1-40003"
        );
        assert_eq!(
            generated_name(sa("[::1]:5683")).as_str(),
            "disc-0-0-0-0-0-0-0-1-5683"
        );
        let scoped = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse::<Ipv6Addr>().unwrap(),
            5683,
            0,
            2,
        ));
        assert_eq!(
            generated_name(scoped).as_str(),
            "disc-fe80-0-0-0-0-0-0-1-s2-5683"
        );
        let longest = SocketAddr::V6(SocketAddrV6::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            65535,
            0,
            u32::MAX,
        ));
        assert!(generated_name(longest).as_str().len() <= 63);
    }

    #[test]
    fn different_addresses_never_share_a_name() {
        let mut names = HashSet::new();
        let mut count = 0;
        // Neighbouring octets and ports that naive concatenation would confuse (1.21 vs 12.1).
        for a in [1u8, 12, 21, 121, 211] {
            for b in [1u8, 12, 21] {
                for port in [1u16, 11, 111, 1111] {
                    let v4 = SocketAddr::from(([10, a, b, 1], port));
                    let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0xffff, a.into(), b.into()], port));
                    names.insert(generated_name(v4));
                    names.insert(generated_name(v6));
                    count += 2;
                }
            }
        }
        for scope in [0, 1, 11] {
            let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 11, 0, scope));
            names.insert(generated_name(v6));
            count += 1;
        }
        assert_eq!(names.len(), count);
    }

    #[test]
    fn an_offered_ep_wins_and_invalid_ones_are_skipped() {
        let addr = sa("127.0.0.1:9");
        let links = vec![
            Link::new("/a"),
            Link::new("/b").with("ep", Some("")),
            Link::new("/c").with("ep", Some("lamp-7")),
        ];
        assert_eq!(endpoint_name(&links, addr).as_str(), "lamp-7");
        let none = vec![Link::new("/a").with("rt", Some("x"))];
        assert_eq!(endpoint_name(&none, addr).as_str(), "disc-127-0-0-1-9");
    }
}
