//! `limits.*`: resource limits and abuse protection (sizes, rates, quotas, amplification),
//! enforced by `crate::limits`; see `config.yaml` for why each default.

use serde::Deserialize;

use super::{in_range, CoapConfig, ConfigError};
use super::{Config, EndpointProtection};
use crate::coap::admission::{AdmissionSettings, SourceGrouping};
use crate::limits::WritePolicy;
use crate::registry::RegistryConfig;
use std::time::Duration;

/// Resource limits and abuse protection; see `config.yaml` for why each default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsConfig {
    /// Largest request body (a registration's links), whole or reassembled from Block1: 4.13.
    pub max_payload_bytes: usize,
    /// Most links in one registration: 4.13.
    pub max_links: usize,
    /// Registrations one source IP may hold (live or in grace); a new one beyond gets 4.03.
    pub max_registrations_per_source: usize,
    /// Requests per second per source IP to the RD (token bucket); 0 turns it off.
    pub request_rate_per_s: f64,
    /// Requests a source may send at once before the rate applies.
    pub request_burst: u32,
    /// Sources remembered at most by each per-source table (rate buckets, proven sources).
    pub source_table_size: usize,
    /// Request handlers running at once in the RD's endpoint; beyond: 5.03 (CON), drop (NON).
    pub max_concurrent_handlers: usize,
    /// Responses to sources not proven to receive at their address are at most this many times
    /// the request's size (RFC 7252 §11.3); 0 turns it off.
    pub amplification_factor: u32,
    /// Bytes per second (for the whole gateway) by which responses that fit in one block may
    /// exceed `amplification_factor` for unproven sources, so clients that implement neither
    /// Block2 nor Echo get whole answers; once spent, the factor is strict until it refills.
    /// 0 makes the factor strict always.
    pub unproven_excess_bytes_per_s: u64,
    /// Loopback sources (local processes; unspoofable from the network) are exempt from the
    /// rate limit, the per-source quota and the amplification bound.
    pub exempt_loopback: bool,
    /// IPv6 sources count per prefix of this length for every per-source limit (rate, quota,
    /// observers); 128 counts each address alone.
    pub ipv6_source_prefix: u8,
    /// Simple registrations (the RD fetching the registrant's links) in progress at once, over
    /// all sources; at most half of `coap.max_in_flight`. Beyond: 5.03.
    pub max_simple_registrations_in_progress: usize,
    /// ... and per source (IPv4 address, IPv6 prefix). Beyond: 5.03.
    pub max_simple_registrations_per_source: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_payload_bytes: 65_536,
            max_links: 1_024,
            max_registrations_per_source: 20_000,
            request_rate_per_s: 200.0,
            request_burst: 1_000,
            source_table_size: 65_536,
            max_concurrent_handlers: 4_096,
            amplification_factor: 3,
            unproven_excess_bytes_per_s: 262_144,
            ipv6_source_prefix: crate::limits::source_key::DEFAULT_IPV6_PREFIX,
            max_simple_registrations_in_progress: 64,
            max_simple_registrations_per_source: 2,
            exempt_loopback: true,
        }
    }
}

impl LimitsConfig {
    /// Needs `coap`: simple registrations may take at most half of `coap.max_in_flight`.
    pub(super) fn validate(&self, coap: &CoapConfig) -> Result<(), ConfigError> {
        in_range(
            "limits.max_payload_bytes",
            self.max_payload_bytes as u64,
            64,
            16 << 20,
        )?;
        in_range("limits.max_links", self.max_links as u64, 1, 1_000_000)?;
        in_range(
            "limits.max_registrations_per_source",
            self.max_registrations_per_source as u64,
            1,
            10_000_000,
        )?;
        if !(0.0..=10_000_000.0).contains(&self.request_rate_per_s) {
            return Err(ConfigError::Invalid {
                key: "limits.request_rate_per_s",
                message: format!("{} is outside 0..=10000000", self.request_rate_per_s),
            });
        }
        in_range(
            "limits.request_burst",
            self.request_burst.into(),
            1,
            10_000_000,
        )?;
        in_range(
            "limits.source_table_size",
            self.source_table_size as u64,
            16,
            10_000_000,
        )?;
        in_range(
            "limits.max_concurrent_handlers",
            self.max_concurrent_handlers as u64,
            1,
            1_000_000,
        )?;
        in_range(
            "limits.amplification_factor",
            self.amplification_factor.into(),
            0,
            1_000,
        )?;
        in_range(
            "limits.unproven_excess_bytes_per_s",
            self.unproven_excess_bytes_per_s,
            0,
            1 << 30,
        )?;
        in_range(
            "limits.ipv6_source_prefix",
            self.ipv6_source_prefix.into(),
            32,
            128,
        )?;
        // Half of the client's slots at most: the Pinger, Executer and Observer share them,
        // and a host that never answers the RD's GET must not take them all.
        in_range(
            "limits.max_simple_registrations_in_progress",
            self.max_simple_registrations_in_progress as u64,
            1,
            (coap.max_in_flight as u64 / 2).max(1),
        )?;
        in_range(
            "limits.max_simple_registrations_per_source",
            self.max_simple_registrations_per_source as u64,
            1,
            self.max_simple_registrations_in_progress as u64,
        )
    }
}

