//! The sled store behind the Registry: one record per registration, a persisted id counter,
//! and the flush that makes a batch of writes durable (group commit, driven by the actor).
//!
//! Called by the Registry actor (the only writer) and by `rd-dump` (read-only use). Layout:
//! - tree `registrations`: key = id as u64 big-endian (so sled's order is id order),
//!   value = JSON `{"v":2,"reg":{...}}`. Version 2 added the DTLS `identity` (absent for a
//!   plain registration); version-1 records load as plain registrations. Unknown versions are
//!   refused, never dropped.
//! - default tree, key `next_id`: the next id to hand out (u64 big-endian). Ids are never
//!   reused, even for ids whose registration was deleted before a restart.
//! - default tree, key `ack_seq`: the sequence number of the latest flush batch (u64
//!   big-endian), compared at open with the acknowledged mark kept outside sled
//!   (`watermark`), so that a database that lost its tail says so.
//!
//! Nothing here ever deletes a database or a record it cannot read.

use std::future::Future;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::model::{Registration, RegistrationId};
use super::watermark::{self, Mark, MarkWriter, Recorded, Shortfall};

/// The value encoding version written by this build.
pub(crate) const FORMAT_VERSION: u64 = 2;
/// Older encodings this build still reads.
const READABLE_VERSIONS: [u64; 2] = [1, 2];

const REGISTRATIONS_TREE: &str = "registrations";
const NEXT_ID_KEY: &[u8] = b"next_id";
const ACK_SEQ_KEY: &[u8] = b"ack_seq";
/// sled's own message when `flock` on the database file fails (sled 0.34.7 `Config::try_lock`,
/// which wraps the error as `io::ErrorKind::Other`, so the kind cannot be used).
const LOCK_FAILURE_MESSAGE: &str = "could not acquire lock";
/// The file sled 0.34 keeps its log in; its presence means a database exists in a directory.
const SLED_DATA_FILE: &str = "db";
/// Initial buffer of an encoded record: room for a registration of a few links.
const ENCODE_CAPACITY: usize = 512;

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: u64,
    reg: &'a Registration,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    v: u64,
    reg: Registration,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

/// What [`Store::load_all`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every decodable registration, in id order.
    pub registrations: Vec<Registration>,
    /// Records that could not be decoded; logged and left on disk untouched.
    pub skipped: usize,
}

/// An open registry database.
pub struct Store {
    db: sled::Db,
    registrations: sled::Tree,
    path: PathBuf,
    next_id: u64,
    /// The latest flush batch's sequence number (see [`Self::seal_batch`]).
    seq: u64,
    mark: MarkWriter,
    /// Set at open when the acknowledged mark is ahead of what sled recovered.
    shortfall: Option<Shortfall>,
}

