//! The Pinger against the real gateway binary (issue 5 "What it must show"): a device that
//! stops answering CoAP pings goes to status 0 (due after `interval + attempts * timeout`;
//! waited for with a bound several times that, so only a Pinger that never acts fails), stays
//! registered and is found by `?status=0`; it returns to 1 when it answers again, in that
//! order; re-registration and update set 1 at once; statuses survive a restart; group
//! registrations with a multicast base are not pinged.
//!
//! The device is a test-owned UDP socket: it registers with the test `Peer`, then a thread
//! answers every empty CON (a CoAP ping, RFC 7252 §4.3) with RST until it is told to go silent.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::{write_config, Gateway, GatewayOptions};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(200);
const ATTEMPTS: u32 = 2;

/// How long a due status change or ping may take before it counts as missing. A change is due
/// one `interval + attempts * timeout` after its cause; this allows five of those plus 5 s for a
/// loaded 2-core box running debug builds (scheduling, sled flush, the lookup). A defect bound,
/// not a timing claim: how fast the Pinger reacts belongs in a benchmark.
fn defect_bound() -> Duration {
    (INTERVAL + TIMEOUT * ATTEMPTS) * 5 + Duration::from_secs(5)
}

fn pinger_yaml(interval_s: u64) -> String {
    format!(
        "pinger:\n  enabled: true\n  interval_s: {interval_s}\n  timeout_ms: {}\n  attempts: {ATTEMPTS}\n  max_in_flight: 16\n",
        TIMEOUT.as_millis()
    )
}

fn start_gateway() -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: pinger_yaml(INTERVAL.as_secs()),
        ..Default::default()
    })
}

/// The ping-answering half of a test device (`common::ping_target`).
type Responder = common::ping_target::PingTarget;

/// Every lookup goes from a fresh socket: the test `Peer` picks a random Message ID per request,
/// and a hundred polls from one port would, now and then, reuse one within EXCHANGE_LIFETIME —
/// the RD would then (rightly) answer from its deduplication cache with the old token.
fn fresh(gw_addr: SocketAddr) -> Peer {
    Peer::new(gw_addr)
}

fn status_of(gw_addr: SocketAddr, ep: &str) -> Option<String> {
    ep_link(&fresh(gw_addr), ep).and_then(|l| l.get("status").map(str::to_string))
}

