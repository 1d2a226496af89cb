//! # coap-gateway
//!
//! An IoT edge gateway: constrained devices speak CoAP (RFC 7252) over UDP to a CoRE Resource
//! Directory (RFC 9176) hosted here; every registration is persisted in sled; a WebSocket link
//! reports to a cloud platform and takes commands from it.
//!
//! The crate reads like `actors.md`:
//!
//! - [`config`]: the typed `config.yaml`, validated with key names and line numbers.
//! - [`coap`] (the `crates/coap-endpoint` workspace crate): the CoAP endpoint. A codec over
//!   `coap-lite`, deduplication, block-wise transfer, Observe, pings, admission limits, and the
//!   one owned UDP socket (per listen address) that serves the RD and sends every request the
//!   gateway makes to devices.
//! - [`coap_metrics`]: the CoAP endpoint's counters fed into [`metrics`].
//! - [`link_format`] (the `crates/link-format` workspace crate): RFC 6690 link-format parsing and
//!   serialization (pure, no I/O).
//! - [`registry`]: the Registry actor, the single writer of registrations: the in-memory index
//!   (by `ep`+`d`, by location, inverted by link attribute), the sled store with group commit,
//!   lifetime expiry, and events to subscribers.
//! - [`rd`]: the RdServer: RFC 9176 registration, update, removal, lookup and discovery, plus the
//!   draft-11 compatibility paths. Request parsing, filtering and rendering are pure functions.
//! - [`pinger`]: device liveness: CoAP pings to every registered device, status 0/1 through
//!   the Registry.
//! - [`discovery`]: active discovery: the RD asks configured unicast targets for
//!   `/.well-known/core` and registers the devices that answer on their behalf.
//! - [`dnssd`]: DNS-SD over mDNS: the RD advertised as `_core-rd._udp`, `_coap._udp` devices
//!   browsed for discovery (only when configured).
//! - [`executer`]: platform commands become CoAP requests to devices, each answered with
//!   exactly one `command_result`.
//! - [`metrics`]: process-wide lock-free counters and histograms that the actors record into,
//!   rendered in the Prometheus text format for the admin HTTP server's `/metrics`.
//! - [`device_object`]: the one JSON shape of a device, shared by the platform frames, the
//!   admin API and `rd-dump`.
//! - [`admin`]: the admin HTTP server (`http.listen`): `/health`, `/metrics`, the device API
//!   and the live status page.
//! - [`limits`]: resource limits and abuse protection (rate, quotas, FCFR, amplification).
//! - [`host_addrs`]: the host's own addresses, which a foreign registrant's base may not name.
//! - [`secret`]: a value (token, key) that never prints.
//! - [`gateway`]: wires the actors together for the `coap-gateway` binary.

pub mod admin;
pub use coap_endpoint as coap;
pub mod coap_metrics;
pub mod config;
pub mod device_object;
pub mod discovery;
pub mod dnssd;
pub mod executer;
#[doc(hidden)]
pub mod fuzz_api;
pub mod gateway;
pub mod host_addrs;
pub mod limits;
pub mod metrics;
pub mod observer;
pub mod pinger;
pub mod platform;
pub mod rd;
pub mod registry;
pub mod secret;
pub mod time;
