//! Per-source request admission for the RD: a token bucket per source IP address,
//! in a bounded [`SourceTable`].
//!
//! Over its rate, a source's confirmable request is answered 4.29 Too Many Requests with
//! Max-Age = seconds until it may send again (RFC 8516 §3) — but at most once per
//! [`REFUSAL_INTERVAL`] per source; everything else over the rate (NON requests, and a CON flood
//! that already had its 4.29) is dropped unanswered. Answering every request of a flood would
//! turn the gateway into a reflector for whoever spoofs the flood's source address (RFC 7252
//! §11.3), and a client that ignored one 4.29 will ignore the next.
//!
//! The port is not part of the key: one host opening many sockets is still one host.
//! Called by the CoAP endpoint's receive loop for every request datagram, before decoding.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::source_table::SourceTable;
use super::token_bucket::TokenBucket;

/// A refused source gets at most one 4.29 per interval; the rest is dropped.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(1);
/// How often a summary of refusals is logged (never one line per packet).
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Answer 4.29 with this Max-Age.
    Refuse {
        retry_after_s: u32,
    },
    /// Send nothing.
    Drop,
}

/// Counters since the gateway started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateStats {
    pub admitted: u64,
    pub refused: u64,
    pub dropped: u64,
}

#[derive(Debug)]
struct SourceState {
    bucket: TokenBucket,
    last_refusal: Option<Instant>,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    sources: SourceTable<SourceState>,
    stats: RateStats,
    /// Stats at the last summary line, and when it was logged.
    logged: (RateStats, Option<Instant>),
    /// The source refused most recently (named in the summary).
    last_offender: Option<IpAddr>,
}

impl RateLimiter {
    /// `rate` requests per second per source, `burst` at once, state for at most `table_size`
    /// sources.
    pub fn new(rate: f64, burst: f64, table_size: usize) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            sources: SourceTable::new(table_size),
            stats: RateStats::default(),
            logged: (RateStats::default(), None),
            last_offender: None,
        }
    }

    pub fn check(&mut self, source: IpAddr, confirmable: bool, now: Instant) -> Admission {
        let (rate, burst) = (self.rate, self.burst);
        let state = self.sources.entry(source, || SourceState {
            bucket: TokenBucket::full(burst, now),
            last_refusal: None,
        });
        if state.bucket.try_take(rate, burst, now) {
            self.stats.admitted += 1;
            return Admission::Admit;
        }
        self.last_offender = Some(source);
        let may_answer = confirmable
            && state
                .last_refusal
                .is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_INTERVAL);
        if may_answer {
            state.last_refusal = Some(now);
            self.stats.refused += 1;
            Admission::Refuse {
                retry_after_s: state.bucket.seconds_until_token(rate),
            }
        } else {
            self.stats.dropped += 1;
            Admission::Drop
        }
    }

    pub fn stats(&self) -> RateStats {
        self.stats
    }

    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// A summary of what was refused since the last one, at most every [`LOG_INTERVAL`], and
    /// only when something was refused.
    pub fn log_line(&mut self, now: Instant) -> Option<String> {
        let (before, at) = self.logged;
        if at.is_some_and(|at| now.saturating_duration_since(at) < LOG_INTERVAL) {
            return None;
        }
        let refused = self.stats.refused - before.refused;
        let dropped = self.stats.dropped - before.dropped;
        if refused + dropped == 0 {
            return None;
        }
        self.logged = (self.stats, Some(now));
        let offender = self
            .last_offender
            .map_or_else(String::new, |ip| format!(", latest from {ip}"));
        Some(format!(
            "rate limit ({}/s, burst {} per source): {refused} requests answered 4.29, \
             {dropped} dropped{offender}",
            self.rate, self.burst
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn over_the_burst_a_con_gets_one_refusal_then_drops() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 5.0, 100);
        for _ in 0..5 {
            assert_eq!(r.check(A, true, t0), Admission::Admit);
        }
        assert_eq!(r.check(A, true, t0), Admission::Refuse { retry_after_s: 1 });
        assert_eq!(r.check(A, true, t0), Admission::Drop);
        assert_eq!(
            r.check(A, true, t0 + Duration::from_millis(50)),
            Admission::Drop
        );
        // Another source is not affected.
        assert_eq!(r.check(B, true, t0), Admission::Admit);
        // After a refill the source is admitted again.
        assert_eq!(
            r.check(A, true, t0 + Duration::from_millis(200)),
            Admission::Admit
        );
        assert_eq!(
            r.stats(),
            RateStats {
                admitted: 7,
                refused: 1,
                dropped: 2
            }
        );
    }

    #[test]
    fn non_requests_over_the_rate_are_never_answered() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 1.0, 100);
        assert_eq!(r.check(A, false, t0), Admission::Admit);
        for _ in 0..10 {
            assert_eq!(r.check(A, false, t0), Admission::Drop);
        }
    }

    #[test]
    fn one_refusal_per_interval_under_a_sustained_flood() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 1.0, 100);
        let mut refusals = 0;
        // 10 s of 1,000 requests/s.
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i);
            if let Admission::Refuse { .. } = r.check(A, true, now) {
                refusals += 1;
            }
        }
        assert!(refusals <= 10, "{refusals}");
        assert!(r.stats().admitted <= 11);
    }

    #[test]
    fn retry_after_reflects_a_slow_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(0.1, 1.0, 100);
        assert_eq!(r.check(A, true, t0), Admission::Admit);
        assert_eq!(
            r.check(A, true, t0),
            Admission::Refuse { retry_after_s: 10 }
        );
    }

    #[test]
    fn log_lines_are_rate_limited_and_only_when_something_was_refused() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 1.0, 100);
        assert_eq!(r.log_line(t0), None);
        r.check(A, true, t0);
        r.check(A, true, t0);
        r.check(A, true, t0);
        let line = r.log_line(t0).unwrap();
        assert!(
            line.contains("1 requests answered 4.29, 1 dropped"),
            "{line}"
        );
        r.check(A, true, t0);
        assert_eq!(r.log_line(t0 + Duration::from_secs(1)), None);
        let line = r.log_line(t0 + LOG_INTERVAL).unwrap();
        assert!(
            line.contains("0 requests answered 4.29, 1 dropped"),
            "{line}"
        );
    }

    #[test]
    fn a_spoofed_flood_keeps_the_table_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1.0, 1.0, 1_000);
        for n in 0..50_000u32 {
            r.check(IpAddr::V4(Ipv4Addr::from(n)), false, t0);
        }
        assert!(r.tracked_sources() <= 1_000);
    }
}
