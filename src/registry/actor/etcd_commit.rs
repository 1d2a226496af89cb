//! The etcd backend's write path (`docs/ha-etcd.md` §4): decided changes are queued, and what
//! is queued while one transaction is in flight forms the next one, a transaction of nested
//! ones (one per change, each with its own compares), so a conflict fails one request, not the
//! batch. A committed change is answered once the watch has applied its revision
//! (`etcd_watch`), so a replica reads its own writes and every replica publishes the same
//! events in the same order. A change whose compare failed (another replica changed what the
//! decision read) is decided again once the index has caught up, at most [`MAX_ROUNDS`] times.
//! etcd failing or slower than [`COMMIT_DEADLINE`] answers the whole batch with
//! `StoreError::Etcd` (5.03 with Max-Age at the RD).

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::handlers::Decide;
use super::writes::Decision;
use super::{Backend, Registry};
use crate::limits::LogThrottle;
use crate::registry::change::Change;
use crate::registry::error::{RegistryError, StoreError};
use crate::registry::etcd::store::{Planned, Revisions};
use crate::registry::etcd::EtcdStore;
use crate::registry::etcd::Ownership;
use crate::registry::model::RegistrationId;
use crate::time::now_ms;

/// etcd's `--max-txn-ops` (128) counts the nested transactions and gives each the rest; with
/// at most three operations per change, 100 changes fit.
const MAX_BATCH: usize = 100;
/// Stay under etcd's request limit (1.5 MiB by default).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// A batch not answered by then fails (the RD answers 5.03; the change may still commit).
const COMMIT_DEADLINE: Duration = Duration::from_secs(2);
/// A committed change whose revision the watch has not applied by then is answered anyway
/// (it is durable); logged, since lookups at this replica lag.
const APPLY_DEADLINE: Duration = Duration::from_secs(1);
/// Decisions per request: each lost round means another replica changed the same
/// registration in between.
const MAX_ROUNDS: u8 = 3;
/// Ids reserved at once, and the remainder at which the next block is fetched.
pub(super) const ID_BLOCK: u64 = 1024;
const ID_LOW_WATER: u64 = 512;
/// How often etcd is asked whether it answers again, while writes fail.
const PROBE_EVERY: Duration = Duration::from_secs(1);

static LAG_LOG: LogThrottle = LogThrottle::new();
static FAIL_LOG: LogThrottle = LogThrottle::new();

/// A write on its way through etcd.
pub(super) trait EtcdWrite {
    /// Decide (again) against the index as it is now.
    fn decide(&mut self, registry: &mut Registry) -> Result<Option<Change>, RegistryError>;
    /// Answer the requester (no-op for the Registry's own writes).
    fn answer(self: Box<Self>, outcome: Result<(), RegistryError>);
    /// The registration id a write of the Registry's own (expiry, purge) is for; such writes
    /// are never decided again, and their id leaves `expiring` when they end.
    fn own(&self) -> Option<RegistrationId> {
        None
    }
}

/// A request from another actor: its message, its decision and its reply.
struct Request<M, T> {
    msg: M,
    decide: Decide<M, T>,
    value: Option<T>,
    reply: oneshot::Sender<Result<T, RegistryError>>,
}

impl<M: Clone, T> EtcdWrite for Request<M, T> {
    fn decide(&mut self, registry: &mut Registry) -> Result<Option<Change>, RegistryError> {
        let Decision { change, value } = (self.decide)(registry, self.msg.clone())?;
        self.value = Some(value);
        Ok(change)
    }

    fn answer(self: Box<Self>, outcome: Result<(), RegistryError>) {
        let Request { value, reply, .. } = *self;
        let answer = outcome.and_then(|()| value.ok_or(RegistryError::Unavailable));
        // The caller may have given up waiting.
        let _ = reply.send(answer);
    }
}

/// The Registry's own write (expiry, purge): decided once, never retried, nobody to answer.
pub(super) struct OwnWrite(pub(super) Option<Change>);

impl EtcdWrite for OwnWrite {
    fn decide(&mut self, _registry: &mut Registry) -> Result<Option<Change>, RegistryError> {
        Ok(self.0.take())
    }

