//! A map keyed by source IP address whose size never exceeds a bound, whatever the traffic.
//!
//! Two generations: entries are inserted into `current`; when it holds `capacity / 2` entries it
//! becomes `previous` (the old `previous` is dropped) and a new `current` starts. A lookup that
//! finds its entry in `previous` moves it back to `current`. So an active source keeps its state,
//! memory stays below `capacity` entries, and each operation is O(1) amortized; a flood of new
//! (e.g. spoofed) addresses only rotates the generations faster. The price: under such a flood an
//! idle source's state is forgotten sooner, which for rate limiting means it starts afresh.
//! Used by the rate limiter, the proven-source set and the excess budget's familiar sources.

use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug)]
pub struct SourceTable<V> {
    current: HashMap<IpAddr, V>,
    previous: HashMap<IpAddr, V>,
    generation_size: usize,
}

impl<V> SourceTable<V> {
    /// At most `capacity` entries (at least 2) are held at any time.
    pub fn new(capacity: usize) -> Self {
        SourceTable {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation_size: (capacity / 2).max(1),
        }
    }

    /// The entry of `ip`, created with `make` when it is unknown (or was forgotten).
    pub fn entry(&mut self, ip: IpAddr, make: impl FnOnce() -> V) -> &mut V {
        if !self.current.contains_key(&ip) {
            let value = self.previous.remove(&ip).unwrap_or_else(make);
            if self.current.len() >= self.generation_size {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(ip, value);
        }
        // Present: inserted just above when missing.
        self.current.get_mut(&ip).expect("entry was just inserted")
    }

    pub fn get(&self, ip: &IpAddr) -> Option<&V> {
        self.current.get(ip).or_else(|| self.previous.get(ip))
    }

    /// The entry of `ip` if it is held, without refreshing it (so a lookup never rotates).
    pub fn get_mut(&mut self, ip: &IpAddr) -> Option<&mut V> {
        match self.current.get_mut(ip) {
            Some(v) => Some(v),
            None => self.previous.get_mut(ip),
        }
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn a_flood_of_new_addresses_stays_within_the_bound() {
        let mut t = SourceTable::new(1_000);
        for n in 0..100_000 {
            *t.entry(ip(n), || 0u32) += 1;
            assert!(t.len() <= 1_000);
        }
    }

    #[test]
    fn an_active_source_survives_rotations() {
        let mut t = SourceTable::new(100);
        *t.entry(ip(7), || 0u32) = 42;
        for n in 1_000..1_200 {
            t.entry(ip(n), || 0);
            // Touched once per generation: it keeps being moved to the current one.
            if n % 40 == 0 {
                assert_eq!(*t.entry(ip(7), || 0), 42);
            }
        }
        assert_eq!(t.get(&ip(7)), Some(&42));
    }

    #[test]
    fn an_idle_source_is_forgotten_after_two_generations() {
        let mut t = SourceTable::new(10);
        *t.entry(ip(1), || 0u32) = 5;
        for n in 100..111 {
            t.entry(ip(n), || 0);
        }
        assert_eq!(t.get(&ip(1)), None);
        assert_eq!(*t.entry(ip(1), || 9), 9);
    }
}
