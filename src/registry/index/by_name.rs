//! Finding registrations by name: `by_ep_d`, a hash of (`ep`, `d`) to a [`Bucket`] of ids
//! (O(1), including registrations in grace, so a re-registration keeps its id), and `by_name`,
//! live registrations ordered by (`ep`, `d`, id) as [`ByName`] entries, so that `ep` without
//! `d` and `ep=node*` prefix lookups are range scans. Both hold ids and `Arc`s, never copies
//! of names.

use std::cmp::Ordering;
use std::collections::hash_map::Entry as HashEntry;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::Index;
use crate::registry::model::{
    BaseOrigin, EndpointName, Registration, RegistrationId, Sector, Status,
};

impl Index {
    /// The live registration of `ep` in sector `d` (`None` is the default sector).
    pub(crate) fn find(&self, ep: &EndpointName, d: Option<&Sector>) -> Option<&Arc<Registration>> {
        self.find_id_including_expired(ep, d)
            .and_then(|id| self.live.get(&id))
    }

    pub(super) fn name_hash(&self, ep: &EndpointName, d: Option<&Sector>) -> u64 {
        self.hasher.hash_one((ep.as_str(), d.map(Sector::as_str)))
    }

    /// The id held by `ep`+`d`, live or in grace: a re-registration keeps it.
    pub(crate) fn find_id_including_expired(
        &self,
        ep: &EndpointName,
        d: Option<&Sector>,
    ) -> Option<RegistrationId> {
        let bucket = self.by_ep_d.get(&self.name_hash(ep, d))?;
        bucket.ids().iter().copied().find(|id| {
            self.get_including_expired(*id)
                .is_some_and(|r| &r.ep == ep && r.d.as_ref() == d)
        })
    }

    /// Every live registration of `ep`, whatever its sector: no sector first, then by sector
    /// name, then by id.
    pub(crate) fn find_ep<'a>(
        &'a self,
        ep: &EndpointName,
    ) -> impl Iterator<Item = &'a Arc<Registration>> + 'a {
        let probe = ByName::probe(ep);
        let ep = ep.clone();
        self.by_name
            .range(probe..)
            .take_while(move |entry| entry.0.ep == ep)
            .map(|entry| &entry.0)
    }

    /// Ids of live registrations whose `ep` starts with `prefix`, by a range scan.
    pub(super) fn ids_with_ep_prefix(&self, prefix: &str) -> BTreeSet<RegistrationId> {
        if prefix.is_empty() {
            return self.live.keys().copied().collect();
        }
        let Ok(start) = EndpointName::new(prefix) else {
            // Too long or with a character no endpoint name may hold: nothing can match.
            return BTreeSet::new();
        };
        self.by_name
            .range(ByName::probe(&start)..)
            .take_while(|entry| entry.0.ep.as_str().starts_with(prefix))
            .map(|entry| entry.0.id)
            .collect()
    }

    pub(super) fn link_name(&mut self, reg: &Registration) {
        let hash = self.name_hash(&reg.ep, reg.d.as_ref());
        match self.by_ep_d.entry(hash) {
            HashEntry::Vacant(slot) => {
                slot.insert(Bucket::One(reg.id));
            }
            HashEntry::Occupied(mut slot) => slot.get_mut().add(reg.id),
        }
    }

    pub(super) fn unlink_name(&mut self, reg: &Registration) {
        let hash = self.name_hash(&reg.ep, reg.d.as_ref());
        if let HashEntry::Occupied(mut slot) = self.by_ep_d.entry(hash) {
            if slot.get_mut().remove(reg.id) {
                slot.remove();
            }
        }
    }
}

/// The ids whose `ep`+`d` share one hash: almost always exactly one.
#[derive(Debug)]
pub(super) enum Bucket {
    One(RegistrationId),
    Many(Vec<RegistrationId>),
}

impl Bucket {
    pub(super) fn ids(&self) -> &[RegistrationId] {
        match self {
            Bucket::One(id) => std::slice::from_ref(id),
            Bucket::Many(ids) => ids,
        }
    }

    pub(super) fn add(&mut self, id: RegistrationId) {
        match self {
            Bucket::One(existing) if *existing == id => {}
            Bucket::One(existing) => *self = Bucket::Many(vec![*existing, id]),
            Bucket::Many(ids) if !ids.contains(&id) => ids.push(id),
            Bucket::Many(_) => {}
        }
    }

    /// Returns whether the bucket is now empty.
    pub(super) fn remove(&mut self, id: RegistrationId) -> bool {
        match self {
            Bucket::One(existing) => *existing == id,
            Bucket::Many(ids) => {
                ids.retain(|i| *i != id);
                match ids[..] {
                    [] => true,
                    [only] => {
                        *self = Bucket::One(only);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// A live registration ordered by (`ep`, `d`, id): one pointer per entry, no copied names.
#[derive(Debug, Clone)]
pub(super) struct ByName(pub(super) Arc<Registration>);

impl ByName {
    fn key(&self) -> (&str, Option<&str>, RegistrationId) {
        let r = &self.0;
        (r.ep.as_str(), r.d.as_ref().map(Sector::as_str), r.id)
    }

    /// A search key sorting before every registration whose `ep` is `ep` or starts with it
    /// (no sector sorts first, and no registration has id 0).
    pub(super) fn probe(ep: &EndpointName) -> ByName {
        ByName(Arc::new(Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(0),
            ep: ep.clone(),
            d: None,
            base: Default::default(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 0,
            attrs: Vec::new(),
            links: Vec::new().into(),
            status: Status::Disconnected,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: 0,
            source: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        }))
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}
