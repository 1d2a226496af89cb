//! Protocol 1.1, acknowledged delivery (issue 21), against the real `platform-sim` over
//! loopback: a platform that drops the socket with 1,000 frames unacknowledged gets every one
//! again after the reconnect, in order, before anything newer; a v1 platform (`--no-ack`, no
//! `welcome`) sees v1 frames without `seq`; the outbox bound drops data first and replaces the
//! oldest events by one snapshot-forcing marker; `platform.durable_data` decides whether data
//! survives a restart of the link; and the gateway SIGKILLed during an outage with owed events
//! and a command result delivers them all after its restart; a restart's seq jump (to the
//! next block of 65,536) is reported by platform-sim apart from gaps.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::platform::link::LinkSettings;
use coap_gateway::platform::protocol::{encode_payload, DataFrame};
use coap_gateway::platform::{
    GetLinkStats, LinkStats, OutboundFrame, OutboxStore, PlatformLink, SendFrame, SnapshotSource,
    StopLink,
};
use coap_gateway::registry::{
    self, EndpointName, Register, Registration, RegistryConfig, SubscribeFeed,
};
use common::coap_peer::*;
use common::platform_sim::{mirror_in_seq_order, PlatformSim};
use common::stalling_snapshot::StallingSnapshot;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

struct NoDevices;

impl SnapshotSource for NoDevices {
    fn snapshot(&self) -> Vec<Arc<Registration>> {
        Vec::new()
    }
}

fn settings(url: &str) -> LinkSettings {
    let mut s = coap_gateway::config::PlatformConfig::default().link_settings("test-gw");
    s.url = url.to_owned();
    s.reconnect_max = Duration::from_secs(1);
    s.connect_timeout = Duration::from_secs(2);
    s
}

fn status(i: usize) -> OutboundFrame {
    OutboundFrame::DeviceStatus {
        ep: format!("n{i}"),
        d: None,
        status: (i % 2) as u8,
        at: "2026-11-25T14:00:00.000Z".into(),
    }
}

fn data(i: usize) -> OutboundFrame {
    OutboundFrame::Data(DataFrame {
        ep: "dev".into(),
        d: None,
        path: "/t".into(),
        code: "2.05".into(),
        content_format: Some(0),
        payload: encode_payload(format!("{i}").as_bytes()),
        at: "2026-11-25T14:00:00.000Z".into(),
    })
}

