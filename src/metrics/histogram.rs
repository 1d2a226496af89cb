//! A fixed-bucket latency histogram (Prometheus `histogram`, unit seconds) made of atomics.
//!
//! Observations are recorded in nanoseconds: one relaxed `fetch_add` on the bucket the value
//! falls in and one on the sum, no lock (the `prometheus-client` crate takes a mutex per
//! observation, which the RD's receive loop cannot afford at 200,000 requests/s). Buckets are
//! stored non-cumulatively; the cumulative `le` series, `_count` and `_sum` are computed at
//! scrape time, so every rendered series is monotonic. Used by [`super::Metrics`].

use std::time::Duration;

use super::counter::Counter;

/// Most buckets any histogram here has (plus the `+Inf` one).
pub(crate) const MAX_BUCKETS: usize = 20;

/// Upper bounds for the RD's request handling, 50 µs .. 10 s: the fast path answers in
/// microseconds, a write waits for a sled flush (~0.3 ms), a simple registration for a device.
pub(crate) const REQUEST_BOUNDS_NS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// Upper bounds for a command's round trip to a device, 1 ms .. 60 s (CoAP retransmissions
/// take up to EXCHANGE_LIFETIME; commands carry their own budget).
pub(crate) const ROUND_TRIP_BOUNDS_NS: &[u64] = &[
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// See the module doc. `bounds_ns` are strictly increasing upper bounds (inclusive, `le`).
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds_ns: &'static [u64],
    /// `buckets[i]` counts observations in (bounds[i-1], bounds[i]]; the slot after the last
    /// bound counts everything larger (+Inf).
    buckets: [Counter; MAX_BUCKETS + 1],
    sum_ns: Counter,
}

/// A consistent-enough reading of a histogram for rendering.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// (upper bound in seconds, cumulative count), without +Inf.
    pub cumulative: Vec<(f64, u64)>,
    /// Every observation (the +Inf bucket).
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    /// `bounds_ns` must hold at most [`MAX_BUCKETS`] increasing values (checked by the tests
    /// of every bound list used here; a longer list would put the excess into +Inf).
    pub(crate) const fn new(bounds_ns: &'static [u64]) -> Self {
        Histogram {
            bounds_ns,
            buckets: [const { Counter::new() }; MAX_BUCKETS + 1],
            sum_ns: Counter::new(),
        }
    }

    #[inline]
    pub(crate) fn observe(&self, elapsed: Duration) {
        // Saturates after 584 years: not a concern for one observation.
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.observe_ns(ns);
    }

    #[inline]
    pub(crate) fn observe_ns(&self, ns: u64) {
        let bounds = &self.bounds_ns[..self.bounds_ns.len().min(MAX_BUCKETS)];
        let slot = bounds.iter().position(|b| ns <= *b).unwrap_or(bounds.len());
        self.buckets[slot].inc();
        self.sum_ns.add(ns);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let bounds = &self.bounds_ns[..self.bounds_ns.len().min(MAX_BUCKETS)];
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(bounds.len());
        for (i, bound) in bounds.iter().enumerate() {
            running += self.buckets[i].get();
            cumulative.push((*bound as f64 / 1e9, running));
        }
        running += self.buckets[bounds.len()].get();
        HistogramSnapshot {
            cumulative,
            count: running,
            sum_seconds: self.sum_ns.get() as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_lists_fit_and_increase() {
        for bounds in [REQUEST_BOUNDS_NS, ROUND_TRIP_BOUNDS_NS] {
            assert!(bounds.len() <= MAX_BUCKETS);
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        static H: Histogram = Histogram::new(&[1_000, 2_000]);
        H.observe_ns(1_000); // on the bound: le is inclusive
        H.observe_ns(1_500);
        H.observe_ns(9_000); // +Inf only
        H.observe(Duration::from_nanos(10));
        let s = H.snapshot();
        assert_eq!(s.cumulative, vec![(1e-6, 2), (2e-6, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 11_510e-9).abs() < 1e-15);
    }
}
