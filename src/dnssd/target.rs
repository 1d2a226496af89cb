//! Which address of a `_coap._udp` service found by mDNS the Discovery actor asks (RFC 6763 §5
//! resolution gives a port and all the host's addresses). Pure: no I/O. Called by `browse`.
//!
//! One address per service, so a dual-stack device is registered once, not once per address
//! (generated endpoint names derive from the address). Preference: routable IPv4, routable
//! IPv6, IPv4 link-local, IPv6 link-local with a scope, loopback; never unspecified,
//! multicast or a link-local IPv6 address without a scope (unusable as a destination).

use std::net::{IpAddr, SocketAddr};

/// The address to ask, or `None` when no candidate is usable.
pub(crate) fn pick_device_addr(
    candidates: impl IntoIterator<Item = SocketAddr>,
) -> Option<SocketAddr> {
    candidates
        .into_iter()
        .filter(|a| a.port() != 0)
        .filter_map(|a| rank(&a).map(|r| (r, a)))
        .min_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.to_string().cmp(&b.to_string())))
        .map(|(_, a)| a)
}

/// Lower is better; `None` is unusable.
fn rank(addr: &SocketAddr) -> Option<u8> {
    match addr {
        SocketAddr::V4(a) => {
            let ip = a.ip();
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                None
            } else if ip.is_loopback() {
                Some(4)
            } else if ip.is_link_local() {
                Some(2)
            } else {
                Some(0)
            }
        }
        SocketAddr::V6(a) => {
            let ip = a.ip();
            if let Some(v4) = ip.to_ipv4_mapped() {
                return rank(&SocketAddr::new(IpAddr::V4(v4), a.port()));
            }
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            if ip.is_unspecified() || ip.is_multicast() {
                None
            } else if ip.is_loopback() {
                Some(4)
            } else if link_local {
                (a.scope_id() != 0).then_some(3)
            } else {
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV6;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn scoped(ip: &str, port: u16, scope: u32) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(ip.parse().unwrap(), port, 0, scope))
    }

    #[test]
    fn routable_ipv4_wins_then_ipv6() {
        let got = pick_device_addr([
            sa("[fd77::2]:5683"),
            scoped("fe80::1", 5683, 2),
            sa("10.77.0.2:5683"),
            sa("127.0.0.1:5683"),
        ]);
        assert_eq!(got, Some(sa("10.77.0.2:5683")));
        let got = pick_device_addr([scoped("fe80::1", 5683, 2), sa("[fd77::2]:5683")]);
        assert_eq!(got, Some(sa("[fd77::2]:5683")));
        let got = pick_device_addr([sa("127.0.0.1:9"), sa("169.254.3.4:9")]);
        assert_eq!(got, Some(sa("169.254.3.4:9")));
    }

    #[test]
    fn link_local_ipv6_needs_a_scope() {
        assert_eq!(pick_device_addr([scoped("fe80::1", 5683, 0)]), None);
        assert_eq!(
            pick_device_addr([scoped("fe80::1", 5683, 3)]),
            Some(scoped("fe80::1", 5683, 3))
        );
    }

    #[test]
    fn unusable_addresses_are_never_picked() {
        for bad in [
            "0.0.0.0:5683",
            "224.0.1.187:5683",
            "[::]:5683",
            "[ff02::fd]:5683",
        ] {
            assert_eq!(pick_device_addr([sa(bad)]), None, "{bad}");
        }
        assert_eq!(pick_device_addr([sa("10.0.0.1:0")]), None, "port 0");
        assert_eq!(pick_device_addr(Vec::new()), None);
    }

    #[test]
    fn the_choice_does_not_depend_on_order() {
        let a = [sa("10.0.0.9:1"), sa("10.0.0.10:1"), sa("192.168.1.1:1")];
        let mut b = a;
        b.reverse();
        assert_eq!(pick_device_addr(a), pick_device_addr(b));
    }
}