async fn wait_stats(
    link: &Addr<PlatformLink>,
    what: &str,
    pred: impl Fn(&LinkStats) -> bool,
) -> LinkStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = link.send(GetLinkStats).await.expect("link alive");
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (without blocking the test's actix thread, where the link runs) for a frame.
async fn frame_of(sim: &PlatformSim, ty: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(f) = sim.frames().into_iter().find(|f| f["type"] == ty) {
            return f;
        }
        assert!(Instant::now() < deadline, "no {ty}: {:?}", sim.frames());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (without blocking) for a line of platform-sim's stderr holding `needle`.
async fn stderr_line(sim: &PlatformSim, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !sim.stderr_lines().iter().any(|l| l.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?}: {:?}",
            sim.stderr_lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The main test of the issue.
#[actix_rt::test]
async fn a_dropped_socket_with_1000_unacknowledged_frames_loses_nothing_and_duplicates_nothing() {
    // First session: the snapshot part (seq 1) and the 1,000 events, then the drop.
    let sim = PlatformSim::start_args("127.0.0.1:0", None, &["--drop-after", "1001"]);
    let link = PlatformLink::start(settings(&sim.url()), Arc::new(NoDevices), None);
    frame_of(&sim, "snapshot").await;
    wait_stats(&link, "acked mode", |s| s.connected && s.acked_mode).await;
    for i in 0..1_000 {
        link.do_send(SendFrame(status(i)));
    }
    stderr_line(&sim, "dropping the connection after 1001").await;
    let s = wait_stats(&link, "everything acknowledged after the reconnect", |s| {
        s.reconnects >= 1 && s.acked_mode && s.outbox_frames == 0
    })
    .await;
    assert_eq!(s.resent, 1_000, "{s:?}");
    assert_eq!(s.dropped_data + s.dropped_events + s.overflows, 0, "{s:?}");
    // Acknowledged means platform-sim printed them; the test's reader of its stdout may lag.
    let deadline = Instant::now() + WAIT;
    while sim.count(|f| f["type"] == "device_status") < 2_000
        || sim.count(|f| f["type"] == "snapshot") < 2
    {
        assert!(Instant::now() < deadline, "{:?}", types(&sim.frames()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let frames = sim.frames();
    let hellos: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f["type"] == "hello")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hellos.len(), 2, "{:?}", types(&frames));
    // Every frame but hello is numbered; seqs only grow within a session.
    for session in [&frames[hellos[0]..hellos[1]], &frames[hellos[1]..]] {
        let seqs: Vec<u64> = session[1..]
            .iter()
            .map(|f| f["seq"].as_u64().expect("numbered"))
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    }
    // After de-duplication by seq: each event exactly once, in the order it was sent.
    let mut seen = HashSet::new();
    let eps: Vec<String> = frames
        .iter()
        .filter(|f| f["type"] == "device_status")
        .filter(|f| seen.insert(f["seq"].as_u64().unwrap()))
        .map(|f| f["ep"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..1_000).map(|i| format!("n{i}")).collect();
    assert_eq!(eps, want);
    // The second session re-sent all 1,000 before anything new (its snapshot).
    let second = types(&frames[hellos[1]..]);
    assert_eq!(second.len(), 1 + 1_000 + 1, "{second:?}");
    assert!(second[1..=1_000].iter().all(|t| t == "device_status"));
    assert_eq!(second[1_001], "snapshot");
    stderr_line(
        &sim,
        "session 0 summary: frames 1002, numbered 1001, duplicates 0, gaps 0",
    )
    .await;
    link.do_send(StopLink);
}

/// A v1 platform never sends `welcome`: it gets protocol v1, frames without `seq`, hello then
/// snapshot then frames, and nothing is kept after it is written.
#[actix_rt::test]
async fn a_v1_platform_sees_v1_frames_without_seq() {
    let sim = PlatformSim::start_args("127.0.0.1:0", None, &["--no-ack"]);
    let link = PlatformLink::start(settings(&sim.url()), Arc::new(NoDevices), None);
    frame_of(&sim, "snapshot").await;
    for i in 0..3 {
        link.do_send(SendFrame(status(i)));
    }
    link.do_send(SendFrame(data(7)));
    frame_of(&sim, "data").await;
    let frames = sim.frames();
    assert_eq!(
        types(&frames),
        [
            "hello",
            "snapshot",
            "device_status",
            "device_status",
            "device_status",
            "data"
        ]
    );
    let mut hello = frames[0].as_object().unwrap().clone();
    assert_eq!(hello.remove("features"), Some(serde_json::json!(["ack"])));
    let keys: Vec<&str> = hello.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for key in ["type", "gateway", "version", "protocol", "devices"] {
        assert!(hello.contains_key(key), "{key}");
    }
    assert_eq!(frames[0]["protocol"], 1);
    assert!(frames.iter().all(|f| f.get("seq").is_none()), "{frames:?}");
    assert_eq!(
        frames[1],
        serde_json::json!({"type": "snapshot", "devices": [], "part": 0, "last": true})
    );
    let s = wait_stats(&link, "done once written", |s| s.outbox_frames == 0).await;
    assert!(!s.acked_mode && s.resent == 0, "{s:?}");
    link.do_send(StopLink);
}

/// A platform whose WebSocket library answers the gateway's Ping before the application has
/// answered `hello` (the sim sends `welcome` 200 ms after it, so the Pong goes first): the
/// connection is still acked, not taken for v1 on the Pong.
#[actix_rt::test]
async fn a_welcome_that_follows_the_pong_still_makes_the_connection_acked() {
    let sim = PlatformSim::start_args("127.0.0.1:0", None, &["--welcome-delay-ms", "200"]);
    let link = PlatformLink::start(settings(&sim.url()), Arc::new(NoDevices), None);
    frame_of(&sim, "snapshot").await;
    link.do_send(SendFrame(status(1)));
    let frame = frame_of(&sim, "device_status").await;
    assert!(frame.get("seq").is_some(), "{frame}");
    let s = wait_stats(&link, "acknowledged", |s| {
        s.acked_mode && s.outbox_frames == 0
    })
    .await;
    assert!(s.acked_mode, "{s:?}");
    let snapshot = frame_of(&sim, "snapshot").await;
    assert!(
        snapshot.get("seq").is_some(),
        "acked snapshot parts are numbered: {snapshot}"
    );
    link.do_send(StopLink);
}

/// Over `outbox_max_bytes` during an outage: data goes first, then the oldest events become
/// one marker; the platform then gets the newest events in order and a snapshot after them.
#[actix_rt::test]
async fn the_outbox_bound_drops_data_first_then_replaces_the_oldest_events_by_a_marker() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let listen = sim.addr.to_string();
    let url = sim.url();
    drop(sim);
    let mut s = settings(&url);
    s.outbox_max_bytes = 64 << 10;
    let link = PlatformLink::start(s, Arc::new(NoDevices), None);
    for i in 0..500 {
        link.do_send(SendFrame(data(i)));
    }
    // ~100 bytes each: 1,000 events are more than 64 KiB on their own.
    for i in 0..1_000 {
        link.do_send(SendFrame(status(i)));
    }
    let s = wait_stats(&link, "the overflow", |s| s.overflows == 1).await;
    assert_eq!(s.dropped_data, 500, "every data frame went first: {s:?}");
    assert!(s.dropped_events > 0 && s.outbox_bytes <= 64 << 10, "{s:?}");
    let lost = s.dropped_events as usize;

    let sim = PlatformSim::start(&listen, None);
    let s = wait_stats(&link, "delivered", |s| s.acked_mode && s.outbox_frames == 0).await;
    assert_eq!(s.overflows, 1);
    let frames = sim.frames();
    let t = types(&frames);
    assert!(!t.contains(&"data".to_owned()), "{t:?}");
    let eps: Vec<String> = frames
        .iter()
        .filter(|f| f["type"] == "device_status")
        .map(|f| f["ep"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (lost..1_000).map(|i| format!("n{i}")).collect();
    assert_eq!(eps, want, "the newest events, in order");
    assert_eq!(
        t.last().map(String::as_str),
        Some("snapshot"),
        "restated after them"
    );
    // The dropped frames' seqs never arrive: the first seq received is above them all.
    let first = frames
        .iter()
        .find_map(|f| f["seq"].as_u64())
        .expect("numbered");
    assert!(first > 500 + lost as u64, "first seq {first}");
    link.do_send(StopLink);
}

/// `platform.durable_data`: stored data survives the link's restart; by default only events do.
#[actix_rt::test]
async fn durable_data_decides_whether_data_survives_a_restart() {
    for durable_data in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = OutboxStore::open(&db).unwrap();
        let sim = PlatformSim::start("127.0.0.1:0", None);
        let listen = sim.addr.to_string();
        let url = sim.url();
        drop(sim);
        let mut s = settings(&url);
        s.outbox = Some(store.clone());
        s.durable_data = durable_data;
        let link = PlatformLink::start(s.clone(), Arc::new(NoDevices), None);
        link.do_send(SendFrame(status(1)));
        link.do_send(SendFrame(data(2)));
        wait_stats(&link, "owed", |s| s.outbox_frames == 2).await;
        link.send(StopLink).await.unwrap();
        drop(link);

        let sim = PlatformSim::start(&listen, None);
        let again = PlatformLink::start(s, Arc::new(NoDevices), None);
        wait_stats(&again, "delivered", |s| {
            s.acked_mode && s.outbox_frames == 0
        })
        .await;
        let t = types(&sim.frames());
        let want: &[&str] = if durable_data {
            &["hello", "device_status", "data", "snapshot"]
        } else {
            &["hello", "device_status", "snapshot"]
        };
        assert_eq!(t, want, "durable_data {durable_data}");
        again.do_send(StopLink);
    }
}

/// SIGKILL during an outage with owed events and a command result: after the restart, on the
/// same data directory, every one of them reaches the platform.
#[test]
fn owed_events_and_results_survive_a_sigkill_during_an_outage() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let listen = sim.addr.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let opts = GatewayOptions {
        extra_yaml: format!("platform:\n  url: {:?}\n  reconnect_max_s: 1\n", sim.url()),
        data_dir: Some(data_dir.clone()),
        ..GatewayOptions::default()
    };
    let config = common::write_config(tmp.path(), &data_dir, &opts);
    // The Executer's debug line says when the command has arrived.
    let mut cmd = std::process::Command::new(common::gateway_bin());
    cmd.env("RUST_LOG", "info,coap_gateway::executer=debug");
    let mut gw = Gateway::spawn_command(cmd, &config, data_dir.clone(), 1);
    sim.wait_type("snapshot", None, WAIT).expect("snapshot");

    // A device that never answers: the command's result (a timeout) comes during the outage.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = Peer::new(gw.addr());
    register(
        &p,
        &format!("ep=silent&base=coap://{}", silent.local_addr().unwrap()),
        "</x>",
    );
    sim.wait_type("device_registered", Some("silent"), WAIT)
        .expect("registered");
    let mut sim = sim;
    sim.send_line(
        r#"{"type":"command","id":"late-1","ep":"silent","method":"GET","path":"/x","timeout_ms":2000}"#,
    );
    assert!(
        gw.wait_for_log("executer: command \"late-1\": ", WAIT),
        "{}",
        gw.log_text()
    );
    drop(sim); // the platform goes away before the result exists

    for i in 0..5 {
        register(&p, &format!("ep=owed-{i}"), "</s>");
    }
    assert!(
        gw.wait_for_log("executer: command \"late-1\" failed", WAIT),
        "{}",
        gw.log_text()
    );
    // Failed re-dials after the last event: the group commit of the outbox has long run.
    let deadline = Instant::now() + WAIT;
    let before = gw.log_text().matches("retrying in").count();
    while gw.log_text().matches("retrying in").count() < before + 2 {
        assert!(Instant::now() < deadline, "{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.kill9();

    let sim = PlatformSim::start(&listen, None);
    let gw = Gateway::spawn(&config, data_dir, 1);
    let result = sim
        .wait_type("command_result", None, WAIT)
        .unwrap_or_else(|| panic!("result after restart; {}", gw.log_text()));
    assert_eq!(result["id"], "late-1");
    assert!(result["error"]["kind"].is_string(), "{result}");
    for i in 0..5 {
        let ep = format!("owed-{i}");
        sim.wait_for(WAIT, |f| {
            f["type"] == "device_registered" && f["device"]["ep"] == ep
        })
        .unwrap_or_else(|| panic!("{ep} after restart: {:?}", sim.frames()));
    }
    assert!(
        gw.log_text().contains("owed from before the restart"),
        "{}",
        gw.log_text()
    );
    drop(silent);
}

/// A gateway restart continues at the next block of 65,536 seqs: the same platform sees the
/// jump, and platform-sim reports it as a restart's jump, not as a gap of lost frames. Every
/// event still arrives once.
#[test]
fn a_restart_jumps_to_the_next_seq_block_and_the_platform_tells_it_from_a_gap() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let opts = GatewayOptions {
        extra_yaml: format!("platform:\n  url: {:?}\n  reconnect_max_s: 1\n", sim.url()),
        data_dir: Some(data_dir.clone()),
        ..GatewayOptions::default()
    };
    let config = common::write_config(tmp.path(), &data_dir, &opts);
    let mut gw = Gateway::spawn(&config, data_dir.clone(), 1);
    let p = Peer::new(gw.addr());
    register(&p, "ep=before", "</s>");
    sim.wait_type("device_registered", Some("before"), WAIT)
        .expect("registered");
    gw.kill9();

    let gw = Gateway::spawn(&config, data_dir, 1);
    let p = Peer::new(gw.addr());
    register(&p, "ep=after", "</s>");
    let after = sim
        .wait_type("device_registered", Some("after"), WAIT)
        .unwrap_or_else(|| panic!("after restart: {}", gw.log_text()));
    // In arrival order, each seq once (the registration is re-sent if its ack was too late).
    let mut seen = HashSet::new();
    let seqs: Vec<u64> = sim
        .frames()
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .filter(|s| seen.insert(*s))
        .collect();
    // Session 1: the snapshot and the registration (1, 2); then the next block.
    assert_eq!(&seqs[..2], &[1, 2], "{seqs:?}");
    assert_eq!(
        seqs[2], 65_536,
        "the first new frame opens the next block: {seqs:?}"
    );
    assert!(after["seq"].as_u64() >= Some(65_536), "{after}");
    assert!(
        sim.wait_stderr("seq jump: 3..=65535 never used", WAIT),
        "{:?}",
        sim.stderr_lines()
    );
    assert!(
        !sim.stderr_lines().iter().any(|l| l.contains("gap: seq")),
        "{:?}",
        sim.stderr_lines()
    );
    let before: HashSet<u64> = sim
        .frames()
        .iter()
        .filter(|f| f["type"] == "device_registered" && f["device"]["ep"] == "before")
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    // Seq 1 or 2: the registration may beat the first snapshot to a seq.
    assert_eq!(
        before.len(),
        1,
        "once, after de-duplication by seq: {before:?}"
    );
    assert!(before.iter().all(|s| *s < 3), "{before:?}");
}

/// Acked mode numbers the snapshot behind the events numbered while `hello` waited for the
/// platform's answer. A snapshot read at the dial is older than those events: a platform that
/// applies frames in seq order (as the contract has it) would lose those registrations until
/// the next reconnect. Here the link reads an empty registry at the dial and is held there
/// while 20 devices register, so their events are queued before `hello` even goes out.
#[actix_rt::test]
async fn the_acked_snapshot_holds_the_registrations_numbered_while_hello_waited() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let dir = tempfile::tempdir().unwrap();
    let (registry, reader) = registry::start(RegistryConfig {
        data_dir: dir.path().join("db"),
        cache_mb: 16,
        expiry_grace_s: 0,
        max_registrations: None,
    })
    .unwrap();
    let (snapshot, mut stall) = StallingSnapshot::new(reader.clone());
    let arbiter = Arbiter::new();
    let link = PlatformLink::start_on(&arbiter.handle(), settings(&sim.url()), snapshot, None);
    registry
        .send(SubscribeFeed(link.clone().recipient()))
        .await
        .unwrap();
    assert!(
        stall.entered().await,
        "the link dialled and read the registry"
    );
    for i in 0..20u16 {
        registry
            .send(Register {
                identity: None,
                ep: EndpointName::new(format!("early{i}")).unwrap(),
                d: None,
                base: Some(format!("coap://127.0.0.1:{}", 30_000 + i)),
                lifetime_s: 3_600,
                attrs: Vec::new(),
                links: vec![link_format::Link::new("/s")],
                source: std::net::SocketAddr::from(([127, 0, 0, 1], 30_000 + i)),
            })
            .await
            .unwrap()
            .unwrap();
    }
    stall.release();

    let s = wait_stats(&link, "the snapshot and the events acknowledged", |s| {
        s.acked_mode && s.snapshots_accepted >= 1 && s.outbox_frames == 0
    })
    .await;
    assert_eq!(s.reconnects, 0, "one connection: {s:?}");
    let deadline = Instant::now() + WAIT;
    while sim.count(|f| f["type"] == "device_registered") < 20 {
        assert!(Instant::now() < deadline, "{:?}", types(&sim.frames()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames = sim.frames();
    let hello = frames.iter().find(|f| f["type"] == "hello").unwrap();
    assert_eq!(
        hello["devices"], 0,
        "hello counts the registry read at the dial"
    );
    let snapshot_seq = frames
        .iter()
        .find(|f| f["type"] == "snapshot")
        .and_then(|f| f["seq"].as_u64())
        .unwrap();
    assert!(
        frames
            .iter()
            .filter(|f| f["type"] == "device_registered")
            .all(|f| f["seq"].as_u64() < Some(snapshot_seq)),
        "the case under test: the events were numbered before the snapshot: {:?}",
        types(&frames)
    );
    let mirrored: Vec<String> = mirror_in_seq_order(&frames).into_keys().collect();
    let mut expected: Vec<String> = (0..20).map(|i| format!("early{i}")).collect();
    expected.sort();
    assert_eq!(
        mirrored, expected,
        "the platform's view, by seq, is the registry"
    );
    arbiter.stop();
}
