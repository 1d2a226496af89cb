//! The Registry actor: the single writer of registrations (RFC 9176 §5), with group commit,
//! lifetime expiry (§5, `lt`) and change events.
//!
//! Callers: the RdServer (Register, Update, Remove), the Pinger (SetStatus), the admin server
//! (GetHealth), and every actor that wants events (Subscribe). Lookups do not come here: they read the shared index through
//! [`RegistryReader`].
//!
//! Group commit: each change is applied to the index and written to sled in memory, and its
//! reply is parked. One flush covers every change parked before it started; while it runs, new
//! changes collect into the next batch. When a flush completes, its replies are answered and
//! their events published, in order. Nothing is acknowledged before it is on disk. If a flush
//! fails, every request of its batch is answered `RegistryError::Store` and its events are not
//! published; the changes stay applied in memory (sled holds them too and the next successful
//! flush writes them), which errs towards keeping registrations rather than losing them.
//! Each flush batch is numbered in sled and, once durable and before its replies, recorded in
//! the acknowledged mark outside sled (`watermark`), so a start on a database that lost its
//! tail reports it (`RegistryHealth::lost_at_start`).
//!
//! Expiry: one timer, armed at the earliest deadline. An expired registration leaves the live
//! views (event `Removed{Expired}`) but stays revivable by an Update for the grace period, after
//! which it is deleted from sled. Its record keeps its old `expires_at_ms`, so a restart
//! restores that state from disk without any extra write.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::error::{RegistryError, StoreError};
use super::health::{GetHealth, WriteHealth};
use super::index::Index;
use super::link_set::LinkSetPool;
use super::messages::{
    is_discovered, DiscoveredOutcome, Register, RegisterDiscovered, Registered, RegistryEvent,
    RemovalReason, Remove, SetStatus, Subscribe, Update,
};
use super::model::{base_from_source, BaseOrigin, Registration, Status};
use super::reader::RegistryReader;
use super::recovery::{probe_writable, AwaitStoreRestart, PROBE_EVERY};
use super::store::Store;
use super::subscription::{Offer, SubscribeFeed, Subscriber};
use crate::limits::{
    check_registration, check_update, Holder, LogThrottle, SourceCounts, WritePolicy,
};
use crate::time::now_ms;

/// The longest the expiry timer sleeps before looking again; keeps wake-ups sane when the
/// next deadline is years away or the wall clock jumps.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(3600);
/// Enough room for many concurrent registrants without making them wait on the mailbox.
const MAILBOX_CAPACITY: usize = 4096;
/// How often an overflowed subscriber's backlog is checked for room to queue its `Resync`.
const RESYNC_POLL: Duration = Duration::from_millis(20);

/// Subscribers that fell behind (resynced) and plain subscribers that lost events: one log line
/// per kind per 10 s.
static OVERFLOW_LOG: LogThrottle = LogThrottle::new();
static LOST_LOG: LogThrottle = LogThrottle::new();
/// Failures to write the acknowledged mark (`watermark`): one line per 10 s.
static MARK_LOG: LogThrottle = LogThrottle::new();

/// What the Registry needs from `config.yaml`.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The sled directory (`gateway.data_dir`).
    pub data_dir: PathBuf,
    /// sled page cache in MiB (`gateway.cache_mb`).
    pub cache_mb: u64,
    /// How long an expired registration stays revivable (`rd.expiry_grace_s`).
    pub expiry_grace_s: u32,
    /// Refuse new endpoints beyond this many registrations (live or in grace).
    pub max_registrations: Option<usize>,
}

impl RegistryConfig {
    /// The registry's part of `config.yaml`: `gateway.data_dir`, `gateway.cache_mb`,
    /// `rd.expiry_grace_s`; no registration limit.
    pub fn from_config(config: &crate::config::Config) -> Self {
        RegistryConfig {
            data_dir: config.gateway.data_dir.clone(),
            cache_mb: config.gateway.cache_mb,
            expiry_grace_s: config.rd.expiry_grace_s,
            max_registrations: Some(config.rd.max_registrations),
        }
    }

