//! Counts per wall-clock second: how many notifications `device-sim` started and how
//! many temperature representations it served in each Unix second, so a benchmark can compare
//! what the devices sent with what the gateway and the platform received, second by second.
//!
//! Keyed by the second the event happened in (not by when it is read), so the figures do not
//! depend on when `device-sim` gets round to printing them. Single-threaded use (device-sim
//! runs on one thread); a small ring of recent seconds is kept.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Seconds remembered: a reader that is a few seconds late still finds its second.
const KEPT: usize = 8;

/// Events by Unix second, the last [`KEPT`] seconds.
#[derive(Debug, Default)]
pub struct PerSecond {
    seconds: Mutex<VecDeque<(u64, u64)>>,
}

impl PerSecond {
    /// Count `n` events in second `second`. An event for a second older than the ring is
    /// dropped from the statistics (never happens in practice: events come in time order).
    pub fn add(&self, second: u64, n: u64) {
        let Ok(mut seconds) = self.seconds.lock() else {
            return;
        };
        match seconds.iter_mut().rev().find(|(s, _)| *s == second) {
            Some((_, count)) => *count += n,
            None => {
                if seconds.back().is_some_and(|(s, _)| *s > second) {
                    return;
                }
                seconds.push_back((second, n));
                while seconds.len() > KEPT {
                    seconds.pop_front();
                }
            }
        }
    }

    /// Events counted in `second` (0 when none, or when it has left the ring).
    pub fn get(&self, second: u64) -> u64 {
        self.seconds
            .lock()
            .ok()
            .and_then(|s| s.iter().find(|(sec, _)| *sec == second).map(|(_, n)| *n))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_second_and_forgets_old_ones() {
        let p = PerSecond::default();
        p.add(100, 1);
        p.add(100, 2);
        p.add(101, 5);
        p.add(99, 7); // older than the newest: ignored
        assert_eq!(p.get(100), 3);
        assert_eq!(p.get(101), 5);
        assert_eq!(p.get(99), 0);
        for s in 102..120 {
            p.add(s, 1);
        }
        assert_eq!(p.get(100), 0);
        assert_eq!(p.get(119), 1);
    }
}
