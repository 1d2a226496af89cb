//! Reconnect back-off for the platform link (`docs/platform-protocol.md`, "Delivery"):
//! exponential from 0.5 s up to `platform.reconnect_max_s`, with jitter so that many gateways
//! cut off by the same platform outage do not all return in the same instant. Pure; the RNG is
//! injected so the schedule is testable. Owned by the PlatformLink actor.
//!
//! "Equal jitter": attempt n has a ceiling of min(0.5 s × 2ⁿ, max), and the delay is drawn
//! uniformly from [ceiling / 2, ceiling], never below the 0.5 s floor. So the first retry waits
//! exactly 0.5 s, later ones spread out, and none waits longer than the configured maximum.

use std::time::Duration;

use rand::Rng;

/// The first and smallest reconnect delay.
pub(crate) const INITIAL_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub(crate) struct ReconnectBackoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl ReconnectBackoff {
    /// `max` below `initial` is raised to `initial`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        ReconnectBackoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        // 2^20 × 0.5 s is already days: stop doubling long before overflow.
        let factor = 1u32 << self.attempt.min(20);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let low = (ceiling / 2).max(self.initial).min(ceiling);
        if low >= ceiling {
            return ceiling;
        }
        let span_ms = (ceiling - low).as_millis() as u64;
        low + Duration::from_millis(rng.gen_range(0..=span_ms))
    }

    /// After a successful connect, the next outage starts again from the initial delay.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn backoff() -> ReconnectBackoff {
        ReconnectBackoff::new(INITIAL_DELAY, Duration::from_secs(30))
    }

    #[test]
    fn the_first_retry_waits_the_initial_delay() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(backoff().next_delay(&mut rng), INITIAL_DELAY);
    }

    #[test]
    fn delays_grow_within_their_jitter_window_and_stop_at_the_maximum() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = backoff();
        let ceilings_ms = [
            500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
        ];
        for ceiling in ceilings_ms {
            let d = b.next_delay(&mut rng).as_millis() as u64;
            assert!(
                d >= (ceiling / 2).max(500) && d <= ceiling,
                "{d} ms outside its window for ceiling {ceiling} ms"
            );
        }
        for _ in 0..100 {
            assert!(b.next_delay(&mut rng) <= Duration::from_secs(30));
        }
    }

    #[test]
    fn jitter_spreads_gateways_apart() {
        let mut rng = StdRng::seed_from_u64(3);
        let delays: std::collections::HashSet<Duration> = (0..50)
            .map(|_| {
                let mut b = backoff();
                for _ in 0..5 {
                    b.next_delay(&mut rng);
                }
                b.next_delay(&mut rng)
            })
            .collect();
        assert!(delays.len() > 10, "only {} distinct delays", delays.len());
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut b = backoff();
        for _ in 0..8 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert_eq!(b.next_delay(&mut rng), INITIAL_DELAY);
    }

    #[test]
    fn a_maximum_below_the_floor_is_the_floor() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut b = ReconnectBackoff::new(INITIAL_DELAY, Duration::from_millis(100));
        for _ in 0..5 {
            assert_eq!(b.next_delay(&mut rng), INITIAL_DELAY);
        }
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut b = ReconnectBackoff::new(INITIAL_DELAY, Duration::from_secs(u64::MAX / 4));
        for _ in 0..200 {
            b.next_delay(&mut rng);
        }
    }
}