    /// A registry in `data_dir` with a small (8 MiB) cache, no grace period and no limit: for
    /// tests, benches and tools that need a registry but no `config.yaml`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            data_dir: data_dir.into(),
            cache_mb: 8,
            expiry_grace_s: 0,
            max_registrations: None,
        }
    }
}

/// Open the store, load every registration into the index, and start the actor. Must be called
/// inside a running actix system. Store errors (locked, unopenable, unsupported format) surface
/// here, before anything runs.
pub fn start(config: RegistryConfig) -> Result<(Addr<Registry>, RegistryReader), StoreError> {
    start_with_policy(config, WritePolicy::default())
}

/// [`start`] with a write policy (FCFR, per-source quota). `start` has none.
pub fn start_with_policy(
    config: RegistryConfig,
    policy: WritePolicy,
) -> Result<(Addr<Registry>, RegistryReader), StoreError> {
    let store = Store::open(&config.data_dir, config.cache_mb)?;
    let now = now_ms();
    let grace_ms = u64::from(config.expiry_grace_s) * 1000;
    let mut index = Index::new();
    let mut purge = Vec::new();
    let mut counts = SourceCounts::new(policy.grouping);
    let mut link_sets = LinkSetPool::new();
    let skipped = store.load_each(|mut reg| {
        if reg.expires_at_ms.saturating_add(grace_ms) <= now {
            purge.push(reg.id);
            return;
        }
        shrink(&mut reg);
        reg.links = link_sets.share(reg.links);
        counts.add(reg.source.ip());
        if reg.is_expired_at(now) {
            index.insert_in_grace(Arc::new(reg));
        } else {
            index.insert(Arc::new(reg));
        }
    })?;
    for id in &purge {
        store.remove(*id)?;
    }
    log::info!(
        "registry {}: {} live, {} expired in grace, {} purged, {} undecodable records skipped",
        config.data_dir.display(),
        index.len_live(),
        index.len_in_grace(),
        purge.len(),
        skipped
    );
    let mut health = WriteHealth::default();
    if let Some(lost) = store.shortfall() {
        // Loud, and kept in /health for this run: the next flush moves the mark on.
        log::error!("registry {}: {lost}", config.data_dir.display());
        health.record_lost_at_start(lost.to_string());
    }
    let reader = RegistryReader::new(Arc::new(RwLock::new(index)));
    let registry = Registry {
        store,
        reader: reader.clone(),
        grace_ms,
        max_registrations: config.max_registrations,
        policy,
        counts,
        subscribers: Vec::new(),
        resync_poll_armed: false,
        batch: Vec::new(),
        flush_in_flight: false,
        flush_scheduled: false,
        timer: None,
        health,
        link_sets,
        probe_armed: false,
        restart_reason: None,
        restart_waiters: Vec::new(),
    };
    Ok((registry.start(), reader))
}

/// Finishes one parked request once its batch's flush is done: `None` on success.
type Completion = Box<dyn FnOnce(Option<&StoreError>)>;

/// A change waiting for its flush: the reply to send, the events to publish.
struct Parked {
    complete: Option<Completion>,
    events: Vec<RegistryEvent>,
}

/// The Registry actor. See the module docs.
pub struct Registry {
    store: Store,
    /// Write access to the shared index goes through the reader's lock.
    reader: RegistryReader,
    grace_ms: u64,
    max_registrations: Option<usize>,
    /// FCFR and the per-source quota, checked here so that no write slips in between.
    policy: WritePolicy,
    /// Registrations held (live or in grace) per source IP, for the quota.
    counts: SourceCounts,
    subscribers: Vec<Subscriber>,
    /// Whether the resync poll is armed (some subscriber overflowed).
    resync_poll_armed: bool,
    /// Applied changes not yet covered by a started flush.
    batch: Vec<Parked>,
    flush_in_flight: bool,
    flush_scheduled: bool,
    /// The armed expiry timer and the instant (Unix ms) it is armed for.
    timer: Option<(u64, SpawnHandle)>,
    /// Outcome of the latest writes and flushes, for `GetHealth`.
    health: WriteHealth,
    /// Equal link sets of different registrations share one copy.
    link_sets: LinkSetPool,
    /// Whether the free-space probe is armed (writes are failing; see `recovery`).
    probe_armed: bool,
    /// Set once only a restart can recover the store: the reason, for every waiter.
    restart_reason: Option<String>,
    /// The gateway, waiting for `restart_reason`.
    restart_waiters: Vec<oneshot::Sender<String>>,
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.arm_timer(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Parked replies are dropped (their callers see Unavailable); make what was written
        // durable anyway so a clean shutdown loses nothing.
        if let Err(e) = self.store.flush() {
            log::error!("registry: final flush failed: {e}");
        }
    }
}

