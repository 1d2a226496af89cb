//! `coap.*`: RFC 7252 §4.8 transmission parameters and the CoAP endpoint's own bounds.

use serde::Deserialize;

use super::Config;
use super::{in_range, invalid, ConfigError};
use crate::coap::{normalize_block_size, TransmissionParams};
use std::time::Duration;

/// RFC 7252 §4.8 transmission parameters and the endpoint's own bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CoapConfig {
    pub ack_timeout_ms: u64,
    pub ack_random_factor: f64,
    pub max_retransmit: u32,
    /// Outstanding confirmable requests per peer (RFC 7252 §4.7 NSTART).
    pub nstart: usize,
    /// Outstanding requests the gateway sends, over all peers.
    pub max_in_flight: usize,
    /// Largest payload per block (16, 32, ..., 1024); larger bodies use Block2/Block1.
    pub block_size: usize,
    /// Receive and send buffer asked of the kernel for each CoAP socket.
    pub socket_buffer_bytes: usize,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            ack_timeout_ms: 2_000,
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            max_in_flight: 2_048,
            block_size: 1_024,
            socket_buffer_bytes: 16 << 20,
        }
    }
}

impl CoapConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1.0..=10.0).contains(&self.ack_random_factor) {
            return Err(invalid(
                "coap.ack_random_factor",
                "must be between 1.0 and 10.0",
            ));
        }
        // Upper bounds keep every derived deadline (e.g. MAX_TRANSMIT_WAIT) far from overflow.
        in_range("coap.ack_timeout_ms", self.ack_timeout_ms, 1, 60_000)?;
        in_range("coap.max_retransmit", self.max_retransmit.into(), 0, 20)?;
        if self.nstart == 0 || self.max_in_flight == 0 {
            return Err(invalid(
                "coap.nstart",
                "nstart and max_in_flight must be at least 1",
            ));
        }
        in_range(
            "coap.socket_buffer_bytes",
            self.socket_buffer_bytes as u64,
            64 << 10,
            1 << 30,
        )?;
        if !matches!(self.block_size, 16 | 32 | 64 | 128 | 256 | 512 | 1024) {
            return Err(invalid(
                "coap.block_size",
                format!(
                    "{} is not a block size (16, 32, ..., 1024)",
                    self.block_size
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The RD endpoint's parameters: RFC 7252 §4.8 timing and bounds from `coap:`, admission
    /// from `limits:`, multicast leisure from `rd.multicast_leisure_ms`.
    pub(crate) fn rd_endpoint_params(&self) -> TransmissionParams {
        let c = &self.coap;
        let mut p = TransmissionParams::with_timing(
            Duration::from_millis(c.ack_timeout_ms),
            c.ack_random_factor,
            c.max_retransmit,
        );
        p.nstart = c.nstart.max(1);
        p.max_in_flight = c.max_in_flight.max(1);
        p.block_size = normalize_block_size(c.block_size);
        p.socket_buffer_bytes = Some(c.socket_buffer_bytes);
        p.multicast_leisure = Duration::from_millis(self.rd.multicast_leisure_ms);
        p.admission = self.limits.admission_settings();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_gives_rfc_7252_timing_and_the_configured_bounds() {
        let config = Config::default();
        let p = config.rd_endpoint_params();
        assert_eq!(p.ack_timeout, Duration::from_secs(2));
        assert_eq!(p.exchange_lifetime, Duration::from_secs(247));
        assert_eq!(p.block_size, 1024);
        assert_eq!(p.socket_buffer_bytes, Some(16 << 20));
        assert_eq!(p.admission, config.limits.admission_settings());
    }
}
