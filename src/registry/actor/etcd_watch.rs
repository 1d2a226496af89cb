//! The etcd backend's read path (`docs/ha-etcd.md` §5): the index is fed by a watch on the
//! registrations from the revision it was loaded at. Each watch response is applied under one
//! write lock, its events derived from what each change replaced (`change::events_of`) and
//! published, and the applied revision moved on, which answers the writes it covers
//! (`etcd_commit`). This replica's own writes arrive the same way, so every replica publishes
//! the same events in the same order. Expiry and purges are written as transactions too;
//! the watch moves a registration into grace or out of the index, and whichever replica's
//! transaction commits first decides it, once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{EventType, WatchResponse, WatchStream};

use super::etcd_commit::{EtcdState, OwnWrite, Pending};
use super::writes::shrink;
use super::{Backend, Registry};
use crate::limits::LogThrottle;
use crate::limits::SourceCounts;
use crate::registry::change::{events_of, After, Cause, Change, Prior};
use crate::registry::etcd::record::State;
use crate::registry::etcd::store::{decode_watched, Snapshot, Stored};
use crate::registry::index::Index;
use crate::registry::link_set::LinkSetPool;
use crate::registry::messages::RegistryEvent;
use crate::registry::model::RegistrationId;
use crate::time::now_ms;

/// Wait before re-opening a broken watch.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

static DECODE_LOG: LogThrottle = LogThrottle::new();

/// One watch response, or the watch's end.
pub(super) type Watched = Result<WatchResponse, etcd_client::Error>;

impl StreamHandler<Watched> for Registry {
    fn handle(&mut self, item: Watched, ctx: &mut Self::Context) {
        match item {
            Ok(response) if response.canceled() => {
                // A watch cannot resume from a compacted revision (etcd-io/etcd#8668): the
                // changes in between are gone from etcd's history. Whatever the cause, the
                // registrations are read again and a new watch opened from that read.
                let why = if response.compact_revision() > 0 {
                    format!(
                        "history compacted at revision {}",
                        response.compact_revision()
                    )
                } else {
                    format!("cancelled: {}", response.cancel_reason())
                };
                log::error!(
                    "registry: the etcd watch cannot go on ({why}); re-reading every registration"
                );
                self.health
                    .record_failure(&format!("etcd watch: {why}"), now_ms());
                if let Backend::Etcd(state) = &mut self.backend {
                    if state.relisting {
                        return;
                    }
                    state.relisting = true;
                    // etcd keeps a cancelled watch's stream open: dropped, it cannot later end
                    // and open a second watch beside the one the re-read opens.
                    if let Some(old) = state.watch.take() {
                        ctx.cancel_future(old);
                    }
                }
                self.relist(ctx);
            }
            Ok(response) => self.apply_watched(response, ctx),
            Err(e) => {
                log::warn!("registry: the etcd watch failed: {e}");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if matches!(&self.backend, Backend::Etcd(state) if state.relisting) {
            // The re-read opens the next watch.
            return;
        }
        log::warn!("registry: the etcd watch ended; re-opening it");
        ctx.run_later(REWATCH_AFTER, |act, ctx| act.rewatch(ctx));
    }
}

/// What one applied change touches: the index and the actor's bookkeeping of it.
struct Applier<'a> {
    index: &'a mut Index,
    counts: &'a mut SourceCounts,
    link_sets: &'a mut LinkSetPool,
    state: &'a mut EtcdState,
    events: Vec<RegistryEvent>,
}

impl Applier<'_> {
    /// A record written (live or expired) replaces what the index held under its id.
    fn put(&mut self, stored: Stored) {
        let mut reg = stored.reg;
        let id = reg.id;
        let prior = self.index.get_including_expired(id).map(|r| Prior {
            reg: Arc::clone(r),
            in_grace: self.index.is_in_grace(id),
        });
        shrink(&mut reg);
        reg.links = self.link_sets.share(reg.links);
        // When the device was last heard from is not stored: it stays with the registration.
        if let Some(p) = &prior {
            reg.last_seen = p.reg.last_seen.clone();
        }
        let reg = Arc::new(reg);
        let after = match stored.meta.state {
            State::Live => {
                self.index.insert(Arc::clone(&reg));
                After::Live(&reg)
            }
            State::Expired => {
                self.index.insert_in_grace(Arc::clone(&reg));
                After::Expired(&reg)
            }
        };
        match &prior {
            Some(p) => self.counts.moved(p.reg.source.ip(), reg.source.ip()),
            None => self.counts.add(reg.source.ip()),
        }
        self.state.revisions.insert(id, stored.mod_revision);
        self.state.expiring.remove(&id);
        self.events
            .extend(events_of(prior.as_ref(), after, stored.meta.cause));
    }

