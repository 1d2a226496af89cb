//! At most one log line per interval for a kind of refusal, however many happen: a flood of
//! refused requests must not become a flood of log lines. Lock-free, so the CoAP
//! receive loop and request handlers can count from any thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Reports at most every this many seconds.
pub const REPORT_EVERY_S: u64 = 10;

#[derive(Debug, Default)]
pub struct LogThrottle {
    /// Events not reported yet, and the second (since `epoch`, offset by one interval so that
    /// 0 means "never") of the last report.
    unreported: AtomicU64,
    reported_at_s: AtomicU64,
    epoch: OnceLock<Instant>,
}

impl LogThrottle {
    /// For a `static`.
    pub const fn new() -> Self {
        LogThrottle {
            unreported: AtomicU64::new(0),
            reported_at_s: AtomicU64::new(0),
            epoch: OnceLock::new(),
        }
    }

    /// Count one event; `Some(n)` when it is time to log the `n` events since the last report
    /// (the first event is reported at once, then at most every [`REPORT_EVERY_S`]).
    pub fn note(&self) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now_s = epoch.elapsed().as_secs() + REPORT_EVERY_S;
        let last = self.reported_at_s.load(Ordering::Relaxed);
        if last != 0 && now_s < last + REPORT_EVERY_S {
            return None;
        }
        self.reported_at_s
            .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.unreported.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_reported_then_they_are_batched() {
        let t = LogThrottle::default();
        assert_eq!(t.note(), Some(1));
        for _ in 0..100 {
            assert_eq!(t.note(), None);
        }
    }
}
