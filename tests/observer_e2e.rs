//! The Observer end to end (issue 8), with the real gateway, `platform-sim` and `device-sim`
//! processes over loopback: an observed resource's notifications arrive as `data` frames in
//! order; a polled resource gives about one frame per interval; a silent device stops producing
//! frames and its observation comes back when it wakes; DELETE of a registration stops the
//! frames and the device sees the deregistration (a test-owned device counts Observe=1 GETs);
//! a device the Pinger marks 0 produces no frames and is observed again once it is back at 1.

mod common;
#[path = "common/frame_time.rs"]
mod frame_time;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::device_sim::DeviceSim;
use common::platform_sim::PlatformSim;
use common::raw_device::RawDevice;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn gateway(sim: &PlatformSim, observer_yaml: &str) -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\nobserver:\n  enabled: true\n{observer_yaml}",
            sim.url()
        ),
        ..GatewayOptions::default()
    })
}

/// A running `device-sim`; killed on drop.
/// `count` device-sim devices named `obs-<i>`, once registered.
fn start_sim(gw: &Gateway, count: usize) -> DeviceSim {
    let mut sim = DeviceSim::spawn(gw.addr(), count, &["--prefix", "obs-", "--lt", "60"]);
    assert!(sim.ready(Duration::from_secs(30)), "device-sim ready line");
    sim
}

fn data_frames(sim: &PlatformSim, ep: &str, path: &str) -> Vec<Value> {
    sim.frames()
        .into_iter()
        .filter(|f| f["type"] == "data" && f["ep"] == ep && f["path"] == path)
        .collect()
}

