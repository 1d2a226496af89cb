//! The in-memory registry index: every registration, and the secondary indexes that keep
//! lookups independent of the registry size (RFC 9176 §5 registration, §7 lookup).
//!
//! Owned by the Registry actor (the only writer) and shared read-only with lookups through
//! [`super::RegistryReader`]. Pure data structure: no actix, no sled, no clock (callers pass
//! `now_ms`).
//!
//! - `live`: id → registration, in id order (the stable lookup and paging order).
//! - `by_ep_d`: hash of (`ep`, `d`) → id in O(1), including registrations expired but still in
//!   grace, so that a re-registration keeps its id and location.
//! - `by_name`: live registrations ordered by (`ep`, `d`, id): `ep` without `d`, and `ep=node*`
//!   prefix lookups, are range scans.
//! - `link_attrs` / `endpoint_attrs`: inverted indexes from (attribute name, value) to ids, kept
//!   in a `BTreeMap` so that both exact and prefix (`rt=temp*`) filters are range scans.
//!
//! Memory matters (100,000 registrations in ≤ 200 MB): the per-registration indexes
//! hold ids, hashes and `Arc`s, never copies of names. The names live once, in the
//! registration.
//! - `deadlines` / `graves`: expiry instants in deadline order, so the next one is found
//!   without a scan.

