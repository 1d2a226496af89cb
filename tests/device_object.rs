//! One device, one JSON object (issue 23, item 4): a device registered over CoAP with repeated
//! and valueless attributes and several links is the same object in every user-facing output:
//! the platform's `device_registered` frame, `GET /api/devices/{ep}`, `rd-dump --url --json`
//! on the running gateway and `rd-dump --json` on its stopped data directory
//! (docs/platform-protocol.md, "A device object"). Real binaries, real sockets on 127.0.0.1.
//!
//! A device registered over coaps (libcoap's `coap-client-openssl` with a PSK, guarded by
//! `require_tool` as in tests/rd_coaps.rs) shows the DTLS identity it belongs to and its
//! `coaps://` base in the admin API, `rd-dump` (both sources, table and JSON) and the status
//! page, and a plain registration shows none; the RD lookup interface shows no identity.

mod common;

use std::process::Command;
use std::time::Duration;

use common::coap_peer::*;
use common::http::get;
use common::platform_sim::PlatformSim;
use common::rd_dump::rd_dump_output;
use common::{coaps, require_tool, Gateway, GatewayOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// The JSON line of `ep` among rd-dump's lines, as a device object ([`object_of`]).
fn line_of(out: &str, ep: &str) -> Value {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|v| v["ep"] == ep)
        .map(object_of)
        .unwrap_or_else(|| panic!("{ep} not in rd-dump output:\n{out}"))
}

/// The device object in what an output printed. The admin API (and so `rd-dump --url`) adds
/// one field to it, `seen_at`, when the device was last heard from, which a stopped database
/// and the platform frames do not have: it is checked to be an RFC 3339 time, then set aside.
fn object_of(mut v: Value) -> Value {
    if let Some(seen) = v.as_object_mut().and_then(|o| o.remove("seen_at")) {
        let seen = seen.as_str().unwrap_or_default().to_string();
        assert!(
            seen.ends_with('Z') && seen.as_str() >= v["updated_at"].as_str().unwrap_or_default(),
            "seen_at {seen:?} is a time no earlier than updated_at: {v}"
        );
    }
    v
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
    let api: Value = object_of(resp.json());

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

/// The identity `sensors` may register `sensor-*` (a name other than its own, so the lookup
/// check below can tell the identity from the endpoint name).
const SENSORS_KEY: &str = "secret-sensors";

/// rd-dump's table row of `ep` split into cells, and the header's cells.
fn table_row(table: &str, ep: &str) -> (Vec<String>, Vec<String>) {
    let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let header = table
        .lines()
        .next()
        .unwrap_or_else(|| panic!("empty table:\n{table}"));
    let row = table
        .lines()
        .find(|l| cells(l).get(1).map(String::as_str) == Some(ep))
        .unwrap_or_else(|| panic!("{ep} not in the table:\n{table}"));
    (cells(header), cells(row))
}

/// The IDENTITY cell of `ep` in an rd-dump table.
fn identity_cell(table: &str, ep: &str) -> String {
    let (header, row) = table_row(table, ep);
    let col = header
        .iter()
        .position(|h| h == "IDENTITY")
        .unwrap_or_else(|| panic!("no IDENTITY column:\n{table}"));
    row[col].clone()
}

#[test]
fn a_dtls_registration_shows_its_identity_and_a_plain_one_none() {
    if !require_tool(coaps::CLIENT) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = dir.path().join("identities.yaml");
    std::fs::write(
        &ids,
        format!(
            "identities:\n  - identity: sensors\n    psk_hex: \"{}\"\n    endpoints: [\"sensor-*\"]\n",
            coaps::psk_hex(SENSORS_KEY)
        ),
    )
    .expect("write identities");
    let mut gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: format!(
            "pinger:\n  enabled: false\nobserver:\n  enabled: false\n\
             dtls:\n  listen: [\"127.0.0.1:0\"]\n  identities_file: {ids:?}\n\
             security:\n  plain_coap: open\n"
        ),
        ..GatewayOptions::default()
    });
    let secure = coaps::coaps_addr(&gw);

    let ran = coaps::client(
        "sensors",
        SENSORS_KEY,
        &["-m", "post", "-t", "40", "-e", "</t>;rt=\"temperature\""],
        &format!("coaps://{secure}/rd?ep=sensor-1&lt=600"),
    );
    assert_eq!(
        coaps::response_code(&ran).as_deref(),
        Some("2.01"),
        "{}\n{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    let peer = Peer::new(gw.addr());
    register(&peer, "ep=plain-1&lt=600", "</t>;rt=\"temperature\"");

    // The admin API's device object.
    let api_secure: Value = object_of(get(gw.http_addr(), "/api/devices/sensor-1").json());
    assert_eq!(api_secure["dtls_identity"], "sensors", "{api_secure}");
    assert_eq!(api_secure["coaps"], true, "{api_secure}");
    assert_eq!(
        api_secure["base"]
            .as_str()
            .map(|b| b.starts_with("coaps://127.0.0.1:")),
        Some(true),
        "{api_secure}"
    );
    let api_plain: Value = object_of(get(gw.http_addr(), "/api/devices/plain-1").json());
    assert_eq!(api_plain["dtls_identity"], Value::Null, "{api_plain}");
    assert_eq!(api_plain["coaps"], false, "{api_plain}");
    // Never key material: neither the key nor its hex form is anywhere in the objects.
    for object in [&api_secure, &api_plain] {
        let text = object.to_string();
        assert!(!text.contains(SENSORS_KEY) && !text.contains(&coaps::psk_hex(SENSORS_KEY)));
    }

    // The status page's device table (first paint, rendered by the gateway).
    let page = get(gw.http_addr(), "/").text();
    assert!(
        page.contains(r#"<td class="identity">sensors</td>"#),
        "{page}"
    );

    // The public lookup interface stays as RFC 9176 defines it: no identity, no new attribute.
    let looked = lookup(&peer, "/rd-lookup/ep");
    assert_eq!(looked.len(), 2, "{looked:?}");
    for link in &looked {
        for (name, value) in &link.attrs {
            assert!(
                matches!(name.as_str(), "ep" | "d" | "base" | "rt" | "status"),
                "{name} in {link:?}"
            );
            assert_ne!(value.as_deref(), Some("sensors"), "{link:?}");
        }
    }

    // rd-dump --url: the same objects, and the table's IDENTITY column.
    let url = gw.http_url();
    let out = Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .args(["--url", &url, "--json"])
        .output()
        .expect("run rd-dump --url --json");
    assert!(out.status.success(), "{out:?}");
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(line_of(&lines, "sensor-1"), api_secure);
    assert_eq!(line_of(&lines, "plain-1"), api_plain);
    let out = Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .args(["--url", &url])
        .output()
        .expect("run rd-dump --url");
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(identity_cell(&table, "sensor-1"), "sensors", "{table}");
    assert_eq!(identity_cell(&table, "plain-1"), "-", "{table}");

    // rd-dump --data-dir on the stopped gateway: the identity was persisted with the record.
    assert_eq!(gw.terminate(), Some(0));
    let lines = rd_dump_output(&gw.data_dir, &["--json"]);
    assert_eq!(line_of(&lines, "sensor-1"), api_secure);
    assert_eq!(line_of(&lines, "plain-1"), api_plain);
    let table = rd_dump_output(&gw.data_dir, &[]);
    assert_eq!(identity_cell(&table, "sensor-1"), "sensors", "{table}");
    assert_eq!(identity_cell(&table, "plain-1"), "-", "{table}");
}
