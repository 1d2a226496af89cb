//! The global budget of bytes that may go to unproven sources beyond the amplification factor
//! (issue 18).
//!
//! RFC 7252 §11.3 bounds what a spoofed request can make a server reflect; the factor (3x the
//! request) does that per response. Applied strictly, it also cuts every lookup answer larger
//! than three times its request into small Block2 blocks with an Echo option, and a
//! constrained client that implements neither (RIOT's `cord_lc`, many gcoap/nanocoap clients)
//! reads the first block as the whole answer and fails. So a response that fits in one block
//! may exceed the factor while this budget lasts: one token bucket for the whole endpoint, in
//! bytes per second, charged with each such response's excess over the factor. An honest LAN
//! never empties it (a one-block lookup answer of ~1.1 KB to a ~40-byte request exceeds the
//! factor by ~1 KB: the default 256 KiB/s covers ~250 such answers per second); a reflection
//! attack empties it at once, and from then on every unproven source gets the strict bound
//! (small blocks with Echo) until it refills. What an attacker can reflect beyond the factor
//! is therefore at most `rate` bytes per second plus one second's burst, however many
//! addresses it spoofs.

use std::time::Instant;

use super::token_bucket::TokenBucket;

#[derive(Debug)]
pub struct ExcessBudget {
    bucket: TokenBucket,
    rate: f64,
    burst: f64,
}

impl ExcessBudget {
    /// `bytes_per_s` refill, holding at most one second's worth.
    pub fn new(bytes_per_s: f64, now: Instant) -> Self {
        ExcessBudget {
            bucket: TokenBucket::full(bytes_per_s, now),
            rate: bytes_per_s,
            burst: bytes_per_s,
        }
    }

    /// Spend `bytes` if the budget holds them all; nothing is spent otherwise.
    pub fn try_spend(&mut self, bytes: usize, now: Instant) -> bool {
        self.bucket
            .try_take_n(bytes as f64, self.rate, self.burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spends_up_to_one_second_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = ExcessBudget::new(1_000.0, t0);
        assert!(b.try_spend(600, t0));
        assert!(!b.try_spend(600, t0), "only 400 left");
        assert!(b.try_spend(400, t0));
        assert!(!b.try_spend(1, t0));
        assert!(b.try_spend(100, t0 + Duration::from_millis(100)));
        // Never more than one second's worth, however long it rested.
        let later = t0 + Duration::from_secs(3_600);
        assert!(!b.try_spend(1_001, later));
        assert!(b.try_spend(1_000, later));
    }

    #[test]
    fn a_response_larger_than_the_whole_budget_is_never_granted() {
        let t0 = Instant::now();
        let mut b = ExcessBudget::new(100.0, t0);
        assert!(!b.try_spend(101, t0));
        assert!(b.try_spend(100, t0), "a refused spend took nothing");
    }
}