impl Registry {
    fn apply_register(
        &mut self,
        msg: Register,
    ) -> Result<(Registered, Vec<RegistryEvent>), RegistryError> {
        let now = now_ms();
        let (base, base_origin) = match msg.base {
            Some(base) => (base, BaseOrigin::Explicit),
            None => (base_from_source(msg.source), BaseOrigin::FromSource),
        };
        let existing = self.reader.with_index(|index| {
            let id = index.find_id_including_expired(&msg.ep, msg.d.as_ref())?;
            let reg = index.get_including_expired(id)?;
            Some((Arc::clone(reg), index.is_in_grace(id)))
        });
        // Held in the index, live or in grace: remembered for its owner.
        let holder = existing.as_ref().map(|(prev, _)| Holder {
            source: prev.source,
            remembered: true,
        });
        check_registration(
            self.policy,
            msg.ep.as_str(),
            holder,
            msg.source,
            self.counts.held_by(msg.source.ip()),
        )?;
        let (id, registered_at_ms, previous) = match &existing {
            Some((prev, in_grace)) => (prev.id, prev.registered_at_ms, Some((prev, *in_grace))),
            None => {
                if let Some(limit) = self.max_registrations {
                    let held = self
                        .reader
                        .with_index(|index| index.len_live() + index.len_in_grace());
                    if held >= limit {
                        return Err(RegistryError::Full { limit });
                    }
                }
                (self.store.allocate_id()?, now, None)
            }
        };
        let mut reg = Registration {
            id,
            ep: msg.ep,
            d: msg.d,
            base: base.into(),
            base_origin,
            lifetime_s: msg.lifetime_s,
            attrs: msg.attrs,
            links: self.link_sets.share(msg.links.into()),
            status: Status::Connected,
            registered_at_ms,
            updated_at_ms: now,
            expires_at_ms: expiry(now, msg.lifetime_s),
            source: msg.source,
        };
        shrink(&mut reg);
        let reg = Arc::new(reg);
        self.store.put(&reg)?;
        self.reader.write().insert(Arc::clone(&reg));
        match previous {
            Some((prev, _)) => self.counts.moved(prev.source.ip(), reg.source.ip()),
            None => self.counts.add(reg.source.ip()),
        }
        let (created, events) = match previous {
            // A registration revived from grace was announced as removed: announce it anew.
            None | Some((_, true)) => (true, vec![RegistryEvent::Registered(Arc::clone(&reg))]),
            Some((prev, false)) => (false, updated_events(prev.status, &reg)),
        };
        Ok((
            Registered {
                registration: reg,
                created,
            },
            events,
        ))
    }

