//! Sequence numbers of a cluster of replicas on etcd (`docs/ha-etcd.md` §8,
//! `docs/platform-protocol.md` "Sequence numbers of a cluster"): an event's seq is derived from
//! the etcd revision that wrote it, so every leader gives one event the same seq, and a
//! platform drops an event a new leader sends again as the duplicate it is.
//!
//! `seq = revision × 2^20 + slot`. Slots `0 .. 2^19` are events: change `i` of the revision (in
//! the transaction's order) gives frames `2i` and `2i + 1`. Slots `2^19 .. 2^20` are frames
//! that are not events (results, error replies, snapshot parts), numbered after the last
//! revision the leader's feed applied. Pure arithmetic.

/// Bits of a seq below the revision.
const SLOT_BITS: u32 = 20;
/// The first slot of frames that are not events.
const NON_EVENT_SLOT: u64 = 1 << 19;
/// Frames one change can yield (`registered`, or `updated` and `device_status`).
pub(crate) const FRAMES_PER_CHANGE: usize = 2;
/// Changes of one revision that can be numbered.
pub(crate) const CHANGES_PER_REVISION: usize = (NON_EVENT_SLOT as usize) / FRAMES_PER_CHANGE;

fn revision_base(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0) << SLOT_BITS
}

/// The seq of frame `frame` of change `change` in `revision`; None past the slots.
pub(crate) fn event_seq(revision: i64, change: usize, frame: usize) -> Option<u64> {
    if change >= CHANGES_PER_REVISION || frame >= FRAMES_PER_CHANGE {
        return None;
    }
    Some(revision_base(revision) + (change * FRAMES_PER_CHANGE + frame) as u64)
}

/// The revision a seq was numbered after.
pub(crate) fn revision_of(seq: u64) -> i64 {
    i64::try_from(seq >> SLOT_BITS).unwrap_or(i64::MAX)
}

/// The lowest seq a frame that is not an event may take once the feed has applied `position`.
pub(crate) fn non_event_floor(position: i64) -> u64 {
    revision_base(position) + NON_EVENT_SLOT
}

/// Whether `seq` is still below the first event of the revision after `position` (a frame
/// numbered there cannot collide with an event).
pub(crate) fn non_event_fits(seq: u64, position: i64) -> bool {
    seq < revision_base(position.saturating_add(1))
}

/// The seq before the first frame a leader elected in `term` numbers when no acknowledgement
/// is stored: the term's revision, before its first slot.
pub(crate) fn before_term(term: i64) -> u64 {
    revision_base(term).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_a_revision_sort_before_its_other_frames_and_the_next_revision() {
        let first = event_seq(7, 0, 0).unwrap();
        let second = event_seq(7, 0, 1).unwrap();
        let next_change = event_seq(7, 1, 0).unwrap();
        let last = event_seq(7, CHANGES_PER_REVISION - 1, 1).unwrap();
        assert_eq!(first, 7 << 20);
        assert!(first < second && second < next_change && next_change < last);
        assert!(last < non_event_floor(7));
        assert!(non_event_fits(non_event_floor(7), 7));
        assert!(!non_event_fits(event_seq(8, 0, 0).unwrap(), 7));
        assert!(non_event_floor(7) < event_seq(8, 0, 0).unwrap());
        assert_eq!(revision_of(last), 7);
        assert_eq!(revision_of(non_event_floor(7)), 7);
        assert_eq!(event_seq(7, CHANGES_PER_REVISION, 0), None);
        assert_eq!(event_seq(7, 0, 2), None);
        assert_eq!(before_term(7) + 1, event_seq(7, 0, 0).unwrap());
    }

    #[test]
    fn seqs_fit_their_bounds() {
        // Exact in a JSON number (a double) up to revision 2^33: 99 days at 1,000 writes/s,
        // 9 years at 30/s; a u64, which the protocol promises, for 2^44 revisions.
        assert!(non_event_floor((1 << 33) - 1) < (1u64 << 53));
        assert!(non_event_floor((1 << 43) - 1) < u64::MAX);
    }
}
