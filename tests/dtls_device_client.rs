//! The gateway as a DTLS client (what the DTLS work must show: "the gateway as client pings,
//! commands and observes libcoap's `coap-server-openssl` started with a PSK"), end to end with
//! the real `coap-gateway` and `platform-sim` binaries.
//!
//! libcoap's server plays a `coaps://` device with the PSK of identity `node1`; the device
//! registers over coaps with `coap-client-openssl` as `node1`, its base naming the device's
//! DTLS port on loopback (the registrant's own host, which the RD accepts). The registering
//! client is gone at once, so the gateway holds no session with the device and must open one
//! itself, as client, offering the PSK from its identities file. The gateway reaches the device
//! through a relay ([`coaps::Tap`]) that keeps every datagram, so the tests tell DTLS records
//! from plaintext CoAP, at the device's coaps port and at the plain port below it:
//! - with the right key the Pinger keeps `node1` at status 1 (the device logs the pings and its
//!   RSTs), a platform command `GET /time` gets 2.05 through the Executer, the Observer
//!   forwards `/time` notifications as `data` frames, all of it as DTLS records only; once the
//!   server is killed the device goes to status 0, still registered;
//! - with a key that differs from the server's no handshake completes, no ping is answered, a
//!   command fails, the device goes to status 0, and only DTLS handshake records ever reach
//!   the device: no plaintext fallback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::coaps::{self, CoapsServer, Kind, Tap};
use common::http;
use common::platform_sim::PlatformSim;
use common::skip::require_tool;
use common::{Gateway, GatewayOptions};

/// The PSK libcoap's server runs with (it accepts any identity with it).
const SERVER_KEY: &str = "secret-node1";
/// A key for `node1` that is not the server's.
const OTHER_KEY: &str = "not-the-device-key";
/// Generous bound for anything that is due within a few seconds (a defect bound, not a timing
/// claim: a loaded 2-core box running debug builds).
const WAIT: Duration = Duration::from_secs(20);

/// Pinger: a sweep each second, 2 attempts of 2 s, so a silent device is due at status 0
/// within 1 + 2 * 2 = 5 s. The Observer polls only once an hour: every `data` frame beyond the
/// first must come from an observation.
fn extra_yaml(platform: &PlatformSim, identities: &std::path::Path) -> String {
    format!(
        "platform:\n  url: {url:?}\n  reconnect_max_s: 1\n\
         observer:\n  enabled: true\n  poll_interval_s: 3600\n\
         pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 2000\n  attempts: 2\n  max_in_flight: 16\n\
         dtls:\n  listen: [\"127.0.0.1:0\"]\n  identities_file: {file:?}\n",
        url = platform.url(),
        file = identities.display().to_string(),
    )
}

struct Setup {
    platform: PlatformSim,
    gw: Gateway,
    /// The gateway's coaps listener.
    coaps: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Both libcoap tools, by the suite's skip policy (`common::skip`).
fn tools_present() -> bool {
    require_tool(coaps::SERVER) && require_tool(coaps::CLIENT)
}

/// A platform, and a gateway (admin API on) whose identities file gives `node1` `key`.
fn start(key: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let identities = dir.path().join("identities.yaml");
    std::fs::write(
        &identities,
        format!(
            "identities:\n  - identity: node1\n    psk_hex: \"{}\"\n",
            coaps::psk_hex(key)
        ),
    )
    .expect("write identities");
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: extra_yaml(&platform, &identities),
        ..GatewayOptions::default()
    });
    let coaps = coaps::coaps_addr(&gw);
    platform
        .wait_type("snapshot", None, WAIT)
        .expect("the gateway connected to the platform");
    Setup {
        platform,
        gw,
        coaps,
        _dir: dir,
    }
}

impl Setup {
    /// Register `node1` over coaps (PSK `key`) with base `coaps://device`, a `/time` link
    /// marked observable; waits for the platform to hear of it.
    fn register(&self, key: &str, device: SocketAddr) -> Value {
        let uri = format!("coaps://{}/rd?ep=node1&base=coaps://{device}", self.coaps);
        let out = coaps::client(
            "node1",
            key,
            &["-m", "post", "-t", "40", "-e", "</time>;obs;rt=\"time\""],
            &uri,
        );
        assert_eq!(
            coaps::response_code(&out).as_deref(),
            Some("2.01"),
            "registration over coaps: {out:?}\ngateway:\n{}",
            self.gw.log_text()
        );
        let frame = self
            .platform
            .wait_type("device_registered", Some("node1"), WAIT)
            .expect("device_registered for node1");
        assert_eq!(
            frame["device"]["base"],
            format!("coaps://{device}"),
            "{frame}"
        );
        frame
    }

