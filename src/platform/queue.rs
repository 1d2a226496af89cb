//! The bounded queue of frames the gateway owes the platform while the link is down, or while
//! the socket writer is backed up by a slow platform (`docs/platform-protocol.md`,
//! "Delivery"). Owned by the PlatformLink actor; pure.
//!
//! Frames leave in the order they came. When the queue is full, the oldest `data` frame is
//! dropped first: events and command results are kept ahead of data. When there is no `data`
//! frame left to drop (the queue is all events and results), memory must stay bounded all the
//! same, so the oldest frame is dropped and counted separately: the link logs that loudly. Such
//! a loss is repairable, because the `snapshot` sent after the next connect carries the whole
//! registry with status; only the history of the dropped events is lost. A command result
//! dropped this way is lost for good, which is why a queue capacity far above the number of
//! commands in flight matters.

use std::collections::VecDeque;

/// What the queue needs to know about a frame to choose what to drop.
pub(crate) trait Owed {
    /// `data` frames are dropped before anything else.
    fn is_data(&self) -> bool;
}

impl Owed for super::protocol::OutboundFrame {
    fn is_data(&self) -> bool {
        super::protocol::OutboundFrame::is_data(self)
    }
}

/// What a push had to give up to keep the queue bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    /// Queued; nothing dropped.
    Queued,
    /// Queued after dropping the oldest `data` frame (or the pushed `data` frame itself was
    /// the one dropped, when the queue held nothing older that could go).
    DroppedData,
    /// Queued after dropping the oldest event or result: no `data` frame was left to drop.
    DroppedEvent,
}

/// Bounded FIFO of owed frames with data-first dropping.
#[derive(Debug)]
pub(crate) struct OwedQueue<T> {
    frames: VecDeque<T>,
    capacity: usize,
    /// How many queued frames are `data`, so a full queue of events is not scanned in vain.
    data_queued: usize,
    dropped_data: u64,
    dropped_events: u64,
}

impl<T: Owed> OwedQueue<T> {
    /// `capacity` of at least 1 (config validation guarantees it; 0 is treated as 1).
    pub(crate) fn new(capacity: usize) -> Self {
        OwedQueue {
            frames: VecDeque::new(),
            capacity: capacity.max(1),
            data_queued: 0,
            dropped_data: 0,
            dropped_events: 0,
        }
    }

    pub(crate) fn push(&mut self, frame: T) -> PushOutcome {
        let mut outcome = PushOutcome::Queued;
        if self.frames.len() >= self.capacity {
            if self.data_queued > 0 {
                // The oldest data frame is usually near the front; the scan stops there.
                if let Some(pos) = self.frames.iter().position(Owed::is_data) {
                    self.frames.remove(pos);
                    self.data_queued -= 1;
                }
                self.dropped_data += 1;
                outcome = PushOutcome::DroppedData;
            } else if frame.is_data() {
                // Everything queued outranks this data frame: it is the one to go.
                self.dropped_data += 1;
                return PushOutcome::DroppedData;
            } else {
                self.frames.pop_front();
                self.dropped_events += 1;
                outcome = PushOutcome::DroppedEvent;
            }
        }
        if frame.is_data() {
            self.data_queued += 1;
        }
        self.frames.push_back(frame);
        outcome
    }

