//! The platform link end to end (issue 6), with the real binaries over loopback: devices
//! register, update, expire and are deleted over CoAP at the gateway, and `platform-sim` must see
//! exactly the frames of `docs/platform-protocol.md`, in order, across an outage.

mod common;

use std::time::Duration;

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
    let sim = PlatformSim::start("127.0.0.1:0", None);
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
    std::thread::sleep(Duration::from_secs(2));

    let sim = PlatformSim::start(&listen, None);
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
    assert!(
        gw.wait_for_log("platform refused the token", WAIT),
        "a clear error is logged:\n{}",
        gw.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = gw.log_text();
    let refusals = log.matches("platform refused the token").count();
    assert!(refusals >= 2, "keeps retrying with back-off:\n{log}");
    assert!(
        !log.contains("s3cret-wrong-token"),
        "the token never appears in logs"
    );
    assert!(
        sim.frames().is_empty(),
        "nothing is accepted without the token"
    );
}

#[test]
fn malformed_platform_frames_get_error_frames_and_commands_get_one_result() {
    let mut sim = PlatformSim::start("127.0.0.1:0", None);
    let _gw = gateway_for(&sim.url(), "");
    sim.wait_type("snapshot", None, WAIT).expect("connected");
    sim.send_line("this is not json");
    sim.send_line(r#"{"type":"reboot","id":"x1"}"#);
    sim.send_line(r#"{"type":"command","id":"c1","ep":"nobody","method":"GET","path":"/x"}"#);
    let err = sim
        .wait_type("error", None, WAIT)
        .expect("error frame for garbage");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    sim.wait_for(WAIT, |v| v["type"] == "error" && v["id"] == "x1")
        .expect("unknown type answered with its id");
    let result = sim
        .wait_for(WAIT, |v| v["type"] == "command_result" && v["id"] == "c1")
        .expect("every command gets exactly one result");
    assert!(result["error"]["kind"].is_string(), "{result}");
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
