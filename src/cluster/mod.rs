//! Replicas of one gateway sharing a registry (issue 22, `docs/ha-etcd.md`).
//!
//! - `ownership`: the pure rule that decides which live replica owns a registration.
//! - `members`: this replica's leased member key, the member list, and from both whether this
//!   replica owns a registration now.

pub mod members;
pub mod ownership;

pub use members::Ownership;