    /// Take the oldest frame.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let frame = self.frames.pop_front()?;
        if frame.is_data() {
            self.data_queued -= 1;
        }
        Some(frame)
    }

    /// Take every queued frame, oldest first.
    #[cfg(test)]
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.data_queued = 0;
        self.frames.drain(..)
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// `data` frames dropped since the start.
    pub(crate) fn dropped_data(&self) -> u64 {
        self.dropped_data
    }

    /// Events and results dropped since the start (only when no data was left to drop).
    pub(crate) fn dropped_events(&self) -> u64 {
        self.dropped_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum F {
        Data(u32),
        Event(u32),
    }

    impl Owed for F {
        fn is_data(&self) -> bool {
            matches!(self, F::Data(_))
        }
    }

    fn contents(q: &mut OwedQueue<F>) -> Vec<F> {
        q.drain().collect()
    }

    #[test]
    fn frames_leave_in_the_order_they_came() {
        let mut q = OwedQueue::new(10);
        for i in 0..5 {
            assert_eq!(
                q.push(if i % 2 == 0 { F::Event(i) } else { F::Data(i) }),
                PushOutcome::Queued
            );
        }
        assert_eq!(
            contents(&mut q),
            vec![
                F::Event(0),
                F::Data(1),
                F::Event(2),
                F::Data(3),
                F::Event(4)
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_data_frame_first() {
        let mut q = OwedQueue::new(4);
        q.push(F::Event(0));
        q.push(F::Data(1));
        q.push(F::Event(2));
        q.push(F::Data(3));
        assert_eq!(q.push(F::Event(4)), PushOutcome::DroppedData);
        assert_eq!(q.push(F::Data(5)), PushOutcome::DroppedData);
        assert_eq!(q.len(), 4);
        assert_eq!(q.dropped_data(), 2);
        assert_eq!(q.dropped_events(), 0);
        assert_eq!(
            contents(&mut q),
            vec![F::Event(0), F::Event(2), F::Event(4), F::Data(5)]
        );
    }

    #[test]
    fn new_data_is_dropped_when_only_events_are_queued() {
        let mut q = OwedQueue::new(2);
        q.push(F::Event(0));
        q.push(F::Event(1));
        assert_eq!(q.push(F::Data(2)), PushOutcome::DroppedData);
        assert_eq!(contents(&mut q), vec![F::Event(0), F::Event(1)]);
        assert_eq!(q.dropped_data(), 1);
    }

    #[test]
    fn with_no_data_left_the_oldest_event_goes_and_is_counted() {
        let mut q = OwedQueue::new(3);
        for i in 0..3 {
            q.push(F::Event(i));
        }
        assert_eq!(q.push(F::Event(3)), PushOutcome::DroppedEvent);
        assert_eq!(q.push(F::Event(4)), PushOutcome::DroppedEvent);
        assert_eq!(q.dropped_events(), 2);
        assert_eq!(q.dropped_data(), 0);
        assert_eq!(
            contents(&mut q),
            vec![F::Event(2), F::Event(3), F::Event(4)]
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_long_outage() {
        let mut q = OwedQueue::new(100);
        for i in 0..10_000 {
            q.push(if i % 3 == 0 { F::Event(i) } else { F::Data(i) });
            assert!(q.len() <= 100);
        }
        assert_eq!(q.len(), 100);
        assert_eq!(q.dropped_data() + q.dropped_events(), 9_900);
        let left = contents(&mut q);
        // Events outrank data: once data ran out, only the newest events survived, in order.
        assert!(left.iter().all(|f| matches!(f, F::Event(_))));
        let ids: Vec<u32> = left
            .iter()
            .map(|f| match f {
                F::Event(i) | F::Data(i) => *i,
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*ids.last().unwrap(), 9_999);
    }

    #[test]
    fn popping_keeps_the_data_count_right() {
        let mut q = OwedQueue::new(2);
        q.push(F::Data(0));
        q.push(F::Event(1));
        assert_eq!(q.pop_front(), Some(F::Data(0)));
        q.push(F::Event(2));
        // No data left: a full queue now drops the oldest event.
        assert_eq!(q.push(F::Event(3)), PushOutcome::DroppedEvent);
        assert_eq!(q.pop_front(), Some(F::Event(2)));
        assert_eq!(q.pop_front(), Some(F::Event(3)));
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn draining_resets_the_data_count() {
        let mut q = OwedQueue::new(1);
        q.push(F::Data(0));
        let _ = contents(&mut q);
        q.push(F::Event(1));
        assert_eq!(q.push(F::Event(2)), PushOutcome::DroppedEvent);
        assert_eq!(contents(&mut q), vec![F::Event(2)]);
    }
}