    fn apply_update(
        &mut self,
        msg: Update,
    ) -> Result<(Arc<Registration>, Vec<RegistryEvent>), RegistryError> {
        let now = now_ms();
        let (prev, in_grace) = self
            .reader
            .with_index(|index| {
                let reg = index.get_including_expired(msg.id)?;
                Some((Arc::clone(reg), index.is_in_grace(msg.id)))
            })
            .ok_or(RegistryError::NotFound(msg.id))?;
        // In grace it is still the owner's: only the owner revives it.
        let holder = Holder {
            source: prev.source,
            remembered: true,
        };
        check_update(self.policy, prev.ep.as_str(), holder, msg.source)?;
        let mut next = (*prev).clone();
        if let Some(lifetime_s) = msg.lifetime_s {
            next.lifetime_s = lifetime_s;
        }
        match msg.base {
            Some(base) => {
                next.base = base.into();
                next.base_origin = BaseOrigin::Explicit;
            }
            // RFC 9176 §5.3.1: only a base the RD derived follows a changed source address.
            None if next.base_origin == BaseOrigin::FromSource && next.source != msg.source => {
                next.base = base_from_source(msg.source).into();
            }
            None => {}
        }
        next.source = msg.source;
        override_attrs(&mut next.attrs, msg.attrs);
        shrink(&mut next);
        next.status = Status::Connected;
        next.updated_at_ms = now;
        next.expires_at_ms = expiry(now, next.lifetime_s);
        let next = Arc::new(next);
        self.store.put(&next)?;
        self.reader.write().insert(Arc::clone(&next));
        self.counts.moved(prev.source.ip(), next.source.ip());
        let events = if in_grace {
            vec![RegistryEvent::Registered(Arc::clone(&next))]
        } else {
            updated_events(prev.status, &next)
        };
        Ok((next, events))
    }

    fn apply_remove(
        &mut self,
        msg: Remove,
    ) -> Result<(Arc<Registration>, Vec<RegistryEvent>), RegistryError> {
        let (held, in_grace) = self
            .reader
            .with_index(|index| {
                let reg = index.get_including_expired(msg.id)?;
                Some((Arc::clone(reg), index.is_in_grace(msg.id)))
            })
            .ok_or(RegistryError::NotFound(msg.id))?;
        match msg.source {
            // A registration in grace is still remembered: another address gets 4.03, its
            // owner may delete it (and so free the name before the grace ends).
            Some(source) => {
                let holder = Holder {
                    source: held.source,
                    remembered: true,
                };
                check_update(self.policy, held.ep.as_str(), holder, source)?;
            }
            None if in_grace => return Err(RegistryError::NotFound(msg.id)),
            None => {}
        }
        self.store.remove(msg.id)?;
        let removed = self
            .reader
            .write()
            .remove(msg.id)
            .ok_or(RegistryError::NotFound(msg.id))?;
        self.counts.remove(removed.source.ip());
        self.trim_link_sets();
        // An expired registration was announced as removed when it expired.
        let events = if in_grace {
            Vec::new()
        } else {
            vec![RegistryEvent::Removed {
                registration: Arc::clone(&removed),
                reason: RemovalReason::Deleted,
            }]
        };
        Ok((removed, events))
    }

    fn apply_set_status(
        &mut self,
        msg: SetStatus,
    ) -> Result<(bool, Vec<RegistryEvent>), RegistryError> {
        let prev = self
            .reader
            .get(msg.id)
            .ok_or(RegistryError::NotFound(msg.id))?;
        if prev.status == msg.status {
            return Ok((false, Vec::new()));
        }
        let mut next = (*prev).clone();
        next.status = msg.status;
        let next = Arc::new(next);
        self.store.put(&next)?;
        self.reader.write().insert(Arc::clone(&next));
        Ok((true, vec![RegistryEvent::StatusChanged(next)]))
    }