use std::cmp::Ordering;
use std::collections::hash_map::{Entry as HashEntry, RandomState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Bound;
use std::sync::Arc;

use super::model::{BaseOrigin, EndpointName, Registration, RegistrationId, Sector, Status};

/// Attribute names with an inverted index, at both levels: link parameters and endpoint
/// attributes (`d` and extra attributes; `ep` is served by `by_name`). Lookup cross-matching
/// (RFC 9176 §6.2) lets a filter match at either level, so the RD unions both indexes; an index
/// on one level only would silently drop matches. Values are indexed as their whitespace-
/// separated words (the list attributes `rt`, `if`, `rel`, `ct`; for the others a value holding
/// a space is rare), so an index hit is a superset of the exact matches for any filter value
/// without whitespace; the RD does not pre-select on values with whitespace.
pub const INDEXED_LINK_ATTRS: [&str; 7] = ["rt", "if", "rel", "ct", "et", "d", "ep"];

/// Endpoint attributes with an inverted index (`ep` through `by_name`).
pub const INDEXED_ENDPOINT_ATTRS: [&str; 7] = ["ep", "d", "et", "rt", "if", "rel", "ct"];

/// name → value → ids. Two levels so that every query and update borrows `&str` keys (no
/// allocation per lookup), and a prefix filter is a range over one name's values.
type AttrIndex = BTreeMap<String, BTreeMap<String, BTreeSet<RegistrationId>>>;

/// Every registration the Registry holds, with its secondary indexes.
#[derive(Debug, Default)]
pub struct Index {
    live: BTreeMap<RegistrationId, Arc<Registration>>,
    /// Expired less than the grace period ago: invisible to lookups, revivable by an update.
    expired: HashMap<RegistrationId, Arc<Registration>>,
    /// Keyed by a (randomly seeded, so not floodable) hash of `ep`+`d`; collisions share a
    /// bucket and are told apart by the registrations themselves.
    by_ep_d: HashMap<u64, Bucket>,
    hasher: RandomState,
    /// Live registrations in (`ep`, `d`, id) order.
    by_name: BTreeSet<ByName>,
    link_attrs: AttrIndex,
    endpoint_attrs: AttrIndex,
    /// (expires_at_ms, id) of live registrations.
    deadlines: BTreeSet<(u64, RegistrationId)>,
    /// (expires_at_ms, id) of expired registrations still in grace.
    graves: BTreeSet<(u64, RegistrationId)>,
    version: u64,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// A live registration by id.
    pub fn get(&self, id: RegistrationId) -> Option<&Arc<Registration>> {
        self.live.get(&id)
    }

    /// A registration by id, live or expired within the grace period.
    pub fn get_including_expired(&self, id: RegistrationId) -> Option<&Arc<Registration>> {
        self.live.get(&id).or_else(|| self.expired.get(&id))
    }

    /// Whether `id` is expired but still revivable.
    pub fn is_in_grace(&self, id: RegistrationId) -> bool {
        self.expired.contains_key(&id)
    }

    /// The live registration of `ep` in sector `d` (`None` is the default sector).
    pub fn find(&self, ep: &EndpointName, d: Option<&Sector>) -> Option<&Arc<Registration>> {
        self.find_id_including_expired(ep, d)
            .and_then(|id| self.live.get(&id))
    }

    fn name_hash(&self, ep: &EndpointName, d: Option<&Sector>) -> u64 {
        self.hasher.hash_one((ep.as_str(), d.map(Sector::as_str)))
    }

    /// The id held by `ep`+`d`, live or in grace: a re-registration keeps it.
    pub fn find_id_including_expired(
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
    pub fn find_ep<'a>(
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
    fn ids_with_ep_prefix(&self, prefix: &str) -> BTreeSet<RegistrationId> {
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

    /// Live registrations not yet past their lifetime at `now_ms`, in id order. A registration
    /// whose expiry timer has not fired yet is already left out.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Arc<Registration>> + '_ {
        self.live.values().filter(move |r| !r.is_expired_at(now_ms))
    }

    /// Live registrations starting at `from` (inclusive), in id order: resumable paging.
    pub fn live_from(
        &self,
        from: RegistrationId,
        now_ms: u64,
    ) -> impl Iterator<Item = &Arc<Registration>> + '_ {
        self.live
            .range(from..)
            .map(|(_, r)| r)
            .filter(move |r| !r.is_expired_at(now_ms))
    }

    /// Ids of live registrations with a link whose attribute `name` has `value` (one of its
    /// space-separated values), or a value starting with `value` when `prefix`. `None` when
    /// `name` is not indexed: the caller must filter by scanning.
    pub fn ids_with_link_attr(
        &self,
        name: &str,
        value: &str,
        prefix: bool,
    ) -> Option<BTreeSet<RegistrationId>> {
        if !INDEXED_LINK_ATTRS.contains(&name) {
            return None;
        }
        Some(lookup(&self.link_attrs, name, value, prefix))
    }

    /// Like [`Self::ids_with_link_attr`] for the endpoint attributes `ep`, `d` and `et`.
    pub fn ids_with_endpoint_attr(
        &self,
        name: &str,
        value: &str,
        prefix: bool,
    ) -> Option<BTreeSet<RegistrationId>> {
        match name {
            "ep" if prefix => Some(self.ids_with_ep_prefix(value)),
            "ep" => Some(match EndpointName::new(value) {
                Ok(ep) => self.find_ep(&ep).map(|r| r.id).collect(),
                Err(_) => BTreeSet::new(),
            }),
            _ if INDEXED_ENDPOINT_ATTRS.contains(&name) => {
                Some(lookup(&self.endpoint_attrs, name, value, prefix))
            }
            _ => None,
        }
    }

    /// Number of live registrations.
    pub fn len_live(&self) -> usize {
        self.live.len()
    }

    /// Number of registrations expired but still in grace.
    pub fn len_in_grace(&self) -> usize {
        self.expired.len()
    }

    /// Bumped by every change; lookup caches and ETags compare it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The earliest live expiry (Unix ms), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The earliest expiry among registrations in grace; add the grace period to get the
    /// instant it is purged.
    pub fn next_grave(&self) -> Option<u64> {
        self.graves.first().map(|(at, _)| *at)
    }

    /// Insert or replace a live registration (keyed by its id). Returns the previous value,
    /// live or in grace.
    pub fn insert(&mut self, reg: Arc<Registration>) -> Option<Arc<Registration>> {
        if let Some(previous) = self.live.get(&reg.id).cloned() {
            if previous.ep == reg.ep && previous.d == reg.d {
                self.replace_live(&previous, reg);
                return Some(previous);
            }
        }
        let previous = self.detach(reg.id);
        if let Some(old) = &previous {
            // Ids never move between endpoints, but if one did the stale key must not linger.
            if old.ep != reg.ep || old.d != reg.d {
                self.unlink_name(old);
            }
        }
        self.link_name(&reg);
        self.attach_live(reg);
        self.version += 1;
        previous
    }

    /// Insert a registration loaded from disk that expired within the grace period.
    pub fn insert_in_grace(&mut self, reg: Arc<Registration>) {
        if let Some(old) = self.detach(reg.id) {
            self.unlink_name(&old);
        }
        self.link_name(&reg);
        self.graves.insert((reg.expires_at_ms, reg.id));
        self.expired.insert(reg.id, reg);
        self.version += 1;
    }

    /// Remove a registration entirely (live or in grace).
    pub fn remove(&mut self, id: RegistrationId) -> Option<Arc<Registration>> {
        let removed = self.detach(id)?;
        self.unlink_name(&removed);
        self.version += 1;
        Some(removed)
    }

    /// Move every live registration whose lifetime ended at or before `now_ms` into grace, and
    /// return them in deadline order.
    pub fn expire_due(&mut self, now_ms: u64) -> Vec<Arc<Registration>> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now_ms {
                break;
            }
            self.deadlines.pop_first();
            if let Some(reg) = self.live.remove(&id) {
                self.unindex(&reg);
                self.graves.insert((reg.expires_at_ms, id));
                self.expired.insert(id, Arc::clone(&reg));
                due.push(reg);
            }
        }
        if !due.is_empty() {
            self.version += 1;
        }
        due
    }

    /// Forget every registration that expired at or before `cutoff_ms` (now minus grace), and
    /// return them.
    pub fn purge_graves(&mut self, cutoff_ms: u64) -> Vec<Arc<Registration>> {
        let mut purged = Vec::new();
        while let Some(&(at, id)) = self.graves.first() {
            if at > cutoff_ms {
                break;
            }
            if let Some(reg) = self.remove(id) {
                purged.push(reg);
            } else {
                // Invariant: graves only lists ids in `expired`; drop a stale entry regardless.
                self.graves.pop_first();
            }
        }
        purged
    }

    /// A live registration replaced by one of the same `ep`+`d` (every update, every
    /// re-registration): postings are touched only where links or attributes changed.
    fn replace_live(&mut self, previous: &Arc<Registration>, reg: Arc<Registration>) {
        let id = reg.id;
        if previous.expires_at_ms != reg.expires_at_ms {
            self.deadlines.remove(&(previous.expires_at_ms, id));
            self.deadlines.insert((reg.expires_at_ms, id));
        }
        // Same (ep, d, id) ordering key: swaps in the new Arc.
        self.by_name.replace(ByName(Arc::clone(&reg)));
        if previous.links != reg.links {
            for_each_link_key(previous, |name, value| {
                drop_id(&mut self.link_attrs, name, value, id)
            });
            for_each_link_key(&reg, |name, value| {
                add(&mut self.link_attrs, name, value, id)
            });
        }
        if previous.attrs != reg.attrs {
            for_each_endpoint_key(previous, |name, value| {
                drop_id(&mut self.endpoint_attrs, name, value, id)
            });
            for_each_endpoint_key(&reg, |name, value| {
                add(&mut self.endpoint_attrs, name, value, id)
            });
        }
        self.live.insert(id, reg);
        self.version += 1;
    }

    fn link_name(&mut self, reg: &Registration) {
        let hash = self.name_hash(&reg.ep, reg.d.as_ref());
        match self.by_ep_d.entry(hash) {
            HashEntry::Vacant(slot) => {
                slot.insert(Bucket::One(reg.id));
            }
            HashEntry::Occupied(mut slot) => slot.get_mut().add(reg.id),
        }
    }

    fn unlink_name(&mut self, reg: &Registration) {
        let hash = self.name_hash(&reg.ep, reg.d.as_ref());
        if let HashEntry::Occupied(mut slot) = self.by_ep_d.entry(hash) {
            if slot.get_mut().remove(reg.id) {
                slot.remove();
            }
        }
    }

    /// Unlink `id` from every structure except `by_ep_d`; returns what was there.
    fn detach(&mut self, id: RegistrationId) -> Option<Arc<Registration>> {
        if let Some(reg) = self.live.remove(&id) {
            self.deadlines.remove(&(reg.expires_at_ms, id));
            self.unindex(&reg);
            return Some(reg);
        }
        let reg = self.expired.remove(&id)?;
        self.graves.remove(&(reg.expires_at_ms, id));
        Some(reg)
    }

    fn attach_live(&mut self, reg: Arc<Registration>) {
        let id = reg.id;
        self.deadlines.insert((reg.expires_at_ms, id));
        self.by_name.insert(ByName(Arc::clone(&reg)));
        for_each_link_key(&reg, |name, value| {
            add(&mut self.link_attrs, name, value, id)
        });
        for_each_endpoint_key(&reg, |name, value| {
            add(&mut self.endpoint_attrs, name, value, id)
        });
        self.live.insert(id, reg);
    }

    /// Remove a live registration from `by_name` and the inverted indexes.
    fn unindex(&mut self, reg: &Arc<Registration>) {
        let id = reg.id;
        self.by_name.remove(&ByName(Arc::clone(reg)));
        for_each_link_key(reg, |name, value| {
            drop_id(&mut self.link_attrs, name, value, id)
        });
        for_each_endpoint_key(reg, |name, value| {
            drop_id(&mut self.endpoint_attrs, name, value, id)
        });
    }
}