impl LimitsConfig {
    /// What `limits:` asks of the RD's CoAP endpoint.
    pub(crate) fn admission_settings(&self) -> AdmissionSettings {
        AdmissionSettings {
            rate_per_s: self.request_rate_per_s,
            burst: f64::from(self.request_burst),
            source_table_size: self.source_table_size,
            exempt_loopback: self.exempt_loopback,
            max_handlers: self.max_concurrent_handlers,
            busy_retry_after: Duration::from_secs(2),
            amplification_factor: self.amplification_factor as usize,
            unproven_excess_bytes_per_s: self.unproven_excess_bytes_per_s as f64,
            max_request_body: Some(self.max_payload_bytes),
            source_grouping: SourceGrouping::new(self.ipv6_source_prefix),
        }
    }
}

impl Config {
    /// The Registry's write policy: FCFR from `rd.endpoint_protection`, the per-source quota.
    pub(crate) fn write_policy(&self) -> WritePolicy {
        WritePolicy {
            endpoint_protection: self.rd.endpoint_protection
                == EndpointProtection::FirstComeFirstRemembered,
            max_per_source: Some(self.limits.max_registrations_per_source),
            exempt_loopback: self.limits.exempt_loopback,
            grouping: SourceGrouping::new(self.limits.ipv6_source_prefix),
        }
    }

    /// The Registry's part of `config.yaml`: `gateway.data_dir`, `gateway.cache_mb`,
    /// `rd.expiry_grace_s`, `rd.max_registrations`.
    pub(crate) fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            data_dir: self.gateway.data_dir.clone(),
            cache_mb: self.gateway.cache_mb,
            expiry_grace_s: self.rd.expiry_grace_s,
            max_registrations: Some(self.rd.max_registrations),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, EndpointProtection};

    #[test]
    fn limits_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.platform.max_frame_bytes, 1 << 20);
        assert_eq!(c.limits.max_payload_bytes, 65_536);
        assert_eq!(c.limits.request_rate_per_s, 200.0);
        assert_eq!(c.limits.amplification_factor, 3);
        assert!(c.limits.exempt_loopback);
        assert_eq!(
            c.rd.endpoint_protection,
            EndpointProtection::FirstComeFirstRemembered
        );
        let c = Config::from_yaml(
            "rd:\n  endpoint_protection: off\nlimits:\n  request_rate_per_s: 0\n  max_links: 3\n",
        )
        .unwrap();
        assert_eq!(c.rd.endpoint_protection, EndpointProtection::Off);
        assert_eq!(c.limits.request_rate_per_s, 0.0);
        assert_eq!(c.limits.max_links, 3);
        for (yaml, key) in [
            ("limits:\n  max_links: 0\n", "limits.max_links"),
            (
                "limits:\n  request_rate_per_s: -1\n",
                "limits.request_rate_per_s",
            ),
            (
                "limits:\n  source_table_size: 1\n",
                "limits.source_table_size",
            ),
            (
                "limits:\n  max_concurrent_handlers: 0\n",
                "limits.max_concurrent_handlers",
            ),
            (
                "limits:\n  max_payload_bytes: 1\n",
                "limits.max_payload_bytes",
            ),
            (
                "platform:\n  max_frame_bytes: 65535\n",
                "platform.max_frame_bytes",
            ),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
        assert!(Config::from_yaml("rd:\n  endpoint_protection: maybe\n").is_err());
    }
}
