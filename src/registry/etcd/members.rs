//! This replica's membership in the cluster (`docs/ha-etcd.md` §7): a leased key
//! `P/members/<name>` kept alive every TTL/3, a view of every member fed by a watch, and from
//! both the answer to "does this replica own registration N?" ([`Ownership::owns`]).
//!
//! The **local deadline** is the instant the last answered keepalive was sent, plus the
//! granted TTL, minus a second: etcd expires the lease no earlier than a TTL after it received
//! that keepalive, so the deadline passes before another replica can take over, whatever the
//! clocks say. Past it this replica owns nothing (it stops pinging, observing and expiring)
//! and keeps trying to renew or re-join. A new member key is put only if absent: a key left
//! by a killed instance of the same name may mean it still runs, so the new one waits for it
//! to lapse. A replica that (re-)joins takes up its registrations [`HANDOVER_DELAY`] after its
//! key is in etcd, once their previous owners have let go.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};

use super::ownership;
use super::EtcdStore;
use crate::registry::model::RegistrationId;
use crate::registry::StoreError;

/// Margin under the granted TTL (clock rates and message delays).
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);
/// A replica that joins takes up its registrations this long after its member key is in
/// etcd: the replicas that owned them see the key within milliseconds and stop first, so no
/// device is pinged by two replicas that both see etcd (`docs/ha-etcd.md` §7, hand-over).
pub const HANDOVER_DELAY: Duration = Duration::from_secs(1);
/// Pause before trying again after an etcd error.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct View {
    /// Every member key present, sorted.
    members: Vec<String>,
    /// Until when this replica may act as a member; `None` before it joined.
    deadline: Option<Instant>,
    /// Bumped by every change of the member list or of this replica's standing.
    generation: u64,
    /// The lease the member key is on (the leader key goes on it too).
    lease: Option<i64>,
    /// When this replica takes up its duties after joining ([`HANDOVER_DELAY`]).
    duties_from: Option<Instant>,
}

/// Who owns what, as this replica sees the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Ownership {
    me: Arc<str>,
    view: Arc<RwLock<View>>,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership").field("me", &self.me).finish()
    }
}

impl Ownership {
    fn new(me: &str) -> Ownership {
        Ownership {
            me: me.into(),
            view: Arc::new(RwLock::new(View::default())),
        }
    }

    /// This replica's member name.
    pub fn me(&self) -> &str {
        &self.me
    }

