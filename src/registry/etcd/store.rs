//! The etcd side of the etcd backend: connecting, claiming the cluster record, loading every
//! registration at one revision, reserving blocks of registration ids, committing a batch of
//! changes as one transaction of nested ones, and watching the registrations from a revision
//! (`docs/ha-etcd.md` §3 to §5). Knows keys, records and etcd; knows nothing of actors.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

use super::keys::Keys;
use super::record::{self, Meta, State};
use super::settings::EtcdSettings;
use crate::registry::change::{Cause, Change};
use crate::registry::error::StoreError;
use crate::registry::model::{Registration, RegistrationId};

/// A request to etcd that takes longer than this failed (the request's own deadline, the
/// registration's 2 s, is enforced by the caller).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys per page of the initial load: ~0.7 MB of records, under the client's message limit.
const PAGE: i64 = 1000;
/// Attempts at reserving an id block before giving up (each loses only to another replica's
/// reservation, which moved the counter on).
const RESERVE_ATTEMPTS: usize = 20;

/// A connection to etcd, scoped to one cluster's prefix. Cheap to clone (one gRPC channel).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    endpoints: String,
}

/// A registration as loaded or watched, with the revision of its last change.
#[derive(Debug)]
pub struct Stored {
    pub reg: Registration,
    pub meta: Meta,
    pub mod_revision: i64,
}

/// Every registration at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub records: Vec<Stored>,
    /// The revision the snapshot was read at; the watch continues from the next one.
    pub revision: i64,
    /// Records that could not be decoded (kept in etcd, logged, left out of the index).
    pub skipped: usize,
}

/// One nested transaction of a batch: the change, the keys it modifies (etcd refuses a key
/// twice in one transaction) and the transaction itself.
pub struct Planned {
    pub keys: Vec<String>,
    pub txn: Txn,
    /// The bytes of values it writes (a batch stays under etcd's request limit).
    pub bytes: usize,
}

fn etcd_error(what: &str, endpoints: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Etcd(format!("{what} at {endpoints}: {e}"))
}

