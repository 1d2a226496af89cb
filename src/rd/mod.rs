//! The Resource Directory (RFC 9176, with draft-ietf-core-resource-directory-11 compatibility):
//! the pure request logic the RdServer calls.
//!
//! - `params`: query items as an ordered multimap.
//! - `register`, `update`, `group`: parse registration, update and draft-11 group requests
//!   into typed values (RFC 9176 §5, §5.1, §5.3.1, App. A; draft-11 §6).
//! - `resolve`: RFC 3986 reference resolution and the `base` / Limited Link Format checks.
//! - `filter`: lookup queries, filters and the matching rules of RFC 9176 §6.2.
//! - `lookup`: rendering of endpoint, resource, domain and group lookups with paging (§6).
//! - `well_known`: the RD's `/.well-known/core` with RFC 6690 §4.1 filtering (§4.3).
//! - `error`: `RdError` and its CoAP response codes.
//! - `route`: which RD resource a path names.
//! - `multicast`: the groups the RD joins and what it answers by multicast (RFC 9176 §4.1).
//! - `lookup_cache`: rendered lookup results shared across requests, valid for one registry
//!   version.
//! - `service`: `RdService`, the CoAP request handler (the only part that talks to the
//!   Registry and the CoAP client).
//! - `server`: the RdServer actor (endpoint owner, lookup Observe notifications) and `start`.
//! - `link_writer` (private): the link-format writer behind lookups and discovery.
//!
//! Everything but `service` and `server` is pure: no actix, tokio, sled or sockets.

pub(crate) mod access;
pub(crate) mod drain;
pub(crate) mod error;
pub(crate) mod filter;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod group;
mod link_writer;
pub(crate) mod lookup;
pub(crate) mod lookup_cache;
pub(crate) mod multicast;
pub(crate) mod params;
pub(crate) mod register;
pub(crate) mod resolve;
pub(crate) mod route;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod update;
pub(crate) mod well_known;

pub(crate) use filter::{plan_candidates, LookupQuery};
pub(crate) use group::GroupRequest;
pub(crate) use lookup::{render_domains, render_endpoints, render_groups, render_resources};
pub(crate) use params::decode_query;
pub(crate) use register::{RegistrationRequest, SimpleRegistrationRequest};
pub(crate) use update::UpdateRequest;

/// Content-Format of `application/link-format` (RFC 6690 §7.3), the only one the RD speaks.
pub(crate) const LINK_FORMAT: u16 = 40;
