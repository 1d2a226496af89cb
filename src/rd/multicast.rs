//! Multicast RD discovery (RFC 9176 §4.1, RFC 7252 §8): which groups the RD joins, which
//! multicast requests it answers, and the default leisure. Pure; `server::RunningRd::
//! join_multicast` does the joining, `service` asks [`answered_by_multicast`], and the CoAP
//! endpoint applies the messaging rules (NON only, no errors, leisure delay).
//!
//! A client that does not know its RD sends `GET /.well-known/core?rt=core.rd*` to
//! All-CoRE-RDs or All-CoAP-Nodes; only that discovery is served by multicast. Registering,
//! updating or looking up by multicast would let one datagram act on (or make every RD of the
//! group answer with) the whole directory, so those requests are dropped unanswered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::route::Route;
use crate::coap::Method;

/// All-CoRE-RDs (RFC 9176 §9.5): IPv4, IPv6 link-local and IPv6 site-local.
pub(crate) const ALL_CORE_RDS: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(224, 0, 1, 190)),
    IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfe)),
    IpAddr::V6(Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xfe)),
];

/// All-CoAP-Nodes (RFC 7252 §12.8): IPv4 and IPv6 link-local.
pub(crate) const ALL_COAP_NODES: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(224, 0, 1, 187)),
    IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd)),
];

/// The port clients send multicast discovery to (RFC 7252 §6.1 default port).
pub(crate) const RD_MULTICAST_PORT: u16 = 5683;

/// Every group the RD joins with `rd.multicast: true`.
pub(crate) fn rd_groups() -> impl Iterator<Item = IpAddr> {
    ALL_CORE_RDS.into_iter().chain(ALL_COAP_NODES)
}

/// Whether a multicast request for `route` with `method` is served at all: only discovery.
pub(crate) fn answered_by_multicast(route: Route, method: Method) -> bool {
    route == Route::WellKnownCore && method == Method::Get
}

/// RFC 7252 §8.2 lower bound of the leisure, `S * G / R`, with conservative figures for the
/// networks the gateway serves: S, the answer's size, 250 bytes (the `?rt=core.rd*` answer
/// with the draft-11 links is about 240); G, the answering group members, 100 (every RD and
/// node of a large link answering an unfiltered query); R, the data rate, 6250 bytes/s
/// (50 kbit/s, a loaded IEEE 802.15.4 link). 4000 ms, below DEFAULT_LEISURE (5 s), so a
/// client that waits DEFAULT_LEISURE gets every answer.
pub(crate) const DEFAULT_LEISURE_MS: u64 = leisure_ms(250, 100, 6_250);

/// `S * G / R` in milliseconds.
pub(crate) const fn leisure_ms(size_bytes: u64, group_size: u64, rate_bytes_per_s: u64) -> u64 {
    size_bytes * group_size * 1_000 / rate_bytes_per_s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_the_registered_addresses() {
        let groups: Vec<String> = rd_groups().map(|g| g.to_string()).collect();
        assert_eq!(
            groups,
            [
                "224.0.1.190",
                "ff02::fe",
                "ff05::fe",
                "224.0.1.187",
                "ff02::fd"
            ]
        );
        assert!(rd_groups().all(|g| g.is_multicast()));
    }

    #[test]
    fn only_discovery_is_served_by_multicast() {
        assert!(answered_by_multicast(Route::WellKnownCore, Method::Get));
        assert!(!answered_by_multicast(Route::WellKnownCore, Method::Post));
        assert!(!answered_by_multicast(Route::Directory, Method::Post));
        assert!(!answered_by_multicast(Route::WellKnownRd, Method::Post));
        assert!(!answered_by_multicast(Route::LookupEndpoints, Method::Get));
        assert!(!answered_by_multicast(Route::NotFound, Method::Get));
    }

    #[test]
    fn default_leisure_follows_the_formula_and_stays_under_default_leisure() {
        assert_eq!(DEFAULT_LEISURE_MS, 4_000);
        assert_eq!(leisure_ms(100, 10, 1_000), 1_000);
        assert!(DEFAULT_LEISURE_MS <= crate::coap::DEFAULT_LEISURE.as_millis() as u64);
    }
}
