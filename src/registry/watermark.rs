//! The acknowledged high-water mark: what the store has acknowledged, kept
//! outside sled's log so that a database that lost its tail can be told from one that is whole.
//!
//! sled recovers the longest valid prefix of its log. A log cut short (a truncated file, a
//! restore from an older copy) therefore recovers an older but consistent state, counters
//! included, and nothing inside it can tell. So each flush batch carries a sequence number
//! in sled (key `ack_seq`), and once the flush has completed, before any reply, the batch's
//! sequence and id counter are written to the file `acknowledged` next to sled's. At open, a
//! mark above what sled recovered means acknowledged changes are missing.
//!
//! The file is written in place without its own `fsync` (that would double the cost of every
//! group commit): it survives a process crash through the page cache. After a power loss it
//! can only be older than sled's state, which was synced first, so it never raises a false
//! alarm; at worst it misses a loss. A torn or missing file means "cannot tell", not "lost".

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The mark's file, in the database directory (sled ignores files it does not know).
pub(crate) const MARK_FILE: &str = "acknowledged";
const MARK_LEN: usize = 24;
const CHECK_SALT: u64 = 0x6163_6b6e_6f77_6c65;

/// A point in the store's history: the flush batch and the next registration id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub next_id: u64,
}

impl Mark {
    fn encode(self) -> [u8; MARK_LEN] {
        let mut out = [0u8; MARK_LEN];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.next_id.to_be_bytes());
        out[16..].copy_from_slice(&check(self).to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Mark> {
        let bytes: &[u8; MARK_LEN] = bytes.try_into().ok()?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(w)
        };
        let mark = Mark {
            seq: word(0),
            next_id: word(8),
        };
        (word(16) == check(mark)).then_some(mark)
    }
}

fn check(mark: Mark) -> u64 {
    mark.seq.rotate_left(17) ^ mark.next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ CHECK_SALT
}

/// What the mark file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// No file: a new database, or one written before marks existed.
    Missing,
    /// Unreadable or torn: nothing can be concluded.
    Unreadable,
    Mark(Mark),
}

/// Read the mark in `dir`.
pub(crate) fn read(dir: &Path) -> Recorded {
    match std::fs::read(dir.join(MARK_FILE)) {
        Ok(bytes) => Mark::decode(&bytes).map_or(Recorded::Unreadable, Recorded::Mark),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Recorded::Missing,
        Err(_) => Recorded::Unreadable,
    }
}

/// The store recovered less than it had acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub acknowledged: Mark,
    pub recovered: Mark,
}

impl Shortfall {
    /// `Some` when `acknowledged` is ahead of `recovered`.
    pub(crate) fn between(acknowledged: Mark, recovered: Mark) -> Option<Shortfall> {
        (acknowledged.seq > recovered.seq || acknowledged.next_id > recovered.next_id).then_some(
            Shortfall {
                acknowledged,
                recovered,
            },
        )
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the registry database recovered up to commit {} but commit {} was acknowledged: the changes of the last {} acknowledged commits are lost (registrations, updates and removals; ids up to {} had been handed out); was the database truncated or restored from an older copy?",
            self.recovered.seq,
            self.acknowledged.seq,
            self.acknowledged.seq.saturating_sub(self.recovered.seq),
            self.acknowledged.next_id.saturating_sub(1)
        )
    }
}

/// Writes the mark in place, opening the file on first use (so that read-only tools never
/// create it).
#[derive(Debug)]
pub(crate) struct MarkWriter {
    path: PathBuf,
    file: Option<File>,
}

impl MarkWriter {
    pub(crate) fn new(dir: &Path) -> Self {
        MarkWriter {
            path: dir.join(MARK_FILE),
            file: None,
        }
    }

    /// Record `mark` as acknowledged (see the module docs: no `fsync`).
    pub(crate) fn write(&mut self, mark: Mark) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&self.path)?,
            ),
        };
        file.write_all_at(&mark.encode(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_a_torn_one_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Recorded::Missing);
        let mut writer = MarkWriter::new(dir.path());
        let mark = Mark {
            seq: 7,
            next_id: 300,
        };
        writer.write(mark).unwrap();
        assert_eq!(read(dir.path()), Recorded::Mark(mark));
        let mut bytes = std::fs::read(dir.path().join(MARK_FILE)).unwrap();
        bytes[3] ^= 1;
        std::fs::write(dir.path().join(MARK_FILE), &bytes).unwrap();
        assert_eq!(read(dir.path()), Recorded::Unreadable);
        std::fs::write(dir.path().join(MARK_FILE), &bytes[..10]).unwrap();
        assert_eq!(read(dir.path()), Recorded::Unreadable);
    }

    #[test]
    fn only_an_acknowledged_mark_ahead_of_the_recovered_one_is_a_shortfall() {
        let at = |seq, next_id| Mark { seq, next_id };
        assert_eq!(Shortfall::between(at(5, 10), at(5, 10)), None);
        assert_eq!(Shortfall::between(at(4, 10), at(5, 12)), None);
        let lost = Shortfall::between(at(9, 15), at(5, 10)).unwrap();
        let text = lost.to_string();
        assert!(text.contains("last 4 acknowledged commits"), "{text}");
        assert!(text.contains("ids up to 14"), "{text}");
    }
}
