//! Changing the index: inserting or replacing a registration, loading one in grace, moving
//! expired ones into grace, purging graves and removing, each keeping the by-id, by-name,
//! attribute and deadline views in step and bumping the version lookups compare.

use std::sync::Arc;

use super::attrs::{add, drop_id, for_each_endpoint_key, for_each_link_key};
use super::by_name::ByName;
use super::Index;
use crate::registry::model::{Registration, RegistrationId};

impl Index {
    /// Insert or replace a live registration (keyed by its id). Returns the previous value,
    /// live or in grace.
    pub(crate) fn insert(&mut self, reg: Arc<Registration>) -> Option<Arc<Registration>> {
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
    pub(crate) fn insert_in_grace(&mut self, reg: Arc<Registration>) {
        if let Some(old) = self.detach(reg.id) {
            self.unlink_name(&old);
        }
        self.link_name(&reg);
        self.graves.insert((reg.expires_at_ms, reg.id));
        self.expired.insert(reg.id, reg);
        self.version += 1;
    }

    /// Remove a registration entirely (live or in grace).
    pub(crate) fn remove(&mut self, id: RegistrationId) -> Option<Arc<Registration>> {
        let removed = self.detach(id)?;
        self.unlink_name(&removed);
        self.version += 1;
        Some(removed)
    }

    /// Move every live registration whose lifetime ended at or before `now_ms` into grace, and
    /// return them in deadline order.
    pub(crate) fn expire_due(&mut self, now_ms: u64) -> Vec<Arc<Registration>> {
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
    pub(crate) fn purge_graves(&mut self, cutoff_ms: u64) -> Vec<Arc<Registration>> {
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
