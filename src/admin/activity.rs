//! The last hour of RD activity for the console's gateway page: registrations, updates and
//! lookups per second, from the counters `metrics` already keeps. One sample of three atomics
//! every [`SAMPLE_EVERY`] into a ring of [`SAMPLES`]; the rates are the differences, worked
//! out only when someone asks (`GET /api/gateway`). Nothing else runs while nobody looks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::ActivityTotals;

/// How often the totals are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// One hour of samples.
pub(crate) const SAMPLES: usize = 361;

/// Sampled totals, oldest first; clones share the ring.
#[derive(Clone, Default)]
pub(crate) struct Activity(Arc<Mutex<VecDeque<(u64, ActivityTotals)>>>);

/// Rates over one sample interval, ending at `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct RatePoint {
    pub(crate) at_ms: u64,
    pub(crate) registrations_per_s: f64,
    pub(crate) updates_per_s: f64,
    pub(crate) lookups_per_s: f64,
}

impl Activity {
    /// Record the totals read at `at_ms`.
    pub(crate) fn sample(&self, at_ms: u64, totals: ActivityTotals) {
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() >= SAMPLES {
            ring.pop_front();
        }
        ring.push_back((at_ms, totals));
    }

    /// The rates between consecutive samples, oldest first.
    pub(crate) fn rates(&self) -> Vec<RatePoint> {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rates_of(ring.iter().copied())
    }

    /// Sample `metrics::global()` every [`SAMPLE_EVERY`] until the returned task is aborted.
    pub(crate) fn run(&self) -> actix_rt::task::JoinHandle<()> {
        let activity = self.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                activity.sample(crate::time::now_ms(), crate::metrics::global().activity());
            }
        })
    }
}

/// Per-second rates between consecutive samples. Counters only grow, so a decrease (never
/// expected) reads as 0, not as a negative rate.
fn rates_of(samples: impl Iterator<Item = (u64, ActivityTotals)>) -> Vec<RatePoint> {
    let mut out = Vec::new();
    let mut prev: Option<(u64, ActivityTotals)> = None;
    for (at, totals) in samples {
        if let Some((then, before)) = prev {
            let seconds = at.saturating_sub(then) as f64 / 1000.0;
            if seconds > 0.0 {
                let per_s = |now: u64, was: u64| now.saturating_sub(was) as f64 / seconds;
                out.push(RatePoint {
                    at_ms: at,
                    registrations_per_s: per_s(totals.registrations, before.registrations),
                    updates_per_s: per_s(totals.updates, before.updates),
                    lookups_per_s: per_s(totals.lookups, before.lookups),
                });
            }
        }
        prev = Some((at, totals));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(registrations: u64, lookups: u64) -> ActivityTotals {
        ActivityTotals {
            registrations,
            updates: 0,
            lookups,
        }
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let a = Activity::default();
        a.sample(0, totals(0, 0));
        a.sample(10_000, totals(50, 1_000));
        a.sample(20_000, totals(50, 1_500));
        let r = a.rates();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].registrations_per_s, r[0].lookups_per_s), (5.0, 100.0));
        assert_eq!((r[1].registrations_per_s, r[1].lookups_per_s), (0.0, 50.0));
        assert_eq!(r[1].at_ms, 20_000);
    }

    #[test]
    fn the_ring_keeps_one_hour() {
        let a = Activity::default();
        for i in 0..(SAMPLES as u64 + 10) {
            a.sample(i * 10_000, totals(i, i));
        }
        let r = a.rates();
        assert_eq!(r.len(), SAMPLES - 1);
        assert_eq!(r[0].at_ms, 11 * 10_000);
    }
}
