//! Where the built `device-sim` executable is, for the tests and benchmarks of other packages
//! (the gateway's) that spawn it. Cargo tells only a package's own tests and benchmarks where its
//! binaries are (`CARGO_BIN_EXE_<name>`), building them first; so [`path`] does both: it has
//! cargo build `device-sim` (a quick no-op when it is up to date) in the calling test's profile
//! and target directory, then returns the executable's path. A test never runs a stale
//! simulator. Host builds only (`<target>/<profile>/deps/`, no `--target` triple directory).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use thiserror::Error;

/// Why the `device-sim` executable could not be provided. Strings, not sources, so that one
/// failure can be cached and handed to every caller in the process.
#[derive(Debug, Clone, Error)]
pub enum BinaryError {
    #[error("cannot tell where the running executable is: {0}")]
    CurrentExe(String),
    #[error("{0} is not in a cargo target directory (<target>/<profile>/deps/)")]
    Layout(PathBuf),
    #[error("cannot run cargo: {0}")]
    Spawn(String),
    #[error("cargo build of device-sim failed ({status}): {stderr}")]
    Build { status: String, stderr: String },
}

/// The caller's target directory and the cargo profile whose output directory it runs from.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    target_dir: PathBuf,
    profile_dir: PathBuf,
    profile: String,
}

/// A test or benchmark executable lives in `<target>/<profile dir>/deps/`; the `dev` and
/// `test` profiles write to `debug`, `release` and `bench` to `release`, a custom profile to
/// its own name.
fn layout(exe: &Path) -> Result<Layout, BinaryError> {
    let bad = || BinaryError::Layout(exe.to_path_buf());
    let deps = exe.parent().ok_or_else(bad)?;
    if deps.file_name() != Some("deps".as_ref()) {
        return Err(bad());
    }
    let profile_dir = deps.parent().ok_or_else(bad)?;
    let target_dir = profile_dir.parent().ok_or_else(bad)?;
    let dir_name = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(bad)?;
    let profile = match dir_name {
        "debug" => "dev",
        other => other,
    };
    Ok(Layout {
        target_dir: target_dir.to_path_buf(),
        profile_dir: profile_dir.to_path_buf(),
        profile: profile.to_string(),
    })
}

fn build() -> Result<PathBuf, BinaryError> {
    let exe = std::env::current_exe().map_err(|e| BinaryError::CurrentExe(e.to_string()))?;
    let at = layout(&exe)?;
    // The cargo running the tests (set for test processes), else the one that built this crate.
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(OsString::from))
        .unwrap_or_else(|| OsString::from("cargo"));
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--bin", "device-sim", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--profile")
        .arg(&at.profile)
        .arg("--target-dir")
        .arg(&at.target_dir)
        .output()
        .map_err(|e| BinaryError::Spawn(e.to_string()))?;
    if !out.status.success() {
        return Err(BinaryError::Build {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(at
        .profile_dir
        .join(format!("device-sim{}", std::env::consts::EXE_SUFFIX)))
}

/// The up-to-date `device-sim` executable for the calling test or benchmark, built on the first
/// call in the process (later calls return the first answer).
pub fn path() -> Result<PathBuf, BinaryError> {
    static BUILT: OnceLock<Result<PathBuf, BinaryError>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_directories_map_to_profiles() {
        let at = layout(Path::new("/w/target/debug/deps/device_sim-0123")).unwrap();
        assert_eq!(
            at,
            Layout {
                target_dir: PathBuf::from("/w/target"),
                profile_dir: PathBuf::from("/w/target/debug"),
                profile: "dev".into(),
            }
        );
        let at = layout(Path::new("/w/target/release/deps/soak-77")).unwrap();
        assert_eq!(at.profile, "release");
        assert_eq!(at.profile_dir, PathBuf::from("/w/target/release"));
        let at = layout(Path::new("/t/fast/deps/x")).unwrap();
        assert_eq!(at.profile, "fast");
    }

    #[test]
    fn executables_outside_deps_are_refused() {
        assert!(matches!(
            layout(Path::new("/usr/bin/device-sim")),
            Err(BinaryError::Layout(_))
        ));
        assert!(layout(Path::new("deps")).is_err());
    }
}
