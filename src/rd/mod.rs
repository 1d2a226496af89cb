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

pub mod drain;
pub mod error;
pub mod filter;
#[cfg(test)]
mod fixtures;
pub mod group;
mod link_writer;
pub mod lookup;
pub mod lookup_cache;
pub mod multicast;
pub mod params;
pub mod register;
pub mod resolve;
pub mod route;
pub mod server;
pub mod service;
pub mod update;
pub mod well_known;

pub use error::{BaseError, LimitedLinkError, RdError};
pub use filter::{endpoint_matches, link_matches, plan_candidates, Filter, LookupQuery, Pattern};
pub use group::GroupRequest;
pub use lookup::{render_domains, render_endpoints, render_groups, render_resources, visible_to};
pub use params::{decode_query, QueryItem, QueryParams};
pub use register::{RegistrationRequest, SimpleRegistrationRequest, DEFAULT_LIFETIME_S};
pub use update::UpdateRequest;
pub use well_known::well_known_core;

/// Content-Format of `application/link-format` (RFC 6690 §7.3), the only one the RD speaks.
pub const LINK_FORMAT: u16 = 40;
