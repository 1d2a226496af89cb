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
//!
//! One file per concept: `by_name` (finding a registration by `ep`+`d`, and `ep` range
//! scans), `attrs` (the inverted attribute indexes and their queries), `update` (inserting,
//! replacing, expiring and removing, keeping every view in step); this file holds the
//! structure and the reads by id and by deadline.

mod attrs;
mod by_name;
#[cfg(test)]
mod tests;
mod update;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use self::attrs::AttrIndex;
use self::by_name::{Bucket, ByName};
use super::model::{Registration, RegistrationId};

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
    /// On etcd: the revision the index reflects (0 on sled).
    revision: i64,
}

impl Index {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// On etcd: the revision every change up to which the index has applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub(crate) fn set_revision(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// A live registration by id.
    pub(crate) fn get(&self, id: RegistrationId) -> Option<&Arc<Registration>> {
        self.live.get(&id)
    }

    /// A registration by id, live or expired within the grace period.
    pub fn get_including_expired(&self, id: RegistrationId) -> Option<&Arc<Registration>> {
        self.live.get(&id).or_else(|| self.expired.get(&id))
    }

    /// Whether `id` is expired but still revivable.
    pub(crate) fn is_in_grace(&self, id: RegistrationId) -> bool {
        self.expired.contains_key(&id)
    }

    /// Live registrations not yet past their lifetime at `now_ms`, in id order. A registration
    /// whose expiry timer has not fired yet is already left out.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Arc<Registration>> + '_ {
        self.live.values().filter(move |r| !r.is_expired_at(now_ms))
    }

    /// Live registrations starting at `from` (inclusive), in id order: resumable paging.
    #[cfg(test)]
    pub(crate) fn live_from(
        &self,
        from: RegistrationId,
        now_ms: u64,
    ) -> impl Iterator<Item = &Arc<Registration>> + '_ {
        self.live
            .range(from..)
            .map(|(_, r)| r)
            .filter(move |r| !r.is_expired_at(now_ms))
    }

    /// Number of live registrations.
    pub(crate) fn len_live(&self) -> usize {
        self.live.len()
    }

    /// Number of registrations expired but still in grace.
    pub(crate) fn len_in_grace(&self) -> usize {
        self.expired.len()
    }

    /// Bumped by every change; lookup caches and ETags compare it.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The earliest live expiry (Unix ms), if any.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// The earliest expiry among registrations in grace; add the grace period to get the
    /// instant it is purged.
    pub(crate) fn next_grave(&self) -> Option<u64> {
        self.graves.first().map(|(at, _)| *at)
    }

    /// Live registrations whose lifetime ended at or before `now_ms`, in deadline order,
    /// left in place: the etcd backend expires them by a transaction, and the watch moves
    /// them into grace.
    pub(crate) fn due(&self, now_ms: u64) -> impl Iterator<Item = &Arc<Registration>> + '_ {
        self.deadlines
            .iter()
            .take_while(move |(at, _)| *at <= now_ms)
            .filter_map(|(_, id)| self.live.get(id))
    }

    /// Registrations in grace that expired at or before `cutoff_ms` (now minus the grace),
    /// left in place: the etcd backend purges them by a transaction.
    pub(crate) fn graves_due(
        &self,
        cutoff_ms: u64,
    ) -> impl Iterator<Item = &Arc<Registration>> + '_ {
        self.graves
            .iter()
            .take_while(move |(at, _)| *at <= cutoff_ms)
            .filter_map(|(_, id)| self.expired.get(id))
    }
}