fn wait_frames(sim: &PlatformSim, ep: &str, path: &str, n: usize, budget: Duration) -> Vec<Value> {
    let deadline = Instant::now() + budget;
    loop {
        let frames = data_frames(sim, ep, path);
        if frames.len() >= n || Instant::now() > deadline {
            return frames;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum over the Observer's periodic stats lines of the counter logged as `N <what>`
/// (e.g. "unchanged polls not sent"): what the gateway counted, without timing it ourselves.
fn observer_stat(gw: &Gateway, what: &str) -> u64 {
    gw.log_text()
        .lines()
        .filter(|l| l.contains("observer: ") && l.contains(" links watched; last "))
        .filter_map(|l| {
            let before = l.split(&format!(" {what}")).next()?;
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Wait until `observer_stat(gw, what)` reaches `n`. The stats are logged every 10 s
/// (`observer::STATS_EVERY`), hence the long deadline.
fn wait_observer_stat(gw: &Gateway, what: &str, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let got = observer_stat(gw, what);
        if got >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the Observer never counted {n} {what} (got {got}):\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait for `n` more completed Pinger sweeps than the log shows now.
fn wait_more_sweeps(gw: &Gateway, n: usize) -> Vec<String> {
    let sweeps = |gw: &Gateway| -> Vec<String> {
        gw.log_text()
            .lines()
            .filter(|l| l.contains("pinger: sweep ") && l.contains(" done in "))
            .map(str::to_owned)
            .collect()
    };
    let before = sweeps(gw).len();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = sweeps(gw);
        if now.len() >= before + n {
            return now[before..].to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "not {n} more Pinger sweeps:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The step (0..100) of a device-sim temperature "2X.Y".
fn step(value: &str) -> u64 {
    let v: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {value}"));
    ((v - 20.0) * 10.0).round() as u64
}

#[test]
fn observed_resource_changes_arrive_as_frames_in_order() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform, "");
    let _sim = start_sim(&gw, 1);
    let frames = wait_frames(&platform, "obs-0", "/sensors/temp", 6, WAIT);
    assert!(
        frames.len() >= 6,
        "only {} frames: {frames:?}",
        frames.len()
    );
    for f in &frames {
        assert_eq!(f["code"], "2.05");
        assert_eq!(f["content_format"], 0);
        assert_eq!(f["payload_encoding"], "utf8");
        assert_eq!(f["d"], Value::Null);
    }
    // The device's sawtooth moves one step a second; notifications follow it in order (a step
    // may be skipped when a second is missed, never repeated or reversed).
    let steps: Vec<u64> = frames
        .iter()
        .map(|f| step(f["payload"].as_str().unwrap()))
        .collect();
    for w in steps.windows(2) {
        let forward = (w[1] + 100 - w[0]) % 100;
        assert!((1..=3).contains(&forward), "out of sequence: {steps:?}");
    }
    let ats: Vec<&str> = frames.iter().map(|f| f["at"].as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");
    // The LED (no obs, if=actuator) is not selected by the default selection.
    assert!(data_frames(&platform, "obs-0", "/actuators/led").is_empty());
}

#[test]
fn polled_resource_yields_about_one_frame_per_interval() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(
        &platform,
        "  poll_interval_s: 1\n  select: [\"if=actuator\"]\n",
    );
    let _sim = start_sim(&gw, 1);
    // Six results, however long a loaded machine takes to produce them...
    let frames = wait_frames(
        &platform,
        "obs-0",
        "/actuators/led",
        6,
        Duration::from_secs(60),
    );
    assert!(
        frames.len() >= 6,
        "only {} poll results: {frames:?}",
        frames.len()
    );
    for f in &frames {
        assert_eq!(f["code"], "2.05", "{f}");
    }
    // ...spread over about five intervals by the gateway's own clock (the frames' `at`). Each
    // poll has a fixed slot in the interval, so five gaps span 5 s less at most the first
    // poll's lateness. Wide bounds that only a defect violates: two polls per slot or a hot
    // loop (< 3 s), or polls every few intervals instead of every one (> 20 s).
    let ats: Vec<u64> = frames[..6]
        .iter()
        .map(|f| {
            f["at"]
                .as_str()
                .and_then(frame_time::at_ms)
                .unwrap_or_else(|| panic!("no `at` in {f}"))
        })
        .collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");
    let span_ms = ats[5] - ats[0];
    assert!(
        (3_000..=20_000).contains(&span_ms),
        "6 polls at a 1 s interval spanned {span_ms} ms: {ats:?}"
    );
    assert!(
        data_frames(&platform, "obs-0", "/sensors/temp").is_empty(),
        "the sensor is not selected"
    );
}

#[test]
fn only_changes_drops_repeated_poll_results() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(
        &platform,
        "  poll_interval_s: 1\n  select: [\"if=actuator\"]\n  only_changes: true\n",
    );
    let _sim = start_sim(&gw, 1);
    let first = wait_frames(&platform, "obs-0", "/actuators/led", 1, WAIT);
    assert_eq!(first.len(), 1, "the first result is always sent");
    // The LED stays as it is: later polls repeat the first result and are not forwarded. The
    // Observer counts them; wait until it counted at least two instead of sleeping.
    wait_observer_stat(&gw, "unchanged polls not sent", 2);
    assert_eq!(
        data_frames(&platform, "obs-0", "/actuators/led").len(),
        1,
        "a repeated poll result was forwarded"
    );
}

#[test]
fn silent_device_stops_frames_and_its_observation_comes_back() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform, "");
    let mut sim = start_sim(&gw, 1);
    let frames = wait_frames(&platform, "obs-0", "/sensors/temp", 2, WAIT);
    assert!(frames.len() >= 2, "observation never started");
    let lost_before = observer_stat(&gw, "observations lost");
    let at_silence = data_frames(&platform, "obs-0", "/sensors/temp").len();
    sim.command("silent 0");
    // The Observer gives the observation up only after Max-Age (1 s) + 5 s without a
    // notification: wait for it to count that loss, then check what arrived meanwhile.
    wait_observer_stat(&gw, "observations lost", lost_before + 1);
    let quiet_start = data_frames(&platform, "obs-0", "/sensors/temp").len();
    // A device notifying once a second would have sent about six; allow the one that may
    // have been on its way and one sent before device-sim read the command.
    assert!(
        quiet_start <= at_silence + 2,
        "a silent device produced frames: {at_silence} before, {quiet_start} at the loss"
    );
    sim.command("wake 0");
    // Lost after Max-Age (1 s) + 5 s, then re-established with back-off.
    let back = wait_frames(
        &platform,
        "obs-0",
        "/sensors/temp",
        quiet_start + 3,
        Duration::from_secs(30),
    );
    assert!(
        back.len() >= quiet_start + 3,
        "frames did not resume after wake: {} then {}",
        quiet_start,
        back.len()
    );
}

#[test]
fn delete_stops_frames_and_the_device_sees_the_deregistration() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform, "");
    let dev = RawDevice::start();
    let p = Peer::new(gw.addr());
    let location = register(
        &p,
        &format!("ep=raw1&base=coap://{}", dev.addr),
        "</temp>;obs",
    );
    let frames = wait_frames(&platform, "raw1", "/temp", 5, WAIT);
    assert!(frames.len() >= 5, "only {} frames", frames.len());
    let r = p.request(&Req::delete(&location));
    assert_eq!(r.code, "2.02");
    let deadline = Instant::now() + WAIT;
    while dev.deregistrations.load(Ordering::Relaxed) + dev.resets.load(Ordering::Relaxed) == 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        dev.deregistrations.load(Ordering::Relaxed),
        1,
        "the device saw no deregistration GET (resets: {})",
        dev.resets.load(Ordering::Relaxed)
    );
    // After the deregistration the device stops notifying, and no frame follows. A barrier
    // instead of a quiet second: a later registration's frame has reached the platform.
    let after = data_frames(&platform, "raw1", "/temp").len();
    let sent = dev.notifications.load(Ordering::Relaxed);
    register(&p, "ep=barrier", "</b>");
    platform
        .wait_type("device_registered", Some("barrier"), WAIT)
        .expect("the barrier registration reached the platform");
    assert_eq!(dev.notifications.load(Ordering::Relaxed), sent);
    assert_eq!(data_frames(&platform, "raw1", "/temp").len(), after);
}

#[test]
fn without_a_platform_the_observer_does_not_run() {
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: "observer:\n  enabled: true\n".into(),
        ..GatewayOptions::default()
    });
    assert!(
        gw.wait_for_log("observer not started", Duration::from_secs(10)),
        "{}",
        gw.log_text()
    );
    assert!(!gw.log_text().contains("observer: polling every"));
}

