//! One token bucket: `rate` tokens per second up to `burst`, one token per request (or `n`).
//! Used per source by the RD's rate limiter, per device by the Observer's frame budget, and in
//! bytes by the amplification excess budget.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: a new source may send `burst` requests at once.
    pub fn full(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.try_take_n(1.0, rate, burst, now)
    }

    /// Take `n` tokens if there are that many; nothing otherwise.
    pub fn try_take_n(&mut self, n: f64, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whole seconds until one token is available again (at least 1): the Max-Age of a 4.29.
    pub fn seconds_until_token(&self, rate: f64) -> u32 {
        if rate <= 0.0 {
            return u32::MAX;
        }
        let wait = ((1.0 - self.tokens).max(0.0) / rate).ceil();
        (wait as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3.0, t0);
        assert!((0..3).all(|_| b.try_take(10.0, 3.0, t0)));
        assert!(!b.try_take(10.0, 3.0, t0));
        assert!(b.try_take(10.0, 3.0, t0 + Duration::from_millis(100)));
        assert!(!b.try_take(10.0, 3.0, t0 + Duration::from_millis(100)));
        // Never more than `burst`, however long the pause.
        let later = t0 + Duration::from_secs(3_600);
        assert!((0..3).all(|_| b.try_take(10.0, 3.0, later)));
        assert!(!b.try_take(10.0, 3.0, later));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(1.0, t0);
        assert!(b.try_take(0.25, 1.0, t0));
        assert_eq!(b.seconds_until_token(0.25), 4);
        assert_eq!(b.seconds_until_token(1_000.0), 1);
    }
}
