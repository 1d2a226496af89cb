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
//!
//! With `registry.backend: etcd` the same decisions are sent to etcd as transactions instead
//! (`etcd_commit`), the index is fed by an etcd watch (`etcd_watch`), and a reply waits until
//! the watch has brought its change back (`docs/ha-etcd.md`).
//!
//! One file per concept: `writes` (deciding each change, with the write policy), `apply`
//! (applying a decision to the index and sled), `commit` (parking replies and the group
//! commit), `etcd_commit` and `etcd_watch` (the etcd backend), `events` (publishing to
//! subscribers), `expiry` (the timer, lifetimes and grace), `failure` (a failed write: health,
//! the free-space probe, the restart request) and `handlers` (the messages).

mod apply;
mod commit;
mod etcd_commit;
mod etcd_watch;
mod events;
mod expiry;
mod failure;
mod handlers;
mod writes;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use tokio::sync::oneshot;

use self::commit::Parked;
use self::etcd_commit::{EtcdState, ID_BLOCK};
use self::writes::shrink;
use super::error::{RegistryError, StoreError};
use super::etcd::{members, Ownership};
use super::etcd::{EtcdSettings, EtcdStore};
use super::health::WriteHealth;
use super::index::Index;
use super::link_set::LinkSetPool;
use super::model::RegistrationId;
use super::reader::RegistryReader;
use super::store::Store;
use super::subscription::Subscriber;
use crate::limits::{SourceCounts, WritePolicy};
use crate::time::now_ms;

/// Enough room for many concurrent registrants without making them wait on the mailbox.
const MAILBOX_CAPACITY: usize = 4096;

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
pub(crate) fn start_with_policy(
    config: RegistryConfig,
    policy: WritePolicy,
) -> Result<(Addr<Registry>, RegistryReader), StoreError> {
    start_sharing_database(config, policy).map(|(registry, reader, _)| (registry, reader))
}