/// Poll the endpoint lookup until `ep` shows `status`; returns the time it took.
fn wait_for_status(gw_addr: SocketAddr, ep: &str, status: &str, budget: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if status_of(gw_addr, ep).as_deref() == Some(status) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < budget,
            "{ep} did not reach status {status} within {budget:?} (now {:?})",
            status_of(gw_addr, ep)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_pings(r: &Responder, at_least: usize, budget: Duration) {
    let t0 = Instant::now();
    while r.pings() < at_least {
        assert!(
            t0.elapsed() < budget,
            "pinged {} times in {budget:?}",
            r.pings()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn eps_in(gw_addr: SocketAddr, uri: &str) -> Vec<String> {
    lookup(&fresh(gw_addr), uri)
        .iter()
        .filter_map(|l| l.get("ep").map(str::to_string))
        .collect()
}

/// The Pinger's status-change log lines for `ep`, in the order logged: `0` for "is
/// disconnected", `1` for "answers again".
fn logged_changes(gw: &Gateway, ep: &str) -> Vec<u8> {
    let prefix = format!("pinger: {ep} (");
    gw.log_text()
        .lines()
        .filter(|l| l.contains(&prefix))
        .filter_map(|l| {
            if l.contains("is disconnected (status 0)") {
                Some(0)
            } else if l.contains("answers again (status 1)") {
                Some(1)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn silent_device_goes_to_0_stays_registered_and_comes_back_to_1() {
    let gw = start_gateway();
    let dev = Peer::new(gw.addr());
    let loc = register(
        &dev,
        "ep=pingme&lt=3600",
        "</sensors/temp>;rt=\"temperature\"",
    );
    let other = Peer::new(gw.addr());
    register(&other, "ep=bystander&lt=3600", "</x>");
    let responder = Responder::start(&dev.sock);
    let q = gw.addr();

    wait_for_pings(&responder, 2, defect_bound());
    assert_eq!(status_of(q, "pingme").as_deref(), Some("1"));

    responder.set_silent(true);
    let took = wait_for_status(q, "pingme", "0", defect_bound());
    eprintln!("silent -> status 0 after {took:?}");
    // Still registered, listed as disconnected, not as connected.
    let link = ep_link(&fresh(q), "pingme").expect("a silent device stays registered");
    assert!(link.target.ends_with(&loc), "{link:?}");
    assert!(eps_in(q, "/rd-lookup/ep?status=0").contains(&"pingme".to_string()));
    assert!(!eps_in(q, "/rd-lookup/ep?status=1").contains(&"pingme".to_string()));
    assert_eq!(
        res_targets(&fresh(q), "/rd-lookup/res?ep=pingme"),
        vec![format!("{}/sensors/temp", dev.derived_base())]
    );
    // The bystander (a Peer socket nobody reads) also goes 0 — the ping really is needed.
    wait_for_status(q, "bystander", "0", defect_bound());

    responder.set_silent(false);
    let took = wait_for_status(q, "pingme", "1", defect_bound());
    eprintln!("answering again -> status 1 after {took:?}");
    assert!(eps_in(q, "/rd-lookup/ep?status=1").contains(&"pingme".to_string()));
    assert!(!eps_in(q, "/rd-lookup/ep?status=0").contains(&"pingme".to_string()));
    // The lookup sees the index, updated before the flush; the log line follows the reply.
    assert!(
        gw.wait_for_log("pinger: pingme (1) at", defect_bound())
            && gw.wait_for_log("answers again (status 1)", defect_bound()),
        "status changes are logged at info"
    );
    // In order: first 0 (silent), then back to 1 (answering); nothing before the silence (it
    // answered every ping), and the log ends on 1. A slow ping answer under load may add a
    // 0/1 pair later, never change that order.
    let changes = logged_changes(&gw, "pingme");
    assert_eq!(
        changes.first(),
        Some(&0),
        "first change is to 0: {changes:?}"
    );
    assert_eq!(changes.last(), Some(&1), "last change is to 1: {changes:?}");
    assert!(
        changes.windows(2).all(|w| w[0] != w[1]),
        "each change alternates: {changes:?}"
    );
}

#[test]
fn reregistration_and_update_set_status_1_at_once() {
    let gw = start_gateway();
    let dev = Peer::new(gw.addr());
    let loc = register(&dev, "ep=comeback&lt=3600", "</a>");
    let q = gw.addr();

    // Nobody answers pings on the device's socket: it goes 0.
    wait_for_status(q, "comeback", "0", defect_bound());
    register(&dev, "ep=comeback&lt=3600", "</a>");
    assert_eq!(
        status_of(q, "comeback").as_deref(),
        Some("1"),
        "re-registration sets 1 at once"
    );

    wait_for_status(q, "comeback", "0", defect_bound());
    assert_eq!(dev.request(&Req::post(&loc)).code, "2.04");
    assert_eq!(
        status_of(q, "comeback").as_deref(),
        Some("1"),
        "an update sets 1 at once"
    );
}

fn dump_statuses(data_dir: &std::path::Path) -> Vec<(String, u64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .output()
        .expect("run rd-dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["ep"].as_str().unwrap().to_string(),
                v["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn statuses_survive_a_restart() {
    let mut gw = start_gateway();
    let dead = Peer::new(gw.addr());
    register(&dead, "ep=dead&lt=3600", "</a>");
    let alive = Peer::new(gw.addr());
    register(&alive, "ep=alive&lt=3600", "</a>");
    let responder = Responder::start(&alive.sock);
    let q = gw.addr();
    wait_for_status(q, "dead", "0", defect_bound());
    let pings_before = responder.pings();
    wait_for_pings(&responder, pings_before + 1, defect_bound());
    assert_eq!(status_of(q, "alive").as_deref(), Some("1"));

    assert_eq!(gw.terminate(), Some(0), "SIGTERM should be a clean exit");
    let mut dumped = dump_statuses(&gw.data_dir);
    dumped.sort();
    assert_eq!(
        dumped,
        vec![("alive".to_string(), 1), ("dead".to_string(), 0)]
    );

    // Restart on the same data with an hour-long interval: no sweep can run during the
    // checks, so what lookups show is what was persisted.
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &gw.data_dir,
        &GatewayOptions {
            extra_yaml: pinger_yaml(3600),
            ..Default::default()
        },
    );
    let gw2 = Gateway::spawn(&config, gw.data_dir.clone(), 1);
    let q2 = gw2.addr();
    assert_eq!(eps_in(q2, "/rd-lookup/ep?status=0"), vec!["dead"]);
    assert_eq!(eps_in(q2, "/rd-lookup/ep?status=1"), vec!["alive"]);
    drop(responder);
}

#[test]
fn multicast_group_bases_are_not_pinged() {
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: pinger_yaml(1),
        ..Default::default()
    });
    let ct = Peer::new(gw.addr());
    // An IPv6 multicast base: the gateway has no IPv6 socket here, so even a broken Pinger
    // could not send anything off the loopback.
    register(
        &ct,
        "ep=grp1&et=core.rd-group&base=coap://[ff35:30:2001:db8::1]&lt=3600",
        "</light>;rt=\"light\"",
    );
    let dev = Peer::new(gw.addr());
    register(&dev, "ep=plain&lt=3600", "</a>");
    // Sweeps run (the unanswering plain device goes 0) ...
    wait_for_status(gw.addr(), "plain", "0", defect_bound());
    wait_for_status(gw.addr(), "plain", "0", defect_bound());
    // ... and skip the group, which keeps the status its registration gave it.
    assert_eq!(status_of(gw.addr(), "grp1").as_deref(), Some("1"));
    // The sweep's own count: one device pinged, one registration (the group) skipped.
    assert!(
        gw.wait_for_log(
            "pinged 1, alive 0, failed 1, inconclusive 0, skipped 1,",
            defect_bound()
        ),
        "{}",
        gw.log_text()
    );
}

#[test]
fn a_device_still_being_pinged_is_skipped_by_the_next_sweep() {
    // Two attempts of 800 ms outlast the 1 s interval: the sweep after a silent device's turn
    // starts while its ping is still running.
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: "pinger:\n  interval_s: 1\n  timeout_ms: 800\n  attempts: 2\n".into(),
        ..Default::default()
    });
    let slow = Peer::new(gw.addr());
    register(&slow, "ep=slow&lt=3600", "</a>");
    let quick = Peer::new(gw.addr());
    register(&quick, "ep=quick&lt=3600", "</a>");
    let responder = Responder::start(&quick.sock);
    assert!(
        gw.wait_for_log(
            "pinged 1, alive 1, failed 0, inconclusive 0, skipped 1,",
            defect_bound()
        ),
        "no sweep skipped the busy device:\n{}",
        gw.log_text()
    );
    wait_for_status(gw.addr(), "slow", "0", defect_bound());
    assert_eq!(status_of(gw.addr(), "quick").as_deref(), Some("1"));
    drop(responder);
}

#[test]
fn ipv6_devices_are_pinged_over_ipv6() {
    if !common::skip::require_ipv6_loopback() {
        return;
    }
    let gw = Gateway::start_with(GatewayOptions {
        listen: vec!["127.0.0.1:0".into(), "[::1]:0".into()],
        extra_yaml: pinger_yaml(INTERVAL.as_secs()),
        ..Default::default()
    });
    let v6_rd = *gw
        .rd_addrs
        .iter()
        .find(|a| a.is_ipv6())
        .expect("a v6 listener");
    let dev = Peer::new(v6_rd);
    register(&dev, "ep=six&lt=3600", "</a>");
    let responder = Responder::start(&dev.sock);
    wait_for_pings(&responder, 2, defect_bound());
    assert_eq!(status_of(v6_rd, "six").as_deref(), Some("1"));
    responder.set_silent(true);
    wait_for_status(v6_rd, "six", "0", defect_bound());
    responder.set_silent(false);
    wait_for_status(v6_rd, "six", "1", defect_bound());
}
