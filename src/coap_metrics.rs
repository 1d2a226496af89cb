//! The CoAP endpoint's counters in the process-wide metrics: the hooks the RD's endpoint is
//! bound with, the conversion of a CoAP code into the metrics' own label type, and of the
//! endpoint's DTLS counters into the scrape-time [`DtlsSample`] (the metrics module knows no
//! CoAP types; producers convert into its types).

use std::time::Duration;

use std::sync::atomic::Ordering;

use crate::coap::{Code, DtlsStats, EndpointHooks};
use crate::metrics::{DtlsSample, ResponseCode};

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

impl From<&DtlsStats> for DtlsSample {
    /// Each counter read on its own (relaxed): a scrape racing a handshake may see it started
    /// and not yet completed, as it would a moment earlier.
    fn from(stats: &DtlsStats) -> Self {
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        DtlsSample {
            hello_verify_sent: get(&stats.hello_verify_sent),
            handshakes_started: get(&stats.handshakes_started),
            handshakes_completed: get(&stats.handshakes_completed),
            handshakes_failed: get(&stats.handshakes_failed),
            handshakes_timed_out: get(&stats.handshakes_timed_out),
            hellos_refused: get(&stats.hellos_refused),
            datagrams_dropped: get(&stats.datagrams_dropped),
            sessions_compacted: get(&stats.sessions_compacted),
            records_dropped: get(&stats.records_dropped),
            sessions: get(&stats.sessions),
        }
    }
}
