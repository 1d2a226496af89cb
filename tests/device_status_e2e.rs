//! Device status end to end with every worker on (issue 23, item 1): the real gateway with the
//! Pinger, the Observer (an observed and a polled resource per device) and the platform link,
//! `device-sim` devices with a short lifetime, and `platform-sim` as the platform.
//!
//! The Observer's exchanges hold a silent device's NSTART slot (a CON GET retransmitted for up
//! to MAX_TRANSMIT_WAIT), so before the fix the Pinger could never send its ping, judged every
//! sweep "inconclusive" and the device expired while still at status 1. What must hold: a
//! device that goes silent, or whose process dies, reaches status 0 within the Pinger's bound
//! (`interval + attempts * timeout`), the platform sees `device_status` 0 before the
//! `device_removed` of its expiry, and a device that keeps answering is never marked 0.

mod common;

use std::time::{Duration, Instant};

use common::device_sim::DeviceSim;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

/// Pinger: a sweep every 2 s, 2 attempts of 300 ms: a silent device is due at status 0 within
/// 2.6 s of going silent.
const PINGER: &str =
    "pinger:\n  enabled: true\n  interval_s: 2\n  timeout_ms: 300\n  attempts: 2\n  max_in_flight: 16\n";
/// Registration lifetime of the simulated devices: far above the Pinger's bound, so status 0
/// must come first; short enough that the test sees the expiry.
const LIFETIME_S: u64 = 20;
/// A defect bound, not a measurement: several times the Pinger's 2.6 s, for a loaded box.
const STATUS_BUDGET: Duration = Duration::from_secs(15);

fn gateway(platform: &PlatformSim) -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\n\
             observer:\n  enabled: true\n  poll_interval_s: 1\n  select: [\"obs\", \"if=actuator\"]\n\
             {PINGER}",
            platform.url()
        ),
        ..GatewayOptions::default()
    })
}

fn devices(gw: &Gateway, count: usize) -> DeviceSim {
    let lt = LIFETIME_S.to_string();
    let mut sim = DeviceSim::spawn(gw.addr(), count, &["--prefix", "st-", "--lt", &lt]);
    assert!(sim.ready(Duration::from_secs(30)), "device-sim ready line");
    sim
}

fn is_status(frame: &Value, ep: &str, status: u64) -> bool {
    frame["type"] == "device_status" && frame["ep"] == ep && frame["status"] == status
}

fn is_removed(frame: &Value, ep: &str) -> bool {
    frame["type"] == "device_removed" && (frame["ep"] == ep || frame["device"]["ep"] == ep)
}

/// Wait until the Observer is really talking to `ep`: data from its observed sensor and from
/// its polled actuator, so its exchanges are what hold the device's slot when it goes quiet.
fn wait_observed(platform: &PlatformSim, ep: &str) {
    for path in ["/sensors/temp", "/actuators/led"] {
        let frame = platform.wait_for(Duration::from_secs(20), |f| {
            f["type"] == "data" && f["ep"] == ep && f["path"] == path
        });
        assert!(
            frame.is_some(),
            "no data from {ep}{path}: the Observer is not running"
        );
    }
}

/// The position of the first frame matching `pred`.
fn position(frames: &[Value], pred: impl Fn(&Value) -> bool) -> Option<usize> {
    frames.iter().position(pred)
}

/// Status 0 for `ep` reaches the platform within [`STATUS_BUDGET`], and the device's expiry
/// (`device_removed`) comes after it.
fn assert_status_0_then_expiry(platform: &PlatformSim, ep: &str, silent_at: Instant) {
    let status = platform.wait_for(STATUS_BUDGET, |f| is_status(f, ep, 0));
    let frames = platform.frames();
    assert!(
        status.is_some(),
        "{ep} never reached status 0 within {STATUS_BUDGET:?} of going silent; \
         removed meanwhile: {}",
        position(&frames, |f| is_removed(f, ep)).is_some()
    );
    let took = silent_at.elapsed();
    // The expiry comes later (lifetime from the last refresh), and after the status.
    let removed = platform.wait_for(Duration::from_secs(LIFETIME_S + 20), |f| is_removed(f, ep));
    assert!(removed.is_some(), "{ep} did not expire");
    let frames = platform.frames();
    let s = position(&frames, |f| is_status(f, ep, 0));
    let r = position(&frames, |f| is_removed(f, ep));
    assert!(
        s < r,
        "device_status 0 (frame {s:?}) must precede device_removed (frame {r:?}); status took {took:?}"
    );
    assert_eq!(frames[r.unwrap_or(0)]["reason"], "expired");
}

#[test]
fn a_silent_device_is_marked_0_before_it_expires_while_the_observer_talks_to_it() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform);
    let mut sim = devices(&gw, 2);
    wait_observed(&platform, "st-0");
    wait_observed(&platform, "st-1");

    sim.command("silent 0");
    let silent_at = Instant::now();
    assert_status_0_then_expiry(&platform, "st-0", silent_at);

    // st-1 answered all along (its own polls and observation kept going): never marked 0.
    assert!(
        !platform.frames().iter().any(|f| is_status(f, "st-1", 0)),
        "a device that kept answering was marked disconnected"
    );
    assert!(
        !platform.frames().iter().any(|f| is_removed(f, "st-1")),
        "st-1 refreshes its registration and must not expire"
    );
}

#[test]
fn a_stopped_device_is_marked_0_before_it_expires() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform);
    let sim = devices(&gw, 2);
    wait_observed(&platform, "st-0");
    wait_observed(&platform, "st-1");

    // SIGKILL: the process and its sockets are gone at once, nothing is deregistered.
    drop(sim);
    let stopped_at = Instant::now();
    assert_status_0_then_expiry(&platform, "st-0", stopped_at);
    assert_status_0_then_expiry(&platform, "st-1", stopped_at);
}
