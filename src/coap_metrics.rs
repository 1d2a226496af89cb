//! The CoAP endpoint's counters in the process-wide metrics: the hooks the RD's endpoint is
//! bound with, and the conversion of a CoAP code into the metrics' own label type (the
//! metrics module knows no CoAP types; producers convert into its labels).

use std::time::Duration;

use crate::coap::{Code, EndpointHooks};
use crate::metrics::ResponseCode;

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
