//! `IdentityStore`: the identities in force, shared by every session and request handler, and
//! swapped whole when the file is re-read (SIGHUP). A reader takes an `Arc` of one reading and
//! keeps it for as long as it needs (a handshake, a request): a reload never changes a set
//! under someone's feet, and a bad file changes nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::identities::{Identities, IdentitiesError};

/// What a reload changed, identities by name (never keys), for the log and for the transport,
/// which closes the sessions of `removed` and `changed` identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReloadDiff {
    /// In the new file only, in its order.
    pub added: Vec<String>,
    /// In the old set only, in its order.
    pub removed: Vec<String>,
    /// In both, with a different key or different permissions (`endpoints`, `sector`), in the
    /// new file's order.
    pub changed: Vec<String>,
}

impl ReloadDiff {
    /// From `old` to `new`.
    pub(crate) fn between(old: &Identities, new: &Identities) -> ReloadDiff {
        let mut diff = ReloadDiff::default();
        for identity in new.identities() {
            if !old.contains(identity) {
                diff.added.push(identity.to_string());
            } else if !old.same_entry(new, identity) {
                diff.changed.push(identity.to_string());
            }
        }
        diff.removed = old
            .identities()
            .filter(|identity| !new.contains(identity))
            .map(str::to_string)
            .collect();
        diff
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// A cheap, clonable handle on the identities read from one file.
#[derive(Debug, Clone)]
pub(crate) struct IdentityStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Held only to clone or replace the `Arc`: never across I/O or a parse, so a reload does
    /// not stall handshakes, and nothing that can panic runs under it.
    current: RwLock<Arc<Identities>>,
}

impl IdentityStore {
    /// Read the file at `path` (the gateway builds its store from the set read at validation,
    /// `from_loaded`).
    #[cfg(test)]
    pub(crate) fn load(path: &Path) -> Result<IdentityStore, IdentitiesError> {
        let identities = Identities::load(path)?;
        Ok(IdentityStore::from_loaded(path, Arc::new(identities)))
    }

    /// A store on `identities`, already read from `path` (by the config's validation), which
    /// [`IdentityStore::reload`] reads again.
    pub(crate) fn from_loaded(path: &Path, identities: Arc<Identities>) -> IdentityStore {
        IdentityStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                current: RwLock::new(identities),
            }),
        }
    }

    /// The file this store reads.
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The identities in force now.
    pub(crate) fn current(&self) -> Arc<Identities> {
        // A poisoned lock still holds a whole `Arc`: only a clone or a swap ever ran under it.
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Read the file again. If it is good, it replaces the set in force and the difference is
    /// returned; if not, the set in force stays and the error says why.
    pub(crate) fn reload(&self) -> Result<ReloadDiff, IdentitiesError> {
        let new = Arc::new(Identities::load(&self.inner.path)?);
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Against the set replaced, not one read earlier: two reloads at once each report
        // what they changed.
        let diff = ReloadDiff::between(&current, &new);
        let old = std::mem::replace(&mut *current, new);
        drop(current);
        // The old set (and its keys, zeroed) goes when its last reader lets go, not under the lock.
        drop(old);
        Ok(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        // Written aside and renamed, as an operator should: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn reload_reports_added_removed_and_changed_identities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identities.yaml");
        write(
            &path,
            "identities:\n\
             - {identity: stays, psk_hex: \"01\"}\n\
             - {identity: rekeyed, psk_hex: \"02\"}\n\
             - {identity: widened, psk_hex: \"03\"}\n\
             - {identity: moved, psk_hex: \"04\", sector: a}\n\
             - {identity: leaves, psk_hex: \"05\"}\n",
        );
        let store = IdentityStore::load(&path).unwrap();
        let handle = store.clone();
        let before = store.current();
        assert_eq!(before.len(), 5);
        assert_eq!(store.path(), path);

        write(
            &path,
            "identities:\n\
             - {identity: joins, psk_hex: \"06\"}\n\
             - {identity: stays, psk_hex: \"01\"}\n\
             - {identity: rekeyed, psk_hex: \"12\"}\n\
             - {identity: widened, psk_hex: \"03\", endpoints: [widened, \"widened-*\"]}\n\
             - {identity: moved, psk_hex: \"04\", sector: b}\n",
        );
        let diff = store.reload().unwrap();
        assert_eq!(
            diff,
            ReloadDiff {
                added: vec!["joins".into()],
                removed: vec!["leaves".into()],
                changed: vec!["rekeyed".into(), "widened".into(), "moved".into()],
            }
        );
        // Every clone sees the new set; a reader holding the old one keeps it.
        assert_eq!(handle.current().psk(b"rekeyed"), Some(&[0x12][..]));
        assert!(handle.current().contains("joins") && !handle.current().contains("leaves"));
        assert_eq!(before.psk(b"rekeyed"), Some(&[0x02][..]));
        assert!(before.contains("leaves"));

        // The same file again: nothing changed.
        assert!(store.reload().unwrap().is_empty());
    }

    #[test]
    fn a_bad_file_keeps_the_set_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identities.yaml");
        write(&path, "identities:\n  - {identity: a, psk_hex: \"0a\"}\n");
        let store = IdentityStore::load(&path).unwrap();
        write(
            &path,
            "identities:\n  - {identity: a, psk_hex: \"0a\"}\n  - {identity: b, psk_hex: \"nothex\"}\n",
        );
        let e = store.reload().unwrap_err().to_string();
        assert!(e.contains("entry 2 (identity \"b\")"), "{e}");
        assert!(!e.contains("nothex"), "{e}");
        assert_eq!(store.current().len(), 1);
        assert_eq!(store.current().psk(b"a"), Some(&[0x0a][..]));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.reload(), Err(IdentitiesError::Read { .. })));
        assert!(store.current().contains("a"));
    }

    #[test]
    fn from_loaded_reloads_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identities.yaml");
        write(&path, "identities: []\n");
        let store = IdentityStore::from_loaded(&path, Arc::new(Identities::default()));
        write(&path, "identities:\n  - {identity: n}\n");
        let diff = store.reload().unwrap();
        assert_eq!(diff.added, ["n"]);
        assert!(store.current().contains("n"));
        assert_eq!(store.current().psk(b"n"), None);
    }
}
