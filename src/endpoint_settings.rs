//! The RD's CoAP endpoint as `config.yaml` asks for it: the transmission parameters from
//! `coap:`, the admission limits from `limits:`, the multicast leisure from `rd:`, and the
//! hooks that count the endpoint's responses in the process-wide metrics (with the conversion
//! of a CoAP code into the metrics' own label type).

use std::time::Duration;

use coap_endpoint::{normalize_block_size, Code, EndpointHooks, TransmissionParams};

use crate::config::Config;
use crate::limits::admission_settings;
use crate::metrics::ResponseCode;

/// The RD endpoint's parameters: RFC 7252 §4.8 timing and bounds from `coap:`, admission
/// from `limits:`, multicast leisure from `rd.multicast_leisure_ms`.
pub(crate) fn rd_endpoint_params(config: &Config) -> TransmissionParams {
    let c = &config.coap;
    let mut p = TransmissionParams::with_timing(
        Duration::from_millis(c.ack_timeout_ms),
        c.ack_random_factor,
        c.max_retransmit,
    );
    p.nstart = c.nstart.max(1);
    p.max_in_flight = c.max_in_flight.max(1);
    p.block_size = normalize_block_size(c.block_size);
    p.socket_buffer_bytes = Some(c.socket_buffer_bytes);
    p.multicast_leisure = Duration::from_millis(config.rd.multicast_leisure_ms);
    p.admission = admission_settings(&config.limits);
    p
}

/// Metrics count response codes as raw bytes (the metrics module knows no CoAP types).
impl From<Code> for ResponseCode {
    fn from(code: Code) -> Self {
        ResponseCode(code.0)
    }
}

/// The endpoint's callbacks into the process-wide metrics.
pub(crate) struct MetricsHooks;

impl EndpointHooks for MetricsHooks {
    fn response_sent(&self, code: Code, handling: Duration) {
        crate::metrics::global().record_response(code, handling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_gives_rfc_7252_timing_and_the_configured_bounds() {
        let config = Config::default();
        let p = rd_endpoint_params(&config);
        assert_eq!(p.ack_timeout, Duration::from_secs(2));
        assert_eq!(p.exchange_lifetime, Duration::from_secs(247));
        assert_eq!(p.block_size, 1024);
        assert_eq!(p.socket_buffer_bytes, Some(16 << 20));
        assert_eq!(p.admission, admission_settings(&config.limits));
    }
}