fn for_each_link_key(reg: &Registration, mut f: impl FnMut(&str, &str)) {
    for link in &reg.links {
        for param in &link.params {
            if !INDEXED_LINK_ATTRS.contains(&param.name.as_str()) {
                continue;
            }
            if let Some(value) = &param.value {
                for word in value.split_ascii_whitespace() {
                    f(&param.name, word);
                }
            }
        }
    }
}

/// `ep` is not listed here: `by_name` serves it without copying every name.
fn for_each_endpoint_key(reg: &Registration, mut f: impl FnMut(&str, &str)) {
    if let Some(d) = &reg.d {
        for word in d.as_str().split_ascii_whitespace() {
            f("d", word);
        }
    }
    for attr in &reg.attrs {
        let name = attr.name.as_str();
        if name == "ep" || name == "d" || !INDEXED_ENDPOINT_ATTRS.contains(&name) {
            continue;
        }
        if let Some(value) = &attr.value {
            for word in value.split_ascii_whitespace() {
                f(name, word);
            }
        }
    }
}

/// The ids whose `ep`+`d` share one hash: almost always exactly one.
#[derive(Debug)]
enum Bucket {
    One(RegistrationId),
    Many(Vec<RegistrationId>),
}

impl Bucket {
    fn ids(&self) -> &[RegistrationId] {
        match self {
            Bucket::One(id) => std::slice::from_ref(id),
            Bucket::Many(ids) => ids,
        }
    }

