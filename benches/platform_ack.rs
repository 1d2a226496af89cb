//! Release benchmark of protocol 1.1 acknowledged delivery (issue 21) against the real
//! `platform-sim` binary over loopback, beside protocol v1 in the same run:
//! - `data` frames/s, v1 (`--no-ack`: done once written) and acked (seq on every frame, kept
//!   until platform-sim's cumulative ack, every 20 ms or 512 frames): 200,000 frames with a
//!   20-byte payload, memory only (`platform.durable_data: false`, the default);
//! - durable events/s: 50,000 `device_status` events, each stored in the sled outbox tree
//!   (group commit) before it is written, and deleted when acknowledged; v1 beside it (stored
//!   too, deleted once written).
//!
//! A run ends when platform-sim has printed every frame and, in acked mode, the link's outbox
//! is empty (everything acknowledged, stored records deleted). The producer waits while the
//! link's writer is backed up, so the figures are sustained rates with nothing dropped.
//! Bounded: each run at most 60 s. Prints one JSON line.
//! Run with `cargo bench --bench platform_ack`.

#[path = "support/platform_sim.rs"]
mod platform_sim;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use coap_gateway::platform::link::LinkSettings;
use coap_gateway::platform::protocol::{encode_payload, DataFrame};
use coap_gateway::platform::{
    GetLinkStats, LinkStats, OutboundFrame, OutboxStore, PlatformLink, SendFrame, SnapshotSource,
    StopLink,
};
use coap_gateway::registry::Registration;
use platform_sim::Sim;

const DATA_FRAMES: u64 = 200_000;
const EVENTS: u64 = 50_000;
const BUDGET: Duration = Duration::from_secs(60);

struct NoDevices;

impl SnapshotSource for NoDevices {
    fn snapshot(&self) -> Vec<Arc<Registration>> {
        Vec::new()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Data,
    DurableEvents,
}

/// One run's outcome.
struct Run {
    frames: u64,
    seconds: f64,
    stats: LinkStats,
}

fn fail(what: &str) -> ! {
    eprintln!("platform_ack bench: {what}");
    std::process::exit(1);
}

async fn stats(link: &Addr<PlatformLink>) -> LinkStats {
    match link.send(GetLinkStats).await {
        Ok(s) => s,
        Err(_) => fail("the link stopped"),
    }
}

fn frame(kind: Kind, i: u64, at: &str) -> OutboundFrame {
    match kind {
        Kind::Data => OutboundFrame::Data(DataFrame {
            ep: format!("node{}", i % 1_000),
            d: None,
            path: "/sensors/temp".into(),
            code: "2.05".into(),
            content_format: Some(0),
            payload: encode_payload(b"0123456789abcdefghij"),
            at: at.to_owned(),
        }),
        Kind::DurableEvents => OutboundFrame::DeviceStatus {
            ep: format!("node{}", i % 1_000),
            d: None,
            status: (i % 2) as u8,
            at: at.to_owned(),
        },
    }
}

/// Send `n` frames of `kind` through a fresh link to a fresh platform-sim (`sim_args`), with
/// the outbox stored in a fresh sled database when `durable`.
async fn run(kind: Kind, n: u64, sim_args: &[&str], durable: bool) -> Run {
    let sim = Sim::start(sim_args);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let mut settings: LinkSettings =
        coap_gateway::config::PlatformConfig::default().link_settings("bench-gw");
    settings.url = sim.url.clone();
    let _db = if durable {
        let db = sled::open(dir.path()).unwrap_or_else(|e| fail(&format!("sled: {e}")));
        let store = OutboxStore::open(&db).unwrap_or_else(|e| fail(&format!("outbox: {e}")));
        settings.outbox = Some(store);
        Some(db)
    } else {
        None
    };
    let acked = !sim_args.contains(&"--no-ack");
    let link = PlatformLink::start(settings, Arc::new(NoDevices), None);
    let deadline = Instant::now() + BUDGET;
    while !stats(&link).await.connected {
        if Instant::now() > deadline {
            fail("the link did not connect");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = coap_gateway::time::rfc3339_ms(coap_gateway::time::now_ms());
    let counted: Arc<AtomicU64> = match kind {
        Kind::Data => sim.data_lines.clone(),
        Kind::DurableEvents => sim.status_lines.clone(),
    };
    let started = Instant::now();
    let deadline = started + BUDGET;
    for i in 0..n {
        link.do_send(SendFrame(frame(kind, i, &at)));
        if i % 1_000 == 999 {
            // Sustained, not burst: wait while the writer is backed up or frames wait for
            // their flush, so nothing is dropped and memory stays flat.
            loop {
                let s = stats(&link).await;
                if s.queued < 1_000 && s.in_flight < 2_048 {
                    break;
                }
                if Instant::now() > deadline {
                    fail("the link did not keep up within the budget");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }
    loop {
        let s = stats(&link).await;
        let printed = counted.load(Ordering::Relaxed) >= n;
        if printed && (!acked || s.outbox_frames == 0) {
            break;
        }
        if Instant::now() > deadline {
            fail(&format!(
                "timed out: {} of {n} printed, {} owed",
                counted.load(Ordering::Relaxed),
                s.outbox_frames
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = stats(&link).await;
    let _ = link.send(StopLink).await;
    Run {
        frames: n,
        seconds,
        stats,
    }
}

fn figures(r: &Run) -> serde_json::Value {
    serde_json::json!({
        "frames": r.frames,
        "seconds": (r.seconds * 1_000.0).round() / 1_000.0,
        "per_s": (r.frames as f64 / r.seconds).round(),
        "dropped": r.stats.dropped_data + r.stats.dropped_events,
        "acked_mode": r.stats.acked_mode,
        "last_ack": r.stats.last_ack,
        "resent": r.stats.resent,
    })
}

fn main() {
    let system = actix::System::new();
    let line = system.block_on(async {
        let data_v1 = run(Kind::Data, DATA_FRAMES, &["--no-ack"], false).await;
        let data_acked = run(Kind::Data, DATA_FRAMES, &["--ack"], false).await;
        let events_v1 = run(Kind::DurableEvents, EVENTS, &["--no-ack"], true).await;
        let events_acked = run(Kind::DurableEvents, EVENTS, &["--ack"], true).await;
        serde_json::json!({
            "bench": "platform_ack",
            "data_payload_bytes": 20,
            "data_v1": figures(&data_v1),
            "data_acked": figures(&data_acked),
            "durable_events_v1": figures(&events_v1),
            "durable_events_acked": figures(&events_acked),
        })
        .to_string()
    });
    println!("{line}");
}
