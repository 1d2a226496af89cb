//! `rd.*`: the Resource Directory's listeners, lifetimes, capacity, multicast and DNS-SD
//! discovery, and endpoint protection.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Config;
use super::{in_range, invalid, ConfigError};
use crate::coap::admission::SourceGrouping;
use crate::limits::FetchGate;
use crate::rd::service::RdSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RdConfig {
    /// UDP addresses the RD (and every request the gateway makes) uses. Port 0 picks a free port.
    pub listen: Vec<String>,
    /// `lt` assumed when a registration carries none (RFC 9176 §5: 90000 s).
    pub default_lifetime_s: u32,
    /// How long an expired registration stays revivable by an update (RFC 9176 §5.3).
    pub expiry_grace_s: u32,
    /// Show each endpoint's liveness as the attribute `status` in endpoint lookups.
    pub expose_status: bool,
    /// Accept simple registration (`POST /.well-known/rd`, RFC 9176 §5.1).
    pub simple_registration: bool,
    /// New endpoints are refused with 5.03 beyond this many registrations (live or in grace):
    /// the RD is open to its network, and disk and memory are not.
    pub max_registrations: usize,
    /// Answer multicast discovery (RFC 9176 §4.1): join All-CoRE-RDs (224.0.1.190, ff02::fe,
    /// ff05::fe) and All-CoAP-Nodes (224.0.1.187, ff02::fd) with the `0.0.0.0:5683` /
    /// `[::]:5683` listeners, and answer `GET /.well-known/core` sent to them (only that).
    pub multicast: bool,
    /// Interfaces to join the groups on. Empty: every interface that is up, multicast-capable
    /// and not loopback at start (none found is logged as an error). A name that does not
    /// exist stops the start.
    pub multicast_interfaces: Vec<String>,
    /// Upper bound of the random delay before a multicast answer (RFC 7252 §8.2 Leisure).
    pub multicast_leisure_ms: u64,
    /// Advertise the RD as `_core-rd._udp` over DNS-SD/mDNS (RFC 9176 §4.1.2, RFC 6763).
    pub dnssd: bool,
    /// Interfaces (by name) the mDNS daemon uses, for advertising and for `discovery.mdns`;
    /// empty: every interface the daemon finds, loopback included.
    pub dnssd_interfaces: Vec<String>,
    /// RFC 9176 §7.5 "First Come First Remembered": a live registration may be replaced,
    /// updated or deleted only from the IP address it was written from (others get 4.03).
    pub endpoint_protection: EndpointProtection,
}

/// `rd.endpoint_protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndpointProtection {
    FirstComeFirstRemembered,
    Off,
}

impl Default for RdConfig {
    fn default() -> Self {
        RdConfig {
            listen: vec!["0.0.0.0:5683".into(), "[::]:5683".into()],
            default_lifetime_s: 90_000,
            expiry_grace_s: 3_600,
            expose_status: true,
            simple_registration: true,
            max_registrations: 200_000,
            multicast: false,
            multicast_interfaces: Vec::new(),
            multicast_leisure_ms: crate::rd::multicast::DEFAULT_LEISURE_MS,
            dnssd: false,
            dnssd_interfaces: Vec::new(),
            endpoint_protection: EndpointProtection::FirstComeFirstRemembered,
        }
    }
}

/// A Linux interface name: 1..=15 bytes, no '/', ':' or whitespace.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

