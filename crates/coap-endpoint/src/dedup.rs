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
//! Entries are queued in arrival order, and since every entry lives the same time the queue is
//! also the expiry order: expiry and eviction pop the front, never scan. Pure: time is passed in.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

struct Slot {
    response: Option<Box<[u8]>>,
    generation: u64,
}

type Key = (SocketAddr, u16);

/// What one entry costs besides its response: its queue element and its hash-table bucket,
/// the table counted twice since hashbrown keeps up to half its buckets free after growing.
pub const ENTRY_COST: usize =
    std::mem::size_of::<(Instant, Key, u64)>() + 2 * std::mem::size_of::<(Key, Slot)>();

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

pub struct DedupCache {
    map: HashMap<Key, Slot, FastBuild>,
    order: VecDeque<(Instant, Key, u64)>,
    lifetime: Duration,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    generation: u64,
}

impl DedupCache {
    pub fn new(lifetime: Duration, max_entries: usize, max_bytes: usize) -> Self {
        DedupCache {
            map: HashMap::default(),
            order: VecDeque::new(),
            lifetime,
            max_entries: max_entries.max(1),
            max_bytes,
            bytes: 0,
            generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Memory charged to the cache: [`ENTRY_COST`] per entry plus the cached responses.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Look up (peer, mid); when new, remember it as in progress.
    pub fn check(&mut self, peer: SocketAddr, mid: u16, now: Instant) -> Seen<'_> {
        self.expire(now);
        let key = (peer, mid);
        // One hash lookup on the hot path: the entry API, with eviction after the insert.
        if let Entry::Vacant(v) = self.map.entry(key) {
            self.generation += 1;
            v.insert(Slot {
                response: None,
                generation: self.generation,
            });
            self.order.push_back((now, key, self.generation));
            self.bytes += ENTRY_COST;
            self.evict_to_bounds();
            return Seen::New;
        }
        match self.map.get(&key) {
            Some(Slot {
                response: Some(r), ..
            }) => Seen::Answered(r),
            _ => Seen::InProgress,
        }
    }

    /// Record the bytes sent for (peer, mid), to be resent for duplicates.
    pub fn answered(&mut self, peer: SocketAddr, mid: u16, response: &[u8]) {
        if let Entry::Occupied(mut e) = self.map.entry((peer, mid)) {
            let slot = e.get_mut();
            let old = slot.response.as_ref().map_or(0, |r| r.len());
            slot.response = Some(response.into());
            self.bytes = self.bytes + response.len() - old;
            self.evict_to_bounds();
        }
    }

    /// Forget (peer, mid) so that a retransmission is handled afresh (used when a handler
    /// failed before answering).
    pub fn forget(&mut self, peer: SocketAddr, mid: u16) {
        if let Some(slot) = self.map.remove(&(peer, mid)) {
            self.bytes -= ENTRY_COST + slot.response.map_or(0, |r| r.len());
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.lifetime {
                break;
            }
            self.pop_front();
        }
    }

    fn evict_to_bounds(&mut self) {
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            if !self.pop_front() {
                break;
            }
        }
    }

    fn pop_front(&mut self) -> bool {
        let Some((_, key, generation)) = self.order.pop_front() else {
            return false;
        };
        if let Entry::Occupied(e) = self.map.entry(key) {
            // A key forgotten and seen again has a newer queue entry; keep it.
            if e.get().generation == generation {
                let slot = e.remove();
                self.bytes -= ENTRY_COST + slot.response.map_or(0, |r| r.len());
            }
        }
        true
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
