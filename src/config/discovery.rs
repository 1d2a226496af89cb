//! `discovery.*`: active discovery, unicast and multicast `GET /.well-known/core` to the
//! configured targets (and mDNS-found services). Validation parses `discovery.targets` once;
//! the result travels in [`super::Parsed`].

use serde::Deserialize;

use super::{in_range, invalid, ConfigError};
use crate::discovery::actor::group_addr;
use crate::discovery::targets::TargetError;
use crate::discovery::DiscoverySettings;
use crate::discovery::Targets;
use std::time::Duration;

/// Active discovery: unicast `GET /.well-known/core` to configured targets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DiscoveryConfig {
    pub enabled: bool,
    /// Seconds between discovery rounds (the first runs at start).
    pub interval_s: u64,
    /// `addr:port`, `addr` (port 5683), `addr:first-last`, or a multicast group
    /// (`224.0.1.187`, `[ff02::fd%eth0]`).
    pub targets: Vec<String>,
    /// Lifetime of a discovered registration; each round refreshes it, so it must outlast
    /// `interval_s`. A device that stops answering expires after it.
    pub lifetime_s: u32,
    /// Budget of one device's `GET /.well-known/core`, retransmissions included.
    pub timeout_ms: u64,
    /// Devices asked at once.
    pub max_in_flight: usize,
    /// Also browse mDNS for `_coap._udp` services and ask each one found (RFC 6763, RFC 7252
    /// §12.8); needs `enabled`.
    pub mdns: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: false,
            interval_s: 60,
            targets: Vec::new(),
            lifetime_s: 180,
            timeout_ms: 5_000,
            max_in_flight: 64,
            mdns: false,
        }
    }
}

impl DiscoveryConfig {
    /// Check `discovery.*` and return `targets` parsed (also when discovery is disabled: a
    /// bad entry is refused either way).
    pub(super) fn validate(&self) -> Result<Targets, ConfigError> {
        in_range("discovery.interval_s", self.interval_s, 1, 86_400)?;
        in_range("discovery.timeout_ms", self.timeout_ms, 1, 60_000)?;
        in_range(
            "discovery.max_in_flight",
            self.max_in_flight as u64,
            1,
            100_000,
        )?;
        if u64::from(self.lifetime_s) <= self.interval_s {
            return Err(invalid(
                "discovery.lifetime_s",
                format!(
                    "{} must exceed interval_s ({}), or discovered devices expire between rounds",
                    self.lifetime_s, self.interval_s
                ),
            ));
        }
        let targets = Targets::parse(&self.targets)
            .map_err(|e| invalid("discovery.targets", e.to_string()))?;
        if self.mdns && !self.enabled {
            return Err(invalid(
                "discovery.mdns",
                "needs discovery.enabled: true (the Discovery actor asks what mDNS finds)",
            ));
        }
        Ok(targets)
    }
}

impl DiscoveryConfig {
    /// From `discovery.*` and its targets as config validation parsed them
    /// (`Config::parsed`); only the groups' interfaces are looked up here, since they must
    /// exist when the gateway starts, not when its config is checked.
    pub(crate) fn settings(&self, targets: &Targets) -> Result<DiscoverySettings, TargetError> {
        Ok(DiscoverySettings {
            interval: Duration::from_secs(self.interval_s.max(1)),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            lifetime_s: self.lifetime_s.max(1),
            max_in_flight: self.max_in_flight.max(1),
            targets: targets.unicast.clone(),
            secure: targets
                .secure
                .iter()
                .map(|(addr, identity)| (*addr, std::sync::Arc::from(identity.as_str())))
                .collect(),
            groups: targets
                .groups
                .iter()
                .map(group_addr)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_coaps_target_needs_a_dtls_listener() {
        let err = Config::from_yaml("discovery:\n  targets: [\"coaps://n1@127.0.0.1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("discovery.targets") && err.contains("dtls.listen"),
            "{err}"
        );
    }

    #[test]
    fn discovery_defaults_and_checks() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.discovery.enabled);
        assert_eq!(c.discovery.interval_s, 60);
        assert_eq!(c.discovery.lifetime_s, 180);
        let c = Config::from_yaml(
            "discovery:\n  enabled: true\n  targets: [\"127.0.0.1:40000-40019\", \"[::1]:5683\"]\n",
        )
        .unwrap();
        assert_eq!(c.discovery.targets.len(), 2);
        let err = Config::from_yaml("discovery:\n  targets: [\"ff02::fd\"]\n").unwrap_err();
        assert!(err.to_string().contains("discovery.targets"), "{err}");
        let c =
            Config::from_yaml("discovery:\n  targets: [\"224.0.1.187\", \"[ff02::fd%eth0]\"]\n")
                .unwrap();
        assert_eq!(c.discovery.targets.len(), 2);
        let err =
            Config::from_yaml("discovery:\n  interval_s: 60\n  lifetime_s: 60\n").unwrap_err();
        assert!(err.to_string().contains("discovery.lifetime_s"), "{err}");
        let err = Config::from_yaml("discovery:\n  timeout_ms: 0\n").unwrap_err();
        assert!(err.to_string().contains("discovery"), "{err}");
    }
}
