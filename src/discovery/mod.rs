//! Active discovery: the RD finds devices that do not register themselves by asking
//! configured unicast targets, and multicast groups (RFC 7252 §8), for `/.well-known/core`
//! (RFC 6690 §4) and registers them on their behalf as third-party registrations (RFC 9176 §5,
//! `src=discovery`, explicit `base`).
//!
//! - `targets`: parsing and expanding `discovery.targets` (pure).
//! - `naming`: the endpoint name of a discovered device (pure).
//! - `actor`: the Discovery actor that runs rounds on the RD's `CoapClient`; it also asks the
//!   `_coap._udp` services `dnssd::browse` finds (`AddMdnsTarget`).

pub(crate) mod actor;
pub(crate) mod naming;
pub(crate) mod targets;

pub(crate) use actor::{
    start, AddMdnsTarget, Discovery, DiscoverySettings, RemoveMdnsTarget, StopDiscovery,
};
pub(crate) use targets::Targets;
