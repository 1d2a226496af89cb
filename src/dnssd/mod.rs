//! DNS-SD over mDNS (RFC 6762, RFC 6763, RFC 9176 §4.1.2): devices find the RD
//! without knowing its address, and the Discovery actor finds passive `_coap._udp` devices.
//! Built on the `mdns-sd` crate (pure Rust, one daemon thread); nothing here runs unless
//! `rd.dnssd` or `discovery.mdns` is set.
//!
//! - `naming`: service types, instance and host names from `gateway.id`, TXT keys (pure).
//! - `plan`: one `_core-rd._udp` instance per listening port (pure).
//! - `target`: the address of a resolved `_coap._udp` service to ask (pure).
//! - `responder`: [`Mdns`], the owned daemon handle: start, advertise, withdraw on shutdown.
//! - `browse`: forwards resolved `_coap._udp` services to the Discovery actor.
//! - `error`: [`DnssdError`].

pub(crate) mod browse;
pub(crate) mod error;
pub(crate) mod naming;
pub(crate) mod plan;
pub(crate) mod responder;
pub(crate) mod target;

pub(crate) use browse::browse_coap;
pub(crate) use responder::{Mdns, RdAdvertisement};
