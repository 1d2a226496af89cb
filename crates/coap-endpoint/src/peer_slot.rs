//! One peer's share of the client: its NSTART slots (RFC 7252 §4.7), a count of the answers
//! that came back from it while anyone held or waited for a slot, and whether the exchange now
//! holding the slot has been acknowledged.
//!
//! The count is what lets a ping that never got a slot still say something true about the
//! device: NSTART is 1, so while another exchange (an Observer poll, a command)
//! holds the slot the ping cannot be sent. If the peer answered nothing during the whole
//! attempt, the exchange holding the slot was itself unanswered, which is the same evidence
//! an unanswered ping gives; if it answered something, it is alive. Only messages that matched
//! one of our exchanges (our random token, or the Message ID of our CON) count, so a spoofer
//! cannot keep a dead device "heard" with stray datagrams from its address.
//!
//! An acknowledged request waiting for its separate response is not an outstanding
//! interaction (RFC 7252 §4.7), so a ping waiting behind one may go out at once: the device
//! that acknowledged a command and is still working on it gets a real ping instead of a
//! verdict from silence it is entitled to.
//!
//! Slots live in `Shared::per_peer` only while someone holds or waits for one, so the map is
//! the size of the peers being talked to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

pub(crate) struct PeerSlot {
    /// NSTART permits (owned permits need the semaphore in an `Arc` of its own).
    pub sem: Arc<Semaphore>,
    /// Answers matched to one of our exchanges with this peer since the slot was created.
    heard: AtomicU64,
    /// An empty ACK came from the peer since the slot was last taken: the holder's request is
    /// acknowledged and no longer outstanding (§4.7).
    holder_acked: AtomicBool,
    /// Wakes pings waiting for the slot when the holder is acknowledged.
    acked: Notify,
}

impl PeerSlot {
    pub fn new(nstart: usize) -> Self {
        PeerSlot {
            sem: Arc::new(Semaphore::new(nstart)),
            heard: AtomicU64::new(0),
            holder_acked: AtomicBool::new(false),
            acked: Notify::new(),
        }
    }

    /// A new holder took the slot: its request is outstanding until acknowledged.
    pub fn taken(&self) {
        self.holder_acked.store(false, Ordering::Release);
    }

    /// The peer sent an empty ACK for one of our exchanges.
    pub fn note_acked(&self) {
        self.holder_acked.store(true, Ordering::Release);
        self.acked.notify_waiters();
    }

    /// Whether the holder's request has been acknowledged since it took the slot.
    pub fn holder_acked(&self) -> bool {
        self.holder_acked.load(Ordering::Acquire)
    }

    /// Resolves at the next [`Self::note_acked`]; `enable` it before checking
    /// [`Self::holder_acked`] so that an acknowledgement in between is not missed.
    pub fn acked(&self) -> tokio::sync::futures::Notified<'_> {
        self.acked.notified()
    }

    /// Something from the peer answered one of our exchanges.
    pub fn note_heard(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// The answers counted so far; compare two readings to learn whether it spoke in between.
    pub fn heard(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_counts_answers() {
        let slot = PeerSlot::new(1);
        let before = slot.heard();
        assert_eq!(slot.heard(), before);
        slot.note_heard();
        assert_ne!(slot.heard(), before);
        assert_eq!(slot.sem.available_permits(), 1);
    }

    #[test]
    fn an_acknowledgement_belongs_to_the_current_holder() {
        let slot = PeerSlot::new(1);
        assert!(!slot.holder_acked());
        slot.note_acked();
        assert!(slot.holder_acked());
        slot.taken();
        assert!(!slot.holder_acked(), "a new holder starts unacknowledged");
    }
}