    fn answer(self: Box<Self>, _outcome: Result<(), RegistryError>) {}

    fn own(&self) -> Option<RegistrationId> {
        self.0.as_ref().map(Change::id)
    }
}

/// A write and how often it has been decided.
pub(super) struct Pending {
    write: Box<dyn EtcdWrite>,
    rounds: u8,
    /// Kept for [`EtcdWrite::own`] after the change was taken out.
    own: Option<RegistrationId>,
}

impl Pending {
    pub(super) fn new(write: Box<dyn EtcdWrite>) -> Pending {
        let own = write.own();
        Pending {
            write,
            rounds: 0,
            own,
        }
    }
}

/// The etcd backend's state in the Registry.
pub(crate) struct EtcdState {
    pub(super) store: EtcdStore,
    /// Each known registration's last revision, for the compares.
    pub(super) revisions: Revisions,
    /// The revision the index reflects (the watch's last response).
    pub(super) applied: i64,
    /// Reserved ids not handed out yet.
    pub(super) ids: Range<u64>,
    /// The block reserved ahead, taken when `ids` runs out.
    spare_ids: Option<Range<u64>>,
    pub(super) reserving: bool,
    /// Decided, waiting for the next transaction.
    queue: VecDeque<(Pending, Change)>,
    in_flight: bool,
    scheduled: bool,
    /// Committed at a revision the watch has not applied yet.
    committed: Vec<(i64, Pending)>,
    /// Lost a compare at a revision: decided again once the index reached it.
    conflicted: Vec<(i64, Pending)>,
    /// Registrations whose expiry or purge is in flight (not sent twice).
    pub(super) expiring: HashSet<RegistrationId>,
    /// Which registrations this replica expires and purges.
    pub(super) ownership: Ownership,
    /// The watch could not resume (compacted history): the registrations are being read
    /// again, and that read opens the next watch.
    pub(super) relisting: bool,
    /// The watch stream being followed; replaced (the old one dropped) when a new one opens,
    /// so a stale stream can never feed the index twice.
    pub(super) watch: Option<SpawnHandle>,
}

impl EtcdState {
    pub(super) fn new(
        store: EtcdStore,
        revisions: Revisions,
        applied: i64,
        ids: Range<u64>,
        ownership: Ownership,
    ) -> Self {
        EtcdState {
            store,
            revisions,
            applied,
            ids,
            spare_ids: None,
            reserving: false,
            queue: VecDeque::new(),
            in_flight: false,
            scheduled: false,
            committed: Vec::new(),
            conflicted: Vec::new(),
            expiring: HashSet::new(),
            ownership,
            relisting: false,
            watch: None,
        }
    }
}

fn unavailable(what: impl Into<String>) -> RegistryError {
    RegistryError::Store(StoreError::Etcd(what.into()))
}

impl Registry {
    fn etcd(&mut self) -> Option<&mut EtcdState> {
        match &mut self.backend {
            Backend::Etcd(state) => Some(state),
            Backend::Sled(_) => None,
        }
    }

    /// An id from this replica's block; the next block is fetched before this one runs out.
    pub(super) fn take_etcd_id(&mut self) -> Result<RegistrationId, RegistryError> {
        let Some(state) = self.etcd() else {
            return Err(RegistryError::Unavailable);
        };
        if state.ids.is_empty() {
            if let Some(spare) = state.spare_ids.take() {
                state.ids = spare;
            }
        }
        state
            .ids
            .next()
            .map(RegistrationId)
            .ok_or_else(|| unavailable("registration ids are being reserved at etcd; retry"))
    }

    fn refill_ids(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.etcd() else { return };
        if state.reserving
            || state.spare_ids.is_some()
            || state.ids.end - state.ids.start >= ID_LOW_WATER
        {
            return;
        }
        state.reserving = true;
        let store = state.store.clone();
        ctx.spawn(
            async move { store.reserve_ids(ID_BLOCK).await }
                .into_actor(self)
                .map(|reserved, act, ctx| {
                    let Some(state) = act.etcd() else { return };
                    state.reserving = false;
                    match reserved {
                        Ok(block) if state.ids.is_empty() => state.ids = block,
                        Ok(block) => state.spare_ids = Some(block),
                        Err(e) => {
                            log::warn!("registry: cannot reserve registration ids: {e}");
                            ctx.run_later(Duration::from_secs(1), |act, ctx| act.refill_ids(ctx));
                        }
                    }
                }),
        );
    }