#[test]
fn status_zero_stops_the_watch_and_status_one_brings_it_back() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\nobserver:\n  enabled: true\n\
             pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n",
            platform.url()
        ),
        ..GatewayOptions::default()
    });
    let mut sim = start_sim(&gw, 1);
    assert!(wait_frames(&platform, "obs-0", "/sensors/temp", 2, WAIT).len() >= 2);
    sim.command("silent 0");
    let down = platform
        .wait_for(WAIT, |f| f["type"] == "device_status" && f["status"] == 0)
        .expect("the Pinger marks the silent device 0");
    assert_eq!(down["ep"], "obs-0");
    let at_zero = data_frames(&platform, "obs-0", "/sensors/temp").len();
    // Two more Pinger sweeps (events, not a sleep) with the device at 0 and still silent.
    for sweep in wait_more_sweeps(&gw, 2) {
        assert!(sweep.contains("alive 0"), "{sweep}");
    }
    assert_eq!(
        data_frames(&platform, "obs-0", "/sensors/temp").len(),
        at_zero,
        "frames from a device at status 0"
    );
    sim.command("wake 0");
    platform
        .wait_for(WAIT, |f| f["type"] == "device_status" && f["status"] == 1)
        .expect("the Pinger marks the device 1 again");
    // Re-established on the status change, well before the loss deadline would fire.
    let back = wait_frames(
        &platform,
        "obs-0",
        "/sensors/temp",
        at_zero + 2,
        Duration::from_secs(10),
    );
    assert!(back.len() >= at_zero + 2, "no frames after status 1");
}
