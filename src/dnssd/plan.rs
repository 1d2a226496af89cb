//! Which DNS-SD service instances the RD's UDP listeners become (RFC 6763 §4, RFC 9176
//! §4.1.2). Pure: no I/O. Called by `responder` with the addresses the RD actually bound.
//!
//! A service instance names one port (its SRV record), so listeners are grouped by port: the
//! usual `0.0.0.0:5683` + `[::]:5683` is one instance with IPv4 and IPv6 addresses. A listener on
//! an unspecified address stands for every address of its family on the selected interfaces,
//! which the mDNS daemon fills in (and keeps current) per interface; a listener on a specific
//! address advertises that address only. DNS-SD resolves addresses by host name, so an instance
//! whose address set differs from the first instance's gets a host name of its own.

use std::net::{IpAddr, SocketAddr};

use super::naming::{host_name_for_port, instance_name_for_port};

/// One `_core-rd._udp` instance to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advert {
    pub instance: String,
    /// `<label>.local.`: the SRV target whose A/AAAA records are `addrs` (and the automatic ones).
    pub host: String,
    pub port: u16,
    /// Specific listener addresses.
    pub addrs: Vec<IpAddr>,
    /// Add every IPv4 / IPv6 interface address (a listener on 0.0.0.0 / [::]).
    pub auto_v4: bool,
    pub auto_v6: bool,
}

impl Advert {
    fn same_addresses(&self, other: &Advert) -> bool {
        let mut a = self.addrs.clone();
        let mut b = other.addrs.clone();
        a.sort();
        b.sort();
        a == b && self.auto_v4 == other.auto_v4 && self.auto_v6 == other.auto_v6
    }
}

/// The instances for `listeners` (in their order): the first port's instance is `instance` on
/// `host`, each further port's is `instance port N`, on `host` when it has the same addresses,
/// else on `host-N`. Port 0 (not bound) is skipped.
pub(crate) fn plan_adverts(instance: &str, host: &str, listeners: &[SocketAddr]) -> Vec<Advert> {
    let mut adverts: Vec<Advert> = Vec::new();
    for listener in listeners.iter().filter(|l| l.port() != 0) {
        let index = match adverts.iter().position(|a| a.port == listener.port()) {
            Some(i) => i,
            None => {
                let name = if adverts.is_empty() {
                    instance.to_string()
                } else {
                    instance_name_for_port(instance, listener.port())
                };
                adverts.push(Advert {
                    instance: name,
                    host: String::new(),
                    port: listener.port(),
                    addrs: Vec::new(),
                    auto_v4: false,
                    auto_v6: false,
                });
                adverts.len() - 1
            }
        };
        let advert = &mut adverts[index];
        match listener.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => advert.auto_v4 = true,
            IpAddr::V6(ip) if ip.is_unspecified() => advert.auto_v6 = true,
            ip if !advert.addrs.contains(&ip) => advert.addrs.push(ip),
            _ => {}
        }
    }
    for i in 0..adverts.len() {
        let earlier = adverts[..i]
            .iter()
            .find(|a| a.same_addresses(&adverts[i]))
            .map(|a| a.host.clone());
        adverts[i].host = match earlier {
            Some(host) => host,
            None if i == 0 => host.to_string(),
            None => host_name_for_port(host, adverts[i].port),
        };
    }
    adverts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dual_stack_on_one_port_is_one_instance() {
        let plan = plan_adverts("gw", "gw.local.", &[sa("0.0.0.0:5683"), sa("[::]:5683")]);
        assert_eq!(
            plan,
            vec![Advert {
                instance: "gw".into(),
                host: "gw.local.".into(),
                port: 5683,
                addrs: vec![],
                auto_v4: true,
                auto_v6: true,
            }]
        );
    }

    #[test]
    fn each_port_is_its_own_instance() {
        let plan = plan_adverts(
            "gw",
            "gw.local.",
            &[
                sa("10.0.0.5:5683"),
                sa("[fd00::5]:5684"),
                sa("10.0.0.6:5683"),
                sa("10.0.0.5:5683"),
            ],
        );
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].instance, "gw");
        assert_eq!(plan[0].port, 5683);
        assert_eq!(
            plan[0].addrs,
            vec![sa("10.0.0.5:1").ip(), sa("10.0.0.6:1").ip()]
        );
        assert!(!plan[0].auto_v4 && !plan[0].auto_v6);
        assert_eq!(plan[1].instance, "gw port 5684");
        assert_eq!(plan[1].addrs, vec![sa("[fd00::5]:1").ip()]);
        assert_eq!(plan[0].host, "gw.local.");
        assert_eq!(
            plan[1].host, "gw-5684.local.",
            "other addresses, other host"
        );
    }

    #[test]
    fn ports_with_the_same_addresses_share_the_host() {
        let plan = plan_adverts(
            "gw",
            "gw.local.",
            &[
                sa("0.0.0.0:7000"),
                sa("0.0.0.0:7001"),
                sa("[::]:7002"),
                sa("[::]:7003"),
            ],
        );
        let hosts: Vec<&str> = plan.iter().map(|a| a.host.as_str()).collect();
        assert_eq!(
            hosts,
            vec!["gw.local.", "gw.local.", "gw-7002.local.", "gw-7002.local."]
        );
    }

    #[test]
    fn only_the_unspecified_family_is_automatic() {
        let plan = plan_adverts("gw", "gw.local.", &[sa("0.0.0.0:7000")]);
        assert!(plan[0].auto_v4 && !plan[0].auto_v6);
        let plan = plan_adverts("gw", "gw.local.", &[sa("[::]:7000"), sa("127.0.0.1:7000")]);
        assert!(!plan[0].auto_v4 && plan[0].auto_v6);
        assert_eq!(plan[0].addrs, vec![sa("127.0.0.1:1").ip()]);
    }

    #[test]
    fn unbound_listeners_are_skipped() {
        assert!(plan_adverts("gw", "gw.local.", &[sa("0.0.0.0:0")]).is_empty());
        assert!(plan_adverts("gw", "gw.local.", &[]).is_empty());
    }
}