    fn read<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        match self.view.read() {
            Ok(view) => f(&view),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write(&self, f: impl FnOnce(&mut View)) {
        match self.view.write() {
            Ok(mut view) => f(&mut view),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether this replica is a member now (joined, and its deadline not passed).
    pub fn is_member(&self) -> bool {
        self.read(|v| v.deadline.is_some_and(|d| Instant::now() < d))
    }

    /// Whether this replica is a member and has taken up its duties (the hand-over delay
    /// after joining has passed).
    pub fn on_duty(&self) -> bool {
        self.read(|v| {
            let now = Instant::now();
            v.deadline.is_some_and(|d| now < d) && v.duties_from.is_some_and(|f| f <= now)
        })
    }

    /// Whether this replica owns registration `id`: it is a member and has the highest
    /// rendezvous weight among the members it sees (`registry::etcd::ownership`).
    pub fn owns(&self, id: RegistrationId) -> bool {
        self.owns_key(&id.0.to_string())
    }

    /// Whether this replica owns `key` by the same rule: registrations are owned by their id
    /// in decimal; other duties name their keys so that they cannot be a number (Discovery
    /// owns `discovery/<address>`).
    pub fn owns_key(&self, key: &str) -> bool {
        self.read(|v| {
            let now = Instant::now();
            v.deadline.is_some_and(|d| now < d)
                && v.duties_from.is_some_and(|from| from <= now)
                && ownership::owns(&self.me, &v.members, key)
        })
    }

    /// The lease of this replica's member key while it is a member.
    pub fn lease(&self) -> Option<i64> {
        self.read(|v| {
            v.lease
                .filter(|_| v.deadline.is_some_and(|d| Instant::now() < d))
        })
    }

    /// The members this replica sees, sorted.
    pub fn members(&self) -> Vec<String> {
        self.read(|v| v.members.clone())
    }

    /// Changes whenever ownership may have changed (a member came or went, this replica joined
    /// or lost its lease).
    pub fn generation(&self) -> u64 {
        self.read(|v| v.generation)
    }

    /// The time left before the local deadline (zero when not a member).
    pub fn lease_remaining(&self) -> Duration {
        self.read(|v| {
            v.deadline.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            })
        })
    }
}

/// Join the cluster as `member` and keep the membership in the background (on the current
/// actix/tokio runtime) for as long as the process runs. Returns at once; the replica owns
/// nothing until its member key is in etcd.
pub fn join(store: EtcdStore, member: &str, ttl_s: u32) -> Ownership {
    let ownership = Ownership::new(member);
    actix_rt::spawn(keep_membership(store.clone(), ownership.clone(), ttl_s));
    actix_rt::spawn(follow_members(store, ownership.clone()));
    ownership
}

/// Grant a lease, put the member key on it (once any older key of this name lapsed), keep it
/// alive; on losing it, start again.
async fn keep_membership(store: EtcdStore, ownership: Ownership, ttl_s: u32) {
    loop {
        match hold_membership(&store, &ownership, ttl_s).await {
            Ok(()) => log::warn!("cluster: lease of member {} lost; re-joining", ownership.me),
            Err(e) => log::warn!("cluster: member {}: {e}; retrying", ownership.me),
        }
        ownership.write(|v| {
            v.deadline = None;
            v.lease = None;
            v.duties_from = None;
            v.generation += 1;
        });
        tokio::time::sleep(RETRY).await;
    }
}

async fn hold_membership(
    store: &EtcdStore,
    ownership: &Ownership,
    ttl_s: u32,
) -> Result<(), StoreError> {
    let fail = |what: &str, e: etcd_client::Error| {
        StoreError::Etcd(format!("{what} at {}: {e}", store.endpoints()))
    };
    let mut client = store.client();
    let key = store.keys().member(&ownership.me);
    let value = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at_ms": crate::time::now_ms(),
    })
    .to_string();
    // A fresh lease per attempt: one granted before a long wait for an old key would lapse
    // before it is used.
    let mut waited = false;
    let (lease, sent) = loop {
        let sent = Instant::now();
        let lease = client
            .lease_grant(i64::from(ttl_s), None)
            .await
            .map_err(|e| fail("cannot grant a lease", e))?;
        let put = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(lease.id())),
            )]);
        let done = client
            .txn(put)
            .await
            .map_err(|e| fail("cannot put the member key", e))?;
        if done.succeeded() {
            break (lease, sent);
        }
        // Unused; it would lapse by itself anyway.
        let _ = client.lease_revoke(lease.id()).await;
        if !waited {
            log::warn!(
                "cluster: member key {key} exists (an earlier instance of {}?); waiting for it to lapse",
                ownership.me
            );
            waited = true;
        }
        tokio::time::sleep(RETRY).await;
    };
    let ttl = Duration::from_secs(u64::try_from(lease.ttl()).unwrap_or(0));
    log::info!(
        "cluster: joined as {} (lease ttl {} s)",
        ownership.me,
        ttl.as_secs()
    );
    ownership.write(|v| {
        v.deadline = Some(sent + ttl.saturating_sub(DEADLINE_MARGIN));
        v.lease = Some(lease.id());
        v.duties_from = Some(Instant::now() + HANDOVER_DELAY);
        v.generation += 1;
    });
    // Tell the Pinger when the duties start.
    let later = ownership.clone();
    actix_rt::spawn(async move {
        tokio::time::sleep(HANDOVER_DELAY).await;
        later.write(|v| v.generation += 1);
    });
    let (mut keeper, mut answers) = client
        .lease_keep_alive(lease.id())
        .await
        .map_err(|e| fail("cannot keep the lease alive", e))?;
    let every = (ttl / 3).max(Duration::from_millis(500));
    loop {
        tokio::time::sleep(every).await;
        let sent = Instant::now();
        if let Err(e) = keeper.keep_alive().await {
            return Err(fail("keepalive failed", e));
        }
        match tokio::time::timeout(every, answers.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                let granted = Duration::from_secs(u64::try_from(answer.ttl()).unwrap_or(0));
                ownership.write(|v| {
                    v.deadline = Some(sent + granted.saturating_sub(DEADLINE_MARGIN));
                });
            }
            // TTL 0: the lease is gone (it lapsed while etcd could not be reached).
            Ok(Ok(Some(_))) => return Ok(()),
            Ok(Ok(None)) => return Err(StoreError::Etcd("keepalive stream ended".into())),
            Ok(Err(e)) => return Err(fail("keepalive failed", e)),
            Err(_) => {
                // No answer yet: the deadline stays where the last answer put it.
                if !ownership.is_member() {
                    return Err(StoreError::Etcd(
                        "no keepalive answered before the local deadline".into(),
                    ));
                }
            }
        }
    }
}

/// Keep the member list: list the members, then follow their keys from that revision.
async fn follow_members(store: EtcdStore, ownership: Ownership) {
    loop {
        if let Err(e) = watch_members(&store, &ownership).await {
            log::warn!("cluster: member list: {e}; re-listing");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn watch_members(store: &EtcdStore, ownership: &Ownership) -> Result<(), StoreError> {
    let fail = |what: &str, e: etcd_client::Error| {
        StoreError::Etcd(format!("{what} at {}: {e}", store.endpoints()))
    };
    let prefix = store.keys().members();
    let mut client = store.client();
    let listed = client
        .get(
            prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .map_err(|e| fail("cannot list the members", e))?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let mut members: Vec<String> = listed
        .kvs()
        .iter()
        .filter_map(|kv| name_of(&prefix, kv.key()))
        .collect();
    members.sort();
    set_members(ownership, members.clone());
    let mut stream = client
        .watch(
            prefix.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await
        .map_err(|e| fail("cannot watch the members", e))?;
    while let Some(response) = stream
        .message()
        .await
        .map_err(|e| fail("member watch failed", e))?
    {
        if response.canceled() {
            return Err(StoreError::Etcd("member watch cancelled".into()));
        }
        for event in response.events() {
            let Some(name) = event.kv().and_then(|kv| name_of(&prefix, kv.key())) else {
                continue;
            };
            match event.event_type() {
                EventType::Put => {
                    if let Err(at) = members.binary_search(&name) {
                        members.insert(at, name);
                    }
                }
                EventType::Delete => members.retain(|m| *m != name),
            }
        }
        set_members(ownership, members.clone());
    }
    Err(StoreError::Etcd("member watch ended".into()))
}

fn set_members(ownership: &Ownership, members: Vec<String>) {
    ownership.write(|v| {
        if v.members != members {
            log::info!("cluster: members {members:?}");
            v.members = members;
            v.generation += 1;
        }
    });
}

fn name_of(prefix: &str, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    let encoded = key.strip_prefix(prefix)?;
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
