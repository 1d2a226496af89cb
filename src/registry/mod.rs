//! The Registry: the single writer of registrations.
//!
//! - `model`: the RFC 9176 data model (validated names, ids, status).
//! - `messages`: the typed messages the actor takes, and the events it publishes.
//! - `error`: RegistryError and StoreError.
//! - `link_set`: a registration's links, shared between registrations with equal ones.
//! - `index`: the in-memory index (by id, by `ep`+`d`, inverted by attribute, by deadline).
//! - `store`: the sled store (versioned encoding, id counter, flush).
//! - `watermark`: the acknowledged mark outside sled, to tell a database that lost its tail.
//! - `actor`: the Registry actor (group commit, expiry, events).
//! - `health`: whether the last write or flush failed (`GetHealth`, for `/health`).
//! - `recovery`: after a failed write, probe for space and ask for a restart.
//! - `reader`: the lock-based read handle for lookups.
//! - `subscription`: the bounded event feed to subscribers, with resync on overflow.

pub(crate) mod actor;
pub(crate) mod change;
pub(crate) mod error;
pub mod etcd;
pub(crate) mod health;
pub(crate) mod index;
pub(crate) mod link_set;
pub mod liveness;
pub(crate) mod messages;
pub(crate) mod model;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod store;
pub mod subscription;
pub(crate) mod watermark;

/// What `RegistryError::Refused` carries: the write policy lives in `limits`.
pub use crate::limits::registration_policy::Refusal;
pub use actor::{start, start_on_etcd, Registry, RegistryConfig};
pub(crate) use actor::{start_on_etcd_with_policy, start_sharing_database};
pub use error::{RegistryError, StoreError};
pub(crate) use health::{EtcdHealth, GetHealth, RegistryHealth};
pub use index::Index;
pub(crate) use messages::{is_discovered, DISCOVERED_MARKER};
pub use messages::{
    DiscoveredOutcome, Register, RegisterDiscovered, Registered, RegistryEvent, RemovalReason,
    Remove, SetStatus, Subscribe, Update,
};
pub use model::{BaseOrigin, EndpointName, Registration, RegistrationId, Sector, Status};
pub use reader::RegistryReader;
pub(crate) use recovery::AwaitStoreRestart;
pub use store::{Loaded, Store};
pub use subscription::{FeedItem, RegistryFeed, SubscribeFeed};
pub use watermark::{Mark, Shortfall};
