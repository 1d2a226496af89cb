//! The `limits:` section of `config.yaml` turned into the CoAP endpoint's
//! [`AdmissionSettings`] (rate limiting, handler bound, amplification, body bound).

use std::time::Duration;

use coap_endpoint::admission::{AdmissionSettings, SourceGrouping};

use crate::config::LimitsConfig;

/// What `limits:` asks of the RD's CoAP endpoint.
pub(crate) fn admission_settings(limits: &LimitsConfig) -> AdmissionSettings {
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
