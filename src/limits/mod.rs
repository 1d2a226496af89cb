//! Resource limits and abuse protection: pure policy, no sockets, no actors.
//!
//! The CoAP endpoint and the Registry actor call these; everything here is decided from the
//! arguments (source address, sizes, the current instant), so each rule is unit-tested alone.
//!
//! - `source_table`: a map keyed by source IP with a hard entry bound (two generations), so a
//!   flood from spoofed addresses cannot grow it.
//! - `token_bucket`: one rate + burst bucket.
//! - `rate_limiter`: per-source request admission for the RD (admit / 4.29 / drop, RFC 8516).
//! - `handler_slots`: the bound on request handlers running at once (5.03 beyond it).
//! - `log_throttle`: one log line per interval per kind of refusal.
//! - `amplification`: the response budget for sources that have not proven they receive at
//!   their address (RFC 7252 §11.3), and the set of proven sources.
//! - `excess_budget`: the gateway-wide bytes per second that one-block answers to unproven
//!   sources may exceed that budget by, so constrained clients get whole answers.
//! - `fetch_gate`: simple registrations in progress, per source and overall, so a
//!   host that never answers the RD's GET cannot hold the client's slots.
//! - `registration_policy`: First Come First Remembered (RFC 9176 §7.5) and the per-source
//!   registration quota, decided in the Registry's single-writer path.
//! - `source_key`: what counts as one source: an IPv4 address or an IPv6 prefix (/64 by
//!   default), for every per-source limit.
//! - `settings`: the `limits:` section of `config.yaml` turned into these policies' inputs.

pub mod amplification;
pub mod excess_budget;
pub mod fetch_gate;
pub mod handler_slots;
pub mod log_throttle;
pub mod rate_limiter;
pub mod registration_policy;
pub mod settings;
pub mod source_key;
pub mod source_table;
pub mod token_bucket;

pub use amplification::{block_size_within, within_budget, EchoSecret, ProvenSources};
pub use excess_budget::ExcessBudget;
pub use fetch_gate::{FetchGate, FetchTicket, GateRefusal};
pub use handler_slots::{HandlerSlot, HandlerSlots};
pub use log_throttle::LogThrottle;
pub use rate_limiter::{Admission, RateLimiter, RateStats};
pub use registration_policy::{
    check_registration, check_update, Holder, Refusal, SourceCounts, WritePolicy,
};
pub use settings::AdmissionSettings;
pub use source_key::SourceGrouping;
pub use source_table::SourceTable;
pub use token_bucket::TokenBucket;