    /// Send a platform command and wait for its result.
    fn command(&mut self, command: Value) -> Value {
        let id = command["id"].as_str().expect("id").to_string();
        let mut frame = command;
        frame["type"] = json!("command");
        self.platform.send_line(&frame.to_string());
        self.platform
            .wait_for(WAIT, |v| {
                v["type"] == "command_result" && v["id"] == id.as_str()
            })
            .unwrap_or_else(|| panic!("no command_result for {id}:\n{}", self.gw.log_text()))
    }

    /// `node1`'s device object from the admin API (it must still be registered).
    fn device(&self) -> Value {
        let r = http::get(self.gw.http_addr(), "/api/devices/node1");
        assert_eq!(r.status, 200, "GET /api/devices/node1: {}", r.text());
        r.json()
    }

    /// The value of the unlabelled counter `name` in /metrics.
    fn metric(&self, name: &str) -> u64 {
        let r = http::get(self.gw.http_addr(), "/metrics");
        assert_eq!(r.status, 200, "GET /metrics");
        r.text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0, |v| v as u64)
    }

    /// Pings answered so far. `pings_sent` is counted before `pings_failed`, so a scrape in
    /// between overstates this by one at most.
    fn pings_answered(&self) -> u64 {
        let sent = self.metric("coap_gateway_pings_sent_total");
        let failed = self.metric("coap_gateway_pings_failed_total");
        sent.saturating_sub(failed)
    }

    /// `device_status` frames for `node1` with `status`.
    fn status_frames(&self, status: u8) -> usize {
        self.platform
            .count(|f| f["type"] == "device_status" && f["ep"] == "node1" && f["status"] == status)
    }

    fn data_frames(&self) -> Vec<Value> {
        self.platform
            .frames()
            .into_iter()
            .filter(|f| f["type"] == "data" && f["ep"] == "node1" && f["path"] == "/time")
            .collect()
    }

    /// Wait (bounded by `WAIT`) until `cond` holds; `what` names it in the failure.
    fn wait(&self, what: &str, cond: impl Fn(&Setup) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}\nframes: {:?}\ngateway:\n{}",
                self.platform.frames(),
                self.gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_gateway_pings_commands_and_observes_a_libcoap_coaps_device() {
    if !tools_present() {
        return;
    }
    let mut server = CoapsServer::start(coaps::free_port_pair(), SERVER_KEY);
    // The gateway reaches the server through a relay that keeps every datagram: without it,
    // a ping sent in the clear would still count as answered while the Observer's DTLS
    // notifications arrive from that address (`ClientError::PeerBusy { answered_meanwhile }`).
    let tap = Tap::start(server.dtls_addr());
    let mut s = start(SERVER_KEY);
    // The base names the registrant's own host (loopback): allowed, as the registration
    // comes from that host.
    s.register(SERVER_KEY, tap.addr());

    // Executer: a command answered by the device over the session the gateway opened.
    let r = s.command(json!({"id": "t1", "ep": "node1", "method": "GET", "path": "/time"}));
    assert_eq!(r["code"], "2.05", "{r}\ngateway:\n{}", s.gw.log_text());
    assert!(r["payload"].as_str().is_some_and(|p| !p.is_empty()), "{r}");

    // Observer: notifications, one a second from libcoap's /time, arrive as data frames. A
    // poll (hourly) could give one frame; three with two different values are an observation.
    s.wait("three /time data frames with two different values", |s| {
        let frames = s.data_frames();
        let mut values: Vec<&str> = frames
            .iter()
            .filter_map(|f| f["payload"].as_str())
            .collect();
        values.dedup();
        frames.len() >= 3 && values.len() >= 2
    });
    for f in s.data_frames() {
        assert_eq!(f["code"], "2.05", "{f}");
    }
    assert!(
        server.wait_for("create new subscription", WAIT),
        "the device saw no Observe registration:\n{}",
        server.text()
    );

    // Pinger: pings answered keep node1 at 1. Four, as the scrape may overstate by one.
    s.wait("four pings answered", |s| s.pings_answered() >= 4);
    assert_eq!(s.device()["status"], 1, "{}", s.device());
    assert_eq!(
        s.status_frames(0),
        0,
        "node1 went to 0 while its server ran"
    );
    // The device itself got the pings (empty CONs) and answered them with RST.
    assert!(
        server.wait_for_count("t:CON c:0.00", 3, WAIT)
            && server.wait_for_count("t:RST c:0.00", 3, WAIT),
        "the device saw fewer than three pings:\n{}",
        server.text()
    );
    // ... and all of it over DTLS: only DTLS records, application data among them, reached
    // the device's coaps port, and nothing its plain one.
    assert!(
        server.text().contains("DTLS: session connected"),
        "no DTLS session at the device:\n{}",
        server.text()
    );
    let kinds: Vec<Kind> = tap
        .coaps_datagrams()
        .iter()
        .map(|d| coaps::classify(d))
        .collect();
    assert!(
        kinds.iter().all(|k| matches!(k, Kind::Dtls(_))),
        "not only DTLS records at the coaps port: {kinds:?}"
    );
    assert!(
        kinds.contains(&Kind::Dtls(23)),
        "no application data: {kinds:?}"
    );
    assert_eq!(
        tap.plain_datagrams(),
        Vec::<Vec<u8>>::new(),
        "datagrams at the device's plain port"
    );

    // The device vanishes: status 0, still registered.
    let failed_before = s.metric("coap_gateway_pings_failed_total");
    server.kill();
    s.wait("a device_status 0 frame for node1", |s| {
        s.status_frames(0) >= 1
    });
    assert_eq!(s.device()["status"], 0, "{}", s.device());
    assert!(
        s.metric("coap_gateway_pings_failed_total") >= failed_before + 2,
        "status 0 without two failed pings"
    );
    assert_eq!(
        s.platform
            .count(|f| f["type"] == "device_removed" && f["ep"] == "node1"),
        0
    );
}

