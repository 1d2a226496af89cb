//! Replicas of one gateway sharing a registry (issue 22, `docs/ha-etcd.md`).
//!
//! So far the pure rule that decides which live replica owns a registration
//! ([`ownership`]); the etcd backend, the member leases and the leader election build on it.

pub mod ownership;
