//! The Registry: the single writer of registrations.
//!
//! - `model`: the RFC 9176 data model (validated names, ids, status).
//! - `messages`: the typed messages the actor takes, and the events it publishes.
//! - `error`: RegistryError and StoreError.

pub mod error;
pub mod messages;
pub mod model;

pub use error::{RegistryError, StoreError};
pub use messages::*;
pub use model::*;
