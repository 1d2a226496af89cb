//! Parsing `discovery.targets`: each entry names where the Discovery actor sends
//! `GET /.well-known/core` (RFC 6690 §4). Pure: no I/O.
//!
//! Accepted forms: a unicast `host:port` (`127.0.0.1:5683`, `[::1]:5683`), a port range on one
//! address (`127.0.0.1:40000-40019`, inclusive), or an IP address without a port (CoAP's
//! default port 5683, RFC 7252 §6.1). A multicast group (`224.0.1.187`, `[ff02::fd%eth0]`,
//! optionally with `:port`) is asked once per round (RFC 7252 §8); an IPv6 group of link- or
//! interface-local scope names its interface after `%` (the scope of the group), an IPv4 group
//! leaves by the routing table and takes none. Groups cannot be ranges.
//!
//! A device that speaks CoAP over DTLS is `coaps://IDENTITY@address[:port]` (port 5684 by
//! default): asked over DTLS with that identity's key from the identities file, and registered
//! as that identity, under that name.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// CoAP's default UDP port (RFC 7252 §6.1).
pub(crate) const COAP_PORT: u16 = 5683;
/// CoAP over DTLS's default port (RFC 7252 §6.2).
pub(crate) const COAPS_PORT: u16 = 5684;

/// Why a target entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum TargetError {
    #[error("`{0}` is not an address, address:port or address:first-last")]
    Syntax(String),
    #[error("`{0}`: the port range is empty (first port above last)")]
    EmptyRange(String),
    #[error("`{0}`: port 0 cannot be a discovery target")]
    PortZero(String),
    #[error("`{0}`: a port range cannot be a multicast group")]
    Multicast(String),
    #[error("`{0}`: a link-local IPv6 group needs its interface, e.g. [ff02::fd%eth0]")]
    GroupNeedsInterface(String),
    #[error("`{0}`: an interface (%name) is only meaningful for an IPv6 group")]
    UnexpectedInterface(String),
    #[error("no interface named {0:?}")]
    UnknownInterface(String),
    #[error("`{0}`: a coaps target is coaps://IDENTITY@address[:port] (one unicast address)")]
    Secure(String),
}

/// A multicast group to ask, with the interface that scopes it (IPv6 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupTarget {
    pub ip: IpAddr,
    pub port: u16,
    pub interface: Option<String>,
}

/// One configured target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Unicast(SocketAddr),
    /// Every port from `first` to `last`, inclusive, on `ip`.
    Range {
        ip: IpAddr,
        first: u16,
        last: u16,
    },
    Group(GroupTarget),
    /// A device asked over DTLS as `identity`.
    Secure {
        addr: SocketAddr,
        identity: String,
    },
}

impl Target {
    /// Every unicast address this target stands for (none for a group).
    pub(crate) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let (ip, first, last) = match self {
            Target::Unicast(addr) => (addr.ip(), addr.port(), addr.port()),
            Target::Range { ip, first, last } => (*ip, *first, *last),
            // An empty range: 1..=0.
            Target::Group(g) => (g.ip, 1, 0),
            Target::Secure { addr, .. } => (addr.ip(), addr.port(), addr.port()),
        };
        (first..=last).map(move |port| SocketAddr::new(ip, port))
    }
}

/// Parse one entry of `discovery.targets`.
pub(crate) fn parse_target(entry: &str) -> Result<Target, TargetError> {
    let s = entry.trim();
    let syntax = || TargetError::Syntax(entry.to_string());
    if let Some(rest) = s.strip_prefix("coaps://") {
        return secure(entry, rest);
    }
    if let Some(group) = parse_group(entry, s)? {
        return Ok(Target::Group(group));
    }
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

/// `Some` when `s` names a multicast group: `ip`, `ip%iface`, `[ip%iface]:port`, `ip:port`.
fn parse_group(entry: &str, s: &str) -> Result<Option<GroupTarget>, TargetError> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let Some((host, after)) = rest.split_once(']') else {
                return Ok(None);
            };
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().ok(),
                None if after.is_empty() => Some(COAP_PORT),
                None => None,
            };
            (host, port)
        }
        None => match s.rsplit_once(':') {
            // Only IPv4 may carry an unbracketed port; a bare IPv6 group has colons of its own.
            Some((h, p)) if h.parse::<std::net::Ipv4Addr>().is_ok() => match p.parse() {
                Ok(port) => (h, Some(port)),
                // `224.0.1.187:1-2`: a range, refused by the range parser.
                Err(_) => return Ok(None),
            },
            _ => (s, Some(COAP_PORT)),
        },
    };
    let (ip, interface) = match host.split_once('%') {
        Some((ip, iface)) => (ip, Some(iface.to_string())),
        None => (host, None),
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return Ok(None);
    };
    if !ip.is_multicast() {
        return Ok(None);
    }
    let port = port.ok_or_else(|| TargetError::Syntax(entry.to_string()))?;
    if port == 0 {
        return Err(TargetError::PortZero(entry.to_string()));
    }
    match (&ip, &interface) {
        (IpAddr::V4(_), Some(_)) => Err(TargetError::UnexpectedInterface(entry.to_string())),
        (_, Some(name)) if name.is_empty() => Err(TargetError::Syntax(entry.to_string())),
        // ff01::/16 interface-local and ff02::/16 link-local need the interface as scope.
        (IpAddr::V6(v6), None) if v6.segments()[0] & 0x000f <= 2 => {
            Err(TargetError::GroupNeedsInterface(entry.to_string()))
        }
        _ => Ok(Some(GroupTarget {
            ip,
            port,
            interface,
        })),
    }
}

