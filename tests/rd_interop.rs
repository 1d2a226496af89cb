//! Interop: the RD driven by two CoAP implementations none of us wrote, as subprocesses —
//! libcoap's `coap-client-notls` (Debian `libcoap3-bin`) and aiocoap's `aiocoap-client`
//! (PyPI `aiocoap`) — for register, update, lookup and delete (issue 4 "What it must show").
//! Each tool is guarded by `require_tool` (a failure in CI, a skip elsewhere); every
//! subprocess is killed after a bound.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::coap_peer::*;
use common::{require_tool, Gateway};

const LIMIT: Duration = Duration::from_secs(15);
const LIBCOAP: &str = "coap-client-notls";
const AIOCOAP: &str = "aiocoap-client";

// ---- libcoap ---------------------------------------------------------------------------

/// A currently free UDP port on 127.0.0.1, for `coap-client -p` (so we know the source port
/// the RD will derive the base from).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// What `coap-client -v 6` printed about the response: its code and Location-Path segments.
/// Its PDU lines look like
/// `v:1 t:ACK c:2.01 i:d450 {01} [ Location-Path:reg, Location-Path:2 ]`.
fn libcoap_response(out: &str) -> Option<(String, Vec<String>)> {
    let mut found = None;
    for line in out.lines().filter(|l| l.trim_start().starts_with("v:1")) {
        let Some(code) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("c:"))
            .filter(|c| c.len() == 4 && c.as_bytes()[1] == b'.' && c != &"0.00")
        else {
            continue;
        };
        let opts = line
            .split_once('[')
            .and_then(|(_, r)| r.rsplit_once(']'))
            .map(|(o, _)| o)
            .unwrap_or("");
        let locs = opts
            .split(", ")
            .filter_map(|o| o.trim().strip_prefix("Location-Path:"))
            .map(str::to_string)
            .collect();
        found = Some((code.to_string(), locs));
    }
    found
}

fn libcoap(args: &[&str], uri: &str) -> Ran {
    let mut cmd = Command::new(LIBCOAP);
    cmd.args(["-B", "5"]).args(args).arg(uri);
    run_bounded(&mut cmd, LIMIT)
}

#[test]
fn libcoap_client_registers_updates_looks_up_and_deletes() {
    if !require_tool(LIBCOAP) {
        return;
    }
    let gw = Gateway::start();
    let rd: SocketAddr = gw.addr();
    let port = free_port();
    let port_s = port.to_string();

    let reg = libcoap(
        &[
            "-a",
            "127.0.0.1",
            "-p",
            &port_s,
            "-v",
            "6",
            "-m",
            "post",
            "-t",
            "40",
            "-e",
            "</sensors/temp>;rt=\"temperature\";if=\"sensor\"",
        ],
        &format!("coap://{rd}/rd?ep=libcoap1&lt=300"),
    );
    let (code, loc) =
        libcoap_response(&reg.stdout).unwrap_or_else(|| panic!("no response seen: {reg:?}"));
    assert_eq!(code, "2.01", "{reg:?}");
    assert!(!loc.is_empty(), "no Location-Path: {reg:?}");
    let loc = format!("/{}", loc.join("/"));

    let res = libcoap(&[], &format!("coap://{rd}/rd-lookup/res?ep=libcoap1"));
    let links = parse_links(res.stdout.trim()).expect("link-format from lookup");
    let base = format!("coap://127.0.0.1:{port}");
    assert_eq!(
        link_set(&links),
        link_set(&[link(
            &format!("{base}/sensors/temp"),
            &[("rt", "temperature"), ("if", "sensor")]
        )]),
        "{res:?}"
    );
    let eps = libcoap(&[], &format!("coap://{rd}/rd-lookup/ep?ep=libcoap1"));
    let eps = parse_links(eps.stdout.trim()).expect("link-format");
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].get("base"), Some(base.as_str()));
    assert!(eps[0].target.ends_with(&loc));

    let upd = libcoap(
        &["-a", "127.0.0.1", "-p", &port_s, "-v", "6", "-m", "post"],
        &format!("coap://{rd}{loc}?lt=600"),
    );
    assert_eq!(
        libcoap_response(&upd.stdout).map(|r| r.0).as_deref(),
        Some("2.04"),
        "{upd:?}"
    );

    let del = libcoap(&["-v", "6", "-m", "delete"], &format!("coap://{rd}{loc}"));
    assert_eq!(
        libcoap_response(&del.stdout).map(|r| r.0).as_deref(),
        Some("2.02"),
        "{del:?}"
    );
    let again = libcoap(&["-v", "6", "-m", "delete"], &format!("coap://{rd}{loc}"));
    assert_eq!(
        libcoap_response(&again.stdout).map(|r| r.0).as_deref(),
        Some("4.04"),
        "{again:?}"
    );

    let empty = libcoap(&[], &format!("coap://{rd}/rd-lookup/res?ep=libcoap1"));
    assert!(empty.stdout.trim().is_empty(), "{empty:?}");
    assert!(
        !empty.stderr.contains("4.04"),
        "empty lookup must be 2.05: {empty:?}"
    );
}

