//! Runs the real `rd-dump --json` on a stopped gateway's data directory and returns what the
//! store holds, by endpoint name, as device objects: the ground truth for durability tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use coap_gateway::device_object::{DeviceRecord, LinkObject, LinkRecord};

use super::coap_peer::run_bounded;

/// Every stored registration as its device object, keyed by `ep` (the tests use distinct names
/// without sectors).
pub fn stored_registrations(data_dir: &Path) -> BTreeMap<String, DeviceRecord> {
    let out = rd_dump_output(data_dir, &["--json"]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let dev: DeviceRecord =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad rd-dump line ({e}): {l}"));
            (dev.ep.clone(), dev)
        })
        .collect()
}

/// The link objects a device registering `link_format` links is shown with.
pub fn link_records(link_format: &str) -> Vec<LinkRecord> {
    link_format::parse(link_format)
        .expect("the test's links parse")
        .iter()
        .map(|l| {
            serde_json::from_value(serde_json::to_value(LinkObject(l)).expect("serializes"))
                .expect("reads back")
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
