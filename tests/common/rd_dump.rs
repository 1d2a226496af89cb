//! Runs the real `rd-dump --json` on a stopped gateway's data directory and returns what the
//! store holds, by endpoint name: the ground truth for durability tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use coap_gateway::registry::Registration;

use super::coap_peer::run_bounded;

/// Every stored registration, keyed by `ep` (the tests use distinct names without sectors).
pub fn stored_registrations(data_dir: &Path) -> BTreeMap<String, Registration> {
    let out = rd_dump_output(data_dir, &["--json"]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let reg: Registration =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad rd-dump line ({e}): {l}"));
            (reg.ep.to_string(), reg)
        })
        .collect()
}

/// rd-dump's stdout with `args` (asserting exit 0).
pub fn rd_dump_output(data_dir: &Path, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_rd-dump"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(args),
        Duration::from_secs(20),
    );
    assert_eq!(out.status, Some(0), "rd-dump failed: {out:?}");
    out.stdout
}
