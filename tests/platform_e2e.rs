//! The platform link end to end (issue 6), with the real binaries over loopback: devices
//! register, update, expire and are deleted over CoAP at the gateway, and `platform-sim` must see
//! exactly the frames of `docs/platform-protocol.md`, in order, across an outage.

mod common;

use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn gateway_for(sim_url: &str, token: &str) -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {sim_url:?}\n  token: {token:?}\n  reconnect_max_s: 1\n"
        ),
        ..GatewayOptions::default()
    })
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn hello_snapshot_then_every_registry_event() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway_for(&sim.url(), "");
    let hello = sim.wait_type("hello", None, WAIT).expect("hello");
    assert_eq!(hello["gateway"], "test-gw");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["devices"], 0);
    let snap = sim.wait_type("snapshot", None, WAIT).expect("snapshot");
    assert_eq!(snap["last"], true);
    assert_eq!(snap["part"], 0);

    let p = Peer::new(gw.addr());
    let location = register(
        &p,
        "ep=node1&et=oic.d.sensor",
        "</sensors/temp>;rt=\"temperature\";if=\"sensor\";ct=0;obs;title=\"Room\"",
    );
    let reg = sim
        .wait_type("device_registered", Some("node1"), WAIT)
        .expect("device_registered");
    let device = &reg["device"];
    assert_eq!(device["base"], p.derived_base());
    assert_eq!(device["status"], 1);
    assert_eq!(device["lt"], 90000);
    assert_eq!(device["et"], "oic.d.sensor");
    assert_eq!(device["d"], Value::Null);
    let link = &device["links"][0];
    assert_eq!(link["href"], "/sensors/temp");
    assert_eq!(link["rt"], "temperature");
    assert_eq!(link["obs"], true);
    assert_eq!(link["attrs"]["title"], "Room");

    let r = p.request(&Req::post(&format!("{location}?lt=120")));
    assert_eq!(r.code, "2.04");
    let upd = sim
        .wait_type("device_updated", Some("node1"), WAIT)
        .expect("device_updated");
    assert_eq!(upd["device"]["lt"], 120);

    let r = p.request(&Req::delete(&location));
    assert_eq!(r.code, "2.02");
    let gone = sim
        .wait_type("device_removed", Some("node1"), WAIT)
        .expect("device_removed");
    assert_eq!(gone["reason"], "deleted");

    register(&p, "ep=short&lt=1", "</x>");
    let expired = sim
        .wait_for(WAIT, |v| {
            v["type"] == "device_removed" && v["ep"] == "short"
        })
        .expect("expiry reported");
    assert_eq!(expired["reason"], "expired");

    let t = types(&sim.frames());
    assert_eq!(&t[..2], ["hello", "snapshot"], "{t:?}");
}

#[test]
fn frames_owed_during_an_outage_arrive_in_order_after_hello_and_snapshot() {
    // A v1 platform (no welcome): exactly the v1 order, hello, snapshot, then what is owed.
    let sim = PlatformSim::start_args("127.0.0.1:0", None, &["--no-ack"]);
    let listen = sim.addr.to_string();
    let url = sim.url();
    let gw = gateway_for(&url, "");
    sim.wait_type("snapshot", None, WAIT)
        .expect("first snapshot");
    drop(sim); // the platform goes away

    let p = Peer::new(gw.addr());
    let mut locations = Vec::new();
    for i in 0..5 {
        locations.push(register(&p, &format!("ep=owed-{i}"), "</s>"));
    }
    assert_eq!(p.request(&Req::delete(&locations[0])).code, "2.02");
    // The outage spans failed re-dials (an event, not a fixed sleep).
    let deadline = Instant::now() + WAIT;
    while gw.log_text().matches("retrying in").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no failed re-dials during the outage:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let sim = PlatformSim::start_args(&listen, None, &["--no-ack"]);
    let last = sim
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "device_removed" && v["ep"] == "owed-0"
        })
        .expect("owed frames delivered after reconnect");
    assert_eq!(last["reason"], "deleted");
    let frames = sim.frames();
    let t = types(&frames);
    assert_eq!(&t[..2], ["hello", "snapshot"], "{t:?}");
    assert_eq!(
        frames[0]["devices"], 4,
        "snapshot counts the registry at reconnect"
    );
    let owed: Vec<String> = frames[2..]
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["type"].as_str().unwrap_or("?"),
                f["ep"]
                    .as_str()
                    .or(f["device"]["ep"].as_str())
                    .unwrap_or("?")
            )
        })
        .collect();
    let mut want: Vec<String> = (0..5)
        .map(|i| format!("device_registered:owed-{i}"))
        .collect();
    want.push("device_removed:owed-0".into());
    assert_eq!(owed, want, "owed frames in order, none lost");
}

