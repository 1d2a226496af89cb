//! One bounded cache with a time to live, for everything the endpoint remembers per exchange:
//! the (peer, MID) deduplication cache (RFC 7252 §4.5) and the Block2 representations kept
//! for follow-up blocks (RFC 7959 §2.4).
//!
//! Bounded three ways: entries live at most `ttl`, there are at most `max_entries`, and the
//! bytes charged (each entry's own cost plus a fixed `entry_cost` for its bookkeeping) stay
//! within `max_bytes`; the oldest entries go first. Entries are queued in insertion order, and
//! since every entry lives the same time the queue is also the expiry order: expiry and
//! eviction pop the front, never scan. A replaced or removed key leaves its old queue element
//! behind, recognised by a generation number, and the queue is compacted when such elements
//! outnumber the live ones, so re-inserting one key again and again cannot grow it.
//! Pure: time is passed in.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

/// A cached value. The generation and cost are 32 bits so that a slot holding a boxed slice
/// is as small as the value plus one word: the deduplication cache holds ~75,000 of them.
/// Generations wrap after 2^32 inserts, far more than the queue ever holds within one ttl, so
/// a stale queue element never matches a newer slot of its key.
struct Slot<V> {
    value: V,
    generation: u32,
    cost: u32,
}

pub struct BoundedCache<K, V, S = std::collections::hash_map::RandomState> {
    map: HashMap<K, Slot<V>, S>,
    order: VecDeque<(Instant, K, u32)>,
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    entry_cost: usize,
    bytes: usize,
    generation: u32,
}

impl<K, V, S> BoundedCache<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Default,
{
    /// What one entry costs besides its value: its queue element and its hash-table bucket,
    /// the table counted twice since hashbrown keeps up to half its buckets free after growing.
    /// A caller whose byte bound should approximate real memory passes this as `entry_cost`.
    pub const BOOKKEEPING: usize =
        std::mem::size_of::<(Instant, K, u32)>() + 2 * std::mem::size_of::<(K, Slot<V>)>();

    /// A cache whose entries live `ttl`, at most `max_entries` of them, charging each
    /// `entry_cost` bytes besides its own cost, all within `max_bytes`.
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize, entry_cost: usize) -> Self {
        BoundedCache {
            map: HashMap::default(),
            order: VecDeque::new(),
            ttl,
            max_entries: max_entries.max(1),
            max_bytes,
            entry_cost,
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

    /// Bytes charged: `entry_cost` per entry plus each entry's own cost.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Elements in the order queue, live or not (bounded by the compaction).
    pub fn queued(&self) -> usize {
        self.order.len()
    }

    /// The live value for `key`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<&V> {
        self.expire(now);
        self.map.get(key).map(|slot| &slot.value)
    }

    /// The live value for `key`, or `None` after inserting `make()` (costing `cost`) for it:
    /// one hash lookup on the deduplication's hot path.
    pub fn get_or_insert_with(
        &mut self,
        key: K,
        now: Instant,
        cost: usize,
        make: impl FnOnce() -> V,
    ) -> Option<&V> {
        self.expire(now);
        // A fresh key (the hot path) costs one hash lookup; a duplicate a second one, since
        // the entry's borrow cannot be returned from one arm while the other mutates `self`.
        let probe = key.clone();
        let Entry::Vacant(v) = self.map.entry(key) else {
            return self.map.get(&probe).map(|slot| &slot.value);
        };
        self.generation = self.generation.wrapping_add(1);
        v.insert(Slot {
            value: make(),
            generation: self.generation,
            cost: charge(cost),
        });
        self.order.push_back((now, probe, self.generation));
        self.bytes += self.entry_cost + cost;
        self.evict_to_bounds();
        self.compact();
        None
    }

    /// Remember `value` (costing `cost`) for `key` from `now` on, replacing an older one.
    /// A value that alone exceeds the byte bound is not kept.
    pub fn insert(&mut self, key: K, value: V, cost: usize, now: Instant) {
        self.expire(now);
        if self.entry_cost.saturating_add(cost) > self.max_bytes {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let slot = Slot {
            value,
            generation: self.generation,
            cost: charge(cost),
        };
        if let Some(old) = self.map.insert(key.clone(), slot) {
            self.bytes -= self.entry_cost + old.cost as usize;
        }
        self.bytes += self.entry_cost + cost;
        self.order.push_back((now, key, self.generation));
        self.evict_to_bounds();
        self.compact();
    }

    /// Change the value of a live `key` in place (its age and queue place stay): `false` when
    /// it is not cached.
    pub fn replace(&mut self, key: &K, value: V, cost: usize) -> bool {
        let Some(slot) = self.map.get_mut(key) else {
            return false;
        };
        self.bytes = self.bytes + cost - slot.cost as usize;
        slot.value = value;
        slot.cost = charge(cost);
        self.evict_to_bounds();
        true
    }

    /// Forget `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some(slot) = self.map.remove(key) {
            self.bytes -= self.entry_cost + slot.cost as usize;
        }
    }

    /// Drop expired entries from the front. Only the queue element's time is read (no hash
    /// lookup while nothing has expired: this runs on every request); `pop_front` leaves a
    /// newer entry of a replaced key alone.
    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
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

    /// Rebuild the queue from its live elements once stale ones (left by replaced or removed
    /// keys behind a live front) outnumber them.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order.retain(|(_, k, generation)| {
                map.get(k).is_some_and(|s| s.generation == *generation)
            });
        }
    }

    fn pop_front(&mut self) -> bool {
        let Some((_, key, generation)) = self.order.pop_front() else {
            return false;
        };
        if let Entry::Occupied(e) = self.map.entry(key) {
            // A key replaced or removed and seen again has a newer queue element; keep it.
            if e.get().generation == generation {
                let slot = e.remove();
                self.bytes -= self.entry_cost + slot.cost as usize;
            }
        }
        true
    }
}