    fn add(&mut self, id: RegistrationId) {
        match self {
            Bucket::One(existing) if *existing == id => {}
            Bucket::One(existing) => *self = Bucket::Many(vec![*existing, id]),
            Bucket::Many(ids) if !ids.contains(&id) => ids.push(id),
            Bucket::Many(_) => {}
        }
    }

    /// Returns whether the bucket is now empty.
    fn remove(&mut self, id: RegistrationId) -> bool {
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
struct ByName(Arc<Registration>);

impl ByName {
    fn key(&self) -> (&str, Option<&str>, RegistrationId) {
        let r = &self.0;
        (r.ep.as_str(), r.d.as_ref().map(Sector::as_str), r.id)
    }

    /// A search key sorting before every registration whose `ep` is `ep` or starts with it
    /// (no sector sorts first, and no registration has id 0).
    fn probe(ep: &EndpointName) -> ByName {
        ByName(Arc::new(Registration {
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

fn add(index: &mut AttrIndex, name: &str, value: &str, id: RegistrationId) {
    let values = match index.get_mut(name) {
        Some(values) => values,
        None => index.entry(name.to_owned()).or_default(),
    };
    match values.get_mut(value) {
        Some(ids) => {
            ids.insert(id);
        }
        None => {
            values.insert(value.to_owned(), BTreeSet::from([id]));
        }
    }
}

fn drop_id(index: &mut AttrIndex, name: &str, value: &str, id: RegistrationId) {
    let Some(values) = index.get_mut(name) else {
        return;
    };
    if let Some(ids) = values.get_mut(value) {
        ids.remove(&id);
        if ids.is_empty() {
            values.remove(value);
        }
    }
    if values.is_empty() {
        index.remove(name);
    }
}

fn lookup(index: &AttrIndex, name: &str, value: &str, prefix: bool) -> BTreeSet<RegistrationId> {
    let Some(values) = index.get(name) else {
        return BTreeSet::new();
    };
    if !prefix {
        return values.get(value).cloned().unwrap_or_default();
    }
    let mut ids = BTreeSet::new();
    let from: (Bound<&str>, Bound<&str>) = (Bound::Included(value), Bound::Unbounded);
    for (v, set) in values.range::<str, _>(from) {
        if !v.starts_with(value) {
            break;
        }
        ids.extend(set.iter().copied());
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::{BaseOrigin, Status};
    use link_format::{Link, Param};

    fn reg(
        id: u64,
        ep: &str,
        d: Option<&str>,
        expires_at_ms: u64,
        links: Vec<Link>,
    ) -> Arc<Registration> {
        Arc::new(Registration {
            id: RegistrationId(id),
            ep: EndpointName::new(ep).unwrap(),
            d: d.map(|d| Sector::new(d).unwrap()),
            base: "coap://127.0.0.1:9".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 60,
            attrs: vec![Param::new("et", Some("oic.d.sensor core.rd-ep"))],
            links: links.into(),
            status: Status::Connected,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms,
            source: "127.0.0.1:9".parse().unwrap(),
        })
    }

    fn ids(v: &[u64]) -> BTreeSet<RegistrationId> {
        v.iter().copied().map(RegistrationId).collect()
    }

    fn sample() -> Index {
        let mut index = Index::new();
        index.insert(reg(
            1,
            "node1",
            None,
            1_000,
            vec![
                Link::new("/t")
                    .with("rt", Some("temperature core.s"))
                    .with("ct", Some("0 60")),
                Link::new("/l")
                    .with("rt", Some("light"))
                    .with("if", Some("core.a")),
            ],
        ));
        index.insert(reg(
            2,
            "node2",
            Some("roof"),
            2_000,
            vec![Link::new("/t")
                .with("rt", Some("temp-hires"))
                .with("obs", None)],
        ));
        index.insert(reg(
            3,
            "node1",
            Some("roof"),
            3_000,
            vec![Link::new("/x")
                .with("rel", Some("alternate"))
                .with("rt", Some("tempo"))],
        ));
        index
    }

    #[test]
    fn finds_by_id_and_by_endpoint_and_sector() {
        let index = sample();
        assert_eq!(index.get(RegistrationId(2)).unwrap().ep.as_str(), "node2");
        assert!(index.get(RegistrationId(9)).is_none());
        let node1 = EndpointName::new("node1").unwrap();
        let roof = Sector::new("roof").unwrap();
        assert_eq!(index.find(&node1, None).unwrap().id, RegistrationId(1));
        assert_eq!(
            index.find(&node1, Some(&roof)).unwrap().id,
            RegistrationId(3)
        );
        let node2 = EndpointName::new("node2").unwrap();
        assert!(index.find(&node2, None).is_none());
        let all: Vec<u64> = index.find_ep(&node1).map(|r| r.id.0).collect();
        assert_eq!(all, vec![1, 3]);
        assert_eq!(index.len_live(), 3);
    }

    #[test]
    fn exact_link_attribute_lookup_matches_whole_words_only() {
        let index = sample();
        assert_eq!(
            index.ids_with_link_attr("rt", "temperature", false),
            Some(ids(&[1]))
        );
        assert_eq!(
            index.ids_with_link_attr("rt", "core.s", false),
            Some(ids(&[1]))
        );
        assert_eq!(
            index.ids_with_link_attr("rt", "temp", false),
            Some(ids(&[]))
        );
        assert_eq!(index.ids_with_link_attr("ct", "60", false), Some(ids(&[1])));
        assert_eq!(
            index.ids_with_link_attr("if", "core.a", false),
            Some(ids(&[1]))
        );
        assert_eq!(
            index.ids_with_link_attr("rel", "alternate", false),
            Some(ids(&[3]))
        );
    }

    #[test]
    fn prefix_link_attribute_lookup_is_a_range_scan() {
        let index = sample();
        assert_eq!(
            index.ids_with_link_attr("rt", "temp", true),
            Some(ids(&[1, 2, 3]))
        );
        assert_eq!(
            index.ids_with_link_attr("rt", "temp-", true),
            Some(ids(&[2]))
        );
        assert_eq!(
            index.ids_with_link_attr("rt", "", true),
            Some(ids(&[1, 2, 3]))
        );
        assert_eq!(index.ids_with_link_attr("rt", "z", true), Some(ids(&[])));
        // The range must stop at the attribute name: `rt` values never leak into `rel`.
        assert_eq!(index.ids_with_link_attr("rel", "", true), Some(ids(&[3])));
    }

    #[test]
    fn unindexed_attributes_answer_none() {
        let index = sample();
        assert_eq!(index.ids_with_link_attr("obs", "", true), None);
        assert_eq!(index.ids_with_link_attr("title", "x", false), None);
        assert_eq!(index.ids_with_endpoint_attr("base", "x", false), None);
    }

    #[test]
    fn endpoint_attribute_lookup_covers_ep_d_and_et() {
        let index = sample();
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "node1", false),
            Some(ids(&[1, 3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "node", true),
            Some(ids(&[1, 2, 3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("d", "roof", false),
            Some(ids(&[2, 3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("et", "core.rd-ep", false),
            Some(ids(&[1, 2, 3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("et", "oic.", true),
            Some(ids(&[1, 2, 3]))
        );
    }

    #[test]
    fn replacing_a_registration_reindexes_it_and_bumps_the_version() {
        let mut index = sample();
        let before = index.version();
        let previous = index.insert(reg(
            1,
            "node1",
            None,
            5_000,
            vec![Link::new("/h").with("rt", Some("humidity"))],
        ));
        assert_eq!(previous.unwrap().links.len(), 2);
        assert!(index.version() > before);
        assert_eq!(
            index.ids_with_link_attr("rt", "temperature", false),
            Some(ids(&[]))
        );
        assert_eq!(
            index.ids_with_link_attr("rt", "humidity", false),
            Some(ids(&[1]))
        );
        assert_eq!(
            index.ids_with_link_attr("if", "core.a", false),
            Some(ids(&[]))
        );
        // The old deadline is gone, the new one is tracked.
        assert_eq!(index.next_deadline(), Some(2_000));
        index.remove(RegistrationId(2));
        index.remove(RegistrationId(3));
        assert_eq!(index.next_deadline(), Some(5_000));
        assert_eq!(index.by_name.len(), 1);
        assert_eq!(index.by_ep_d.len(), 1);
        // Emptied postings are dropped rather than kept as empty sets.
        assert_eq!(index.link_attrs.len(), 1);
        assert_eq!(
            index.link_attrs["rt"].keys().collect::<Vec<_>>(),
            vec!["humidity"]
        );
    }

    #[test]
    fn an_in_place_update_is_visible_through_every_view() {
        let mut index = sample();
        let mut next = (**index.get(RegistrationId(3)).unwrap()).clone();
        next.expires_at_ms = 500;
        next.attrs = vec![Param::new("et", Some("changed"))];
        index.insert(Arc::new(next));
        let node1 = EndpointName::new("node1").unwrap();
        let roof = Sector::new("roof").unwrap();
        for reg in [
            index.get(RegistrationId(3)).unwrap(),
            index.find(&node1, Some(&roof)).unwrap(),
            index.find_ep(&node1).last().unwrap(),
        ] {
            assert_eq!(reg.expires_at_ms, 500);
        }
        assert_eq!(index.next_deadline(), Some(500));
        assert_eq!(
            index.ids_with_endpoint_attr("et", "changed", false),
            Some(ids(&[3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("et", "oic.d.sensor", false),
            Some(ids(&[1, 2]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("d", "roof", false),
            Some(ids(&[2, 3]))
        );
        assert_eq!(
            index.ids_with_link_attr("rel", "alternate", false),
            Some(ids(&[3]))
        );
        let expired = index.expire_due(600);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, RegistrationId(3));
    }

    #[test]
    fn remove_forgets_every_index_entry() {
        let mut index = sample();
        let removed = index.remove(RegistrationId(1)).unwrap();
        assert_eq!(removed.ep.as_str(), "node1");
        assert!(index.get(RegistrationId(1)).is_none());
        let node1 = EndpointName::new("node1").unwrap();
        assert!(index.find(&node1, None).is_none());
        assert!(index.find_id_including_expired(&node1, None).is_none());
        assert_eq!(index.find_ep(&node1).count(), 1);
        assert_eq!(
            index.ids_with_link_attr("rt", "temperature", false),
            Some(ids(&[]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "node1", false),
            Some(ids(&[3]))
        );
        assert!(index.remove(RegistrationId(1)).is_none());
        assert_eq!(index.len_live(), 2);
    }

    #[test]
    fn expiry_hides_but_keeps_until_the_grace_ends() {
        let mut index = sample();
        assert_eq!(index.next_deadline(), Some(1_000));
        assert_eq!(
            index.live(1_500).count(),
            2,
            "past lifetime is hidden even before the timer"
        );
        let due = index.expire_due(2_000);
        let due_ids: Vec<u64> = due.iter().map(|r| r.id.0).collect();
        assert_eq!(due_ids, vec![1, 2]);
        assert_eq!(index.next_deadline(), Some(3_000));
        assert_eq!(index.next_grave(), Some(1_000));
        assert!(index.get(RegistrationId(1)).is_none());
        assert!(index.get_including_expired(RegistrationId(1)).is_some());
        assert!(index.is_in_grace(RegistrationId(1)));
        let node1 = EndpointName::new("node1").unwrap();
        assert!(index.find(&node1, None).is_none());
        assert_eq!(
            index.find_id_including_expired(&node1, None),
            Some(RegistrationId(1))
        );
        assert_eq!(
            index.ids_with_link_attr("rt", "temp", true),
            Some(ids(&[3]))
        );
        assert_eq!(index.len_live(), 1);
        assert_eq!(index.len_in_grace(), 2);

        // Revival: inserting the same id again makes it live and indexed.
        let mut revived = (**index.get_including_expired(RegistrationId(2)).unwrap()).clone();
        revived.expires_at_ms = 9_000;
        index.insert(Arc::new(revived));
        assert_eq!(
            index.ids_with_link_attr("rt", "temp-hires", false),
            Some(ids(&[2]))
        );
        assert!(!index.is_in_grace(RegistrationId(2)));

        let purged = index.purge_graves(1_000);
        assert_eq!(purged.iter().map(|r| r.id.0).collect::<Vec<_>>(), vec![1]);
        assert!(index.get_including_expired(RegistrationId(1)).is_none());
        assert!(index.find_id_including_expired(&node1, None).is_none());
        assert_eq!(index.next_grave(), None);
    }

    #[test]
    fn live_iterates_in_id_order_and_pages_from_an_id() {
        let index = sample();
        let order: Vec<u64> = index.live(0).map(|r| r.id.0).collect();
        assert_eq!(order, vec![1, 2, 3]);
        let rest: Vec<u64> = index
            .live_from(RegistrationId(2), 0)
            .map(|r| r.id.0)
            .collect();
        assert_eq!(rest, vec![2, 3]);
    }

    #[test]
    fn endpoints_sharing_a_hash_bucket_are_told_apart() {
        let mut index = sample();
        // Force a collision: file node2's id under node1's hash as well.
        let node1 = EndpointName::new("node1").unwrap();
        let hash = index.name_hash(&node1, None);
        index.by_ep_d.get_mut(&hash).unwrap().add(RegistrationId(2));
        assert_eq!(index.find(&node1, None).unwrap().id, RegistrationId(1));
        index.remove(RegistrationId(1));
        assert!(
            index.find(&node1, None).is_none(),
            "node2 must not answer for node1"
        );
        let mut bucket = Bucket::One(RegistrationId(1));
        bucket.add(RegistrationId(2));
        bucket.add(RegistrationId(2));
        assert_eq!(bucket.ids(), &[RegistrationId(1), RegistrationId(2)]);
        assert!(!bucket.remove(RegistrationId(1)));
        assert!(matches!(bucket, Bucket::One(RegistrationId(2))));
        assert!(bucket.remove(RegistrationId(2)));
    }

    #[test]
    fn endpoint_name_lookups_do_not_match_invalid_or_foreign_names() {
        let index = sample();
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "node1x", false),
            Some(ids(&[]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "node1", true),
            Some(ids(&[1, 3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "", true),
            Some(ids(&[1, 2, 3]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "a\u{1}", true),
            Some(ids(&[]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", &"n".repeat(64), true),
            Some(ids(&[]))
        );
        assert_eq!(
            index.ids_with_endpoint_attr("ep", "o", true),
            Some(ids(&[]))
        );
    }

    #[test]
    fn loaded_graves_are_revivable_and_not_live() {
        let mut index = Index::new();
        index.insert_in_grace(reg(
            7,
            "old",
            None,
            100,
            vec![Link::new("/a").with("rt", Some("x"))],
        ));
        assert_eq!(index.len_live(), 0);
        assert!(index.get_including_expired(RegistrationId(7)).is_some());
        assert_eq!(index.ids_with_link_attr("rt", "x", false), Some(ids(&[])));
        assert_eq!(index.next_grave(), Some(100));
    }
}