    /// A record deleted: the registration leaves the index.
    fn delete(&mut self, id: RegistrationId) {
        let in_grace = self.index.is_in_grace(id);
        self.state.revisions.remove(&id);
        self.state.expiring.remove(&id);
        let Some(removed) = self.index.remove(id) else {
            return;
        };
        self.counts.remove(removed.source.ip());
        let prior = Prior {
            reg: removed,
            in_grace,
        };
        self.events
            .extend(events_of(Some(&prior), After::Gone, Cause::Update));
    }
}

impl Registry {
    fn apply_watched(&mut self, response: WatchResponse, ctx: &mut Context<Self>) {
        let revision = response.header().map_or(0, |h| h.revision());
        let Some(events) = self.with_applier(|applier| {
            let keys = applier.state.store.keys().clone();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        match decode_watched(&keys, kv.key(), kv.value(), kv.mod_revision()) {
                            None => {}
                            Some(Ok(stored)) => applier.put(stored),
                            Some(Err(e)) => {
                                if let Some(n) = DECODE_LOG.note() {
                                    log::error!(
                                        "registry: {n} watched etcd record(s) skipped: {e}"
                                    );
                                }
                            }
                        }
                    }
                    EventType::Delete => {
                        if let Some(id) = std::str::from_utf8(kv.key())
                            .ok()
                            .and_then(|key| keys.registration_id(key))
                        {
                            applier.delete(RegistrationId(id));
                        }
                    }
                }
            }
            applier.index.set_revision(revision);
            std::mem::take(&mut applier.events)
        }) else {
            return;
        };
        let deleted = response
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete);
        self.after_applied(revision, events, deleted, ctx);
    }

    /// Run `apply` on the index under its write lock, with the bookkeeping it keeps in step;
    /// None without the etcd backend.
    fn with_applier<R>(&mut self, apply: impl FnOnce(&mut Applier<'_>) -> R) -> Option<R> {
        let Backend::Etcd(state) = &mut self.backend else {
            return None;
        };
        let mut index = self.reader.write();
        let mut applier = Applier {
            index: &mut index,
            counts: &mut self.counts,
            link_sets: &mut self.link_sets,
            state,
            events: Vec::new(),
        };
        Some(apply(&mut applier))
    }

    /// Publish what a watch response or a re-read changed, and answer the writes it covers.
    fn after_applied(
        &mut self,
        revision: i64,
        events: Vec<RegistryEvent>,
        deleted: bool,
        ctx: &mut Context<Self>,
    ) {
        if let Backend::Etcd(state) = &mut self.backend {
            if revision > state.applied {
                state.applied = revision;
            }
        }
        let expired = events
            .iter()
            .filter(|e| matches!(e, RegistryEvent::Removed { reason, .. } if *reason == crate::registry::RemovalReason::Expired))
            .count();
        if expired > 0 {
            crate::metrics::global().record_expired(expired);
        }
        if deleted {
            self.trim_link_sets();
        }
        self.publish(events, ctx);
        self.release(ctx);
        self.arm_timer(ctx);
    }

    /// Read every registration again at one revision (the watch could not resume), bring
    /// the index to it with the events of each difference, and watch on from the next
    /// revision. Retried every second while etcd cannot be read.
    fn relist(&mut self, ctx: &mut Context<Self>) {
        let Backend::Etcd(state) = &mut self.backend else {
            return;
        };
        let store = state.store.clone();
        ctx.spawn(
            async move {
                let snapshot = store.load().await?;
                let stream = store.watch(snapshot.revision + 1).await?;
                Ok::<_, crate::registry::StoreError>((snapshot, stream))
            }
            .into_actor(self)
            .map(|read, act, ctx| match read {
                Ok((snapshot, stream)) => {
                    act.apply_relisted(snapshot, ctx);
                    act.follow_watch(stream, ctx);
                }
                Err(e) => {
                    log::warn!("registry: cannot re-read the registrations: {e}; trying again");
                    ctx.run_later(REWATCH_AFTER, |act, ctx| act.relist(ctx));
                }
            }),
        );
    }

    fn apply_relisted(&mut self, snapshot: Snapshot, ctx: &mut Context<Self>) {
        let revision = snapshot.revision;
        let Some((events, deleted, changed)) = self.with_applier(|applier| {
            applier.state.relisting = false;
            let listed: HashSet<RegistrationId> =
                snapshot.records.iter().map(|r| r.reg.id).collect();
            let gone: Vec<RegistrationId> = applier
                .state
                .revisions
                .keys()
                .copied()
                .filter(|id| !listed.contains(id))
                .collect();
            let mut changed = gone.len();
            for id in &gone {
                applier.delete(*id);
            }
            for stored in snapshot.records {
                if applier.state.revisions.get(&stored.reg.id) != Some(&stored.mod_revision) {
                    changed += 1;
                    applier.put(stored);
                }
            }
            applier.index.set_revision(revision);
            (
                std::mem::take(&mut applier.events),
                !gone.is_empty(),
                changed,
            )
        }) else {
            return;
        };
        log::info!(
            "registry: re-read at revision {revision}: {changed} registration(s) changed while the watch was behind; watching from {}",
            revision + 1
        );
        self.after_applied(revision, events, deleted, ctx);
    }

    /// Follow `stream` from now on, instead of any earlier watch stream.
    pub(super) fn follow_watch(&mut self, stream: WatchStream, ctx: &mut Context<Self>) {
        let handle = ctx.add_stream(stream);
        if let Backend::Etcd(state) = &mut self.backend {
            if let Some(old) = state.watch.replace(handle) {
                ctx.cancel_future(old);
            }
        }
    }

    /// Re-open the watch from the revision after the applied one, until it opens.
    fn rewatch(&mut self, ctx: &mut Context<Self>) {
        let Backend::Etcd(state) = &mut self.backend else {
            return;
        };
        let store = state.store.clone();
        let from = state.applied + 1;
        ctx.spawn(async move { store.watch(from).await }.into_actor(self).map(
            move |opened, act, ctx| match opened {
                Ok(stream) => {
                    log::info!("registry: etcd watch re-opened from revision {from}");
                    act.follow_watch(stream, ctx);
                }
                Err(e) => {
                    log::warn!("registry: cannot re-open the etcd watch: {e}");
                    ctx.run_later(REWATCH_AFTER, |act, ctx| act.rewatch(ctx));
                }
            },
        ));
    }

    /// Expire what is due and purge what left its grace, as transactions; the watch applies
    /// them. A registration already being expired here is not sent again.
    pub(super) fn expire_on_etcd(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.grace_ms);
        let (due, graves) = self.reader.with_index(|index| {
            (
                index.due(now).cloned().collect::<Vec<_>>(),
                index.graves_due(cutoff).cloned().collect::<Vec<_>>(),
            )
        });
        let Backend::Etcd(state) = &mut self.backend else {
            return;
        };
        let mut writes = Vec::new();
        let owned = |id| state.ownership.owns(id);
        let due: Vec<_> = due.into_iter().filter(|r| owned(r.id)).collect();
        let graves: Vec<_> = graves.into_iter().filter(|r| owned(r.id)).collect();
        for reg in due {
            if state.expiring.insert(reg.id) {
                writes.push(Change::Put {
                    next: Arc::clone(&reg),
                    prior: Some(Prior {
                        reg,
                        in_grace: false,
                    }),
                    cause: Cause::Expire,
                });
            }
        }
        for reg in graves {
            if state.expiring.insert(reg.id) {
                writes.push(Change::Delete {
                    prior: Prior {
                        reg,
                        in_grace: true,
                    },
                });
            }
        }
        for change in writes {
            self.submit(ctx, Pending::new(Box::new(OwnWrite(Some(change)))));
        }
    }
}
