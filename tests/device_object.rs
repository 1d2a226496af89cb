//! One device, one JSON object (issue 23, item 4): a device registered over CoAP with repeated
//! and valueless attributes and several links is the same object in every user-facing output:
//! the platform's `device_registered` frame, `GET /api/devices/{ep}`, `rd-dump --url --json`
//! on the running gateway and `rd-dump --json` on its stopped data directory
//! (docs/platform-protocol.md, "A device object"). Real binaries, real sockets on 127.0.0.1.

mod common;

use std::process::Command;
use std::time::Duration;

use common::coap_peer::*;
use common::http::get;
use common::platform_sim::PlatformSim;
use common::rd_dump::rd_dump_output;
use common::{Gateway, GatewayOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// The JSON line of `ep` among rd-dump's lines.
fn line_of(out: &str, ep: &str) -> Value {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|v| v["ep"] == ep)
        .unwrap_or_else(|| panic!("{ep} not in rd-dump output:\n{out}"))
}

#[test]
fn every_output_shows_the_same_device_object() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    // Nothing may change the registration between the reads: no pings (the test peer does not
    // answer them), no observations.
    let mut gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\npinger:\n  enabled: false\nobserver:\n  enabled: false\n",
            sim.url()
        ),
        ..GatewayOptions::default()
    });
    sim.wait_type("snapshot", None, WAIT).expect("link up");

    let peer = Peer::new(gw.addr());
    register(
        &peer,
        "ep=shape-1&d=floor1&lt=600&et=oic.d.a&et=oic.d.b&flag&x=1&x=2",
        "</sensors/temp>;rt=\"temperature\";rt=\"celsius\";if=\"sensor\";ct=0;obs;\
         title=\"Room\",</info>;sz;foo=bar;foo=baz,</plain>",
    );

    let frame = sim
        .wait_type("device_registered", Some("shape-1"), WAIT)
        .expect("device_registered");
    let platform = frame["device"].clone();

    let resp = get(gw.http_addr(), "/api/devices/shape-1?d=floor1");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let api: Value = resp.json();

    let url = gw.http_url();
    let out = Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .args(["--url", &url, "--json"])
        .output()
        .expect("run rd-dump --url");
    assert!(out.status.success(), "{out:?}");
    let dump_url = line_of(&String::from_utf8_lossy(&out.stdout), "shape-1");

    assert_eq!(gw.terminate(), Some(0));
    let dump_local = line_of(&rd_dump_output(&gw.data_dir, &["--json"]), "shape-1");

    // The documented object, with the repeated and valueless attributes as the contract says.
    assert_eq!(platform["et"], "oic.d.a oic.d.b");
    assert_eq!(platform["attrs"], json!({"flag": true, "x": "1 2"}));
    assert_eq!(
        platform["location"]
            .as_str()
            .map(|l| l.starts_with("/reg/")),
        Some(true)
    );
    assert_eq!(
        platform["links"],
        json!([
            {"href": "/sensors/temp", "rt": "temperature celsius", "if": "sensor", "ct": "0",
             "obs": true, "attrs": {"title": "Room"}},
            {"href": "/info", "rt": null, "if": null, "ct": null, "obs": false,
             "attrs": {"sz": true, "foo": "bar baz"}},
            {"href": "/plain", "rt": null, "if": null, "ct": null, "obs": false, "attrs": {}}
        ])
    );
    // One object everywhere: no field is specific to one output.
    assert_eq!(
        api, platform,
        "GET /api/devices/{{ep}} vs the platform frame"
    );
    assert_eq!(
        dump_url, platform,
        "rd-dump --url --json vs the platform frame"
    );
    assert_eq!(dump_local, platform, "rd-dump --json vs the platform frame");
}
