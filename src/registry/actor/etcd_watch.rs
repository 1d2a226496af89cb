//! The etcd backend's read path (`docs/ha-etcd.md` §5): the index is fed by a watch on the
//! registrations from the revision it was loaded at. Each watch response is applied under one
//! write lock, its events derived from what each change replaced (`change::events_of`) and
//! published, and the applied revision moved on, which answers the writes it covers
//! (`etcd_commit`). This replica's own writes arrive the same way, so every replica publishes
//! the same events in the same order. Expiry and purges are written as transactions too;
//! the watch moves a registration into grace or out of the index, and whichever replica's
//! transaction commits first decides it, once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{EventType, WatchResponse};

use super::etcd_commit::{OwnWrite, Pending};
use super::writes::shrink;
use super::{Backend, Registry};
use crate::limits::LogThrottle;
use crate::registry::change::{events_of, After, Cause, Change, Prior};
use crate::registry::etcd::record::State;
use crate::registry::etcd::store::decode_watched;
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
                // A watch from a compacted revision cannot resume (etcd-io/etcd#8668).
                log::error!(
                    "registry: the etcd watch was cancelled (compacted at {}): {}; re-opening it",
                    response.compact_revision(),
                    response.cancel_reason()
                );
                self.health.record_failure(
                    &format!("etcd watch cancelled: {}", response.cancel_reason()),
                    now_ms(),
                );
            }
            Ok(response) => self.apply_watched(response, ctx),
            Err(e) => {
                log::warn!("registry: the etcd watch failed: {e}");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        log::warn!("registry: the etcd watch ended; re-opening it");
        ctx.run_later(REWATCH_AFTER, |act, ctx| act.rewatch(ctx));
    }
}

impl Registry {
    fn apply_watched(&mut self, response: WatchResponse, ctx: &mut Context<Self>) {
        let Backend::Etcd(state) = &mut self.backend else {
            return;
        };
        let revision = response.header().map_or(0, |h| h.revision());
        let keys = state.store.keys().clone();
        let mut events = Vec::new();
        {
            let mut index = self.reader.write();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        let stored =
                            match decode_watched(&keys, kv.key(), kv.value(), kv.mod_revision()) {
                                None => continue,
                                Some(Ok(stored)) => stored,
                                Some(Err(e)) => {
                                    if let Some(n) = DECODE_LOG.note() {
                                        log::error!(
                                            "registry: {n} watched etcd record(s) skipped: {e}"
                                        );
                                    }
                                    continue;
                                }
                            };
                        let mut reg = stored.reg;
                        let id = reg.id;
                        let prior = index.get_including_expired(id).map(|r| Prior {
                            reg: Arc::clone(r),
                            in_grace: index.is_in_grace(id),
                        });
                        shrink(&mut reg);
                        reg.links = self.link_sets.share(reg.links);
                        let reg = Arc::new(reg);
                        let after = match stored.meta.state {
                            State::Live => {
                                index.insert(Arc::clone(&reg));
                                After::Live(&reg)
                            }
                            State::Expired => {
                                index.insert_in_grace(Arc::clone(&reg));
                                After::Expired(&reg)
                            }
                        };
                        match &prior {
                            Some(p) => self.counts.moved(p.reg.source.ip(), reg.source.ip()),
                            None => self.counts.add(reg.source.ip()),
                        }
                        state.revisions.insert(id, stored.mod_revision);
                        state.expiring.remove(&id);
                        events.extend(events_of(prior.as_ref(), after, stored.meta.cause));
                    }
                    EventType::Delete => {
                        let Some(id) = std::str::from_utf8(kv.key())
                            .ok()
                            .and_then(|key| keys.registration_id(key))
                            .map(RegistrationId)
                        else {
                            continue;
                        };
                        let in_grace = index.is_in_grace(id);
                        let Some(removed) = index.remove(id) else {
                            continue;
                        };
                        self.counts.remove(removed.source.ip());
                        state.revisions.remove(&id);
                        state.expiring.remove(&id);
                        let prior = Prior {
                            reg: removed,
                            in_grace,
                        };
                        events.extend(events_of(Some(&prior), After::Gone, Cause::Update));
                    }
                }
            }
            index.set_revision(revision);
        }
        if revision > state.applied {
            state.applied = revision;
        }
        let expired = events
            .iter()
            .filter(|e| matches!(e, RegistryEvent::Removed { reason, .. } if *reason == crate::registry::RemovalReason::Expired))
            .count();
        if expired > 0 {
            crate::metrics::global().record_expired(expired);
        }
        if response
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete)
        {
            self.trim_link_sets();
        }
        self.publish(events, ctx);
        self.release(ctx);
        self.arm_timer(ctx);
    }

    /// Re-open the watch from the revision after the applied one, until it opens.
    fn rewatch(&mut self, ctx: &mut Context<Self>) {
        let Backend::Etcd(state) = &mut self.backend else {
            return;
        };
        let store = state.store.clone();
        let from = state.applied + 1;
        ctx.spawn(async move { store.watch(from).await }.into_actor(self).map(
            move |opened, _act, ctx| match opened {
                Ok(stream) => {
                    log::info!("registry: etcd watch re-opened from revision {from}");
                    ctx.add_stream(stream);
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