    /// Park the outcome of a change until the flush that covers it; errors found before any
    /// write are answered at once.
    fn park<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Result<(T, Vec<RegistryEvent>), RegistryError>,
    ) -> ResponseFuture<Result<T, RegistryError>> {
        let (value, events) = match outcome {
            Ok(applied) => applied,
            Err(e) => {
                if let RegistryError::Store(store_error) = &e {
                    self.store_failed(store_error, ctx);
                }
                return Box::pin(async move { Err(e) });
            }
        };
        let (tx, rx) = oneshot::channel();
        let complete: Completion = Box::new(move |failure| {
            let reply = match failure {
                None => Ok(value),
                Some(e) => Err(RegistryError::Store(replicate(e))),
            };
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(reply);
        });
        self.batch.push(Parked {
            complete: Some(complete),
            events,
        });
        self.schedule_flush(ctx);
        self.arm_timer(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(RegistryError::Unavailable)) })
    }

    /// Start a flush once the mailbox has been drained and the other tasks on this thread have
    /// had one turn, so that every change already queued or about to be sent joins this batch.
    /// (actix polls spawned futures only after the mailbox is empty; the yield lets senders
    /// woken by the previous batch's replies send again first. Without it, batches alternated
    /// between 4 and 60 with 64 requests in flight; with it they stay at 64.)
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_in_flight || self.flush_scheduled || self.batch.is_empty() {
            return;
        }
        self.flush_scheduled = true;
        ctx.spawn(
            tokio::task::yield_now()
                .into_actor(self)
                .map(|(), act, ctx| {
                    act.flush_scheduled = false;
                    act.start_flush(ctx);
                }),
        );
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_in_flight || self.batch.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.batch);
        self.flush_in_flight = true;
        // A failure here fails the flush below too; the batch is then answered with it.
        let mark = self.store.seal_batch().ok();
        let flush = self.store.flush_async();
        ctx.spawn(flush.into_actor(self).map(move |result, act, ctx| {
            act.flush_in_flight = false;
            if let (Ok(()), Some(mark)) = (&result, mark) {
                if let Err(e) = act.store.record_acknowledged(mark) {
                    if let Some(n) = MARK_LOG.note() {
                        log::warn!(
                            "registry: cannot record the acknowledged mark ({n} times): {e}; a lost database tail may go unnoticed at the next start"
                        );
                    }
                }
            }
            act.finish(parked, result.err(), ctx);
            act.schedule_flush(ctx);
        }));
    }

    fn finish(
        &mut self,
        parked: Vec<Parked>,
        failure: Option<StoreError>,
        ctx: &mut Context<Self>,
    ) {
        match &failure {
            Some(e) => self.store_failed(e, ctx),
            None => self.health.record_flush_ok(),
        }
        if let Some(e) = &failure {
            log::error!(
                "registry {}: flush failed, {} changes not acknowledged: {e}",
                self.store.path().display(),
                parked.len()
            );
        }
        for p in parked {
            let durable_or_nothing_to_write = failure.is_none() || p.complete.is_none();
            if let Some(complete) = p.complete {
                complete(failure.as_ref());
            }
            if durable_or_nothing_to_write {
                self.publish(p.events, ctx);
            }
        }
    }

    /// Offer each event to every subscriber without ever waiting (see `subscription`): a feed
    /// subscriber that is too far behind skips events until it is resynced from the index.
    fn publish(&mut self, events: Vec<RegistryEvent>, ctx: &mut Context<Self>) {
        if events.is_empty() {
            return;
        }
        self.subscribers.retain(Subscriber::connected);
        let mut closed = false;
        for event in events {
            for subscriber in &mut self.subscribers {
                match subscriber.offer(&event) {
                    Offer::Sent => {}
                    Offer::Deferred { overflowed_now } => {
                        if overflowed_now {
                            crate::metrics::global().record_registry_feed_overflow();
                            if let Some(n) = OVERFLOW_LOG.note() {
                                log::warn!(
                                    "registry: {n} subscriber overflow(s) in the last {} s (over {} undelivered events); dropping their events until they resync from the index",
                                    crate::limits::log_throttle::REPORT_EVERY_S,
                                    super::subscription::EVENT_BACKLOG
                                );
                            }
                        }
                    }
                    Offer::Lost => {
                        if let Some(n) = LOST_LOG.note() {
                            log::error!(
                                "registry: {n} event(s) lost by plain subscribers with a full mailbox (no resync for them)"
                            );
                        }
                    }
                    Offer::Closed => closed = true,
                }
            }
        }
        if closed {
            self.subscribers.retain(Subscriber::connected);
        }
        self.arm_resync_poll(ctx);
    }

    /// While a subscriber is overflowed, look every `RESYNC_POLL` for room to queue its
    /// `Resync`. Never waits: the Registry keeps writing meanwhile.
    fn arm_resync_poll(&mut self, ctx: &mut Context<Self>) {
        if self.resync_poll_armed || !self.subscribers.iter().any(Subscriber::overflowed) {
            return;
        }
        self.resync_poll_armed = true;
        ctx.run_later(RESYNC_POLL, |act, ctx| {
            act.resync_poll_armed = false;
            act.subscribers.retain(Subscriber::connected);
            for subscriber in &mut act.subscribers {
                if let Some(missed) = subscriber.try_resync() {
                    log::info!("registry: subscriber resynced after missing {missed} events");
                }
            }
            act.arm_resync_poll(ctx);
        });
    }

    /// Publish events that need no flush, without overtaking events still waiting for one.
    fn publish_in_order(&mut self, events: Vec<RegistryEvent>, ctx: &mut Context<Self>) {
        if self.batch.is_empty() && !self.flush_in_flight {
            self.publish(events, ctx);
        } else {
            self.batch.push(Parked {
                complete: None,
                events,
            });
        }
    }

    /// (Re-)arm the expiry timer for the earliest of the next lifetime end and the next end of
    /// grace, unless it is already armed for that instant or earlier.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let grace_ms = self.grace_ms;
        let next = self.reader.with_index(|index| {
            let purge = index.next_grave().map(|at| at.saturating_add(grace_ms));
            match (index.next_deadline(), purge) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        let Some(at) = next else { return };
        if let Some((armed_at, handle)) = self.timer {
            if armed_at <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = Duration::from_millis(at.saturating_sub(now_ms())).min(MAX_TIMER_SLEEP);
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.expire(ctx);
            act.arm_timer(ctx);
        });
        self.timer = Some((at, handle));
    }

    fn expire(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.grace_ms);
        let (expired, purged) = {
            let mut index = self.reader.write();
            (index.expire_due(now), index.purge_graves(cutoff))
        };
        for reg in &purged {
            self.counts.remove(reg.source.ip());
            // Losing this delete in a crash is harmless: the next start purges it again.
            if let Err(e) = self.store.remove(reg.id) {
                self.store_failed(&e, ctx);
                log::error!(
                    "registry: cannot delete expired registration {}: {e}",
                    reg.id
                );
            }
        }
        if !purged.is_empty() {
            self.trim_link_sets();
            self.schedule_flush_of_unparked_writes(ctx);
        }
        if !expired.is_empty() {
            crate::metrics::global().record_expired(expired.len());
            log::debug!("registry: {} registrations expired", expired.len());
            let events = expired
                .into_iter()
                .map(|registration| RegistryEvent::Removed {
                    registration,
                    reason: RemovalReason::Expired,
                })
                .collect();
            self.publish_in_order(events, ctx);
        }
    }

    /// A write or flush failed: report it, and watch for the disk to take writes again.
    fn store_failed(&mut self, error: &dyn std::fmt::Display, ctx: &mut Context<Self>) {
        self.health.record_failure(error, now_ms());
        self.arm_probe(ctx);
    }

    /// While writes fail, probe the data directory every `PROBE_EVERY`; once it takes a write
    /// again, only a restart brings sled back (see `recovery`). A later successful flush
    /// disarms it: the store recovered by itself.
    fn arm_probe(&mut self, ctx: &mut Context<Self>) {
        if self.probe_armed || self.restart_reason.is_some() {
            return;
        }
        self.probe_armed = true;
        ctx.run_later(PROBE_EVERY, |act, ctx| {
            if !act.health.failing() {
                act.probe_armed = false;
                return;
            }
            let dir = act.store.path().to_path_buf();
            let probe = tokio::task::spawn_blocking(move || probe_writable(&dir));
            ctx.spawn(probe.into_actor(act).map(|outcome, act, ctx| {
                act.probe_armed = false;
                match outcome {
                    Ok(Ok(())) if act.health.failing() => act.request_restart(),
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        log::debug!("registry: data directory still refuses writes: {e}");
                        act.arm_probe(ctx);
                    }
                    Err(e) => {
                        log::error!("registry: the write probe did not run: {e}");
                        act.arm_probe(ctx);
                    }
                }
            }));
        });
    }

    fn request_restart(&mut self) {
        let reason = format!(
            "the registry database at {} failed a write ({}) and the disk takes writes again, but sled cannot resume after an I/O error: restarting recovers every acknowledged registration from disk",
            self.store.path().display(),
            self.health.last_error().unwrap_or("unknown error")
        );
        log::error!("registry: {reason}; stopping the gateway to exit non-zero");
        for waiter in self.restart_waiters.drain(..) {
            let _ = waiter.send(reason.clone());
        }
        self.restart_reason = Some(reason);
    }

    fn trim_link_sets(&mut self) {
        let held = self
            .reader
            .with_index(|index| index.len_live() + index.len_in_grace());
        self.link_sets.trim(held);
    }

    /// Purges are written without a waiting caller; piggy-back them on a flush anyway so they
    /// do not sit in memory until the next change.
    fn schedule_flush_of_unparked_writes(&mut self, ctx: &mut Context<Self>) {
        self.batch.push(Parked {
            complete: None,
            events: Vec::new(),
        });
        self.schedule_flush(ctx);
    }
}