    /// A request from another actor, on etcd.
    pub(super) fn submit_request<M: Clone + 'static, T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        msg: M,
        decide: Decide<M, T>,
    ) -> ResponseFuture<Result<T, RegistryError>> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            msg,
            decide,
            value: None,
            reply,
        };
        self.submit(ctx, Pending::new(Box::new(request)));
        Box::pin(async move { answer.await.unwrap_or(Err(RegistryError::Unavailable)) })
    }

    /// Decide `pending` and queue its change for the next transaction.
    pub(super) fn submit(&mut self, ctx: &mut Context<Self>, mut pending: Pending) {
        pending.rounds += 1;
        let decided = pending.write.decide(self);
        self.refill_ids(ctx);
        match decided {
            Err(e) => self.end(pending, Err(e)),
            Ok(None) => self.end(pending, Ok(())),
            Ok(Some(change)) => {
                if let Some(state) = self.etcd() {
                    state.queue.push_back((pending, change));
                }
                self.schedule_commit(ctx);
            }
        }
    }

    fn end(&mut self, pending: Pending, outcome: Result<(), RegistryError>) {
        if let (Some(id), Some(state)) = (pending.own, self.etcd()) {
            state.expiring.remove(&id);
        }
        pending.write.answer(outcome);
    }

    /// Start a transaction once the mailbox is drained (as `commit::schedule_flush` does).
    fn schedule_commit(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.etcd() else { return };
        if state.in_flight || state.scheduled || state.queue.is_empty() {
            return;
        }
        state.scheduled = true;
        ctx.spawn(
            tokio::task::yield_now()
                .into_actor(self)
                .map(|(), act, ctx| {
                    if let Some(state) = act.etcd() {
                        state.scheduled = false;
                    }
                    act.start_commit(ctx);
                }),
        );
    }

    fn start_commit(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.etcd() else { return };
        if state.in_flight || state.queue.is_empty() {
            return;
        }
        let mut batch = Vec::new();
        let mut txns = Vec::new();
        let mut failed = Vec::new();
        let mut held = VecDeque::new();
        let mut keys = HashSet::new();
        let mut bytes = 0;
        while let Some((pending, change)) = state.queue.pop_front() {
            if batch.len() == MAX_BATCH {
                held.push_back((pending, change));
                continue;
            }
            let revision = state.revisions.get(&change.id()).copied().unwrap_or(0);
            let Planned {
                keys: touched,
                txn,
                bytes: size,
            } = match state.store.plan(&change, revision) {
                Ok(planned) => planned,
                Err(e) => {
                    failed.push((pending, e));
                    continue;
                }
            };
            // etcd refuses a key twice in one transaction: the second change waits.
            if touched.iter().any(|k| keys.contains(k))
                || (!batch.is_empty() && bytes + size > MAX_BATCH_BYTES)
            {
                held.push_back((pending, change));
                continue;
            }
            keys.extend(touched);
            bytes += size;
            txns.push(txn);
            batch.push(pending);
        }
        state.queue = held;
        for (pending, e) in failed {
            self.end(pending, Err(RegistryError::Store(e)));
        }
        let Some(state) = self.etcd() else { return };
        if batch.is_empty() {
            return;
        }
        state.in_flight = true;
        let store = state.store.clone();
        let commit = async move {
            match tokio::time::timeout(COMMIT_DEADLINE, store.commit(txns)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StoreError::Etcd(format!(
                    "etcd did not answer within {} s",
                    COMMIT_DEADLINE.as_secs()
                ))),
            }
        };
        ctx.spawn(commit.into_actor(self).map(move |outcome, act, ctx| {
            if let Some(state) = act.etcd() {
                state.in_flight = false;
            }
            act.committed(batch, outcome, ctx);
            act.schedule_commit(ctx);
        }));
    }

    fn committed(
        &mut self,
        batch: Vec<Pending>,
        outcome: Result<(i64, Vec<bool>), StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let (revision, outcomes) = match outcome {
            Ok(done) => done,
            Err(e) => {
                if let Some(n) = FAIL_LOG.note() {
                    log::error!(
                        "registry: {n} etcd batch(es) failed, their changes not acknowledged: {e}"
                    );
                }
                self.health.record_failure(&e, now_ms());
                self.arm_etcd_probe(ctx);
                let message = e.to_string();
                for pending in batch {
                    self.end(pending, Err(unavailable(message.clone())));
                }
                return;
            }
        };
        self.health.record_flush_ok();
        let Some(state) = self.etcd() else { return };
        for (pending, succeeded) in batch.into_iter().zip(outcomes) {
            if succeeded {
                state.committed.push((revision, pending));
            } else {
                state.conflicted.push((revision, pending));
            }
        }
        self.release(ctx);
        ctx.run_later(APPLY_DEADLINE, move |act, ctx| {
            act.release_overdue(revision, ctx)
        });
    }

    /// While etcd fails, ask it for its revision every [`PROBE_EVERY`]: the first answer
    /// makes the registry writable again in `/health` even if no write comes to prove it.
    fn arm_etcd_probe(&mut self, ctx: &mut Context<Self>) {
        if self.probe_armed {
            return;
        }
        let Some(state) = self.etcd() else { return };
        let store = state.store.clone();
        self.probe_armed = true;
        ctx.spawn(
            async move {
                tokio::time::sleep(PROBE_EVERY).await;
                store.current_revision().await
            }
            .into_actor(self)
            .map(|answer, act, ctx| {
                act.probe_armed = false;
                if !act.health.failing() {
                    return;
                }
                match answer {
                    Ok(_) => {
                        log::info!("registry: etcd answers again; writes resume");
                        act.health.record_flush_ok();
                    }
                    Err(_) => act.arm_etcd_probe(ctx),
                }
            }),
        );
    }

    /// Answer what the index now reflects and decide again what lost a compare.
    pub(super) fn release(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.etcd() else { return };
        let applied = state.applied;
        self.settle_up_to(applied, ctx);
    }

    /// Answer what was committed at or before `revision` and decide again what lost a
    /// compare there.
    fn settle_up_to(&mut self, revision: i64, ctx: &mut Context<Self>) -> bool {
        let Some(state) = self.etcd() else {
            return false;
        };
        let ready = take_up_to(&mut state.committed, revision);
        let redo = take_up_to(&mut state.conflicted, revision);
        let any = !ready.is_empty() || !redo.is_empty();
        for pending in ready {
            self.end(pending, Ok(()));
        }
        for pending in redo {
            self.decide_again(pending, ctx);
        }
        any
    }

    fn decide_again(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        if pending.own.is_some() {
            // The record changed meanwhile (an update, another replica's expiry): dropped.
            self.end(pending, Ok(()));
        } else if pending.rounds >= MAX_ROUNDS {
            self.end(
                pending,
                Err(unavailable(
                    "the registration kept changing at other replicas; retry",
                )),
            );
        } else {
            self.submit(ctx, pending);
        }
    }

    /// The watch has not brought `revision` back within [`APPLY_DEADLINE`]: answer what was
    /// committed there anyway (it is durable) and decide the conflicts on what the index has.
    fn release_overdue(&mut self, revision: i64, ctx: &mut Context<Self>) {
        let Some(state) = self.etcd() else { return };
        let applied = state.applied;
        if self.settle_up_to(revision, ctx) {
            if let Some(n) = LAG_LOG.note() {
                log::warn!(
                    "registry: the etcd watch is behind (applied {applied}, committed {revision}) ({n} times); answering committed changes before this replica's lookups show them"
                );
            }
        }
    }
}

/// Take out the writes of `waiting` at or before `revision`, in order.
fn take_up_to(waiting: &mut Vec<(i64, Pending)>, revision: i64) -> Vec<Pending> {
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(waiting)
        .into_iter()
        .partition(|(r, _)| *r <= revision);
    *waiting = later;
    due.into_iter().map(|(_, pending)| pending).collect()
}