/// `IDENTITY@address[:port]` after `coaps://`.
fn secure(entry: &str, rest: &str) -> Result<Target, TargetError> {
    let bad = || TargetError::Secure(entry.to_string());
    let (identity, host) = rest.rsplit_once('@').ok_or_else(bad)?;
    if identity.is_empty() || identity.chars().any(char::is_control) {
        return Err(bad());
    }
    let host = host.trim_end_matches('/');
    let addr = match host.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let ip = host.trim_start_matches('[').trim_end_matches(']');
            SocketAddr::new(ip.parse::<IpAddr>().map_err(|_| bad())?, COAPS_PORT)
        }
    };
    match unicast(entry, addr)? {
        Target::Unicast(addr) => Ok(Target::Secure {
            addr,
            identity: identity.to_string(),
        }),
        _ => Err(bad()),
    }
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

/// `discovery.targets` parsed, each entry once: what the Discovery actor asks every round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Every unicast address, expanded from addresses and ranges: distinct, in configuration
    /// order.
    pub unicast: Vec<SocketAddr>,
    /// The multicast groups, in configuration order, without duplicates.
    pub groups: Vec<GroupTarget>,
    /// The DTLS devices (also in `unicast`), with the identity each is asked as.
    pub secure: Vec<(SocketAddr, String)>,
}

impl Targets {
    /// Parse every entry; the first bad one is the error.
    pub(crate) fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Targets, TargetError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Targets::default();
        for entry in entries {
            match parse_target(entry.as_ref())? {
                Target::Group(g) => {
                    if !out.groups.contains(&g) {
                        out.groups.push(g);
                    }
                }
                Target::Secure { addr, identity } => {
                    if seen.insert(addr) {
                        out.unicast.push(addr);
                        out.secure.push((addr, identity));
                    }
                }
                target => out
                    .unicast
                    .extend(target.addrs().filter(|a| seen.insert(*a))),
            }
        }
        Ok(out)
    }
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
    fn coaps_targets_name_their_identity() {
        assert_eq!(
            parse_target("coaps://node1@127.0.0.1"),
            Ok(Target::Secure {
                addr: sa("127.0.0.1:5684"),
                identity: "node1".into()
            })
        );
        assert_eq!(
            parse_target("coaps://n@[::1]:7000"),
            Ok(Target::Secure {
                addr: sa("[::1]:7000"),
                identity: "n".into()
            })
        );
        for bad in [
            "coaps://127.0.0.1",
            "coaps://@127.0.0.1",
            "coaps://n@host",
            "coaps://n@224.0.1.187",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        let t = Targets::parse(&["coaps://node1@127.0.0.1:7000", "127.0.0.1:7001"]).unwrap();
        assert_eq!(t.unicast, vec![sa("127.0.0.1:7000"), sa("127.0.0.1:7001")]);
        assert_eq!(t.secure, vec![(sa("127.0.0.1:7000"), "node1".to_string())]);
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
        assert!(matches!(
            parse_target("224.0.1.187:1-2"),
            Err(TargetError::Multicast(_))
        ));
        for link_local in ["[ff02::fd]:5683", "ff02::fd", "[ff02::fd]"] {
            assert!(
                matches!(
                    parse_target(link_local),
                    Err(TargetError::GroupNeedsInterface(_))
                ),
                "{link_local}"
            );
        }
        assert!(matches!(
            parse_target("224.0.1.187%eth0"),
            Err(TargetError::UnexpectedInterface(_))
        ));
        assert!(matches!(
            parse_target("224.0.1.187:0"),
            Err(TargetError::PortZero(_))
        ));
    }

    #[test]
    fn groups_are_targets_of_their_own() {
        let group = |ip: &str, port, iface: Option<&str>| {
            Ok(Target::Group(GroupTarget {
                ip: ip.parse().unwrap(),
                port,
                interface: iface.map(str::to_string),
            }))
        };
        assert_eq!(
            parse_target("224.0.1.187"),
            group("224.0.1.187", 5683, None)
        );
        assert_eq!(
            parse_target("224.0.1.187:6000"),
            group("224.0.1.187", 6000, None)
        );
        assert_eq!(
            parse_target("[ff02::fd%veth0]"),
            group("ff02::fd", 5683, Some("veth0"))
        );
        assert_eq!(
            parse_target("[ff02::fd%eth0]:7000"),
            group("ff02::fd", 7000, Some("eth0"))
        );
        assert_eq!(
            parse_target("ff02::fd%eth0"),
            group("ff02::fd", 5683, Some("eth0"))
        );
        // Site-local scope routes like a global group: no interface needed.
        assert_eq!(parse_target("[ff05::fd]"), group("ff05::fd", 5683, None));
        assert_eq!(parse_target("224.0.1.187").unwrap().addrs().count(), 0);
        let targets =
            Targets::parse(&["127.0.0.1:1", "224.0.1.187", "224.0.1.187", "[ff02::fd%lo]"])
                .unwrap();
        assert_eq!(targets.groups.len(), 2);
        assert_eq!(
            Targets::parse(&["224.0.1.187", "127.0.0.1:1"])
                .unwrap()
                .unicast,
            vec![sa("127.0.0.1:1")]
        );
    }

    #[test]
    fn expansion_drops_duplicates_and_keeps_order() {
        let addrs = Targets::parse(&["127.0.0.1:3-4", "127.0.0.1:4", "127.0.0.1:1"])
            .unwrap()
            .unicast;
        assert_eq!(
            addrs,
            vec![sa("127.0.0.1:3"), sa("127.0.0.1:4"), sa("127.0.0.1:1")]
        );
        assert!(Targets::parse(&["127.0.0.1:1", "bad"]).is_err());
    }
}
