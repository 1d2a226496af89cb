//! What the Registry does after sled fails a write: sled 0.34 keeps the
//! first I/O error of a database and returns it from every later write and flush, so a full
//! disk used to disable writes until someone restarted the process, and nothing restarted it.
//!
//! Chosen: keep serving reads (lookups, the admin API) while writes fail, probe every
//! [`PROBE_EVERY`] whether the data directory accepts a [`PROBE_BYTES`] write with `fsync`,
//! and once it does, ask the gateway to stop and exit non-zero ([`AwaitStoreRestart`]) so
//! that the service manager (`Restart=on-failure`) starts it again on the database sled
//! recovers from disk.
//!
//! Why not reopen sled in place: everything acknowledged was flushed before its answer, so a
//! restart recovers all of it through sled's own recovery, the path every crash test covers.
//! An in-place reopen would have to make the in-memory index (which still holds the changes
//! of the failed batches, never acknowledged) agree with what the reopened database holds, a
//! new and untested path, and could only start once every handle to the failed database,
//! including sled's own threads and pending flushes, had let go of it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::Message;

/// How often the data directory is probed while writes fail.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The probe's size: two of sled's default 512 KiB log segments, room for sled to write again.
pub(crate) const PROBE_BYTES: usize = 1024 * 1024;
/// The probe file, in the data directory (sled ignores files it does not know).
const PROBE_FILE: &str = ".write-probe";

/// Resolves when the registry can only recover by a restart, with the reason to log. Sent
/// once by the gateway, which then stops and exits non-zero.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "String")]
pub(crate) struct AwaitStoreRestart;

/// Whether `dir` takes a [`PROBE_BYTES`] write that reaches the disk; the file is removed
/// again either way. Blocking: run it off the actor's thread.
pub(crate) fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let path = probe_path(dir);
    let result = write_probe(&path);
    // Best effort: a probe that could not be written may still have been created.
    let _ = std::fs::remove_file(&path);
    result
}

fn probe_path(dir: &Path) -> PathBuf {
    dir.join(PROBE_FILE)
}

fn write_probe(path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = [0u8; 64 * 1024];
    for _ in 0..PROBE_BYTES / chunk.len() {
        file.write_all(&chunk)?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        probe_writable(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(probe_writable(&dir.path().join("missing")).is_err());
    }
}
