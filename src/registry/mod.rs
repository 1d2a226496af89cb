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

pub mod actor;
pub mod error;
pub mod health;
pub mod index;
pub mod link_set;
pub mod messages;
pub mod model;
pub mod reader;
pub mod recovery;
pub mod store;
pub mod subscription;
pub mod watermark;

pub use actor::{start, start_with_policy, Registry, RegistryConfig};
pub use error::{RegistryError, StoreError};
pub use health::{GetHealth, RegistryHealth};
pub use index::Index;
pub use link_set::{LinkSet, LinkSetPool};
pub use messages::{
    is_discovered, DiscoveredOutcome, Register, RegisterDiscovered, Registered, RegistryEvent,
    RemovalReason, Remove, SetStatus, Subscribe, Update, DISCOVERED_MARKER,
};
pub use model::{
    base_from_source, BaseOrigin, EndpointName, NameError, Registration, RegistrationId, Sector,
    Status, MAX_NAME_BYTES,
};
pub use reader::RegistryReader;
pub use recovery::AwaitStoreRestart;
pub use store::Store;
pub use subscription::{FeedItem, RegistryFeed, SubscribeFeed};
