//! The bound on request handlers running at once in the CoAP endpoint.
//!
//! A handler that cannot answer on its first poll (it waits for the Registry or a device)
//! becomes a task; without a bound, a flood of such requests is a flood of tasks. The endpoint
//! takes a slot before it first polls a handler and gives it back when the handler is done;
//! without a free slot a CON is answered 5.03 with Max-Age and a NON is dropped. A plain
//! counter: taking and returning a slot is one atomic operation each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::log_throttle::LogThrottle;

#[derive(Debug)]
pub struct HandlerSlots {
    running: AtomicUsize,
    max: usize,
    refusals: LogThrottle,
}

/// A taken slot; returned when dropped.
#[derive(Debug)]
pub struct HandlerSlot(Arc<HandlerSlots>);

impl HandlerSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(HandlerSlots {
            running: AtomicUsize::new(0),
            max: max.max(1),
            refusals: LogThrottle::default(),
        })
    }

    pub fn try_take(self: &Arc<Self>) -> Option<HandlerSlot> {
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| HandlerSlot(Arc::clone(self)))
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Count a refusal; `Some(n)` when it is time to log the `n` refusals since the last
    /// report.
    pub fn note_refusal(&self) -> Option<u64> {
        self.refusals.note()
    }
}

impl Drop for HandlerSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_returned_on_drop() {
        let slots = HandlerSlots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert_eq!(slots.running(), 1);
        let c = slots.try_take();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(slots.running(), 0);
    }

    #[test]
    fn refusals_are_reported_once_then_batched() {
        let slots = HandlerSlots::new(1);
        assert_eq!(slots.note_refusal(), Some(1));
        for _ in 0..100 {
            assert_eq!(slots.note_refusal(), None);
        }
    }
}
