//! The RD's shutdown gate: a `RequestHandler` in front of [`RdService`] that, once the gateway
//! is stopping, answers every request with 5.03 Service Unavailable and a Max-Age (RFC 7252
//! §5.9.3.4: "retry after"), and counts the requests still inside the service.
//!
//! Why: on SIGTERM/SIGINT a registration must be either acknowledged and durable or not
//! acknowledged at all. Requests that entered the service before the gate closed finish
//! (their 2.01/2.04/2.02 follows the Registry's flush); later ones get a 5.03 and nothing is
//! written. Lookup observers (RFC 7641) get the same 5.03 as their last notification: an error
//! response ends an observation (§4.2), so clients learn at once that the RD went away instead
//! of waiting out Max-Age (§3.3.1). `rd::server::RunningRd::drain` closes the gate.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::coap::{Code, HandlerFuture, InboundRequest, OutboundResponse, RequestHandler};

/// Max-Age of the 5.03 sent while stopping: about how long a restart takes.
pub(crate) const RETRY_AFTER_S: u32 = 10;

/// See the module doc.
pub(crate) struct DrainGate<H> {
    inner: Arc<H>,
    draining: AtomicBool,
    in_service: Arc<AtomicUsize>,
}

impl<H: RequestHandler> DrainGate<H> {
    pub(crate) fn new(inner: Arc<H>) -> DrainGate<H> {
        DrainGate {
            inner,
            draining: AtomicBool::new(false),
            in_service: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// From now on every request (and every notification re-run) is answered 5.03.
    pub(crate) fn close(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests that passed the gate and whose response is not computed yet.
    pub(crate) fn in_service(&self) -> usize {
        self.in_service.load(Ordering::SeqCst)
    }
}

/// Decrements the in-service count when the request's future completes or is dropped.
struct InService(Arc<AtomicUsize>);

impl Drop for InService {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<H: RequestHandler> RequestHandler for DrainGate<H> {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        // Counted before the check, so `drain` never sees 0 while a request that passed the
        // check has not been counted yet.
        self.in_service.fetch_add(1, Ordering::SeqCst);
        let guard = InService(Arc::clone(&self.in_service));
        if self.is_closed() {
            drop(guard);
            let resp = OutboundResponse::new(Code::SERVICE_UNAVAILABLE)
                .with_max_age(RETRY_AFTER_S)
                .with_diagnostic("shutting down");
            return Box::pin(async move { resp });
        }
        let fut = self.inner.handle(req);
        Box::pin(async move {
            let resp = fut.await;
            drop(guard);
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::Method;

    struct Echo;
    impl RequestHandler for Echo {
        fn handle(&self, _: InboundRequest) -> HandlerFuture {
            Box::pin(async { OutboundResponse::new(Code::CONTENT) })
        }
    }

    fn req() -> InboundRequest {
        let addr = "127.0.0.1:5683".parse().expect("literal");
        InboundRequest {
            source: addr,
            local: addr,
            method: Method::Get,
            confirmable: true,
            path: vec!["rd-lookup".into(), "ep".into()],
            query: Vec::new(),
            content_format: None,
            accept: None,
            observe: None,
            etags: Vec::new(),
            if_match: Vec::new(),
            if_none_match: false,
            block2: None,
            payload: Vec::new(),
            multicast: false,
            token: vec![1],
            identity: None,
        }
    }

    #[tokio::test]
    async fn open_gate_passes_closed_gate_answers_5_03_with_max_age() {
        let gate = DrainGate::new(Arc::new(Echo));
        let pending = gate.handle(req());
        assert_eq!(gate.in_service(), 1);
        assert_eq!(pending.await.code, Code::CONTENT);
        assert_eq!(gate.in_service(), 0);
        gate.close();
        let resp = gate.handle(req()).await;
        assert_eq!(resp.code, Code::SERVICE_UNAVAILABLE);
        assert_eq!(resp.max_age, Some(RETRY_AFTER_S));
        assert_eq!(gate.in_service(), 0);
    }
}
