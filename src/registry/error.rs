//! Errors at the registry's edge: what the actor answers and what the store can fail with.

use std::path::PathBuf;

use thiserror::Error;

use super::model::RegistrationId;

/// Failures of the store (sled, or etcd with `registry.backend: etcd`).
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the registry database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "the registry database at {path} is locked by another process (is the gateway running?)"
    )]
    Locked { path: PathBuf },
    /// Only from [`super::store::Store::open_existing`] (tools that must not create a database).
    #[error("no registry database at {path}")]
    NotFound { path: PathBuf },
    #[error("registry database I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("stored record {key} cannot be decoded: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored record {key} has unsupported format version {version}")]
    UnsupportedVersion { key: String, version: u64 },
    #[error("registration ids are exhausted (the stored id counter is corrupt)")]
    IdsExhausted,
    #[error("cannot encode a registration: {0}")]
    Encode(#[source] serde_json::Error),
    /// etcd (`registry.backend: etcd`) failed or cannot be reached; the message names the
    /// endpoints, never the credentials.
    #[error("{0}")]
    Etcd(String),
    /// The etcd prefix holds another cluster's registry (a copied config): never waited out.
    #[error("{0}")]
    WrongCluster(String),
}

/// What a registry operation can answer instead of success.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("no registration {0}")]
    NotFound(RegistrationId),
    #[error("the registry is full ({limit} registrations)")]
    Full { limit: usize },
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("the registry actor is not running")]
    Unavailable,
    /// Refused by the write policy (RFC 9176 §7.5 FCFR, per-source quota): 4.03.
    #[error(transparent)]
    Refused(#[from] crate::limits::Refusal),
}
