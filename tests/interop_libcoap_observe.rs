//! Observe (RFC 7641) against an independent client: libcoap's `coap-client-notls -s` (issue 27).
//!
//! Every other Observe test uses a client built on coap-lite, the codec the gateway itself
//! uses, or the `coap` crate on it. Here libcoap observes (a) the RD's resource lookup while
//! the test registers a new matching endpoint: a later notification must carry exactly the new
//! lookup result; and (b) device-sim's `/sensors/temp` directly: several distinct values arrive
//! with increasing Observe numbers. Assertions are on libcoap's own decoding (`-v 6` prints
//! every message it receives).

mod common;

use std::time::Duration;

use common::device_sim::DeviceSim;
use common::libcoap::{self, Message, Running};
use common::Gateway;

/// Generous deadlines for a loaded 2-core box; they only fail on a real defect.
const WAIT: Duration = Duration::from_secs(30);

/// A 2.05 carrying an Observe option: the registration's first answer or a notification.
fn is_observe_content(m: &Message) -> bool {
    m.code == "2.05" && m.option("Observe").is_some()
}

/// The body of a one-shot GET by libcoap (no `-v`: stdout is the body alone).
fn get_body(url: &str) -> String {
    let out = libcoap::run(30, &["-B", "20", url]);
    assert!(out.status.success(), "GET {url}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn register(rd: std::net::SocketAddr, ep: &str, links: &str) {
    let url = format!("coap://{rd}/rd?ep={ep}&lt=300");
    let out = libcoap::run(
        30,
        &["-m", "post", "-t", "40", "-e", links, "-B", "20", &url],
    );
    assert!(out.status.success(), "register {ep}: {out:?}");
}

#[test]
fn libcoap_observes_an_rd_lookup_and_sees_a_new_registration() {
    if !common::require_tool(libcoap::TOOL) || !common::require_tool("stdbuf") {
        return;
    }
    let gw = Gateway::start();
    let rd = gw.addr();
    register(rd, "lc-obs-1", "</first>;rt=\"t27.observed\"");
    let url = format!("coap://{rd}/rd-lookup/res?rt=t27.observed");
    let before = get_body(&url);
    assert!(before.contains("/first>"), "lookup before: {before}");
    assert!(!before.contains("/second>"));

    let obs = Running::spawn(90, &["-v", "6", "-s", "60", "-B", "70", &url]);
    // The observation is established once libcoap has the first 2.05 with Observe.
    assert!(
        obs.wait_for(WAIT, |m| m.iter().any(is_observe_content)),
        "no Observe answer from the RD:\n{}",
        obs.text()
    );
    let first = obs.messages().into_iter().find(is_observe_content).unwrap();
    assert_eq!(
        first.payload.as_deref(),
        Some(before.as_str()),
        "the first answer is the lookup as it was"
    );

    register(rd, "lc-obs-2", "</second>;rt=\"t27.observed\"");
    let after = get_body(&url);
    assert!(
        after.contains("/first>") && after.contains("/second>"),
        "lookup after: {after}"
    );
    assert!(
        obs.wait_for(WAIT, |m| m
            .iter()
            .filter(|m| is_observe_content(m))
            .any(|m| m.payload.as_deref() == Some(after.as_str()))),
        "libcoap got no notification with the new lookup {after:?}:\n{}",
        obs.text()
    );
    let seqs: Vec<u32> = obs
        .messages()
        .iter()
        .filter(|m| is_observe_content(m))
        .filter_map(|m| m.option("Observe")?.parse().ok())
        .collect();
    assert!(seqs.len() >= 2, "registration answer and a notification");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "Observe numbers increase: {seqs:?}"
    );
}

/// device-sim with one device listening (not registered) on a free port.
fn device_sim_on_a_free_port() -> (DeviceSim, u16) {
    // Bounded: a port taken between probing and binding only costs another round.
    for _ in 0..5 {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("probe a free UDP port");
        let mut sim = DeviceSim::spawn(
            "127.0.0.1:9".parse().unwrap(),
            1,
            &["--no-register", "--first-port", &port.to_string()],
        );
        if sim.ready(WAIT) {
            return (sim, port);
        }
    }
    panic!("device-sim never came up on a free port");
}

#[test]
fn libcoap_observes_a_device_sim_sensor_and_gets_distinct_values() {
    if !common::require_tool(libcoap::TOOL) {
        return;
    }
    let (_sim, port) = device_sim_on_a_free_port();
    // The temperature changes every second: 8 s of observation holds several values even when
    // the box is busy.
    let url = format!("coap://127.0.0.1:{port}/sensors/temp");
    let out = libcoap::run(60, &["-v", "6", "-s", "8", "-B", "10", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<Message> = libcoap::parse(&text)
        .into_iter()
        .filter(is_observe_content)
        .collect();
    let values: Vec<f64> = got
        .iter()
        .map(|m| {
            let p = m.payload.as_deref().unwrap_or_default();
            p.parse()
                .unwrap_or_else(|_| panic!("not a temperature: {p:?}"))
        })
        .collect();
    let mut distinct = values.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "at least 3 distinct values (the first answer and notifications): {values:?}\n{text}"
    );
    assert!(
        values.iter().all(|v| (20.0..30.0).contains(v)),
        "device-sim's range: {values:?}"
    );
    let seqs: Vec<u32> = got
        .iter()
        .filter_map(|m| m.option("Observe")?.parse().ok())
        .collect();
    assert_eq!(seqs.len(), got.len(), "every answer carries Observe");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "Observe numbers increase: {seqs:?}"
    );
    // Notifications after the first answer arrive as separate messages (CON or NON), not ACKs.
    assert!(got.iter().skip(1).all(|m| m.mtype != "ACK"));
}
