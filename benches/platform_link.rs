//! Release benchmark of the platform link, over loopback against the real
//! `platform-sim` binary:
//! - gateway→platform throughput: `data` frames with a 20-byte payload, handed to the link as
//!   `SendFrame`s at the rate the link sustains (the producer waits while the link's writer is
//!   backed up), counted when platform-sim has printed them (bounded: 200,000 frames, 60 s);
//! - snapshot time for 100,000 devices (3 links each): from starting the link until platform-sim
//!   has printed the `last` snapshot part (dial, hello and serialization included).
//!
//! Protocol v1 (`platform-sim --no-ack`); `benches/platform_ack.rs` measures 1.1 beside it.
//! Prints one JSON line. Run with `cargo bench --bench platform_link`.

#[path = "support/platform_sim.rs"]
mod platform_sim;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_gateway::platform::link::LinkSettings;
use coap_gateway::platform::protocol::{encode_payload, DataFrame};
use coap_gateway::platform::{
    GetLinkStats, OutboundFrame, PlatformLink, SendFrame, SnapshotSource,
};
use coap_gateway::registry::{
    BaseOrigin, EndpointName, Registration, RegistrationId, Sector, Status,
};
use link_format::{Link, Param};
use platform_sim::Sim;

const DATA_FRAMES: u64 = 200_000;
const SNAPSHOT_DEVICES: u64 = 100_000;
const BUDGET: Duration = Duration::from_secs(60);

struct Devices(Vec<Arc<Registration>>);

impl SnapshotSource for Devices {
    fn snapshot(&self) -> Vec<Arc<Registration>> {
        self.0.clone()
    }
}

fn registration(id: u64) -> Arc<Registration> {
    let port = 20_000 + (id % 40_000) as u16;
    Arc::new(Registration {
        status_history: Default::default(),
        last_seen: Default::default(),
        identity: None,
        id: RegistrationId(id),
        ep: EndpointName::new(format!("node{id}")).unwrap(),
        d: Some(Sector::new("floor1").unwrap()),
        base: format!("coap://127.0.0.1:{port}").into(),
        base_origin: BaseOrigin::FromSource,
        lifetime_s: 90_000,
        attrs: vec![Param::new("et", Some("oic.d.sensor"))],
        links: vec![
            Link::new("/sensors/temp")
                .with("rt", Some("temperature"))
                .with("if", Some("sensor"))
                .with("ct", Some("0"))
                .with("obs", None)
                .with("title", Some("Room temperature")),
            Link::new("/sensors/hum")
                .with("rt", Some("humidity"))
                .with("ct", Some("0")),
            Link::new("/actuators/led")
                .with("rt", Some("light"))
                .with("if", Some("core.a")),
        ]
        .into(),
        status: Status::Connected,
        registered_at_ms: 1_795_615_200_000,
        updated_at_ms: 1_795_615_200_000,
        expires_at_ms: 1_795_705_200_000,
        source: format!("127.0.0.1:{port}").parse().unwrap(),
    })
}

fn settings(url: &str) -> LinkSettings {
    let mut s = coap_gateway::config::PlatformConfig::default().link_settings("bench-gw");
    s.url = url.to_owned();
    s
}

async fn wait_until(what: &str, deadline: Instant, done: impl Fn() -> bool) {
    while !done() {
        if Instant::now() > deadline {
            eprintln!("platform_link bench: timed out waiting for {what}");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn main() {
    let system = actix::System::new();
    let line = system.block_on(async {
        // Throughput of data frames.
        let sim = Sim::start(&["--no-ack"]);
        let link = PlatformLink::start(settings(&sim.url), Arc::new(Devices(Vec::new())), None);
        let deadline = Instant::now() + BUDGET;
        while !link.send(GetLinkStats).await.expect("link alive").connected {
            if Instant::now() > deadline {
                eprintln!("platform_link bench: the link did not connect");
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let payload = b"0123456789abcdefghij";
        assert_eq!(payload.len(), 20);
        let started = Instant::now();
        for i in 0..DATA_FRAMES {
            link.do_send(SendFrame(OutboundFrame::Data(DataFrame {
                ep: format!("node{}", i % 1_000),
                d: None,
                path: "/sensors/temp".into(),
                code: "2.05".into(),
                content_format: Some(0),
                payload: encode_payload(payload),
                at: coap_gateway::time::rfc3339_ms(coap_gateway::time::now_ms()),
            })));
            if i % 1_000 == 999 {
                // Sustained rate, not burst: wait while the link's writer is backed up, so the
                // figure is what the link carries without dropping anything.
                loop {
                    let s = link.send(GetLinkStats).await.expect("link alive");
                    if s.queued == 0 && s.in_flight < 2_048 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
        let counted = sim.data_lines.clone();
        wait_until("data frames", started + BUDGET, || {
            counted.load(Ordering::Relaxed) >= DATA_FRAMES
        })
        .await;
        let data_secs = started.elapsed().as_secs_f64();
        let dropped = link
            .send(GetLinkStats)
            .await
            .expect("link alive")
            .dropped_data;
        drop(link);
        drop(sim);

        // Snapshot of 100,000 devices.
        let devices: Vec<_> = (0..SNAPSHOT_DEVICES).map(registration).collect();
        let sim = Sim::start(&["--no-ack"]);
        let started = Instant::now();
        let _link = PlatformLink::start(settings(&sim.url), Arc::new(Devices(devices)), None);
        let last = sim.snapshot_last_at.clone();
        wait_until("the last snapshot part", started + BUDGET, || {
            last.lock().unwrap().is_some()
        })
        .await;
        let snapshot_at = last.lock().unwrap().expect("set");
        let snapshot_ms = (snapshot_at - started).as_secs_f64() * 1_000.0;
        serde_json::json!({
            "bench": "platform_link",
            "data_frames": DATA_FRAMES,
            "data_payload_bytes": 20,
            "data_seconds": (data_secs * 1000.0).round() / 1000.0,
            "data_frames_per_s": (DATA_FRAMES as f64 / data_secs).round(),
            "data_frames_dropped": dropped,
            "snapshot_devices": SNAPSHOT_DEVICES,
            "snapshot_links_per_device": 3,
            "snapshot_parts": SNAPSHOT_DEVICES.div_ceil(1_000),
            "snapshot_bytes": sim.snapshot_bytes.load(Ordering::Relaxed),
            "snapshot_ms": snapshot_ms.round(),
        })
        .to_string()
    });
    println!("{line}");
}
