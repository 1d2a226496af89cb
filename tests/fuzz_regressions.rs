//! Every committed fuzz corpus entry (`tests/fuzz_corpus/<target>/*`: distinct-coverage inputs
//! and every input that once crashed) runs through the same function its cargo-fuzz target
//! calls (`coap_gateway::fuzz_api`), in the normal suite: no panic, and the oracles inside
//! (decode/encode agreement, link-format serialize→parse round trip, rendered lookups that
//! parse to as many links as counted, platform commands that re-serialize to themselves) hold.

mod common;

use std::path::{Path, PathBuf};

use coap_gateway::fuzz_api;
use common::coap_peer::*;
use common::Gateway;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

fn run(target: &str, f: fn(&[u8])) {
    let files = corpus(target);
    for path in &files {
        let data = std::fs::read(path).expect("read corpus entry");
        let outcome = std::panic::catch_unwind(|| f(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} panicked (input {:?})",
            path.display(),
            String::from_utf8_lossy(&data)
        );
    }
    eprintln!("{target}: {} inputs", files.len());
}

#[test]
fn coap_datagram_corpus() {
    run("coap_datagram", fuzz_api::coap_datagram);
}

#[test]
fn link_format_corpus() {
    run("link_format", fuzz_api::link_format);
}

#[test]
fn rd_query_corpus() {
    run("rd_query", fuzz_api::rd_query);
}

#[test]
fn platform_frame_corpus() {
    run("platform_frame", fuzz_api::platform_frame);
}

/// The rd_query findings over real sockets: an extra attribute link-format cannot carry, or a
/// base with characters no URI holds, is refused with 4.00 and stored nowhere, so endpoint
/// lookups stay parseable for everyone.
#[test]
fn unrenderable_attributes_are_refused_over_coap() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=fine&et=x", "</a>");
    for bad in [
        ",v=1".as_bytes(),
        b"a;b=1",
        b"x=\x01",
        b"base=coap://h\x00/",
        b"base=coap://h/\"",
    ] {
        let req = Req::post("/rd?ep=bad")
            .links("</b>")
            .query_raw(bad.to_vec());
        let resp = p.request(&req);
        assert_eq!(
            resp.code,
            "4.00",
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            resp.text()
        );
    }
    let listed = lookup(&p, "/rd-lookup/ep");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].get("ep"), Some("fine"));
}