impl Store {
    /// Open (or create) the database in `path` with a page cache of `cache_mb` MiB.
    pub fn open(path: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_mb.saturating_mul(1024 * 1024))
            .open()
            .map_err(|e| open_error(path, e))?;
        let registrations = db
            .open_tree(REGISTRATIONS_TREE)
            .map_err(|e| open_error(path, e))?;
        let mut store = Store {
            db,
            registrations,
            path: path.to_path_buf(),
            next_id: 1,
            seq: 0,
            mark: MarkWriter::new(path),
            shortfall: None,
        };
        store.next_id = store.recover_next_id()?;
        store.seq = match store.db.get(ACK_SEQ_KEY)? {
            Some(bytes) => decode_u64(&bytes).unwrap_or(0),
            None => 0,
        };
        let recovered = Mark {
            seq: store.seq,
            next_id: store.next_id,
        };
        match watermark::read(path) {
            Recorded::Mark(acknowledged) => {
                store.shortfall = Shortfall::between(acknowledged, recovered);
            }
            Recorded::Missing => {}
            Recorded::Unreadable => log::warn!(
                "registry database {}: the acknowledged mark ({}) is unreadable; cannot check the database for a lost tail",
                path.display(),
                watermark::MARK_FILE
            ),
        }
        Ok(store)
    }

    /// Open an existing database only: a missing directory or one without a database gives
    /// [`StoreError::NotFound`] instead of creating one (for `rd-dump`).
    pub fn open_existing(path: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        if !path.join(SLED_DATA_FILE).is_file() {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Store::open(path, cache_mb)
    }

    /// The database itself, for the platform link's outbox tree (a shared handle).
    pub(crate) fn database(&self) -> sled::Db {
        self.db.clone()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this database holds less than it had acknowledged when it was last written
    /// (found at open; see `watermark`).
    pub fn shortfall(&self) -> Option<Shortfall> {
        self.shortfall
    }

    /// Number the writes since the previous batch as one flush batch: the number is written
    /// to sled with them, so the flush that makes them durable makes it durable too. Returns
    /// the mark to [`Self::record_acknowledged`] once that flush has completed.
    pub(crate) fn seal_batch(&mut self) -> Result<Mark, StoreError> {
        self.seq = self.seq.saturating_add(1);
        self.db.insert(ACK_SEQ_KEY, &self.seq.to_be_bytes())?;
        Ok(Mark {
            seq: self.seq,
            next_id: self.next_id,
        })
    }

    /// The flush covering `mark`'s batch completed: record it outside sled, before the batch
    /// is answered. A failure only weakens the check at the next open, so it is returned for
    /// logging, never turned into a failed write.
    pub(crate) fn record_acknowledged(&mut self, mark: Mark) -> std::io::Result<()> {
        self.mark.write(mark)
    }

    /// Every record, decoded. An undecodable record is logged, counted and skipped (one bad
    /// record must not keep the gateway from starting); a record of an unknown format version
    /// stops the load, since it means a newer build wrote this database.
    pub fn load_all(&self) -> Result<Loaded, StoreError> {
        let mut registrations = Vec::new();
        let skipped = self.load_each(|reg| registrations.push(reg))?;
        Ok(Loaded {
            registrations,
            skipped,
        })
    }

    /// [`Self::load_all`] one record at a time, in id order: `f` gets each decodable
    /// registration; returns how many were skipped. The gateway loads this way so that each
    /// record's temporary buffers are freed before the next one is decoded: collecting 100,000
    /// first left them scattered between the registrations kept, ~80 MB of RSS that the
    /// allocator could not give back.
    pub(crate) fn load_each(&self, mut f: impl FnMut(Registration)) -> Result<usize, StoreError> {
        let mut skipped = 0;
        for item in self.registrations.iter() {
            let (key, value) = item?;
            let key_text = describe_key(&key);
            match decode(&key_text, &value) {
                Ok(reg) => f(reg),
                Err(e @ StoreError::UnsupportedVersion { .. }) => return Err(e),
                Err(e) => {
                    log::error!(
                        "registry database {}: skipping record: {e}",
                        self.path.display()
                    );
                    skipped += 1;
                }
            }
        }
        Ok(skipped)
    }

    /// A fresh id, never handed out before in this database. The counter is written before
    /// the registration that uses it, so a flush that makes the registration durable also
    /// makes the counter durable (sled recovers a prefix of its log).
    pub(crate) fn allocate_id(&mut self) -> Result<RegistrationId, StoreError> {
        let id = self.next_id;
        // A corrupt counter near u64::MAX must not wrap to 0 and hand out ids in use.
        self.next_id = id.checked_add(1).ok_or(StoreError::IdsExhausted)?;
        self.db
            .insert(NEXT_ID_KEY, &self.next_id.to_be_bytes())
            .map_err(StoreError::Io)?;
        Ok(RegistrationId(id))
    }

    /// Write a registration (not yet durable: see [`Self::flush_async`]).
    pub(crate) fn put(&self, reg: &Registration) -> Result<(), StoreError> {
        let value = encode(reg)?;
        self.registrations.insert(reg.id.0.to_be_bytes(), value)?;
        Ok(())
    }

    /// Delete a registration (not yet durable).
    pub(crate) fn remove(&self, id: RegistrationId) -> Result<(), StoreError> {
        self.registrations.remove(id.0.to_be_bytes())?;
        Ok(())
    }

    /// Make every write so far durable, blocking the calling thread.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Make every write issued before this call durable, on sled's I/O threads. The future
    /// owns a handle to the database, so the actor can await it while it keeps writing.
    pub(crate) fn flush_async(
        &self,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let db = self.db.clone();
        async move {
            db.flush_async().await?;
            Ok(())
        }
    }

    fn recover_next_id(&self) -> Result<u64, StoreError> {
        let stored = match self.db.get(NEXT_ID_KEY)? {
            Some(bytes) => decode_u64(&bytes).unwrap_or(1),
            None => 1,
        };
        // Belt and braces: never below a stored id, even if the counter were lost.
        let above_last = match self.registrations.last()? {
            Some((key, _)) => decode_u64(&key).map_or(1, |id| id.saturating_add(1)),
            None => 1,
        };
        Ok(stored.max(above_last))
    }
}

/// The stored form of a registration.
pub(crate) fn encode(reg: &Registration) -> Result<Vec<u8>, StoreError> {
    // Sized for a typical record (a few links: a few hundred bytes) so it is written without
    // regrowing; the bytes are the same as `to_vec`'s, so the format is unchanged.
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    serde_json::to_writer(
        &mut out,
        &EnvelopeOut {
            v: FORMAT_VERSION,
            reg,
        },
    )
    .map_err(StoreError::Encode)?;
    Ok(out)
}

/// Decode a stored record; `key` only names it in errors.
pub(crate) fn decode(key: &str, value: &[u8]) -> Result<Registration, StoreError> {
    match serde_json::from_slice::<EnvelopeIn>(value) {
        Ok(envelope) if READABLE_VERSIONS.contains(&envelope.v) => Ok(envelope.reg),
        Ok(envelope) => Err(StoreError::UnsupportedVersion {
            key: key.to_owned(),
            version: envelope.v,
        }),
        Err(source) => match serde_json::from_slice::<VersionOnly>(value) {
            Ok(VersionOnly { v }) if !READABLE_VERSIONS.contains(&v) => {
                Err(StoreError::UnsupportedVersion {
                    key: key.to_owned(),
                    version: v,
                })
            }
            _ => Err(StoreError::Decode {
                key: key.to_owned(),
                source,
            }),
        },
    }
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

fn describe_key(key: &[u8]) -> String {
    match decode_u64(key) {
        Some(id) => format!("registration {id}"),
        None => format!("key {key:02x?}"),
    }
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.to_string().contains(LOCK_FAILURE_MESSAGE) => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        _ => StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Test-only access to raw records, to plant bad data.
#[cfg(test)]
impl Store {
    fn put_raw(&self, id: u64, value: &[u8]) {
        self.registrations.insert(id.to_be_bytes(), value).unwrap();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::registry::model::{BaseOrigin, EndpointName, Status};
    use link_format::Link;

    /// Reopen a store this process just closed. sled releases its file lock from a background
    /// thread shortly after the last `Db` handle drops, so an immediate in-process reopen can
    /// still find it locked (a restarted process cannot: the lock dies with the old one).
    fn reopen(path: &Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Store::open(path, 4) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
    }

    pub(crate) fn sample(id: u64) -> Registration {
        Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(id),
            ep: EndpointName::new(format!("ep{id}")).unwrap(),
            d: None,
            base: "coap://127.0.0.1:9".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 60,
            attrs: vec![],
            links: vec![Link::new("/t").with("rt", Some("temperature"))].into(),
            status: Status::Connected,
            registered_at_ms: 1,
            updated_at_ms: 2,
            expires_at_ms: 3,
            source: "127.0.0.1:9".parse().unwrap(),
        }
    }

    #[test]
    fn encoding_is_versioned_and_round_trips() {
        let reg = sample(5);
        let bytes = encode(&reg).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"v\":2,\"reg\":{"), "{text}");
        assert!(
            !text.contains("identity"),
            "a plain registration stores no identity"
        );
        assert_eq!(decode("k", &bytes).unwrap(), reg);
        let mut secured = sample(6);
        secured.identity = Some("node1".into());
        let bytes = encode(&secured).unwrap();
        assert_eq!(decode("k", &bytes).unwrap(), secured);
    }

    #[test]
    fn format_1_records_load_as_plain_registrations() {
        let reg = sample(5);
        let v1 = serde_json::to_vec(&serde_json::json!({"v": 1, "reg": reg})).unwrap();
        let loaded = decode("k", &v1).unwrap();
        assert_eq!(loaded, reg);
        assert_eq!(loaded.identity, None);
    }

    #[test]
    fn unknown_versions_are_refused_not_dropped() {
        let reg = sample(5);
        let v9 = serde_json::to_vec(&serde_json::json!({"v": 9, "reg": reg})).unwrap();
        assert!(matches!(
            decode("k", &v9),
            Err(StoreError::UnsupportedVersion { version: 9, .. })
        ));
        let v3_other_shape = br#"{"v":3,"something":"else"}"#;
        assert!(matches!(
            decode("k", v3_other_shape),
            Err(StoreError::UnsupportedVersion { version: 3, .. })
        ));
        assert!(matches!(
            decode("k", b"{\"v\":1,\"reg\":{}}"),
            Err(StoreError::Decode { .. })
        ));
    }

    #[test]
    fn records_survive_reopen_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(dir.path(), 4).unwrap();
            let a = store.allocate_id().unwrap();
            let b = store.allocate_id().unwrap();
            assert_eq!((a.0, b.0), (1, 2));
            store.put(&sample(a.0)).unwrap();
            store.put(&sample(b.0)).unwrap();
            store.remove(b).unwrap();
            store.flush().unwrap();
        }
        let mut store = reopen(dir.path());
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.registrations, vec![sample(1)]);
        assert_eq!(loaded.skipped, 0);
        // Id 2 was deleted before the restart; it must still not come back.
        assert_eq!(store.allocate_id().unwrap().0, 3);
    }

    #[test]
    fn an_undecodable_record_is_skipped_counted_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 4).unwrap();
            store.put(&sample(1)).unwrap();
            store.put_raw(2, b"not json");
            store.flush().unwrap();
        }
        let mut store = reopen(dir.path());
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.registrations.len(), 1);
        assert_eq!(loaded.skipped, 1);
        assert!(store
            .registrations
            .get(2u64.to_be_bytes())
            .unwrap()
            .is_some());
        assert_eq!(
            store.allocate_id().unwrap().0,
            3,
            "the bad record's id stays taken"
        );
    }

    #[test]
    fn a_database_that_lost_acknowledged_batches_says_so_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(dir.path(), 4).unwrap();
            let id = store.allocate_id().unwrap();
            store.put(&sample(id.0)).unwrap();
            let mark = store.seal_batch().unwrap();
            store.flush().unwrap();
            store.record_acknowledged(mark).unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(store.shortfall(), None, "a whole database");
        drop(store);
        // The mark of a later acknowledged batch that the database does not hold (what a cut
        // log looks like): two more batches, two more registrations.
        MarkWriter::new(dir.path())
            .write(Mark { seq: 3, next_id: 4 })
            .unwrap();
        let store = reopen(dir.path());
        let lost = store.shortfall().expect("the lost tail is seen");
        assert_eq!(lost.recovered, Mark { seq: 1, next_id: 2 });
        assert_eq!(lost.acknowledged, Mark { seq: 3, next_id: 4 });
    }

    #[test]
    fn an_unknown_version_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 4).unwrap();
        store.put_raw(1, br#"{"v":9,"reg":{}}"#);
        assert!(matches!(
            store.load_all(),
            Err(StoreError::UnsupportedVersion { version: 9, .. })
        ));
    }

    #[test]
    fn a_second_open_reports_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path(), 4).unwrap();
        match Store::open(dir.path(), 4) {
            Err(StoreError::Locked { path }) => assert_eq!(path, dir.path()),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, the database opened twice"),
        }
    }

    #[test]
    fn open_existing_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            Store::open_existing(&missing, 4),
            Err(StoreError::NotFound { .. })
        ));
        assert!(!missing.exists());
        assert!(matches!(
            Store::open_existing(dir.path(), 4),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unopenable_path_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file, 4)
            .err()
            .expect("a file is not a database directory");
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("plain-file"), "{err}");
    }
}