#[test]
fn a_wrong_key_fails_the_handshake_and_nothing_goes_out_in_plaintext() {
    if !tools_present() {
        return;
    }
    let server = CoapsServer::start(coaps::free_port_pair(), SERVER_KEY);
    // The device's address as the gateway knows it is a relay in front of the server, which
    // keeps every datagram; the port below it stands for the device's plain CoAP port.
    let tap = Tap::start(server.dtls_addr());
    // The gateway's file gives node1 another key than the device's: node1 registers with the
    // file's key (the gateway's own listener checks it), the device expects its own.
    let mut s = start(OTHER_KEY);
    s.register(OTHER_KEY, tap.addr());

    // A command needs a session too: it must fail, not go out in the clear.
    let r = s.command(
        json!({"id": "w1", "ep": "node1", "method": "GET", "path": "/time",
                             "timeout_ms": 3000}),
    );
    assert!(r["code"].is_null(), "a response without a handshake: {r}");
    // timeout (the handshake never ends), coap_error (it was refused) or device_offline
    // (the Pinger got there first): any error, never an answer.
    assert!(
        ["timeout", "coap_error", "device_offline"]
            .contains(&r["error"]["kind"].as_str().unwrap_or("")),
        "{r}"
    );

    s.wait("a device_status 0 frame for node1", |s| {
        s.status_frames(0) >= 1
    });
    assert_eq!(s.device()["status"], 0, "{}", s.device());
    // No ping answered: sent and failed meet (bounded: were one answered they never would).
    s.wait("every ping sent failed", |s| {
        let sent = s.metric("coap_gateway_pings_sent_total");
        sent >= 2 && s.metric("coap_gateway_pings_failed_total") == sent
    });
    assert_eq!(s.status_frames(1), 0, "node1 came back at 1");
    assert!(s.data_frames().is_empty(), "{:?}", s.data_frames());

    // The gateway tried: ClientHellos reached the device, and no handshake completed there.
    assert!(
        server.text().contains("new incoming session"),
        "the gateway's hello never reached the device:\n{}",
        server.text()
    );
    assert!(
        !server.text().contains("session connected"),
        "a DTLS session completed with the wrong key:\n{}",
        server.text()
    );
    let sent = tap.coaps_datagrams();
    assert!(
        sent.iter().any(|d| coaps::is_client_hello(d)),
        "no ClientHello at the device's coaps port: {sent:?}"
    );
    let kinds: Vec<Kind> = sent.iter().map(|d| coaps::classify(d)).collect();
    assert!(
        kinds.iter().all(|k| matches!(k, Kind::Dtls(_))),
        "not only DTLS records at the coaps port: {kinds:?}"
    );
    assert!(
        !kinds.contains(&Kind::Dtls(23)),
        "application data without a handshake: {kinds:?}"
    );
    assert_eq!(
        tap.plain_datagrams(),
        Vec::<Vec<u8>>::new(),
        "datagrams at the device's plain port"
    );
}
