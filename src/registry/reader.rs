//! The read side of the Registry: a cheap, cloneable handle on the index for lookups
//! (RFC 9176 §7), `/.well-known/core`, the Executer and the admin API.
//!
//! Why a lock and not a message: lookups are the hot path (100,000/s targeted) and must not
//! queue in the actor's mailbox behind writes waiting on group commit. The actor is the only
//! writer and holds the write lock only for the in-memory part of a change (microseconds,
//! never across a flush), so readers almost never wait.
//!
//! Note: a change is visible here as soon as the actor applies it, which may be a moment
//! before it is durable and acknowledged to its registrant.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::index::Index;
use super::model::{EndpointName, Registration, RegistrationId, Sector};

/// Shared read access to the registry index.
#[derive(Clone, Debug)]
pub struct RegistryReader {
    index: Arc<RwLock<Index>>,
}

impl RegistryReader {
    pub(crate) fn new(index: Arc<RwLock<Index>>) -> Self {
        RegistryReader { index }
    }

    /// A live registration by id.
    pub fn get(&self, id: RegistrationId) -> Option<Arc<Registration>> {
        self.read().get(id).cloned()
    }

    /// The live registration of `ep` in sector `d`.
    pub fn find(&self, ep: &EndpointName, d: Option<&Sector>) -> Option<Arc<Registration>> {
        self.read().find(ep, d).cloned()
    }

    /// Every live registration of `ep`, whatever its sector (no sector first, then by sector).
    pub fn find_ep(&self, ep: &EndpointName) -> Vec<Arc<Registration>> {
        self.read().find_ep(ep).cloned().collect()
    }

    /// Number of live registrations.
    pub fn len(&self) -> usize {
        self.read().len_live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index version (changes with every registry change).
    pub(crate) fn version(&self) -> u64 {
        self.read().version()
    }

    /// Run `f` under one read lock, for lookups that combine several index queries
    /// consistently. Keep `f` short: the writer waits for it.
    pub fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.read())
    }

    /// Live registrations at `now_ms` counted by status: (connected, disconnected). One pass
    /// under the read lock (~1 ms per 100,000 registrations), once per `/metrics` scrape.
    pub(crate) fn devices_by_status(&self, now_ms: u64) -> (u64, u64) {
        self.with_index(|idx| {
            idx.live(now_ms)
                .fold((0u64, 0u64), |(up, down), reg| match reg.status {
                    super::model::Status::Connected => (up + 1, down),
                    super::model::Status::Disconnected => (up, down + 1),
                })
        })
    }

    /// A panic elsewhere while holding the lock must not take every reader down with it: the
    /// index is only mutated by the actor in steps that leave it consistent for reading.
    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::{BaseOrigin, Status};

    fn reg(id: u64, ep: &str) -> Arc<Registration> {
        Arc::new(Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(id),
            ep: EndpointName::new(ep).unwrap(),
            d: None,
            base: "coap://127.0.0.1".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 60,
            attrs: vec![],
            links: vec![].into(),
            status: Status::Connected,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: u64::MAX,
            source: "127.0.0.1:5683".parse().unwrap(),
        })
    }

    #[test]
    fn reads_what_the_writer_applied() {
        let reader = RegistryReader::new(Arc::new(RwLock::new(Index::new())));
        assert!(reader.is_empty());
        let v0 = reader.version();
        reader.write().insert(reg(1, "a"));
        reader.write().insert(reg(2, "b"));
        assert_eq!(reader.len(), 2);
        assert!(reader.version() > v0);
        assert_eq!(reader.get(RegistrationId(2)).unwrap().ep.as_str(), "b");
        let a = EndpointName::new("a").unwrap();
        assert_eq!(reader.find(&a, None).unwrap().id, RegistrationId(1));
        assert_eq!(reader.find_ep(&a).len(), 1);
        assert_eq!(reader.with_index(|i| i.live(0).count()), 2);
    }

    #[test]
    fn live_registrations_are_counted_by_status() {
        let reader = RegistryReader::new(Arc::new(RwLock::new(Index::new())));
        for (id, ep) in [(1, "s1"), (2, "s2"), (3, "s3")] {
            reader.write().insert(reg(id, ep));
        }
        let mut down = (*reg(4, "s4")).clone();
        down.status = Status::Disconnected;
        reader.write().insert(Arc::new(down));
        // Expired (in grace) registrations are not devices any more.
        let mut gone = (*reg(5, "gone")).clone();
        gone.expires_at_ms = 1_000;
        reader.write().insert(Arc::new(gone));
        assert_eq!(reader.devices_by_status(2_000), (3, 1));
    }

    #[test]
    fn a_poisoned_lock_does_not_panic_readers() {
        let reader = RegistryReader::new(Arc::new(RwLock::new(Index::new())));
        reader.write().insert(reg(1, "a"));
        let clone = reader.clone();
        let _ = std::thread::spawn(move || {
            let _guard = clone.write();
            panic!("writer dies holding the lock");
        })
        .join();
        assert!(reader.index.is_poisoned());
        assert_eq!(reader.len(), 1);
        assert!(reader.get(RegistrationId(1)).is_some());
    }
}