/// [`start_with_policy`], also handing out the registry's sled database, where the platform
/// link keeps its outbox (one database: one lock, one log, one flush discipline).
pub(crate) fn start_sharing_database(
    config: RegistryConfig,
    policy: WritePolicy,
) -> Result<(Addr<Registry>, RegistryReader, sled::Db), StoreError> {
    let store = Store::open(&config.data_dir, config.cache_mb)?;
    let database = store.database();
    let now = now_ms();
    let grace_ms = u64::from(config.expiry_grace_s) * 1000;
    let mut index = Index::new();
    let mut purge = Vec::new();
    let mut counts = SourceCounts::new(policy.grouping);
    let mut link_sets = LinkSetPool::new();
    let skipped = store.load_each(|reg| {
        if reg.expires_at_ms.saturating_add(grace_ms) <= now {
            purge.push(reg.id);
            return;
        }
        let in_grace = reg.is_expired_at(now);
        load_one(&mut index, &mut counts, &mut link_sets, reg, in_grace);
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
    let registry = Registry::new(
        Backend::Sled(store),
        reader.clone(),
        &config,
        policy,
        counts,
        health,
        link_sets,
    );
    Ok((registry.start(), reader, database))
}

/// Connect to etcd, load every registration into the index at one revision, reserve a block
/// of ids, and start the actor with a watch from the next revision (`docs/ha-etcd.md` §5).
/// Must be called inside a running actix system; fails when etcd cannot be reached. Without a
/// write policy, like [`start`].
pub async fn start_on_etcd(
    config: RegistryConfig,
    settings: &EtcdSettings,
) -> Result<(Addr<Registry>, RegistryReader, Ownership), StoreError> {
    start_on_etcd_with_policy(config, settings, WritePolicy::default())
        .await
        .map(|(registry, reader, ownership, _)| (registry, reader, ownership))
}

/// [`start_on_etcd`] with a write policy (FCFR, per-source quota).
pub(crate) async fn start_on_etcd_with_policy(
    config: RegistryConfig,
    settings: &EtcdSettings,
    policy: WritePolicy,
) -> Result<(Addr<Registry>, RegistryReader, Ownership, EtcdStore), StoreError> {
    let store = EtcdStore::connect(settings).await?;
    // Owners expire; the others leave it to them (`docs/ha-etcd.md` §7).
    let ownership = members::join(store.clone(), &settings.member_name, settings.member_ttl_s);
    let snapshot = store.load().await?;
    let ids = store.reserve_ids(ID_BLOCK).await?;
    let stream = store.watch(snapshot.revision + 1).await?;
    let mut index = Index::new();
    let mut counts = SourceCounts::new(policy.grouping);
    let mut link_sets = LinkSetPool::new();
    let mut revisions = std::collections::HashMap::new();
    for stored in snapshot.records {
        revisions.insert(stored.reg.id, stored.mod_revision);
        // Due expiries and purges are written by the owner's timer, as transactions.
        let in_grace = stored.meta.state == super::etcd::record::State::Expired;
        load_one(
            &mut index,
            &mut counts,
            &mut link_sets,
            stored.reg,
            in_grace,
        );
    }
    log::info!(
        "registry on etcd {} (prefix {}, member {}) at revision {}: {} live, {} expired in grace, {} undecodable records skipped",
        settings.endpoints.join(","),
        settings.prefix,
        settings.member_name,
        snapshot.revision,
        index.len_live(),
        index.len_in_grace(),
        snapshot.skipped
    );
    let state = EtcdState::new(
        store.clone(),
        revisions,
        snapshot.revision,
        ids,
        ownership.clone(),
    );
    index.set_revision(snapshot.revision);
    let reader = RegistryReader::new(Arc::new(RwLock::new(index)));
    let registry = Registry::new(
        Backend::Etcd(Box::new(state)),
        reader.clone(),
        &config,
        policy,
        counts,
        WriteHealth::default(),
        link_sets,
    );
    let addr = Registry::create(move |ctx| {
        let mut registry = registry;
        registry.follow_watch(stream, ctx);
        registry
    });
    Ok((addr, reader, ownership, store))
}

/// One stored registration into the index at start (sled or etcd): slack dropped, links
/// shared, its source counted.
fn load_one(
    index: &mut Index,
    counts: &mut SourceCounts,
    link_sets: &mut LinkSetPool,
    mut reg: super::model::Registration,
    in_grace: bool,
) {
    shrink(&mut reg);
    reg.links = link_sets.share(reg.links);
    counts.add(reg.source.ip());
    if in_grace {
        index.insert_in_grace(Arc::new(reg));
    } else {
        index.insert(Arc::new(reg));
    }
}

/// Where the Registry keeps its registrations.
pub(super) enum Backend {
    /// The embedded store (the default).
    Sled(Store),
    /// Replicas sharing one registry (`registry.backend: etcd`).
    Etcd(Box<EtcdState>),
}

impl Backend {
    /// Names the store in log lines.
    pub(super) fn describe(&self) -> String {
        match self {
            Backend::Sled(store) => store.path().display().to_string(),
            Backend::Etcd(_) => "on etcd".to_owned(),
        }
    }
}

impl Registry {
    fn new(
        backend: Backend,
        reader: RegistryReader,
        config: &RegistryConfig,
        policy: WritePolicy,
        counts: SourceCounts,
        health: WriteHealth,
        link_sets: LinkSetPool,
    ) -> Registry {
        Registry {
            backend,
            reader,
            grace_ms: u64::from(config.expiry_grace_s) * 1000,
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
        }
    }

    /// A new registration id: from sled's counter, or from this replica's block on etcd.
    pub(super) fn allocate_id(&mut self) -> Result<RegistrationId, RegistryError> {
        match &mut self.backend {
            Backend::Sled(store) => Ok(store.allocate_id()?),
            Backend::Etcd(_) => self.take_etcd_id(),
        }
    }
}

/// The Registry actor. See the module docs.
pub struct Registry {
    backend: Backend,
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
        if let Backend::Sled(store) = &self.backend {
            if let Err(e) = store.flush() {
                log::error!("registry: final flush failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::health::GetHealth;

    #[actix_rt::test]
    async fn a_fresh_registry_reports_itself_writable() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, _reader) = start(RegistryConfig::in_dir(dir.path().join("db"))).unwrap();
        let health = registry.send(GetHealth).await.unwrap();
        assert!(health.writable);
        assert_eq!(health.last_error, None);
    }
}
