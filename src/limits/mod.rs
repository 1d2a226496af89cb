//! The gateway's resource limits and abuse protection: pure policy, no sockets, no actors.
//!
//! The CoAP-level limits (per-source rate, handler bound, amplification bound, what counts as
//! one source) live in the `coap-endpoint` crate's `admission` module, because its request
//! pipeline applies them; they are re-exported here for the gateway's own use. What is the
//! gateway's own:
//!
//! - `fetch_gate`: simple registrations in progress, per source and overall, so a
//!   host that never answers the RD's GET cannot hold the client's slots.
//! - `registration_policy`: First Come First Remembered (RFC 9176 §7.5) and the per-source
//!   registration quota, decided in the Registry's single-writer path.

pub(crate) mod fetch_gate;
pub(crate) mod registration_policy;

pub(crate) use coap_endpoint::admission::{log_throttle, source_key, LogThrottle, TokenBucket};
pub(crate) use fetch_gate::{FetchGate, GateRefusal};
pub(crate) use registration_policy::{
    check_registration, check_update, Holder, Refusal, Requester, SourceCounts, WritePolicy,
};