// `Config::validate` calls these at different points (the order in which it reports the first
// of several wrong keys), hence four checks rather than one.
impl RdConfig {
    /// `rd.listen` as socket addresses.
    pub(crate) fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.listen
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                    key: "rd.listen",
                    message: format!(
                        "{s:?} is not a UDP socket address like 0.0.0.0:5683 or [::]:5683"
                    ),
                })
            })
            .collect()
    }

    /// `rd.listen` and `rd.default_lifetime_s`; returns the listen addresses.
    pub(super) fn validate_listen(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Err(invalid("rd.listen", "needs at least one UDP address"));
        }
        let listen = self.listen_addrs()?;
        if self.default_lifetime_s == 0 {
            return Err(invalid("rd.default_lifetime_s", "must be 1..=4294967295"));
        }
        Ok(listen)
    }

    /// `rd.dnssd_interfaces`: plausible interface names.
    pub(super) fn validate_dnssd(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self.dnssd_interfaces.iter().find(|n| !is_interface_name(n)) {
            return Err(invalid(
                "rd.dnssd_interfaces",
                format!("{bad:?} is not an interface name like eth0"),
            ));
        }
        Ok(())
    }

    pub(super) fn validate_capacity(&self) -> Result<(), ConfigError> {
        in_range(
            "rd.max_registrations",
            self.max_registrations as u64,
            1,
            10_000_000,
        )
    }

    /// `rd.multicast*`: a leisure within a minute, plausible interface names, and a listener
    /// that can receive group traffic (only a socket bound to the unspecified address on the
    /// CoAP port gets datagrams sent to `224.0.1.187:5683` and the like). `listen`: `rd.listen`
    /// as [`RdConfig::validate_listen`] parsed it.
    pub(super) fn validate_multicast(&self, listen: &[SocketAddr]) -> Result<(), ConfigError> {
        in_range(
            "rd.multicast_leisure_ms",
            self.multicast_leisure_ms,
            0,
            60_000,
        )?;
        for name in &self.multicast_interfaces {
            // IFNAMSIZ is 16 bytes with the terminating NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['\0', '/', ' ']) {
                return Err(ConfigError::Invalid {
                    key: "rd.multicast_interfaces",
                    message: format!("{name:?} is not an interface name"),
                });
            }
        }
        if !self.multicast {
            return Ok(());
        }
        let wildcard_coap_port = listen.iter().any(|a| {
            a.ip().is_unspecified() && a.port() == crate::rd::multicast::RD_MULTICAST_PORT
        });
        if !wildcard_coap_port {
            return Err(ConfigError::Invalid {
                key: "rd.multicast",
                message: "needs 0.0.0.0:5683 and/or [::]:5683 in rd.listen: only a socket bound \
                          to the unspecified address on the CoAP port receives multicast"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Config {
    /// The RD's request handling settings, from `rd:` and `limits:`.
    pub(crate) fn rd_settings(&self) -> RdSettings {
        RdSettings {
            default_lifetime_s: self.rd.default_lifetime_s,
            expose_status: self.rd.expose_status,
            simple_registration: self.rd.simple_registration,
            advertise_draft11: true,
            max_payload_bytes: self.limits.max_payload_bytes,
            max_links: self.limits.max_links,
            simple_gate: FetchGate::new(
                self.limits.max_simple_registrations_in_progress,
                self.limits.max_simple_registrations_per_source,
                SourceGrouping::new(self.limits.ipv6_source_prefix),
                self.limits.exempt_loopback,
            ),
            access: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn multicast_keys_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.rd.multicast);
        assert!(c.rd.multicast_interfaces.is_empty());
        assert_eq!(c.rd.multicast_leisure_ms, 4_000);
        let c = Config::from_yaml(
            "rd:\n  multicast: true\n  multicast_interfaces: [eth0, veth0]\n  multicast_leisure_ms: 50\n",
        )
        .unwrap();
        assert!(c.rd.multicast);
        assert_eq!(c.rd.multicast_interfaces, vec!["eth0", "veth0"]);
        assert_eq!(c.rd.multicast_leisure_ms, 50);
        // IPv6 only is enough.
        Config::from_yaml("rd:\n  multicast: true\n  listen: [\"[::]:5683\"]\n").unwrap();
        for (bad, key) in [
            (
                "rd:\n  multicast: true\n  listen: [\"127.0.0.1:5683\"]\n",
                "rd.multicast",
            ),
            (
                "rd:\n  multicast: true\n  listen: [\"0.0.0.0:5684\"]\n",
                "rd.multicast",
            ),
            (
                "rd:\n  multicast_leisure_ms: 60001\n",
                "rd.multicast_leisure_ms",
            ),
            (
                "rd:\n  multicast_interfaces: [\"\"]\n",
                "rd.multicast_interfaces",
            ),
            (
                "rd:\n  multicast_interfaces: [a-very-long-interface-name]\n",
                "rd.multicast_interfaces",
            ),
        ] {
            let err = Config::from_yaml(bad).unwrap_err().to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn dnssd_keys_default_off_and_are_checked() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.rd.dnssd && !c.discovery.mdns && c.rd.dnssd_interfaces.is_empty());
        assert!(!c.needs_mdns(), "the default config never sends mDNS");
        let c =
            Config::from_yaml("rd:\n  dnssd: true\n  dnssd_interfaces: [eth0, veth0]\n").unwrap();
        assert!(c.needs_mdns());
        assert_eq!(c.rd.dnssd_interfaces, vec!["eth0", "veth0"]);
        let c = Config::from_yaml("discovery:\n  enabled: true\n  mdns: true\n").unwrap();
        assert!(c.needs_mdns());
        let err = Config::from_yaml("discovery:\n  mdns: true\n").unwrap_err();
        assert!(err.to_string().contains("discovery.mdns"), "{err}");
        for bad in ["\"\"", "\"a/b\"", "\"eth 0\"", "sixteen-chars-xx"] {
            let err =
                Config::from_yaml(&format!("rd:\n  dnssd_interfaces: [{bad}]\n")).unwrap_err();
            assert!(
                err.to_string().contains("rd.dnssd_interfaces"),
                "{bad}: {err}"
            );
        }
    }
}