impl EtcdStore {
    /// Connect to `settings.endpoints` and claim (or check) the cluster record: a prefix that
    /// belongs to another cluster id is refused, so two sites can never share registrations by
    /// a copied config.
    pub async fn connect(settings: &EtcdSettings) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore::connect_read_only(settings).await?;
        store.claim_cluster(&settings.cluster_id).await?;
        Ok(store)
    }

    /// Connect without writing anything (`rd-dump --etcd`).
    pub async fn connect_read_only(settings: &EtcdSettings) -> Result<EtcdStore, StoreError> {
        let endpoints = settings.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some((user, password)) = &settings.credentials {
            options = options.with_user(user.clone(), password.expose().to_owned());
        }
        if let Some(tls) = &settings.tls {
            let mut tls_options =
                TlsOptions::new().ca_certificate(Certificate::from_pem(tls.ca_pem.clone()));
            if let Some((cert, key)) = &tls.identity {
                tls_options =
                    tls_options.identity(Identity::from_pem(cert.clone(), key.expose().as_bytes()));
            }
            options = options.with_tls(tls_options);
        }
        let client = Client::connect(&settings.endpoints, Some(options))
            .await
            .map_err(|e| etcd_error("cannot connect to etcd", &endpoints, e))?;
        Ok(EtcdStore {
            client,
            keys: Keys::new(&settings.prefix),
            endpoints,
        })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The client, for the cluster's other keys (members, leader).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Names the endpoints in error messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        etcd_error(what, &self.endpoints, e)
    }

    async fn claim_cluster(&self, cluster_id: &str) -> Result<(), StoreError> {
        let key = self.keys.cluster();
        let value = serde_json::json!({ "id": cluster_id, "format": 1 }).to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), value, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.fail("cannot claim the cluster record", e))?;
        if response.succeeded() {
            log::info!("registry: etcd prefix claimed for cluster {cluster_id:?}");
            return Ok(());
        }
        let held = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let held_id = held
            .as_deref()
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
        match held_id {
            Some(id) if id == cluster_id => Ok(()),
            Some(id) => Err(StoreError::WrongCluster(format!(
                "the etcd prefix {key:?} belongs to cluster {id:?}, not to this gateway.id {cluster_id:?}: every replica of one cluster needs the same gateway.id, another cluster needs its own registry.etcd.prefix"
            ))),
            None => Err(StoreError::WrongCluster(format!(
                "the etcd key {key:?} does not hold a cluster record"
            ))),
        }
    }

    /// Every registration at one revision, page by page (every page read at the first page's
    /// revision, so the snapshot is consistent however long the read takes).
    pub async fn load(&self) -> Result<Snapshot, StoreError> {
        let prefix = self.keys.registrations();
        let end = prefix_end(&prefix);
        let mut kv = self.client.kv_client();
        let mut snapshot = Snapshot::default();
        let mut from = prefix.clone().into_bytes();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if snapshot.revision > 0 {
                options = options.with_revision(snapshot.revision);
            }
            let page = kv
                .get(from.clone(), Some(options))
                .await
                .map_err(|e| self.fail("cannot list the registrations", e))?;
            if snapshot.revision == 0 {
                snapshot.revision = page.header().map_or(0, |h| h.revision());
            }
            for kv in page.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                match record::decode(&key, kv.value()) {
                    Ok((reg, meta)) => snapshot.records.push(Stored {
                        reg,
                        meta,
                        mod_revision: kv.mod_revision(),
                    }),
                    Err(e) => {
                        log::error!("registry: etcd record {key} skipped: {e}");
                        snapshot.skipped += 1;
                    }
                }
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(snapshot)
    }

    /// Reserve `count` registration ids for this replica alone: a compare-and-swap on
    /// `P/ids/next`, which only grows, so blocks never overlap and ids are never reused.
    pub async fn reserve_ids(&self, count: u64) -> Result<Range<u64>, StoreError> {
        let key = self.keys.next_id();
        let mut kv = self.client.kv_client();
        for _ in 0..RESERVE_ATTEMPTS {
            let current = kv
                .get(key.as_str(), None)
                .await
                .map_err(|e| self.fail("cannot read the id counter", e))?;
            let (next, revision) = match current.kvs().first() {
                Some(kv) => {
                    let next = std::str::from_utf8(kv.value())
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| {
                            StoreError::Etcd(format!("the id counter {key:?} is not a number"))
                        })?;
                    (next, kv.mod_revision())
                }
                None => (1, 0),
            };
            let end = next.checked_add(count).ok_or(StoreError::IdsExhausted)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(key.as_str(), end.to_string(), None)]);
            let response = kv
                .txn(txn)
                .await
                .map_err(|e| self.fail("cannot reserve ids", e))?;
            if response.succeeded() {
                return Ok(next..end);
            }
        }
        Err(StoreError::Etcd(
            "cannot reserve ids: the counter kept changing".to_owned(),
        ))
    }

    /// The nested transaction of one change, deciding it on `mod_revision`, the revision of
    /// the record the decision read (`docs/ha-etcd.md` §4): a new name must still be free, a
    /// known record unchanged since.
    pub fn plan(&self, change: &Change, mod_revision: i64) -> Result<Planned, StoreError> {
        let keys = &self.keys;
        match change {
            Change::Put { next, prior, cause } => {
                let reg_key = keys.registration(next.id.0);
                let meta = Meta {
                    state: if *cause == Cause::Expire {
                        State::Expired
                    } else {
                        State::Live
                    },
                    cause: *cause,
                };
                let value = record::encode(next, meta)?;
                let bytes = value.len();
                match prior {
                    None => {
                        let name = keys.name(next.d.as_ref().map(|d| d.as_str()), next.ep.as_str());
                        let txn = Txn::new()
                            .when([
                                Compare::create_revision(name.as_str(), CompareOp::Equal, 0),
                                Compare::create_revision(reg_key.as_str(), CompareOp::Equal, 0),
                            ])
                            .and_then([
                                TxnOp::put(name.as_str(), next.id.0.to_string(), None),
                                TxnOp::put(reg_key.as_str(), value, None),
                            ]);
                        Ok(Planned {
                            keys: vec![name, reg_key],
                            txn,
                            bytes,
                        })
                    }
                    Some(_) => {
                        let txn = Txn::new()
                            .when([Compare::mod_revision(
                                reg_key.as_str(),
                                CompareOp::Equal,
                                mod_revision,
                            )])
                            .and_then([TxnOp::put(reg_key.as_str(), value, None)]);
                        Ok(Planned {
                            keys: vec![reg_key],
                            txn,
                            bytes,
                        })
                    }
                }
            }
            Change::Delete { prior } => {
                let reg = &prior.reg;
                let reg_key = keys.registration(reg.id.0);
                let name = keys.name(reg.d.as_ref().map(|d| d.as_str()), reg.ep.as_str());
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        reg_key.as_str(),
                        CompareOp::Equal,
                        mod_revision,
                    )])
                    .and_then([
                        TxnOp::delete(reg_key.as_str(), None),
                        TxnOp::delete(name.as_str(), None),
                    ]);
                Ok(Planned {
                    keys: vec![reg_key, name],
                    txn,
                    bytes: 0,
                })
            }
        }
    }

    /// Commit a batch as one transaction of nested ones: each decided by its own compares, so
    /// a conflict fails one change, not the batch. Returns the batch's revision and each
    /// change's outcome, in order.
    pub async fn commit(&self, txns: Vec<Txn>) -> Result<(i64, Vec<bool>), StoreError> {
        let count = txns.len();
        let batch = Txn::new().and_then(txns.into_iter().map(TxnOp::txn).collect::<Vec<_>>());
        let response = self
            .client
            .kv_client()
            .txn(batch)
            .await
            .map_err(|e| self.fail("transaction failed", e))?;
        let revision = response.header().map_or(0, |h| h.revision());
        let outcomes: Vec<bool> = response
            .op_responses()
            .into_iter()
            .map(|op| matches!(op, TxnOpResponse::Txn(t) if t.succeeded()))
            .collect();
        if outcomes.len() != count {
            return Err(StoreError::Etcd(format!(
                "a batch of {count} changes was answered with {} outcomes",
                outcomes.len()
            )));
        }
        Ok((revision, outcomes))
    }

    /// Watch every registration from `from` on (inclusive), with progress notifications so
    /// that an idle watch still moves the applied revision on.
    pub async fn watch(&self, from: i64) -> Result<WatchStream, StoreError> {
        let prefix = self.keys.registrations();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify()
            .with_prev_key();
        self.client
            .watch_client()
            .watch(prefix, Some(options))
            .await
            .map_err(|e| self.fail("cannot watch the registrations", e))
    }

    /// Watch everything under the prefix with what each change replaced, from `from`: the
    /// cluster feed of the leader's platform link (`docs/ha-etcd.md` §8). Everything, not only
    /// the registrations: the leader key's own creation tells the feed it has caught up.
    pub async fn watch_cluster(&self, from: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_prev_key();
        self.client
            .watch_client()
            .watch(self.keys.all(), Some(options))
            .await
            .map_err(|e| self.fail("cannot watch the cluster feed", e))
    }

    /// Put one batch of member `member`'s device data on its member lease (the leader's
    /// cluster feed forwards it; the lease takes the key away with the member).
    pub async fn put_data(
        &self,
        member: &str,
        batch: Vec<u8>,
        lease: i64,
    ) -> Result<(), StoreError> {
        self.client
            .kv_client()
            .put(
                self.keys.data(member),
                batch,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| self.fail("cannot hand device data to the leader", e))?;
        Ok(())
    }

    /// The platform's last cumulative acknowledgement as a leader stored it (0: none yet).
    pub async fn platform_acked(&self) -> Result<u64, StoreError> {
        let key = self.keys.platform_acked();
        let response = self
            .client
            .kv_client()
            .get(key.as_str(), None)
            .await
            .map_err(|e| self.fail("cannot read the platform's acknowledgement", e))?;
        let Some(kv) = response.kvs().first() else {
            return Ok(0);
        };
        std::str::from_utf8(kv.value())
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| StoreError::Etcd(format!("{key:?} does not hold a sequence number")))
    }

    /// Store the platform's acknowledgement, fenced on the leader's term: a leader that was
    /// replaced writes nothing. False when the fence failed.
    pub async fn put_platform_acked(&self, seq: u64, term: i64) -> Result<bool, StoreError> {
        let key = self.keys.platform_acked();
        let leader = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(
                leader.as_str(),
                CompareOp::Equal,
                term,
            )])
            .and_then([TxnOp::put(key.as_str(), seq.to_string(), None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.fail("cannot store the platform's acknowledgement", e))?;
        Ok(response.succeeded())
    }

    /// The current revision (a cheap read of the cluster record).
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        let response = self
            .client
            .kv_client()
            .get(
                self.keys.cluster(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|e| self.fail("etcd unreachable", e))?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }
}

/// Decode a watched `P/reg/<id>` put.
pub fn decode_watched(
    keys: &Keys,
    key: &[u8],
    value: &[u8],
    mod_revision: i64,
) -> Option<Result<Stored, StoreError>> {
    let key = std::str::from_utf8(key).ok()?;
    keys.registration_id(key)?;
    Some(record::decode(key, value).map(|(reg, meta)| Stored {
        reg,
        meta,
        mod_revision,
    }))
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Each registration's last revision, for the compares of the next decision about it.
pub type Revisions = HashMap<RegistrationId, i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_last_byte_plus_one() {
        assert_eq!(prefix_end("/p/reg/"), b"/p/reg0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
