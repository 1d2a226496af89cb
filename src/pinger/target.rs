//! Where to ping a registration: the socket address in its `base` URI (RFC 9176 §5: the base
//! is `coap://host[:port]`, derived from the registrant's source address unless given).
//!
//! Called by the Pinger actor for every live registration of a sweep. Pure: no I/O, no DNS —
//! a base naming a host instead of an IP literal is not pinged, and neither is a multicast
//! base (a group registration, RFC 9176 Appendix A), nor a scheme other than `coap` and
//! `coaps`. A `coaps://` base is reached over DTLS ([`dtls_of`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use thiserror::Error;

use crate::registry::model::Registration;

/// CoAP's default UDP port (RFC 7252 §6.1).
const COAP_DEFAULT_PORT: u16 = 5683;
/// CoAP over DTLS's default port (RFC 7252 §6.2).
const COAPS_DEFAULT_PORT: u16 = 5684;

/// Why a registration's base gives no address to ping.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum PingTargetError {
    #[error("base {0:?} is not a coap:// or coaps:// URI")]
    NotCoap(String),
    #[error("base {0:?} has no IP literal host and port")]
    Unparsable(String),
    #[error("base {0:?} is a multicast address (a group)")]
    Multicast(String),
}

/// The unicast address to ping for `base`.
pub(crate) fn ping_target(base: &str) -> Result<SocketAddr, PingTargetError> {
    let (rest, default_port) =
        strip_scheme(base).ok_or_else(|| PingTargetError::NotCoap(base.to_string()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let unparsable = || PingTargetError::Unparsable(base.to_string());
    let (host, port) = split_host_port(authority, default_port).ok_or_else(unparsable)?;
    let ip: IpAddr = host.parse().map_err(|_| unparsable())?;
    if ip.is_multicast() {
        return Err(PingTargetError::Multicast(base.to_string()));
    }
    Ok(SocketAddr::new(ip, port))
}

/// The address to reach a registration at: its base's address, with the scope (interface) of
/// a link-local IPv6 address taken from the source it registered from. A base never carries a
/// zone id (RFC 9176 §6.1), but a socket needs one to send to `fe80::/10`.
pub(crate) fn registration_target(
    base: &str,
    source: SocketAddr,
) -> Result<SocketAddr, PingTargetError> {
    let mut target = ping_target(base)?;
    if let (SocketAddr::V6(t), SocketAddr::V6(src)) = (&mut target, source) {
        let link_local = (t.ip().segments()[0] & 0xffc0) == 0xfe80;
        if link_local && t.scope_id() == 0 && t.ip() == src.ip() {
            t.set_scope_id(src.scope_id());
        }
    }
    Ok(target)
}

/// The rest of the URI after `coap://` or `coaps://`, and the scheme's default port.
fn strip_scheme(base: &str) -> Option<(&str, u16)> {
    let (scheme, rest) = base.split_once("://")?;
    if scheme.eq_ignore_ascii_case("coap") {
        Some((rest, COAP_DEFAULT_PORT))
    } else if scheme.eq_ignore_ascii_case("coaps") {
        Some((rest, COAPS_DEFAULT_PORT))
    } else {
        None
    }
}

/// How the gateway reaches a registration: `None` over plain CoAP; for a `coaps://` base
/// `Some(identity)`, the identity it registered with (whose PSK a new session offers and
/// which the session must have authenticated; `None` inside for a registration made without
/// one, reached through the device's own session or the gateway's certificate).
pub(crate) fn dtls_of(reg: &Registration) -> Option<Option<Arc<str>>> {
    let (_, port) = strip_scheme(&reg.base)?;
    (port == COAPS_DEFAULT_PORT).then(|| reg.identity.as_deref().map(Arc::from))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the zone id of a link-local address is not
/// supported (RFC 9176 §6.1 keeps it out of the base).
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_local_base_takes_the_scope_of_the_registrant_source() {
        let source: SocketAddr = "[fe80::2%7]:5683".parse().unwrap();
        let target = registration_target("coap://[fe80::2]:5683", source).unwrap();
        assert_eq!(target, "[fe80::2%7]:5683".parse().unwrap());
        match target {
            SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), 7),
            SocketAddr::V4(_) => panic!("v6 expected"),
        }
        // Another address, a global address or IPv4: unchanged.
        let other = registration_target("coap://[fe80::3]:5683", source).unwrap();
        assert!(matches!(other, SocketAddr::V6(v6) if v6.scope_id() == 0));
        let global =
            registration_target("coap://[fd77::2]:5683", "[fd77::2]:5683".parse().unwrap());
        assert_eq!(global, Ok("[fd77::2]:5683".parse().unwrap()));
        let v4 = registration_target("coap://10.0.0.7", "[fe80::2%7]:1".parse().unwrap());
        assert_eq!(v4, Ok("10.0.0.7:5683".parse().unwrap()));
    }

    #[test]
    fn ipv4_with_and_without_port() {
        assert_eq!(
            ping_target("coap://127.0.0.1:40001"),
            Ok("127.0.0.1:40001".parse().unwrap())
        );
        assert_eq!(
            ping_target("coap://10.0.0.7"),
            Ok("10.0.0.7:5683".parse().unwrap())
        );
        assert_eq!(
            ping_target("COAP://10.0.0.7:1/ignored?x"),
            Ok("10.0.0.7:1".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_bracketed() {
        assert_eq!(
            ping_target("coap://[::1]:5690"),
            Ok("[::1]:5690".parse().unwrap())
        );
        assert_eq!(
            ping_target("coap://[2001:db8::1]"),
            Ok("[2001:db8::1]:5683".parse().unwrap())
        );
    }

    #[test]
    fn multicast_bases_are_groups() {
        assert!(matches!(
            ping_target("coap://224.0.1.187"),
            Err(PingTargetError::Multicast(_))
        ));
        assert!(matches!(
            ping_target("coap://[ff05::fd]:5683"),
            Err(PingTargetError::Multicast(_))
        ));
    }

    #[test]
    fn a_coaps_base_is_reached_over_dtls_on_5684_by_default() {
        assert_eq!(
            ping_target("coaps://127.0.0.1").unwrap(),
            "127.0.0.1:5684".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            ping_target("COAPS://[::1]:40000").unwrap(),
            "[::1]:40000".parse::<SocketAddr>().unwrap()
        );
        let mut reg =
            (*crate::rd::fixtures::reg(1, "n", "coaps://127.0.0.1:40000").build()).clone();
        assert_eq!(dtls_of(&reg), Some(None));
        reg.identity = Some("node1".into());
        assert_eq!(dtls_of(&reg), Some(Some(Arc::from("node1"))));
        reg.base = "coap://127.0.0.1".into();
        assert_eq!(dtls_of(&reg), None);
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        for base in [
            "coap+tcp://127.0.0.1",
            "http://127.0.0.1",
            "127.0.0.1:5683",
            "",
        ] {
            assert!(
                matches!(ping_target(base), Err(PingTargetError::NotCoap(_))),
                "{base}"
            );
        }
        for base in [
            "coap://sensor.example",
            "coap://127.0.0.1:notaport",
            "coap://[::1",
            "coap://[::1]x",
            "coap://u@127.0.0.1",
            "coap://127.0.0.1:70000",
        ] {
            assert!(
                matches!(ping_target(base), Err(PingTargetError::Unparsable(_))),
                "{base}"
            );
        }
    }
}