#[test]
fn wrong_token_is_refused_logged_without_the_token_and_retried() {
    let sim = PlatformSim::start("127.0.0.1:0", Some("right-token"));
    let gw = gateway_for(&sim.url(), "s3cret-wrong-token");
    // Retried, not given up on: a second refusal follows the first (after the back-off).
    let deadline = Instant::now() + WAIT;
    while gw.log_text().matches("platform refused the token").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no clear error logged twice (first dial and a retry):\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sim.wait_stderr("wrong bearer token (HTTP 401)", WAIT),
        "platform-sim never saw the refused dial"
    );
    let log = gw.log_text();
    assert!(
        !log.contains("s3cret-wrong-token"),
        "the token never appears in logs"
    );
    assert!(
        sim.frames().is_empty(),
        "nothing is accepted without the token"
    );
}

/// Every `command_result` frame the platform received so far, by command id.
fn results_for(sim: &PlatformSim, id: &str) -> Vec<Value> {
    sim.frames()
        .into_iter()
        .filter(|f| f["type"] == "command_result" && f["id"] == id)
        .collect()
}

#[test]
fn malformed_platform_frames_get_error_frames_and_commands_get_one_result() {
    let mut sim = PlatformSim::start("127.0.0.1:0", None);
    let _gw = gateway_for(&sim.url(), "");
    sim.wait_type("snapshot", None, WAIT).expect("connected");
    sim.send_line("this is not json");
    sim.send_line(r#"{"type":"reboot","id":"x1"}"#);
    sim.send_line(r#"{"type":"command","id":"c1","ep":"nobody","method":"GET","path":"/x"}"#);
    sim.send_line(r#"{"type":"command","id":"c2","ep":"nobody","method":"BREW","path":"/x"}"#);
    let err = sim
        .wait_for(WAIT, |v| v["type"] == "error" && v.get("id").is_none())
        .expect("error frame for garbage");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    sim.wait_for(WAIT, |v| v["type"] == "error" && v["id"] == "x1")
        .expect("unknown type answered with its id");
    let c1 = sim
        .wait_for(WAIT, |v| v["type"] == "command_result" && v["id"] == "c1")
        .expect("a command for an unregistered device gets a result");
    assert_eq!(c1["error"]["kind"], "unknown_device", "{c1}");
    assert!(
        c1.get("code").is_none(),
        "an error result has no code: {c1}"
    );
    let c2 = sim
        .wait_for(WAIT, |v| v["type"] == "command_result" && v["id"] == "c2")
        .expect("an invalid command with an id gets a result");
    assert_eq!(c2["error"]["kind"], "bad_command", "{c2}");

    // A barrier instead of a quiet period: the platform's frames are handled in order, so once
    // the result of a later command and the error for a later frame are in, a second result
    // for c1 or c2 would have had every chance to arrive before them.
    sim.send_line(r#"{"type":"command","id":"c3","ep":"nobody","method":"GET","path":"/y"}"#);
    sim.send_line(r#"{"type":"reboot","id":"x2"}"#);
    sim.wait_for(WAIT, |v| v["type"] == "command_result" && v["id"] == "c3")
        .expect("the barrier command's result");
    sim.wait_for(WAIT, |v| v["type"] == "error" && v["id"] == "x2")
        .expect("the barrier frame's error");
    for id in ["c1", "c2", "c3"] {
        let results = results_for(&sim, id);
        assert_eq!(results.len(), 1, "exactly one result for {id}: {results:?}");
    }
    let errors = sim
        .frames()
        .into_iter()
        .filter(|f| f["type"] == "error")
        .count();
    assert_eq!(errors, 3, "one error frame each for garbage, x1 and x2");
}

/// A device that stops answering pings is reported as `device_status` 0 (and stays registered).
#[test]
fn a_status_change_from_the_pinger_arrives_as_device_status() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\npinger:\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n",
            sim.url()
        ),
        ..GatewayOptions::default()
    });
    sim.wait_type("snapshot", None, WAIT).expect("connected");
    {
        // Registers, then its socket closes: nothing answers the Pinger any more.
        let device = Peer::new(gw.addr());
        register(&device, "ep=fading", "</s>");
    }
    let status = sim
        .wait_type("device_status", Some("fading"), WAIT)
        .expect("device_status after missed pings");
    assert_eq!(status["status"], 0);
    assert!(
        status["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    assert!(
        !sim.frames()
            .iter()
            .any(|f| f["type"] == "device_removed" && f["ep"] == "fading"),
        "disconnected, not removed"
    );
}

#[test]
fn platform_sim_stops_promptly_on_sigterm_with_a_gateway_connected() {
    let mut sim = PlatformSim::start("127.0.0.1:0", None);
    let _gw = gateway_for(&sim.url(), "");
    sim.wait_type("snapshot", None, WAIT)
        .expect("the gateway is connected");
    // A defect bound, not a benchmark: it took ~32 s (actix-web's 30 s graceful timeout
    // waiting for the open WebSocket) instead of closing the session.
    let status = sim.terminate_within(Duration::from_secs(10));
    let status = status.expect("platform-sim exits within 10 s of SIGTERM");
    assert!(status.success(), "{status:?}");
}
