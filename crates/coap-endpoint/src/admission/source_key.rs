//! What a per-source limit counts as "one source": an IPv4 address, or an IPv6 prefix.
//!
//! An IPv6 host usually holds a whole /64 and can pick any address in it (SLAAC, privacy
//! addresses, or simply `ip addr add`), so counting IPv6 sources per address lets one host
//! sidestep every per-source quota by changing its address. The
//! rate limiter, the registration quota and the observer bound therefore count IPv6 sources per
//! prefix (`limits.ipv6_source_prefix`, default 64). IPv4-mapped IPv6 addresses count as their
//! IPv4 address, so a dual-stack socket does not give an IPv4 host a second identity.
//!
//! The price, documented in config.yaml: devices behind one border router that share a /64
//! (a Thread network) share these limits; 128 counts every address on its own.

use std::net::{IpAddr, Ipv6Addr};

/// The default prefix length for IPv6 sources.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// How per-source limits group addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceGrouping {
    ipv6_prefix: u8,
}

impl Default for SourceGrouping {
    fn default() -> Self {
        SourceGrouping {
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

impl SourceGrouping {
    /// IPv6 sources grouped by their first `ipv6_prefix` bits (at most 128).
    pub const fn new(ipv6_prefix: u8) -> Self {
        SourceGrouping {
            ipv6_prefix: if ipv6_prefix > 128 { 128 } else { ipv6_prefix },
        }
    }

    /// Every address on its own (how the limits counted before IPv6 prefixes).
    pub const fn per_address() -> Self {
        SourceGrouping { ipv6_prefix: 128 }
    }

    /// The key `ip` is counted under: the address itself for IPv4 (also IPv4-mapped IPv6), the
    /// address with its host bits cleared for IPv6.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return IpAddr::V4(v4);
                }
                let bits = u128::from(v6);
                let mask = match self.ipv6_prefix {
                    0 => 0,
                    n => u128::MAX << (128 - u32::from(n)),
                };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
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
    fn ipv6_addresses_of_one_64_are_one_source() {
        let g = SourceGrouping::default();
        assert_eq!(g.key(ip("fd99::3")), g.key(ip("fd99::8")));
        assert_eq!(g.key(ip("fd99::3")), ip("fd99::"));
        assert_ne!(g.key(ip("fd99::3")), g.key(ip("fd99:0:0:1::3")));
    }

    #[test]
    fn ipv4_and_mapped_ipv4_are_per_address() {
        let g = SourceGrouping::default();
        assert_eq!(g.key(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_ne!(g.key(ip("10.0.0.1")), g.key(ip("10.0.0.2")));
        assert_eq!(g.key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn prefix_length_is_configurable() {
        assert_eq!(
            SourceGrouping::per_address().key(ip("fd99::3")),
            ip("fd99::3")
        );
        assert_eq!(
            SourceGrouping::new(48).key(ip("fd99:1:2:3::4")),
            ip("fd99:1:2::")
        );
        assert_eq!(SourceGrouping::new(0).key(ip("fd99::4")), ip("::"));
        assert_eq!(SourceGrouping::new(200).key(ip("fd99::4")), ip("fd99::4"));
    }
}