/// A cost as stored in a slot. Costs are body sizes, far below 4 GiB; a larger one (which no
/// byte bound admits anyway) is charged as 4 GiB rather than wrapped.
fn charge(cost: usize) -> u32 {
    u32::try_from(cost).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = BoundedCache<u32, u32>;

    #[test]
    fn entries_expire_after_the_ttl_in_insertion_order() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(10), 10, 1_000, 0);
        c.insert(1, 10, 1, t0);
        c.insert(2, 20, 1, t0 + Duration::from_secs(5));
        assert_eq!(c.get(&1, t0 + Duration::from_secs(9)), Some(&10));
        assert_eq!(c.get(&1, t0 + Duration::from_secs(10)), None, "expired");
        assert_eq!(c.get(&2, t0 + Duration::from_secs(10)), Some(&20));
        assert_eq!(c.bytes(), 1);
    }

    #[test]
    fn bounded_by_entries_and_bytes_with_the_entry_cost_charged() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(60), 3, 3 * 8 + 10, 8);
        for k in 0..5 {
            c.insert(k, k, 0, t0);
        }
        assert_eq!(c.len(), 3, "entry bound");
        assert_eq!(c.get(&0, t0), None, "oldest evicted first");
        c.insert(9, 9, 9, t0);
        assert!(c.bytes() <= 3 * 8 + 10);
        assert_eq!(c.get(&9, t0), Some(&9), "newest kept");
        c.insert(10, 10, 100, t0);
        assert_eq!(c.get(&10, t0), None, "larger than the byte bound alone");
    }

    #[test]
    fn get_or_insert_with_inserts_once() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(60), 10, 1_000, 4);
        assert_eq!(c.get_or_insert_with(1, t0, 0, || 7), None);
        assert_eq!(c.get_or_insert_with(1, t0, 0, || 8), Some(&7));
        assert!(c.replace(&1, 9, 3));
        assert_eq!(c.get(&1, t0), Some(&9));
        assert_eq!(c.bytes(), 4 + 3);
        assert_eq!(
            c.get(&1, t0 + Duration::from_secs(60)),
            None,
            "replace keeps the entry's age"
        );
        assert!(!c.replace(&2, 1, 1), "nothing to replace");
    }

    #[test]
    fn a_replaced_or_removed_key_keeps_its_newer_entry() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(10), 10, 1_000, 0);
        c.insert(1, 1, 0, t0);
        c.remove(&1);
        c.insert(1, 2, 0, t0 + Duration::from_secs(5));
        assert_eq!(
            c.get(&1, t0 + Duration::from_secs(12)),
            Some(&2),
            "the stale queue element must not evict the newer entry"
        );
    }

    #[test]
    fn reinserting_one_key_does_not_grow_the_queue() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(60), 100, 1 << 20, 0);
        c.insert(0, 0, 1, t0);
        for i in 0..100_000 {
            c.insert(1, i, 1, t0);
        }
        assert_eq!(c.len(), 2);
        assert!(c.queued() <= 2 * 2 + 17, "queue compacted: {}", c.queued());
    }
}
