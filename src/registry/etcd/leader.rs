//! The election of the replica that holds the platform link (`docs/ha-etcd.md` §8): a
//! replica that is a member campaigns by putting `P/leader` on its member lease if the key is
//! absent; everyone else watches the key and campaigns again when it goes (the leader's lease
//! lapsed, or it stepped down). The leader steps down at its local lease deadline, before
//! etcd can let another replica win, so two leaders never hold the link at once while both
//! see etcd.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;

use super::{EtcdStore, Ownership};
use crate::registry::StoreError;

/// How often a candidate or leader looks at its membership.
const CHECK: Duration = Duration::from_millis(250);

/// Campaign for leadership in the background for as long as the process runs. The receiver
/// says whether this replica is the leader now: `Some(L)` with `L` the create revision of its
/// `P/leader` key, the term's fencing token (every leader-only write compares on it) and the
/// revision from which the cluster feed numbers frames that are not events (§8).
pub fn campaign(store: EtcdStore, ownership: Ownership) -> watch::Receiver<Option<i64>> {
    let (tx, rx) = watch::channel(None);
    actix_rt::spawn(async move {
        loop {
            if let Err(e) = one_term(&store, &ownership, &tx).await {
                log::warn!("cluster: leader election: {e}; trying again");
            }
            tx.send_replace(None);
            tokio::time::sleep(CHECK).await;
        }
    });
    rx
}

/// Wait for membership, campaign once, and lead or follow until that ends.
async fn one_term(
    store: &EtcdStore,
    ownership: &Ownership,
    leading: &watch::Sender<Option<i64>>,
) -> Result<(), StoreError> {
    let fail = |what: &str, e: etcd_client::Error| {
        StoreError::Etcd(format!("{what} at {}: {e}", store.endpoints()))
    };
    let lease = loop {
        if let Some(lease) = ownership.lease() {
            break lease;
        }
        tokio::time::sleep(CHECK).await;
    };
    let key = store.keys().leader();
    let value = serde_json::json!({ "member": ownership.me() }).to_string();
    let mut client = store.client();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let answer = client
        .txn(txn)
        .await
        .map_err(|e| fail("cannot campaign", e))?;
    let revision = answer.header().map_or(0, |h| h.revision());
    let term = if answer.succeeded() {
        Some(revision)
    } else {
        answer.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .filter(|kv| kv.lease() == lease)
                .map(|kv| kv.create_revision()),
            _ => None,
        })
    };
    let held_by_us = term.is_some();
    if let Some(term) = term {
        log::info!("cluster: {} is the leader (term {term})", ownership.me());
        leading.send_replace(Some(term));
    }
    let mut watch = client
        .watch(
            key.as_str(),
            Some(WatchOptions::new().with_start_revision(revision + 1)),
        )
        .await
        .map_err(|e| fail("cannot watch the leader key", e))?;
    loop {
        tokio::select! {
            message = watch.message() => {
                let Some(response) = message.map_err(|e| fail("leader watch failed", e))? else {
                    return Err(StoreError::Etcd("leader watch ended".into()));
                };
                if response.canceled()
                    || response.events().iter().any(|e| e.event_type() == EventType::Delete)
                {
                    if held_by_us {
                        log::warn!("cluster: {} is no longer the leader", ownership.me());
                    }
                    return Ok(());
                }
            }
            () = tokio::time::sleep(CHECK) => {
                // Past the local deadline (or a new lease): a leader steps down before etcd
                // lets another win; a candidate campaigns again with its new lease.
                if ownership.lease() != Some(lease) {
                    if held_by_us {
                        log::warn!("cluster: {} lost its lease; stepping down", ownership.me());
                    }
                    return Ok(());
                }
            }
        }
    }
}
