//! What the endpoint tells its application about its own work, without knowing what the
//! application does with it: the gateway counts responses for Prometheus, a simulator ignores
//! them. Called on the receive path, so an implementation must be cheap and must not block.

use std::time::Duration;

use crate::Code;

/// Callbacks from the endpoint; every method has an empty default.
pub trait EndpointHooks: Send + Sync + 'static {
    /// A response to a request left (or was refused with 4.29 before any handler ran);
    /// `handling` is the time from the request's arrival to the answer.
    fn response_sent(&self, _code: Code, _handling: Duration) {}
}

/// The hooks of an endpoint bound with [`crate::Endpoint::bind`]: nothing is reported.
pub struct NoHooks;

impl EndpointHooks for NoHooks {}
