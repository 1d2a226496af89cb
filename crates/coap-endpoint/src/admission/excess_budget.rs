//! The global budget of bytes that may go to unproven sources beyond the amplification factor.
//!
//! RFC 7252 §11.3 bounds what a spoofed request can make a server reflect; the factor (3x the
//! request) does that per response. Applied strictly, it also cuts every lookup answer larger
//! than three times its request into small Block2 blocks with an Echo option, and a
//! constrained client that implements neither (RIOT's `cord_lc`, many gcoap/nanocoap clients)
//! reads the first block as the whole answer and fails. So a response that fits in one block
//! may exceed the factor while this budget lasts, in bytes per second for the whole endpoint,
//! charged with each such response's excess over the factor. What an attacker can reflect
//! beyond the factor is therefore at most `rate` bytes per second plus one second's burst,
//! however many addresses it spoofs.
//!
//! One shared pool would let a flood of spoofed lookups spend it all, and an honest
//! constrained client would then get the strict bound (a small first block with Echo, which it
//! cannot use) for as long as the flood lasts. So the budget is two pools of half the rate each:
//!
//! - the **open** pool pays any unproven source, first come first served;
//! - the **reserve** pays only *familiar* sources, each at most `rate / 16` bytes per second
//!   (burst `rate / 8`), and only once the open pool has run dry.
//!
//! A familiar source is one the gateway answered at least [`FAMILIAR_AFTER`] before the
//! current *pressure* began. Pressure begins when the open pool cannot pay and ends once it has
//! paid everything asked of it for [`PRESSURE_HOLD`]; while it lasts no new source is learnt
//! (so a flood of spoofed addresses neither becomes familiar nor pushes the familiar ones out of
//! the bounded table). An honest client that was in use before a flood keeps complete answers
//! through it; a client first heard during a flood is indistinguishable from a spoofed one and
//! gets the strict bound (Echo still works for it). An attacker who spends the calm before a
//! flood making addresses familiar can contest the reserve, a `rate / 16` share per address;
//! the total stays within the budget whatever it does.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::source_table::SourceTable;
use super::token_bucket::TokenBucket;

/// How long before the current pressure a source must have been answered to be familiar.
pub const FAMILIAR_AFTER: Duration = Duration::from_secs(10);
/// Pressure ends when the open pool has refused nothing for this long.
pub const PRESSURE_HOLD: Duration = Duration::from_secs(10);
/// A familiar source's share of the reserve, as a fraction of the whole rate (per second).
const SHARE_DIVISOR: f64 = 16.0;

#[derive(Debug)]
struct Source {
    first_answered: Instant,
    share: TokenBucket,
}

#[derive(Debug)]
struct Pressure {
    began: Instant,
    last_refusal: Instant,
}

#[derive(Debug)]
pub struct ExcessBudget {
    open: TokenBucket,
    reserve: TokenBucket,
    /// Each pool's rate and burst: half the budget.
    pool_rate: f64,
    share_rate: f64,
    share_burst: f64,
    sources: SourceTable<Source>,
    pressure: Option<Pressure>,
}

impl ExcessBudget {
    /// `bytes_per_s` refill in all, holding at most one second's worth; at most `table_size`
    /// sources remembered (as every per-source table, `limits.source_table_size`).
    pub fn new(bytes_per_s: f64, table_size: usize, now: Instant) -> Self {
        let pool_rate = bytes_per_s / 2.0;
        ExcessBudget {
            open: TokenBucket::full(pool_rate, now),
            reserve: TokenBucket::full(pool_rate, now),
            pool_rate,
            share_rate: bytes_per_s / SHARE_DIVISOR,
            share_burst: 2.0 * bytes_per_s / SHARE_DIVISOR,
            sources: SourceTable::new(table_size),
            pressure: None,
        }
    }

    /// Whether the open pool has refused something within the last [`PRESSURE_HOLD`].
    pub fn under_pressure(&mut self, now: Instant) -> bool {
        if let Some(p) = &self.pressure {
            if now.saturating_duration_since(p.last_refusal) >= PRESSURE_HOLD {
                self.pressure = None;
            }
        }
        self.pressure.is_some()
    }

    /// `source` (an address or prefix, as the per-source limits count them) is being answered:
    /// remembered, outside pressure, as of now.
    pub fn note(&mut self, source: IpAddr, now: Instant) {
        if self.under_pressure(now) {
            return;
        }
        let (share_burst, share) = (self.share_burst, &mut self.sources);
        share.entry(source, || Source {
            first_answered: now,
            share: TokenBucket::full(share_burst, now),
        });
    }