/// Drop spare capacity before a registration is kept for good: at 100,000 registrations the
/// slack a parser or a growing `Vec` leaves behind is tens of megabytes (≤ 200 MB).
fn shrink(reg: &mut Registration) {
    reg.base.shrink_to_fit();
    reg.attrs.shrink_to_fit();
    reg.attrs
        .iter_mut()
        .for_each(link_format::Param::shrink_to_fit);
}

fn expiry(now_ms: u64, lifetime_s: u32) -> u64 {
    now_ms.saturating_add(u64::from(lifetime_s) * 1000)
}

/// RFC 9176 §5.3.1: attributes in an update replace every attribute of the same name.
fn override_attrs(attrs: &mut Vec<link_format::Param>, updates: Vec<link_format::Param>) {
    for update in &updates {
        attrs.retain(|p| p.name != update.name);
    }
    attrs.extend(updates);
}

/// The events of a change to a live registration: always `Updated`, plus `StatusChanged` when
/// it came back from disconnected.
fn updated_events(previous_status: Status, reg: &Arc<Registration>) -> Vec<RegistryEvent> {
    let mut events = vec![RegistryEvent::Updated(Arc::clone(reg))];
    if previous_status != reg.status {
        events.push(RegistryEvent::StatusChanged(Arc::clone(reg)));
    }
    events
}

