//! Parsing `discovery.targets` (issue 9): each entry names where the Discovery actor sends
//! `GET /.well-known/core` (RFC 6690 §4). Pure: no I/O.
//!
//! Accepted forms: a unicast `host:port` (`127.0.0.1:5683`, `[::1]:5683`), a port range on one
//! address (`127.0.0.1:40000-40019`, inclusive), or an IP address without a port (CoAP's
//! default port 5683, RFC 7252 §6.1). Multicast addresses are refused: multicast discovery is
//! not built.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// CoAP's default UDP port (RFC 7252 §6.1).
pub const COAP_PORT: u16 = 5683;

/// The most addresses one range may expand to, so a typo cannot make a round of millions.
pub const MAX_RANGE_LEN: usize = 65_536;

/// Why a target entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    #[error("`{0}` is not an address, address:port or address:first-last")]
    Syntax(String),
    #[error("`{0}`: the port range is empty (first port above last)")]
    EmptyRange(String),
    #[error("`{0}`: port 0 cannot be a discovery target")]
    PortZero(String),
    #[error("`{0}`: multicast discovery is not supported; list unicast addresses")]
    Multicast(String),
}

/// One configured target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unicast(SocketAddr),
    /// Every port from `first` to `last`, inclusive, on `ip`.
    Range {
        ip: IpAddr,
        first: u16,
        last: u16,
    },
}

impl Target {
    /// Every address this target stands for.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let (ip, first, last) = match *self {
            Target::Unicast(addr) => (addr.ip(), addr.port(), addr.port()),
            Target::Range { ip, first, last } => (ip, first, last),
        };
        (first..=last).map(move |port| SocketAddr::new(ip, port))
    }
}

/// Parse one entry of `discovery.targets`.
pub fn parse_target(entry: &str) -> Result<Target, TargetError> {
    let s = entry.trim();
    let syntax = || TargetError::Syntax(entry.to_string());
    if let Ok(ip) = s.parse::<IpAddr>() {
        return unicast(entry, SocketAddr::new(ip, COAP_PORT));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return unicast(entry, addr);
    }
    // `addr:first-last`: the range is after the last ':' (IPv6 needs brackets, so the address
    // part must still parse as `addr:first`).
    let (host_and_first, last) = s.rsplit_once('-').ok_or_else(syntax)?;
    let start: SocketAddr = host_and_first.parse().map_err(|_| syntax())?;
    let last: u16 = last.parse().map_err(|_| syntax())?;
    if start.ip().is_multicast() {
        return Err(TargetError::Multicast(entry.to_string()));
    }
    if start.port() == 0 {
        return Err(TargetError::PortZero(entry.to_string()));
    }
    if last < start.port() {
        return Err(TargetError::EmptyRange(entry.to_string()));
    }
    Ok(Target::Range {
        ip: start.ip(),
        first: start.port(),
        last,
    })
}

fn unicast(entry: &str, addr: SocketAddr) -> Result<Target, TargetError> {
    if addr.ip().is_multicast() {
        return Err(TargetError::Multicast(entry.to_string()));
    }
    if addr.port() == 0 {
        return Err(TargetError::PortZero(entry.to_string()));
    }
    Ok(Target::Unicast(addr))
}

/// Parse every entry and expand them to distinct addresses, in configuration order.
pub fn expand_targets<S: AsRef<str>>(entries: &[S]) -> Result<Vec<SocketAddr>, TargetError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for entry in entries {
        let target = parse_target(entry.as_ref())?;
        out.extend(target.addrs().filter(|a| seen.insert(*a)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unicast_forms() {
        assert_eq!(
            parse_target("127.0.0.1:5683"),
            Ok(Target::Unicast(sa("127.0.0.1:5683")))
        );
        assert_eq!(
            parse_target(" [::1]:6000 "),
            Ok(Target::Unicast(sa("[::1]:6000")))
        );
        assert_eq!(
            parse_target("10.0.0.7"),
            Ok(Target::Unicast(sa("10.0.0.7:5683")))
        );
        assert_eq!(parse_target("::1"), Ok(Target::Unicast(sa("[::1]:5683"))));
    }

    #[test]
    fn ranges_expand_inclusively() {
        let t = parse_target("127.0.0.1:40000-40019").unwrap();
        let addrs: Vec<_> = t.addrs().collect();
        assert_eq!(addrs.len(), 20);
        assert_eq!(addrs[0], sa("127.0.0.1:40000"));
        assert_eq!(addrs[19], sa("127.0.0.1:40019"));
        let v6: Vec<_> = parse_target("[::1]:7-8").unwrap().addrs().collect();
        assert_eq!(v6, vec![sa("[::1]:7"), sa("[::1]:8")]);
        let one: Vec<_> = parse_target("127.0.0.1:9-9").unwrap().addrs().collect();
        assert_eq!(one, vec![sa("127.0.0.1:9")]);
        let top: Vec<_> = parse_target("127.0.0.1:65534-65535")
            .unwrap()
            .addrs()
            .collect();
        assert_eq!(top.len(), 2, "the last port does not overflow");
    }

    #[test]
    fn bad_entries_are_refused_with_reasons() {
        for bad in ["", "nonsense", "127.0.0.1:x", "127.0.0.1:1-x", "host:5683"] {
            assert!(
                matches!(parse_target(bad), Err(TargetError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_target("127.0.0.1:20-10"),
            Err(TargetError::EmptyRange(_))
        ));
        assert!(matches!(
            parse_target("127.0.0.1:0"),
            Err(TargetError::PortZero(_))
        ));
        assert!(matches!(
            parse_target("127.0.0.1:0-5"),
            Err(TargetError::PortZero(_))
        ));
        for mc in ["224.0.1.187", "[ff02::fd]:5683", "224.0.1.187:1-2"] {
            assert!(
                matches!(parse_target(mc), Err(TargetError::Multicast(_))),
                "{mc}"
            );
        }
    }

    #[test]
    fn expansion_drops_duplicates_and_keeps_order() {
        let addrs = expand_targets(&["127.0.0.1:3-4", "127.0.0.1:4", "127.0.0.1:1"]).unwrap();
        assert_eq!(
            addrs,
            vec![sa("127.0.0.1:3"), sa("127.0.0.1:4"), sa("127.0.0.1:1")]
        );
        assert!(expand_targets(&["127.0.0.1:1", "bad"]).is_err());
    }
}
