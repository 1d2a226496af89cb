//! The endpoint's admission settings: what the `limits:` section of `config.yaml` asks of the
//! CoAP endpoint (rate limiting, handler bound, amplification). The default is "unlimited", so
//! an endpoint bound without a config (tests, device-sim) behaves as before; the gateway builds
//! them from its config with [`AdmissionSettings::from_config`].

use std::time::Duration;

use super::source_key::SourceGrouping;
use crate::config::LimitsConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionSettings {
    /// Requests per second per source IP; 0 turns rate limiting off.
    pub rate_per_s: f64,
    pub burst: f64,
    /// Sources tracked at most by each per-source table (rate buckets, proven sources).
    pub source_table_size: usize,
    /// Loopback sources are exempt from the rate limit and the amplification bound.
    pub exempt_loopback: bool,
    /// Request handlers running at once.
    pub max_handlers: usize,
    /// Max-Age of the 5.03 sent when every handler slot is taken.
    pub busy_retry_after: Duration,
    /// Response size bound, as a multiple of the request's, for unproven sources; 0 is off.
    pub amplification_factor: usize,
    /// Bytes per second, over the whole endpoint, that one-block responses to unproven sources
    /// may exceed the factor by (`ExcessBudget`); 0: the factor is strict.
    pub unproven_excess_bytes_per_s: f64,
    /// Largest request body reassembled from Block1 (RFC 7959 §2.9.3: 4.13 with Size1 beyond).
    pub max_request_body: Option<usize>,
    /// What the per-source limits (rate, observers) count as one source.
    pub source_grouping: SourceGrouping,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            rate_per_s: 0.0,
            burst: 1.0,
            source_table_size: 65_536,
            exempt_loopback: true,
            max_handlers: usize::MAX,
            busy_retry_after: Duration::from_secs(2),
            amplification_factor: 0,
            unproven_excess_bytes_per_s: 0.0,
            max_request_body: None,
            source_grouping: SourceGrouping::default(),
        }
    }
}

impl AdmissionSettings {
    pub fn from_config(limits: &LimitsConfig) -> Self {
        AdmissionSettings {
            rate_per_s: limits.request_rate_per_s,
            burst: f64::from(limits.request_burst),
            source_table_size: limits.source_table_size,
            exempt_loopback: limits.exempt_loopback,
            max_handlers: limits.max_concurrent_handlers,
            busy_retry_after: Duration::from_secs(2),
            amplification_factor: limits.amplification_factor as usize,
            unproven_excess_bytes_per_s: limits.unproven_excess_bytes_per_s as f64,
            max_request_body: Some(limits.max_payload_bytes),
            source_grouping: SourceGrouping::new(limits.ipv6_source_prefix),
        }
    }

    pub fn rate_limited(&self) -> bool {
        self.rate_per_s > 0.0
    }
}
