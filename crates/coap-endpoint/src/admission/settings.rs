//! The endpoint's admission settings: rate limiting, handler bound, amplification bound and
//! request body bound. The default is "unlimited", so an endpoint bound without settings
//! (tests, simulators) behaves as a plain RFC 7252 endpoint; an application fills them from its
//! own configuration.

use std::time::Duration;

use super::source_key::SourceGrouping;

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
    pub fn rate_limited(&self) -> bool {
        self.rate_per_s > 0.0
    }
}
