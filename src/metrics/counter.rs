//! The two scalar instruments, [`Counter`] and [`Gauge`]: one relaxed atomic each, so actors
//! and the CoAP receive loop record an event with a single uncontended `lock xadd` and no lock.
//!
//! Relaxed ordering is enough: a scrape only needs every value to be one that was really
//! reached, never a consistent cut across values (the Prometheus text format promises none).
//! Used by [`super::Metrics`]; read by `render`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count (Prometheus `counter`).
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (Prometheus `gauge`), e.g. work in flight.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_adds_and_gauge_goes_both_ways() {
        let c = Counter::new();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
        let g = Gauge::new();
        g.inc();
        g.inc();
        g.dec();
        assert_eq!(g.get(), 1);
    }
}