    /// Spend `bytes` for `source` if a pool holds them all; nothing is spent otherwise.
    pub fn try_spend(&mut self, source: IpAddr, bytes: usize, now: Instant) -> bool {
        let bytes = bytes as f64;
        self.note(source, now);
        if self
            .open
            .try_take_n(bytes, self.pool_rate, self.pool_rate, now)
        {
            return true;
        }
        let began = match &mut self.pressure {
            Some(p) => {
                p.last_refusal = now;
                p.began
            }
            None => {
                self.pressure = Some(Pressure {
                    began: now,
                    last_refusal: now,
                });
                now
            }
        };
        let Some(entry) = self.sources.get_mut(&source) else {
            return false;
        };
        if entry.first_answered + FAMILIAR_AFTER > began {
            return false;
        }
        // Both must hold the bytes; the share is checked first so a refused spend takes
        // nothing from the reserve.
        let mut share = entry.share;
        if !share.try_take_n(bytes, self.share_rate, self.share_burst, now) {
            entry.share = share;
            return false;
        }
        if !self
            .reserve
            .try_take_n(bytes, self.pool_rate, self.pool_rate, now)
        {
            return false;
        }
        entry.share = share;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn the_open_pool_spends_half_the_rate_then_refills() {
        let t0 = Instant::now();
        let mut b = ExcessBudget::new(2_000.0, 100, t0);
        assert!(b.try_spend(ip(1), 600, t0));
        assert!(
            !b.try_spend(ip(1), 600, t0),
            "only 400 left, and ip(1) is new"
        );
        assert!(b.try_spend(ip(1), 400, t0));
        assert!(!b.try_spend(ip(2), 1, t0));
        // Pressure: nothing new is learnt, and 10 s of refusals keep it.
        assert!(b.under_pressure(t0));
        assert!(b.try_spend(ip(2), 100, t0 + Duration::from_millis(100)));
        // Never more than one second's worth of the pool, however long it rested.
        let later = t0 + Duration::from_secs(3_600);
        assert!(!b.try_spend(ip(3), 1_001, later));
        assert!(b.try_spend(ip(3), 1_000, later));
    }

    #[test]
    fn a_response_larger_than_a_pool_is_never_granted() {
        let t0 = Instant::now();
        let mut b = ExcessBudget::new(200.0, 100, t0);
        assert!(!b.try_spend(ip(1), 101, t0));
        assert!(b.try_spend(ip(1), 100, t0), "a refused spend took nothing");
    }

    /// The flood: 1,024 new addresses spend the open pool at once, and then keep asking.
    fn flood(b: &mut ExcessBudget, at: Instant) {
        for n in 1_000..2_024 {
            b.try_spend(ip(n), 1_000, at);
        }
    }

    #[test]
    fn a_source_familiar_before_a_flood_is_paid_from_the_reserve_through_it() {
        let t0 = Instant::now();
        let rate = 262_144.0;
        let mut b = ExcessBudget::new(rate, 4_096, t0);
        let honest = ip(7);
        b.note(honest, t0);
        let flood_start = t0 + FAMILIAR_AFTER;
        flood(&mut b, flood_start);
        assert!(
            !b.try_spend(ip(1_500), 1_000, flood_start),
            "open pool spent"
        );
        // Ten lookups a second (1 KB over the factor each) for 30 s of flood: all paid.
        let mut paid = 0;
        for tenth in 0..300u64 {
            let now = flood_start + Duration::from_millis(100 * tenth);
            flood(&mut b, now);
            if b.try_spend(honest, 1_000, now) {
                paid += 1;
            }
        }
        assert_eq!(paid, 300);
    }

    #[test]
    fn a_flood_address_never_becomes_familiar_while_the_flood_lasts() {
        let t0 = Instant::now();
        let mut b = ExcessBudget::new(262_144.0, 4_096, t0);
        let mut spent_beyond_open = 0u32;
        for s in 0..60u64 {
            let now = t0 + Duration::from_secs(s);
            for n in 1_000..2_024 {
                if b.try_spend(ip(n), 1_000, now) {
                    spent_beyond_open += 1;
                }
            }
        }
        // What the open pool pays: 128 answers at the start and 131 a second after.
        assert!(
            spent_beyond_open <= 131 * 60,
            "{spent_beyond_open} answers paid: the reserve paid flood addresses"
        );
    }

    #[test]
    fn a_source_first_heard_during_pressure_is_not_familiar_and_not_learnt() {
        let t0 = Instant::now();
        let mut b = ExcessBudget::new(262_144.0, 4_096, t0);
        flood(&mut b, t0);
        let late = ip(9);
        let later = t0 + Duration::from_secs(20);
        for s in 0..20u64 {
            flood(&mut b, t0 + Duration::from_secs(s));
            b.note(late, t0 + Duration::from_secs(s));
        }
        flood(&mut b, later);
        assert!(!b.try_spend(late, 1_000, later));
        // Once the flood has stopped for PRESSURE_HOLD, sources are learnt again.
        let calm = later + PRESSURE_HOLD;
        assert!(!b.under_pressure(calm));
        assert!(b.try_spend(late, 1_000, calm));
    }

    #[test]
    fn a_familiar_source_gets_its_share_and_no_more() {
        let t0 = Instant::now();
        let rate = 16_000.0;
        let mut b = ExcessBudget::new(rate, 100, t0);
        let greedy = ip(3);
        b.note(greedy, t0);
        let at = t0 + FAMILIAR_AFTER;
        assert!(b.try_spend(ip(50), 8_000, at), "the open pool, whole");
        // Share: 1,000 B/s, burst 2,000.
        assert!(b.try_spend(greedy, 2_000, at));
        assert!(!b.try_spend(greedy, 1, at));
        assert!(b.try_spend(greedy, 1_000, at + Duration::from_secs(1)));
    }

    #[test]
    fn the_two_pools_never_pay_more_than_the_rate_plus_one_burst() {
        let t0 = Instant::now();
        let rate = 100_000.0;
        let mut b = ExcessBudget::new(rate, 1_000, t0);
        // 200 familiar sources (an attacker who prepared in the calm).
        for n in 0..200 {
            b.note(ip(n), t0);
        }
        let start = t0 + FAMILIAR_AFTER;
        let mut paid = 0.0;
        for ms in 0..10_000u64 {
            let now = start + Duration::from_millis(ms);
            for n in 0..200 {
                if b.try_spend(ip(n), 100, now) {
                    paid += 100.0;
                }
            }
        }
        assert!(paid <= rate * 10.0 + rate, "{paid} bytes");
    }
}
