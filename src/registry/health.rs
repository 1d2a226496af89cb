//! Whether the Registry can still write: the outcome of its most recent sled write or flush,
//! for the admin server's `GET /health` (503 when the registry cannot be written).
//!
//! [`WriteHealth`] is a pure tracker the actor updates after every store write and every
//! flush; [`GetHealth`] asks the actor for a [`RegistryHealth`] copy of it. A failure marks the
//! registry unwritable until a later flush succeeds, since a successful flush proves sled
//! writes reach the disk again.

use actix::Message;
use serde::{Deserialize, Serialize};

/// Asks the Registry for its write health. Sent by the admin HTTP server.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "RegistryHealth")]
pub(crate) struct GetHealth;

/// The registry's write health at the moment it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegistryHealth {
    /// False while the most recent write or flush failed.
    pub writable: bool,
    /// The most recent failure's message, kept after recovery for the operator to see.
    pub last_error: Option<String>,
    /// When the most recent failure happened (Unix ms).
    pub last_error_at_ms: Option<u64>,
    /// Set when the database opened with less than it had acknowledged (a lost tail; see
    /// `watermark`): what is missing. Does not make the registry unwritable.
    #[serde(default)]
    pub lost_at_start: Option<String>,
    /// With `registry.backend: etcd`: this replica in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdHealth>,
}

/// A replica's view of the cluster (`registry.backend: etcd`), for `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EtcdHealth {
    /// This replica's member name.
    pub member: String,
    /// Every member it sees.
    pub members: Vec<String>,
    /// Whether it is a member now (its lease is alive): only then does it ping and expire.
    pub member_now: bool,
    /// Time left before its local lease deadline.
    pub lease_remaining_ms: u64,
    /// The etcd revision its index reflects.
    pub applied_revision: i64,
}

/// Tracks the outcome of the registry's writes; see the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteHealth {
    failing: bool,
    last_error: Option<(String, u64)>,
    lost_at_start: Option<String>,
}

impl WriteHealth {
    /// A write or flush failed with `error` at `at_ms`.
    pub(crate) fn record_failure(&mut self, error: &dyn std::fmt::Display, at_ms: u64) {
        self.failing = true;
        self.last_error = Some((error.to_string(), at_ms));
    }

    /// A flush succeeded: everything written before it is on disk.
    pub(crate) fn record_flush_ok(&mut self) {
        self.failing = false;
    }

    /// The database opened with less than it had acknowledged.
    pub(crate) fn record_lost_at_start(&mut self, what: String) {
        self.lost_at_start = Some(what);
    }

    /// Whether the most recent write or flush failed.
    pub(crate) fn failing(&self) -> bool {
        self.failing
    }

    /// The most recent failure's message.
    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_ref().map(|(e, _)| e.as_str())
    }

    pub(crate) fn report(&self) -> RegistryHealth {
        RegistryHealth {
            writable: !self.failing,
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at_ms: self.last_error.as_ref().map(|(_, at)| *at),
            lost_at_start: self.lost_at_start.clone(),
            etcd: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_registry_is_writable_without_error() {
        let h = WriteHealth::default().report();
        assert!(h.writable);
        assert_eq!(h.last_error, None);
        assert_eq!(h.last_error_at_ms, None);
    }

    #[test]
    fn failure_until_a_flush_succeeds_and_the_error_is_kept() {
        let mut h = WriteHealth::default();
        h.record_failure(&"No space left on device", 42);
        let r = h.report();
        assert!(!r.writable);
        assert_eq!(r.last_error.as_deref(), Some("No space left on device"));
        assert_eq!(r.last_error_at_ms, Some(42));
        h.record_flush_ok();
        let r = h.report();
        assert!(r.writable);
        assert_eq!(r.last_error.as_deref(), Some("No space left on device"));
        h.record_failure(&"second", 50);
        assert_eq!(h.report().last_error_at_ms, Some(50));
        assert!(!h.report().writable);
    }
}
