//! Block1 uploads (RFC 7959 §2.3) to the RD from an independent client: libcoap's
//! `coap-client-notls -b 64 -f FILE` (issue 27). The RD's Block1 reassembly was only ever
//! driven by coap-lite-based peers.
//!
//! A 30-link registration of about 1.7 KiB goes up in 64-byte blocks; the resource lookup must
//! then return every link exactly once, resolved against the registering endpoint. A body over
//! `limits.max_payload_bytes` gets 4.13 and leaves no registration behind.

mod common;

use common::libcoap::{self, Message};
use common::{Gateway, GatewayOptions};

/// Small enough that a 60-link body is over it, large enough for the 30-link one.
const MAX_PAYLOAD: usize = 2048;
const BLOCK: usize = 64;

fn gateway() -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: format!("limits:\n  max_payload_bytes: {MAX_PAYLOAD}\n"),
        ..GatewayOptions::default()
    })
}

/// `count` links, each about 55 bytes, with distinct targets.
fn links(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("</sensors/temperature-{i:02}>;rt=\"t27.block1\";if=\"core.s\""))
        .collect()
}

/// POST `body` to `/rd?ep=EP` with libcoap in 64-byte Block1 blocks; returns its messages
/// (`-v 7`: at `-v 6` libcoap prints only the first block it sends).
fn post_blockwise(rd: std::net::SocketAddr, ep: &str, body: &str) -> (Vec<Message>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("links.wlnk");
    std::fs::write(&file, body).expect("write body");
    let url = format!("coap://{rd}/rd?ep={ep}&lt=300");
    let out = libcoap::run(
        60,
        &[
            "-v",
            "7",
            "-m",
            "post",
            "-b",
            &BLOCK.to_string(),
            "-t",
            "40",
            "-f",
            &file.display().to_string(),
            "-B",
            "30",
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (libcoap::parse(&text), text)
}

/// The body of a one-shot GET by libcoap (Block2 followed by libcoap itself).
fn get_body(url: &str) -> String {
    let out = libcoap::run(30, &["-B", "20", url]);
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn libcoap_registers_30_links_in_64_byte_block1_blocks() {
    if !common::require_tool(libcoap::TOOL) {
        return;
    }
    let gw = gateway();
    let rd = gw.addr();
    let sent = links(30);
    let body = sent.join(",");
    assert!(body.len() > 1500 && body.len() < MAX_PAYLOAD);
    let (msgs, text) = post_blockwise(rd, "lc-blk", &body);

    // libcoap really used Block1: one request per 64-byte block, NUMs 0.. in order.
    let blocks: Vec<&str> = msgs
        .iter()
        .filter(|m| m.code == "POST")
        .filter_map(|m| m.option("Block1"))
        .collect();
    let nums: Vec<u32> = blocks
        .iter()
        .filter_map(|b| b.split('/').next()?.parse().ok())
        .collect();
    let mut unique = nums.clone();
    unique.dedup();
    assert_eq!(
        unique,
        (0..body.len().div_ceil(BLOCK) as u32).collect::<Vec<_>>(),
        "Block1 NUMs of libcoap's requests: {blocks:?}\n{text}"
    );
    let codes: Vec<&str> = msgs
        .iter()
        .filter(|m| m.is_response())
        .map(|m| m.code.as_str())
        .collect();
    assert_eq!(
        codes.last(),
        Some(&"2.01"),
        "created after the last block: {codes:?}"
    );
    assert!(
        codes[..codes.len() - 1].iter().all(|c| *c == "2.31"),
        "2.31 Continue for every earlier block: {codes:?}"
    );

    let lookup = get_body(&format!("coap://{rd}/rd-lookup/res?ep=lc-blk"));
    let got: Vec<&str> = lookup.split(',').filter(|l| !l.is_empty()).collect();
    assert_eq!(got.len(), sent.len(), "every link, once: {lookup}");
    for link in &sent {
        // `</x>;attrs` comes back as `<coap://127.0.0.1:PORT/x>;attrs`.
        let (target, attrs) = link.split_once('>').unwrap();
        let suffix = format!("{}>{attrs}", target.trim_start_matches('<'));
        let matching = got
            .iter()
            .filter(|l| l.starts_with("<coap://127.0.0.1:") && l.ends_with(&suffix))
            .count();
        assert_eq!(matching, 1, "{link} in the lookup exactly once: {lookup}");
    }
}

#[test]
fn a_block1_body_over_max_payload_gets_4_13_and_stores_nothing() {
    if !common::require_tool(libcoap::TOOL) {
        return;
    }
    let gw = gateway();
    let rd = gw.addr();
    let body = links(60).join(",");
    assert!(body.len() > MAX_PAYLOAD);
    let (msgs, text) = post_blockwise(rd, "lc-big", &body);
    let codes: Vec<&str> = msgs
        .iter()
        .filter(|m| m.is_response())
        .map(|m| m.code.as_str())
        .collect();
    assert_eq!(
        codes.last(),
        Some(&"4.13"),
        "the upload ends with 4.13: {codes:?}\n{text}"
    );
    assert!(!codes.contains(&"2.01"), "nothing created: {codes:?}");

    // A registration that fits still works afterwards, and is the only one.
    let (msgs, _) = post_blockwise(rd, "lc-small", &links(3).join(","));
    assert!(msgs.iter().any(|m| m.code == "2.01"));
    let eps = get_body(&format!("coap://{rd}/rd-lookup/ep"));
    assert!(eps.contains("ep=lc-small;"), "{eps}");
    assert!(
        !eps.contains("lc-big"),
        "the refused body left a registration: {eps}"
    );
    let res = get_body(&format!("coap://{rd}/rd-lookup/res?rt=t27.block1"));
    assert_eq!(res.split(',').count(), 3, "only lc-small's links: {res}");
}
