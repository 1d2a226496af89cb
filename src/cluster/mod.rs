//! Replicas of one gateway sharing a registry (issue 22, `docs/ha-etcd.md`).
//!
//! The pure rule that decides which live replica owns a registration ([`ownership`]). The
//! member leases that feed it live with the etcd backend (`registry::etcd::members`).

pub mod ownership;
