//! # coap-gateway
//!
//! An IoT edge gateway: constrained devices speak CoAP (RFC 7252) over UDP to a CoRE Resource
//! Directory (RFC 9176) hosted here; every registration is persisted in sled; a WebSocket link
//! reports to a cloud platform and takes commands from it.
//!
//! ## The public façade
//!
//! This library exists for the crate's binaries (`coap-gateway`, `rd-dump`, `platform-sim`), its integration tests, benches and fuzz targets. It offers what they use and
//! nothing else: everything else is `pub(crate)`, and `unreachable_pub` (below) keeps it so.
//!
//! - [`gateway`]: start ([`gateway::start`], [`gateway::run_blocking`]) and stop the whole
//!   gateway from a [`config::Config`]; [`gateway::Running`] exposes the RD's bound addresses,
//!   the Pinger and the platform link to tests.
//! - [`config`]: [`config::Config`] (`config.yaml`, loaded and validated with key names and line
//!   numbers), [`config::Secret`], [`config::PlatformConfig`].
//! - [`registry`]: the Registry actor (the single writer of registrations) started on its own,
//!   its messages, events and feed, the lock-based [`registry::RegistryReader`], and the sled
//!   [`registry::Store`] that `rd-dump` reads offline.
//! - [`platform`]: the platform link actor ([`platform::PlatformLink`]), its messages and the
//!   wire frames ([`platform::protocol`]), for the platform tests and `platform-sim`.
//! - [`executer`], [`pinger`], [`admin`]: the Executer, the Pinger's stop message, and the admin
//!   HTTP server, each started on its own by tests and benches.
//! - [`metrics`]: the process-wide counters ([`metrics::global`]) and their Prometheus
//!   rendering ([`metrics::render`]).
//! - [`device_object`]: the one JSON shape of a device (platform frames, admin API, `rd-dump`).
//! - [`time`]: wall-clock milliseconds and their RFC 3339 rendering.
//! - [`coap`]: the `crates/coap-endpoint` workspace crate (CoAP endpoint, client, codec,
//!   block-wise, Observe, admission limits), re-exported whole.
//! - `fuzz_api` (hidden): the entry points of the cargo-fuzz targets and their regression test.
//!
//! ## Inside the crate
//!
//! The rest reads like `actors.md` and is private to the crate:
//!
//! - `rd`: the RdServer: RFC 9176 registration, update, removal, lookup and discovery, plus the
//!   draft-11 compatibility paths. Request parsing, filtering and rendering are pure functions.
//! - `coap_metrics`: the CoAP endpoint's counters fed into `metrics` (the hooks the RD's
//!   endpoint is bound with).
//! - `secret`: a value (token, key) that never prints; re-exported as [`config::Secret`].
//! - `security`: device identities for CoAP over DTLS: the identities file (pre-shared keys,
//!   which endpoint names and sectors each identity may register), its `*` patterns, and the
//!   store that re-reads it on SIGHUP.
//! - `discovery`: active discovery: the RD asks configured unicast targets for
//!   `/.well-known/core` and registers the devices that answer on their behalf.
//! - `dnssd`: DNS-SD over mDNS: the RD advertised as `_core-rd._udp`, `_coap._udp` devices
//!   browsed for discovery (only when configured).
//! - `observer`: watched device resources forwarded to the platform as `data` frames.
//! - `limits`: resource limits and abuse protection (rate, quotas, FCFR, amplification).
//! - `host_addrs`: the host's own addresses, which a foreign registrant's base may not name.
//!
//! RFC 6690 link-format parsing and serialization is the `crates/link-format` workspace crate;
//! the `device-sim` simulated devices are the `crates/device-sim` workspace crate.

// A `pub` item that the façade does not reach is a mistake: it reads as API and is not.
#![warn(unreachable_pub)]

pub mod admin;
pub use coap_endpoint as coap;
pub mod cluster;
mod coap_metrics;
pub mod config;
pub mod device_object;
mod discovery;
mod dnssd;
pub mod executer;
#[doc(hidden)]
pub mod fuzz_api;
pub mod gateway;
mod host_addrs;
mod limits;
pub mod metrics;
mod observer;
pub mod pinger;
pub mod platform;
mod rd;
pub mod registry;
mod secret;
mod security;
pub mod time;
