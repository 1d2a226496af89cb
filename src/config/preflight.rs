//! What `--check` verifies beyond the YAML: that the data directory can be used. The database
//! itself is not opened (sled takes an exclusive lock, and `--check` must work next to a
//! running gateway, e.g. before a systemd restart); instead a probe file is created and removed
//! where the database lives, or where its directory would be created.

use std::path::{Path, PathBuf};

/// Name of the probe file; removed again at once.
const PROBE: &str = ".coap-gateway-check";

/// Whether `data_dir` exists as a writable directory, or can be created: its nearest existing
/// ancestor must be a writable directory. Creates nothing that stays. The error says why, with
/// the path.
pub(super) fn check_data_dir(data_dir: &Path) -> Result<(), String> {
    if data_dir.exists() {
        if !data_dir.is_dir() {
            return Err(format!("{} is not a directory", data_dir.display()));
        }
        return probe_writable(data_dir);
    }
    let ancestor = nearest_existing_ancestor(data_dir)
        .ok_or_else(|| format!("{} has no existing parent", data_dir.display()))?;
    if !ancestor.is_dir() {
        return Err(format!(
            "{} cannot be created: {} is not a directory",
            data_dir.display(),
            ancestor.display()
        ));
    }
    probe_writable(&ancestor).map_err(|e| format!("{} cannot be created: {e}", data_dir.display()))
}

/// The longest prefix of `path` that exists (`.` for a relative path whose first part is new).
fn nearest_existing_ancestor(path: &Path) -> Option<PathBuf> {
    // Bounded by the number of path components.
    let mut candidate = path.parent();
    while let Some(dir) = candidate {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if dir.exists() {
            return Some(dir.to_path_buf());
        }
        candidate = dir.parent();
    }
    None
}

/// Create and remove a probe file in `dir`. Named after this process, so two `--check` runs
/// at once (systemd's ExecStartPre and an operator) do not collide.
fn probe_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!("{PROBE}.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    std::fs::remove_file(&probe)
        .map_err(|e| format!("cannot remove the probe file {}: {e}", probe.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_or_creatable_directory_passes_and_nothing_stays() {
        let tmp = tempfile::tempdir().unwrap();
        check_data_dir(tmp.path()).unwrap();
        let new = tmp.path().join("a/b/data");
        check_data_dir(&new).unwrap();
        assert!(!new.exists() && !tmp.path().join("a").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn unusable_places_are_refused_with_the_path() {
        let err = check_data_dir(Path::new("/proc/nope")).unwrap_err();
        assert!(err.contains("/proc/nope"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_data_dir(&file).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let err = check_data_dir(&file.join("data")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
    }
}
