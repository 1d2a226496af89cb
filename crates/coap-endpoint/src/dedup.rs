//! Message deduplication (RFC 7252 §4.5): every CON and NON received is remembered by
//! (peer, Message ID) for EXCHANGE_LIFETIME, with the response sent for it, so that a
//! retransmitted CON is answered from the cache and its handler runs once.
//!
//! Bounded by entry count and by bytes: every entry is charged its bookkeeping
//! ([`ENTRY_COST`]) plus its cached response, so the byte bound approximates the cache's real
//! memory (within hash-table control bytes, queue slack and allocator rounding) and holds
//! however small the responses are. The oldest entries go first: under a load that
//! fills the budget faster than EXCHANGE_LIFETIME, a retransmission older than the budget's
//! reach is handled again (the RD's requests are idempotent in effect, except that a repeated
//! DELETE then gets 4.04).
//! The bookkeeping (expiry order, bounds, eviction) is the endpoint's one [`BoundedCache`].
//! Pure: time is passed in.

use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bounded_cache::BoundedCache;

/// What is known about a (peer, MID) already seen.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// First time: the caller handles the message.
    New,
    /// Being handled (the handler has not answered yet): drop the duplicate.
    InProgress,
    /// Answered: resend these bytes (for a CON) or drop (for a NON).
    Answered(&'a [u8]),
}

type Key = (SocketAddr, u16);

/// What one entry costs besides its response: its queue element and its hash-table bucket
/// ([`BoundedCache::BOOKKEEPING`]).
pub const ENTRY_COST: usize = Cache::BOOKKEEPING;

type Cache = BoundedCache<Key, Option<Box<[u8]>>, FastBuild>;

/// Multiplicative hasher for the (address, MID) key: the key is not attacker-chosen in a way
/// that matters (a collision flood only slows the peer's own entries), and SipHash was a
/// measurable share of the per-request cost.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type FastBuild = BuildHasherDefault<FastHasher>;

/// The (peer, MID) cache: a [`BoundedCache`] whose value is the response sent, `None` while
/// the handler runs.
pub struct DedupCache {
    cache: Cache,
}

impl DedupCache {
    pub fn new(lifetime: Duration, max_entries: usize, max_bytes: usize) -> Self {
        DedupCache {
            cache: BoundedCache::new(lifetime, max_entries, max_bytes, ENTRY_COST),
        }
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Memory charged to the cache: [`ENTRY_COST`] per entry plus the cached responses.
    pub fn bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Look up (peer, mid); when new, remember it as in progress.
    pub fn check(&mut self, peer: SocketAddr, mid: u16, now: Instant) -> Seen<'_> {
        match self.cache.get_or_insert_with((peer, mid), now, 0, || None) {
            None => Seen::New,
            Some(None) => Seen::InProgress,
            Some(Some(response)) => Seen::Answered(response),
        }
    }

    /// Record the bytes sent for (peer, mid), to be resent for duplicates.
    pub fn answered(&mut self, peer: SocketAddr, mid: u16, response: &[u8]) {
        self.cache
            .replace(&(peer, mid), Some(response.into()), response.len());
    }

    /// Forget (peer, mid) so that a retransmission is handled afresh (used when a handler
    /// failed before answering).
    pub fn forget(&mut self, peer: SocketAddr, mid: u16) {
        self.cache.remove(&(peer, mid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn duplicates_are_answered_from_the_cache() {
        let now = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(247), 10, 10 * ENTRY_COST);
        assert_eq!(c.check(p(1), 7, now), Seen::New);
        assert_eq!(c.check(p(1), 7, now), Seen::InProgress);
        c.answered(p(1), 7, b"abc");
        assert_eq!(c.check(p(1), 7, now), Seen::Answered(b"abc"));
        // Same MID, other peer: a different exchange.
        assert_eq!(c.check(p(2), 7, now), Seen::New);
        assert_eq!(c.bytes(), 2 * ENTRY_COST + 3);
    }

    #[test]
    fn entries_expire_after_the_exchange_lifetime() {
        let now = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(10), 10, 10 * ENTRY_COST);
        c.check(p(1), 1, now);
        c.answered(p(1), 1, b"x");
        c.check(p(1), 2, now + Duration::from_secs(5));
        assert_eq!(c.check(p(1), 3, now + Duration::from_secs(10)), Seen::New);
        assert_eq!(c.len(), 2, "MID 1 expired");
        assert_eq!(c.bytes(), 2 * ENTRY_COST, "no response cached any more");
        assert_eq!(
            c.check(p(1), 2, now + Duration::from_secs(11)),
            Seen::InProgress
        );
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let now = Instant::now();
        let budget = 3 * ENTRY_COST + 10;
        let mut c = DedupCache::new(Duration::from_secs(247), 3, budget);
        for mid in 0..5 {
            c.check(p(1), mid, now);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.check(p(1), 0, now), Seen::New, "oldest evicted");
        c.answered(p(1), 0, &[0; 8]);
        c.check(p(1), 9, now);
        c.answered(p(1), 9, &[0; 8]);
        assert!(c.bytes() <= budget);
        assert_eq!(c.len(), 2, "two responses of 8 bytes do not fit in 10");
        assert_eq!(
            c.check(p(1), 9, now),
            Seen::Answered(&[0; 8]),
            "newest kept"
        );
    }

    #[test]
    fn entry_cost_bounds_a_cache_of_empty_responses() {
        // Many tiny responses must not escape the byte bound through their bookkeeping.
        let now = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(247), 1_000_000, 100 * ENTRY_COST);
        for mid in 0..1000 {
            c.check(p(1), mid, now);
            c.answered(p(1), mid, &[]);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.bytes(), 100 * ENTRY_COST);
    }

    #[test]
    fn forget_then_reinsert_survives_the_stale_queue_entry() {
        let now = Instant::now();
        let mut c = DedupCache::new(Duration::from_secs(10), 10, 10 * ENTRY_COST);
        c.check(p(1), 1, now);
        c.forget(p(1), 1);
        let later = now + Duration::from_secs(5);
        c.check(p(1), 1, later);
        assert_eq!(
            c.check(p(1), 1, now + Duration::from_secs(12)),
            Seen::InProgress,
            "the stale queue entry must not evict the newer one"
        );
    }
}
