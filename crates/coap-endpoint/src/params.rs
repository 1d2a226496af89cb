//! Transmission parameters (RFC 7252 §4.8) and the endpoint's own resource bounds.
//!
//! The default is RFC 7252's (ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4,
//! NSTART 1) with the endpoint's own bounds; an application changes the timing with
//! [`TransmissionParams::with_timing`], which keeps the derived times (MAX_TRANSMIT_WAIT,
//! EXCHANGE_LIFETIME, RFC 7252 §4.8.2) consistent.

use std::time::Duration;

use crate::admission::AdmissionSettings;

/// RFC 7252 §4.8 DEFAULT_LEISURE; the RD sets its own from `rd.multicast_leisure_ms`.
pub const DEFAULT_LEISURE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct TransmissionParams {
    pub ack_timeout: Duration,
    pub ack_random_factor: f64,
    pub max_retransmit: u32,
    /// Outstanding requests per peer (RFC 7252 §4.7).
    pub nstart: usize,
    /// Outstanding requests over all peers.
    pub max_in_flight: usize,
    /// Block size for Block1/Block2 (16..=1024, a power of two).
    pub block_size: usize,
    /// Receive and send buffer asked of the kernel per socket (`coap.socket_buffer_bytes`);
    /// `None` (an endpoint without a config: tests, device-sim) asks 4 MiB and says nothing
    /// when the kernel grants less.
    pub socket_buffer_bytes: Option<usize>,
    /// Largest request body reassembled from Block1, and largest response body reassembled
    /// from Block2 by the client.
    pub max_body: usize,
    /// Entries in the (peer, MID) deduplication cache.
    pub dedup_capacity: usize,
    /// Memory the deduplication cache may use: its entries' bookkeeping and cached responses.
    pub dedup_max_bytes: usize,
    /// Bytes of block-wise response bodies kept for follow-up Block2 requests (a body shared
    /// by several peers is counted once per peer, so this bounds the real memory from above).
    pub block2_max_bytes: usize,
    /// How long a (peer, MID) is remembered (RFC 7252 §4.8.2 EXCHANGE_LIFETIME, 247 s).
    pub exchange_lifetime: Duration,
    /// Concurrent Block1 uploads being reassembled.
    pub max_block1_transfers: usize,
    /// Observers over all resources.
    pub max_observers: usize,
    /// A handler slower than this gets the request acknowledged with an empty ACK and its
    /// response sent as a separate CON (RFC 7252 §5.2.2), before the client retransmits.
    pub separate_response_after: Duration,
    /// A 2.xx answer to a multicast request leaves after a random delay in `[0, this]`
    /// (RFC 7252 §8.2 Leisure), so a group's answers do not collide.
    pub multicast_leisure: Duration,
    /// Rate limiting, handler bound and amplification bound of requests served;
    /// unlimited by default, set from `limits:` by the gateway.
    pub admission: AdmissionSettings,
}

impl Default for TransmissionParams {
    fn default() -> Self {
        TransmissionParams::with_timing(Duration::from_secs(2), 1.5, 4)
    }
}

impl TransmissionParams {
    /// RFC 7252 §4.8's three timing parameters (clamped to sane ranges) with the times derived
    /// from them, and the endpoint's default bounds for everything else.
    pub fn with_timing(ack_timeout: Duration, ack_random_factor: f64, max_retransmit: u32) -> Self {
        let ack_timeout = ack_timeout.max(Duration::from_millis(1));
        let mut p = TransmissionParams {
            ack_timeout,
            ack_random_factor: ack_random_factor.clamp(1.0, 10.0),
            max_retransmit,
            nstart: 1,
            max_in_flight: 2_048,
            block_size: 1_024,
            socket_buffer_bytes: None,
            max_body: 1 << 20,
            dedup_capacity: 200_000,
            // 16 MiB hold ~75,000 exchanges of the RD's size (ENTRY_COST 184 B + ~30 B answers):
            // EXCHANGE_LIFETIME at up to ~300 requests/s, ~1.5 s at 50,000/s (docs/benchmarks.md).
            dedup_max_bytes: 16 << 20,
            block2_max_bytes: 32 << 20,
            exchange_lifetime: Duration::from_secs(247),
            max_block1_transfers: 1_024,
            max_observers: 100_000,
            separate_response_after: ack_timeout / 2,
            multicast_leisure: DEFAULT_LEISURE,
            admission: AdmissionSettings::default(),
        };
        p.exchange_lifetime = p.derived_exchange_lifetime();
        p
    }

    /// RFC 7252 §4.8.2: ACK_TIMEOUT * (2^MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR.
    pub fn max_transmit_span(&self) -> Duration {
        let factor = ((1u64 << self.max_retransmit.min(30)) - 1) as f64 * self.ack_random_factor;
        self.ack_timeout.mul_f64(factor)
    }

    /// RFC 7252 §4.8.2: ACK_TIMEOUT * (2^(MAX_RETRANSMIT + 1) - 1) * ACK_RANDOM_FACTOR.
    pub fn max_transmit_wait(&self) -> Duration {
        let factor =
            ((1u64 << (self.max_retransmit.min(30) + 1)) - 1) as f64 * self.ack_random_factor;
        self.ack_timeout.mul_f64(factor)
    }

    /// MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY (100 s) + PROCESSING_DELAY (ACK_TIMEOUT).
    fn derived_exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + Duration::from_secs(200) + self.ack_timeout
    }
}

/// Largest power of two in 16..=1024 not above `size`: the block size to use for a
/// configured one.
pub fn normalize_block_size(size: usize) -> usize {
    let mut b = 1024;
    while b > 16 && b > size {
        b /= 2;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc_7252() {
        let p = TransmissionParams::default();
        assert_eq!(p.ack_timeout, Duration::from_secs(2));
        assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
        assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(p.exchange_lifetime, Duration::from_secs(247));
    }

    #[test]
    fn block_size_is_a_power_of_two() {
        assert_eq!(normalize_block_size(1000), 512);
        assert_eq!(normalize_block_size(4096), 1024);
        assert_eq!(normalize_block_size(1), 16);
    }
}
