//! One peer's share of the client: its NSTART slots (RFC 7252 §4.7), and a count of the
//! answers that came back from it while anyone held or waited for a slot.
//!
//! The count is what lets a ping that never got a slot still say something true about the
//! device (issue 23): NSTART is 1, so while another exchange (an Observer poll, a command)
//! holds the slot the ping cannot be sent. If the peer answered nothing during the whole
//! attempt, the exchange holding the slot was itself unanswered, which is the same evidence
//! an unanswered ping gives; if it answered something, it is alive. Only messages that matched
//! one of our exchanges (our random token, or the Message ID of our CON) count, so a spoofer
//! cannot keep a dead device "heard" with stray datagrams from its address.
//!
//! Slots live in `Shared::per_peer` only while someone holds or waits for one, so the map is
//! the size of the peers being talked to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

pub(crate) struct PeerSlot {
    /// NSTART permits (owned permits need the semaphore in an `Arc` of its own).
    pub sem: Arc<Semaphore>,
    /// Answers matched to one of our exchanges with this peer since the slot was created.
    heard: AtomicU64,
}

impl PeerSlot {
    pub fn new(nstart: usize) -> Self {
        PeerSlot {
            sem: Arc::new(Semaphore::new(nstart)),
            heard: AtomicU64::new(0),
        }
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
}
