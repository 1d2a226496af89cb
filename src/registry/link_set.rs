//! A registration's links, shared by every registration that registered the same ones.
//!
//! Why: a fleet is many devices of few kinds, and devices of one kind register identical
//! links (same firmware, same resources). At 100,000 registrations a private copy of three
//! links costs ~50 MB; shared, a registration pays one pointer (the memory budget,
//! docs/benchmarks.md). A device with links of its own pays exactly what it did before.
//!
//! [`LinkSet`] is immutable (an update replaces it whole), so sharing needs no locking.
//! [`LinkSetPool`] is owned by the Registry actor, the only writer: every registration it
//! stores or loads goes through [`LinkSetPool::share`].

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use link_format::Link;

/// An immutable, cheaply cloned list of links. Serialized exactly like `Vec<Link>`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct LinkSet(Arc<[Link]>);

impl LinkSet {
    /// Freeze `links`, trimming every buffer to its length first: a registration lives long.
    pub fn new(mut links: Vec<Link>) -> Self {
        links.iter_mut().for_each(Link::shrink_to_fit);
        LinkSet(links.into())
    }

    /// Whether `self` and `other` are one shared allocation (not only equal).
    pub fn shares_with(&self, other: &LinkSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for LinkSet {
    type Target = [Link];
    fn deref(&self) -> &[Link] {
        &self.0
    }
}

impl From<Vec<Link>> for LinkSet {
    fn from(links: Vec<Link>) -> Self {
        LinkSet::new(links)
    }
}

impl<'a> IntoIterator for &'a LinkSet {
    type Item = &'a Link;
    type IntoIter = std::slice::Iter<'a, Link>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for LinkSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for LinkSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for LinkSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Link>::deserialize(d).map(LinkSet::new)
    }
}

/// The distinct link sets in use, so that equal ones share one allocation.
///
/// Sets no registration uses any more are dropped by a sweep that runs when the pool has
/// doubled since the last one (amortized O(1) per `share`), and by [`LinkSetPool::trim`]
/// after removals, so the pool holds at most about twice the registrations held (plus a floor
/// of [`SWEEP_FLOOR`]) even when a mass deregistration is followed by no new sets.
#[derive(Debug, Default)]
pub(crate) struct LinkSetPool {
    sets: HashSet<LinkSet>,
    size_after_sweep: usize,
}

/// No sweep below this many pooled sets: not worth a pass.
pub(crate) const SWEEP_FLOOR: usize = 1024;

impl LinkSetPool {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The pooled set equal to `links`, or `links` itself, now pooled.
    pub(crate) fn share(&mut self, links: LinkSet) -> LinkSet {
        if let Some(pooled) = self.sets.get(&links) {
            return pooled.clone();
        }
        self.sets.insert(links.clone());
        if self.sets.len() >= SWEEP_FLOOR.max(2 * self.size_after_sweep) {
            self.sweep();
        }
        links
    }

    /// After removals: sweep when the pool holds more than twice `held` sets (`held`: the
    /// registrations that can still use one, live or in grace).
    pub(crate) fn trim(&mut self, held: usize) {
        if self.sets.len() > SWEEP_FLOOR.max(held.saturating_mul(2)) {
            self.sweep();
        }
    }

    /// Drop the sets only the pool still holds.
    pub(crate) fn sweep(&mut self) {
        self.sets.retain(|set| Arc::strong_count(&set.0) > 1);
        self.size_after_sweep = self.sets.len();
    }

    /// Distinct sets pooled (some possibly unused until the next sweep).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(rt: &str) -> Vec<Link> {
        vec![
            Link::new("/s/temp")
                .with("rt", Some(rt))
                .with("obs", None::<&str>),
            Link::new("/a/led").with("if", Some("actuator")),
        ]
    }

    #[test]
    fn equal_sets_share_one_allocation_and_different_ones_do_not() {
        let mut pool = LinkSetPool::new();
        let a = pool.share(links("temperature").into());
        let b = pool.share(links("temperature").into());
        let c = pool.share(links("humidity").into());
        assert!(a.shares_with(&b));
        assert!(!a.shares_with(&c));
        assert_eq!(&*a, &links("temperature")[..]);
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn sweep_drops_only_sets_nobody_uses() {
        let mut pool = LinkSetPool::new();
        let kept = pool.share(links("kept").into());
        drop(pool.share(links("gone").into()));
        pool.sweep();
        assert_eq!(pool.len(), 1);
        assert!(pool.share(links("kept").into()).shares_with(&kept));
    }

    #[test]
    fn the_pool_stays_within_twice_the_sets_in_use() {
        let mut pool = LinkSetPool::new();
        let mut in_use = Vec::new();
        for i in 0..10_000 {
            let set = pool.share(links(&format!("rt{i}")).into());
            // Keep one in ten; the others are dropped right away (a churning fleet).
            if i % 10 == 0 {
                in_use.push(set);
            }
        }
        assert!(
            pool.len() <= (2 * in_use.len()).max(SWEEP_FLOOR),
            "{} pooled for {} in use",
            pool.len(),
            in_use.len()
        );
    }

    #[test]
    fn trim_after_a_mass_removal_drops_the_unused_sets() {
        let mut pool = LinkSetPool::new();
        let mut held: Vec<LinkSet> = (0..5_000)
            .map(|i| pool.share(links(&format!("rt{i}")).into()))
            .collect();
        held.truncate(10);
        pool.trim(held.len());
        assert_eq!(pool.len(), 10);
        // Below the floor nothing is swept: not worth a pass.
        drop(held.pop());
        pool.trim(held.len());
        assert_eq!(pool.len(), 10);
    }

    #[test]
    fn serialized_like_a_vec_of_links() {
        let set = LinkSet::from(links("temperature"));
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, serde_json::to_string(&links("temperature")).unwrap());
        let back: LinkSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
    }
}