#[test]
fn libcoap_client_fetches_a_large_lookup_block_wise() {
    if !require_tool(LIBCOAP) {
        return;
    }
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    for i in 0..40 {
        register(
            &p,
            &format!("ep=big-{i:02}"),
            &format!("</s/{i}>;rt=\"big\";title=\"padding padding padding padding\""),
        );
    }
    let out = libcoap(
        &["-b", "64"],
        &format!("coap://{}/rd-lookup/res?rt=big", gw.addr()),
    );
    let links = parse_links(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(links.len(), 40, "{out:?}");
}

#[test]
fn libcoap_client_discovers_the_rd() {
    if !require_tool(LIBCOAP) {
        return;
    }
    let gw = Gateway::start();
    let out = libcoap(
        &[],
        &format!("coap://{}/.well-known/core?rt=core.rd*", gw.addr()),
    );
    let links = parse_links(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let targets: Vec<&str> = links.iter().map(|l| l.target.as_str()).collect();
    for t in ["/rd", "/rd-lookup/ep", "/rd-lookup/res"] {
        assert!(targets.contains(&t), "{t} missing: {out:?}");
    }
}

// ---- aiocoap ---------------------------------------------------------------------------

fn aiocoap(args: &[&str], uri: &str) -> Ran {
    let mut cmd = Command::new(AIOCOAP);
    cmd.args(["--no-pretty-print", "--no-color"])
        .args(args)
        .arg(uri);
    run_bounded(&mut cmd, LIMIT)
}

/// aiocoap-client reports a created resource on stderr as
/// `Location options indicate new resource: /reg/1`.
fn aiocoap_location(r: &Ran) -> Option<String> {
    r.stderr
        .lines()
        .chain(r.stdout.lines())
        .find_map(|l| l.split("indicate new resource:").nth(1))
        .map(|s| s.trim().to_string())
}

#[test]
fn aiocoap_client_registers_updates_looks_up_and_deletes() {
    if !require_tool(AIOCOAP) {
        return;
    }
    let gw = Gateway::start();
    let rd = gw.addr();
    let reg = aiocoap(
        &[
            "-m",
            "POST",
            "--content-format",
            "application/link-format",
            "--payload",
            "</sensors/temp>;rt=\"temperature\";if=\"sensor\",</sensors/light>;rt=\"light\"",
        ],
        &format!("coap://{rd}/rd?ep=aiocoap1&base=coap://127.0.0.1:61616"),
    );
    assert_eq!(reg.status, Some(0), "{reg:?}");
    let loc = aiocoap_location(&reg).unwrap_or_else(|| panic!("no location reported: {reg:?}"));

    let res = aiocoap(&[], &format!("coap://{rd}/rd-lookup/res?ep=aiocoap1"));
    assert_eq!(res.status, Some(0), "{res:?}");
    let links = parse_links(res.stdout.trim()).expect("link-format");
    assert_eq!(
        link_set(&links),
        link_set(&[
            link(
                "coap://127.0.0.1:61616/sensors/temp",
                &[("rt", "temperature"), ("if", "sensor")]
            ),
            link("coap://127.0.0.1:61616/sensors/light", &[("rt", "light")]),
        ]),
        "{res:?}"
    );

    let upd = aiocoap(&["-m", "POST"], &format!("coap://{rd}{loc}?lt=600&foo=bar"));
    assert_eq!(upd.status, Some(0), "{upd:?}");
    let eps = aiocoap(&[], &format!("coap://{rd}/rd-lookup/ep?foo=bar"));
    let eps = parse_links(eps.stdout.trim()).expect("link-format");
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].get("ep"), Some("aiocoap1"));

    let del = aiocoap(&["-m", "DELETE"], &format!("coap://{rd}{loc}"));
    assert_eq!(del.status, Some(0), "{del:?}");
    let again = aiocoap(&["-m", "DELETE"], &format!("coap://{rd}{loc}"));
    assert_ne!(again.status, Some(0), "{again:?}");
    assert!(again.stderr.contains("4.04"), "{again:?}");

    let empty = aiocoap(&[], &format!("coap://{rd}/rd-lookup/ep?ep=aiocoap1"));
    assert_eq!(
        empty.status,
        Some(0),
        "empty lookup must be 2.05: {empty:?}"
    );
    assert!(empty.stdout.trim().is_empty(), "{empty:?}");
}

#[test]
fn aiocoap_client_gets_4_00_for_missing_ep() {
    if !require_tool(AIOCOAP) {
        return;
    }
    let gw = Gateway::start();
    let r = aiocoap(
        &[
            "-m",
            "POST",
            "--content-format",
            "application/link-format",
            "--payload",
            "</a>",
        ],
        &format!("coap://{}/rd?lt=60", gw.addr()),
    );
    assert_ne!(r.status, Some(0), "{r:?}");
    assert!(r.stderr.contains("4.00"), "{r:?}");
}
