//! Admission: what a CoAP server lets in and what it may send back, as pure policy (no sockets).
//!
//! The endpoint's receive path and reply path call these; everything is decided from the
//! arguments (source address, sizes, the current instant), so each rule is unit-tested alone.
//! [`AdmissionSettings`] is the one input; its default is "unlimited".
//!
//! - `source_table`: a map keyed by source with a hard entry bound (two generations), so a
//!   flood from spoofed addresses cannot grow it.
//! - `token_bucket`: one rate + burst bucket.
//! - `rate_limiter`: per-source request admission (admit / 4.29 / drop, RFC 8516).
//! - `handler_slots`: the bound on request handlers running at once (5.03 beyond it).
//! - `log_throttle`: one log line per interval per kind of refusal.
//! - `amplification`: the response budget for sources that have not proven they receive at
//!   their address (RFC 7252 §11.3), and the set of proven sources.
//! - `excess_budget`: the endpoint-wide bytes per second that one-block answers to unproven
//!   sources may exceed that budget by, so constrained clients get whole answers.
//! - `source_key`: what counts as one source: an IPv4 address or an IPv6 prefix (/64 by
//!   default), for every per-source limit.
//! - `settings`: the limits' inputs.

pub mod amplification;
pub mod excess_budget;
pub mod handler_slots;
pub mod log_throttle;
pub mod rate_limiter;
pub mod settings;
pub mod source_key;
pub mod source_table;
pub mod token_bucket;

pub use amplification::{block_size_within, within_budget, EchoSecret, ProvenSources};
pub use excess_budget::ExcessBudget;
pub use handler_slots::{HandlerSlot, HandlerSlots};
pub use log_throttle::LogThrottle;
pub use rate_limiter::{Admission, RateLimiter, RateStats};
pub use settings::AdmissionSettings;
pub use source_key::SourceGrouping;
pub use source_table::SourceTable;
pub use token_bucket::TokenBucket;