/// One flush error, answered to every request of its batch. Flushes only fail with sled
/// errors, which are cloneable; anything else is carried as its message.
fn replicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io(inner) => StoreError::Io(inner.clone()),
        other => StoreError::Io(sled::Error::ReportableBug(other.to_string())),
    }
}

impl Handler<Register> for Registry {
    type Result = ResponseFuture<Result<Registered, RegistryError>>;

    fn handle(&mut self, msg: Register, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_register(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<RegisterDiscovered> for Registry {
    type Result = ResponseFuture<Result<DiscoveredOutcome, RegistryError>>;

    /// The check and the write happen in one handler call, so no self-registration can slip in
    /// between them.
    fn handle(&mut self, msg: RegisterDiscovered, ctx: &mut Self::Context) -> Self::Result {
        let register = msg.0;
        let refused = self.reader.with_index(|index| {
            let id = index.find_id_including_expired(&register.ep, register.d.as_ref())?;
            let reg = Arc::clone(index.get_including_expired(id)?);
            if !is_discovered(&reg) {
                Some(DiscoveredOutcome::SelfRegistered(reg))
            } else if reg.source != register.source && !index.is_in_grace(id) {
                Some(DiscoveredOutcome::NameTaken(reg))
            } else {
                None
            }
        });
        if let Some(outcome) = refused {
            return Box::pin(async move { Ok(outcome) });
        }
        let outcome = self
            .apply_register(register)
            .map(|(registered, events)| (DiscoveredOutcome::Registered(registered), events));
        self.park(ctx, outcome)
    }
}

impl Handler<Update> for Registry {
    type Result = ResponseFuture<Result<Arc<Registration>, RegistryError>>;

    fn handle(&mut self, msg: Update, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_update(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<Remove> for Registry {
    type Result = ResponseFuture<Result<Arc<Registration>, RegistryError>>;

    fn handle(&mut self, msg: Remove, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_remove(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<SetStatus> for Registry {
    type Result = ResponseFuture<Result<bool, RegistryError>>;

    /// Parked even when nothing changed, so the answer never overtakes an earlier change of
    /// the same registration that is still waiting for its flush.
    fn handle(&mut self, msg: SetStatus, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_set_status(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<GetHealth> for Registry {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _msg: GetHealth, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.health.report())
    }
}

impl Handler<AwaitStoreRestart> for Registry {
    type Result = ResponseFuture<String>;

    fn handle(&mut self, _msg: AwaitStoreRestart, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(reason) = &self.restart_reason {
            let reason = reason.clone();
            return Box::pin(async move { reason });
        }
        let (tx, rx) = oneshot::channel();
        self.restart_waiters.push(tx);
        // The actor stopped without asking for a restart: never resolve.
        Box::pin(async move {
            match rx.await {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        })
    }
}

impl Handler<Subscribe> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) {
        self.subscribers.push(Subscriber::plain(msg.0));
    }
}

impl Handler<SubscribeFeed> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SubscribeFeed, _ctx: &mut Self::Context) {
        self.subscribers.push(Subscriber::feed(msg.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_format::Param;

    #[test]
    fn update_attributes_replace_same_named_ones() {
        let mut attrs = vec![
            Param::new("et", Some("a")),
            Param::new("x", Some("1")),
            Param::new("et", Some("b")),
        ];
        override_attrs(
            &mut attrs,
            vec![Param::new("et", Some("c")), Param::new("y", None::<String>)],
        );
        assert_eq!(
            attrs,
            vec![
                Param::new("x", Some("1")),
                Param::new("et", Some("c")),
                Param::new("y", None::<String>),
            ]
        );
    }

    #[actix_rt::test]
    async fn a_fresh_registry_reports_itself_writable() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, _reader) = start(RegistryConfig::in_dir(dir.path().join("db"))).unwrap();
        let health = registry.send(GetHealth).await.unwrap();
        assert!(health.writable);
        assert_eq!(health.last_error, None);
    }

    #[actix_rt::test]
    async fn a_delete_from_another_address_is_refused_inside_the_actor() {
        let dir = tempfile::tempdir().unwrap();
        let policy = WritePolicy {
            endpoint_protection: true,
            max_per_source: None,
            exempt_loopback: true,
            grouping: crate::limits::SourceGrouping::new(64),
        };
        let config = RegistryConfig::in_dir(dir.path().join("db"));
        let (registry, reader) = start_with_policy(config, policy).unwrap();
        let owner: std::net::SocketAddr = "10.0.0.1:5683".parse().unwrap();
        let register = Register {
            ep: crate::registry::EndpointName::new("node").unwrap(),
            d: None,
            base: None,
            lifetime_s: 60,
            attrs: Vec::new(),
            links: vec![link_format::Link::new("/t")],
            source: owner,
        };
        let id = registry
            .send(register)
            .await
            .unwrap()
            .unwrap()
            .registration
            .id;
        let thief = "10.0.0.2:5683".parse().unwrap();
        assert!(matches!(
            registry
                .send(Remove::requested_by(id, thief))
                .await
                .unwrap(),
            Err(RegistryError::Refused(_))
        ));
        assert!(reader.get(id).is_some(), "still registered");
        // The same host from another port (a reboot, a NAT rebinding) may delete it.
        let rebooted = "10.0.0.1:40000".parse().unwrap();
        let removed = registry
            .send(Remove::requested_by(id, rebooted))
            .await
            .unwrap();
        assert_eq!(removed.unwrap().id, id);
        assert!(reader.get(id).is_none());
    }

    #[test]
    fn expiry_saturates() {
        assert_eq!(expiry(1_000, 2), 3_000);
        assert_eq!(expiry(u64::MAX - 1, u32::MAX), u64::MAX);
    }
}
