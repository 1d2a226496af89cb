//! Where durable outbox entries live: the tree `platform_outbox` of the registry's sled
//! database (one database, one group-commit discipline), key = seq (u64 big-endian), value =
//! `codec` record; and, in the default tree, `platform_seq_mark`: a seq no frame has used
//! yet. The link reserves seqs in blocks of [`SEQ_BLOCK`] by writing the mark and flushing it
//! before it uses any seq of the block, so a restart (or a crash) continues above every seq
//! that may have reached the platform: nothing new is ever mistaken for a duplicate.
//! Undecodable records are logged and skipped, never deleted.

use std::future::Future;

use thiserror::Error;

use super::codec::{self, RecordError};
use super::ledger::Entry;

const OUTBOX_TREE: &str = "platform_outbox";
const SEQ_MARK_KEY: &[u8] = b"platform_seq_mark";
/// Seqs reserved per synchronous flush of the mark. Reservations end at multiples of it, so
/// the first new seq after a restart is one (`docs/platform-protocol.md`: a platform can tell
/// a restart's jump from frames given up).
pub(crate) const SEQ_BLOCK: u64 = 65_536;

/// The mark that reserves from `next_seq` to the end of its block: the next multiple of
/// [`SEQ_BLOCK`] above it.
pub(crate) fn block_end(next_seq: u64) -> u64 {
    (next_seq / SEQ_BLOCK)
        .saturating_add(1)
        .saturating_mul(SEQ_BLOCK)
}

/// An outbox store failure.
#[derive(Debug, Error)]
pub(crate) enum OutboxError {
    #[error("platform outbox store: {0}")]
    Sled(#[from] sled::Error),
}

/// The outbox tree in a sled database (a cheap handle: clones share the database).
#[derive(Clone)]
pub struct OutboxStore {
    db: sled::Db,
    tree: sled::Tree,
}

impl std::fmt::Debug for OutboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxStore")
    }
}

/// What [`OutboxStore::load`] found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub entries: Vec<Entry>,
    /// The first seq not reserved before (at least 1).
    pub next_seq: u64,
    pub skipped: Vec<RecordError>,
}

impl OutboxStore {
    /// The outbox in `db` (the registry's database).
    pub fn open(db: &sled::Db) -> Result<OutboxStore, sled::Error> {
        Ok(OutboxStore {
            db: db.clone(),
            tree: db.open_tree(OUTBOX_TREE)?,
        })
    }

    /// Every stored entry, in seq order, and the first seq free for use.
    pub(crate) fn load(&self) -> Result<Loaded, OutboxError> {
        let mut loaded = Loaded::default();
        for item in self.tree.iter() {
            let (key, value) = item?;
            match codec::decode(&key, &value) {
                Ok(r) => loaded.entries.push(Entry {
                    seq: r.seq,
                    class: r.class,
                    text: r.text,
                    durable: true,
                    born_ms: r.born_ms,
                }),
                Err(e) => loaded.skipped.push(e),
            }
        }
        let mark = match self.db.get(SEQ_MARK_KEY)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(1),
            None => 1,
        };
        let above_stored = loaded.entries.last().map_or(1, |e| e.seq.saturating_add(1));
        let next = mark.max(above_stored);
        // Seqs were used before: continue at a block boundary (a mark written before blocks
        // were aligned is rounded up too).
        loaded.next_seq = if next > 1 {
            next.div_ceil(SEQ_BLOCK).saturating_mul(SEQ_BLOCK)
        } else {
            1
        };
        Ok(loaded)
    }

    /// Reserve seqs below `upto`: written and flushed before any of them is used.
    pub(crate) fn reserve(&self, upto: u64) -> Result<(), OutboxError> {
        self.db.insert(SEQ_MARK_KEY, &upto.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Store an entry (durable after the next flush).
    pub(crate) fn put(&self, entry: &Entry) -> Result<(), OutboxError> {
        self.tree.insert(
            codec::key(entry.seq),
            codec::encode(entry.class, entry.born_ms, &entry.text),
        )?;
        Ok(())
    }

    /// Forget entries that are done (acknowledged or dropped). Not flushed on its own: a
    /// deletion lost in a crash only means a frame the platform drops as a duplicate.
    pub(crate) fn remove(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(&codec::key(*seq));
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Make every write issued before this call durable, on sled's threads.
    pub(crate) fn flush_async(&self) -> impl Future<Output = Result<(), OutboxError>> + 'static {
        let db = self.db.clone();
        async move {
            db.flush_async().await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::outbox::Class;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            class: Class::Result,
            text: format!("{{\"type\":\"command_result\",\"id\":\"{seq}\"}}"),
            durable: true,
            born_ms: seq,
        }
    }

    /// Reopen a database this process just closed. sled releases its file lock from a
    /// background thread shortly after the last handle drops, so an immediate reopen can still
    /// find it locked on a busy box (as `registry::store`'s tests found; a restarted process
    /// cannot: the lock dies with the old one).
    fn reopen(path: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match sled::open(path) {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn entries_and_the_mark_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let store = OutboxStore::open(&db).unwrap();
            assert_eq!(store.load().unwrap().next_seq, 1);
            store.reserve(SEQ_BLOCK).unwrap();
            for seq in [3, 1, 2] {
                store.put(&entry(seq)).unwrap();
            }
            store.remove(&[2]).unwrap();
            db.insert(b"x", b"y".as_ref()).unwrap();
            store.tree.insert(b"bad", b"record".as_ref()).unwrap();
            db.flush().unwrap();
        }
        let db = reopen(dir.path());
        let loaded = OutboxStore::open(&db).unwrap().load().unwrap();
        assert_eq!(loaded.entries, vec![entry(1), entry(3)]);
        assert_eq!(loaded.next_seq, SEQ_BLOCK);
        assert_eq!(loaded.skipped.len(), 1);
    }

    #[test]
    fn seqs_after_a_restart_start_at_a_block_boundary() {
        assert_eq!(block_end(1), SEQ_BLOCK);
        assert_eq!(block_end(SEQ_BLOCK - 1), SEQ_BLOCK);
        assert_eq!(block_end(SEQ_BLOCK), 2 * SEQ_BLOCK);
        assert_eq!(block_end(u64::MAX), u64::MAX);
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = OutboxStore::open(&db).unwrap();
        // An unaligned mark (an older gateway) and an entry above it: rounded up past both.
        store.reserve(70_000).unwrap();
        store.put(&entry(140_000)).unwrap();
        assert_eq!(store.load().unwrap().next_seq, 3 * SEQ_BLOCK);
    }
}
