//! When a device was last heard from, and how its status changed: what the console's device
//! list ("last seen") and device page (status history) show.
//!
//! - [`StatusHistory`]: each 1→0 and 0→1 with its time, newest last, at most
//!   [`STATUS_HISTORY_MAX`] per registration. Part of the stored record, so it is written in
//!   the same batch as the status change itself and survives a crash like the status does.
//! - [`LastSeen`]: the last time the device answered anything (a ping, an observation, a poll,
//!   a command) or wrote to the RD. Changed on every answer, so it is kept in memory only: a
//!   write per ping would be 100,000 writes per sweep. One atomic shared by every version of
//!   a registration (`Registration` clones share it), so readers of the index see the Pinger's
//!   and the Observer's touches without a message to the Registry. After a restart it starts
//!   from the registration's `updated_at_ms`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::Status;

/// Status changes kept per registration: a day of a device flapping every two hours, or the
/// last few outages of a steady one. Bounded so a flapping device cannot grow its record.
pub const STATUS_HISTORY_MAX: usize = 16;

/// One status change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub status: Status,
}

/// A registration's recent status changes, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StatusHistory(Vec<StatusChange>);

impl StatusHistory {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn changes(&self) -> &[StatusChange] {
        &self.0
    }

    /// Record a change at `at_ms`, dropping the oldest past [`STATUS_HISTORY_MAX`].
    pub(crate) fn record(&mut self, at_ms: u64, status: Status) {
        if self.0.len() >= STATUS_HISTORY_MAX {
            let excess = self.0.len() + 1 - STATUS_HISTORY_MAX;
            self.0.drain(..excess);
        }
        self.0.push(StatusChange { at_ms, status });
        self.0.shrink_to_fit();
    }
}

/// The last time a device was heard from (Unix ms; 0: not since this process started).
/// Clones share the cell.
#[derive(Clone, Debug, Default)]
pub struct LastSeen(Arc<AtomicU64>);

impl LastSeen {
    /// The device answered at `at_ms`. Never moves back (answers may be handled out of order).
    pub fn touch(&self, at_ms: u64) {
        self.0.fetch_max(at_ms, Ordering::Relaxed);
    }

    /// The last answer's time, or 0.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Records compare by content; when a device was last heard is not part of it.
impl PartialEq for LastSeen {
    fn eq(&self, _: &LastSeen) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_changes_in_order() {
        let mut h = StatusHistory::default();
        for i in 0..(STATUS_HISTORY_MAX as u64 + 5) {
            let status = if i % 2 == 0 {
                Status::Disconnected
            } else {
                Status::Connected
            };
            h.record(i, status);
        }
        assert_eq!(h.changes().len(), STATUS_HISTORY_MAX);
        assert_eq!(h.changes()[0].at_ms, 5);
        assert_eq!(
            h.changes().last().map(|c| c.at_ms),
            Some(STATUS_HISTORY_MAX as u64 + 4)
        );
    }

    #[test]
    fn history_round_trips_as_a_plain_list() {
        let mut h = StatusHistory::default();
        h.record(7, Status::Disconnected);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"[{"at_ms":7,"status":0}]"#);
        assert_eq!(serde_json::from_str::<StatusHistory>(&json).unwrap(), h);
    }

    #[test]
    fn last_seen_is_shared_by_clones_and_never_moves_back() {
        let a = LastSeen::default();
        let b = a.clone();
        b.touch(10);
        a.touch(5);
        assert_eq!(a.get(), 10);
        assert_eq!(b.get(), 10);
    }
}
