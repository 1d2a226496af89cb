//! The Executer end to end (issue 7): `platform-sim` and the gateway as real processes, and a
//! test-owned CoAP device (the project's `Endpoint` with a recording handler) registered at the
//! gateway. Every command sent as a `command` frame must come back as exactly one
//! `command_result` with the device's answer or the contract's error kind.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use coap_gateway::coap::{
    Code, Endpoint, HandlerFuture, InboundRequest, Method, OutboundResponse, RequestHandler,
    TransmissionParams,
};
use futures::FutureExt;
use serde_json::{json, Value};

use common::coap_peer::*;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};

const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for a second, unwanted result of one command.
const SETTLE: Duration = Duration::from_millis(700);

/// What the test device received.
#[derive(Default)]
struct Seen {
    /// Requests by `METHOD /path`.
    counts: HashMap<String, u32>,
    /// The last body by `METHOD /path`, with its Content-Format.
    bodies: HashMap<String, (Option<u16>, Vec<u8>)>,
    /// The last query by `METHOD /path`.
    queries: HashMap<String, Vec<String>>,
    toggles: u32,
}

/// `/sensors/temp` text; `/big` 3 KiB; `/blob` (POST) records the body; `/toggle` (POST)
/// counts; `/silent` never answers; anything else 4.04.
struct Recorder(Arc<Mutex<Seen>>);

fn big_body() -> Vec<u8> {
    (0..3 * 1024).map(|i| (i * 7 % 251) as u8).collect()
}

impl RequestHandler for Recorder {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        let key = format!("{:?} {}", req.method, req.path_string());
        let mut seen = self.0.lock().unwrap();
        *seen.counts.entry(key.clone()).or_insert(0) += 1;
        seen.bodies
            .insert(key.clone(), (req.content_format, req.payload.clone()));
        seen.queries.insert(key, req.query.clone());
        let path = req.path.join("/");
        let resp = match (req.method, path.as_str()) {
            (Method::Get, "sensors/temp") => {
                OutboundResponse::new(Code::CONTENT).with_payload(0, b"21.5 C".to_vec())
            }
            (Method::Get, "big") => {
                OutboundResponse::new(Code::CONTENT).with_payload(42, big_body())
            }
            (Method::Post, "blob") => OutboundResponse::new(Code::CHANGED),
            (Method::Post, "toggle") => {
                seen.toggles += 1;
                OutboundResponse::new(Code::CHANGED)
                    .with_payload(0, seen.toggles.to_string().into_bytes())
            }
            (Method::Get, "silent") => return futures::future::pending().boxed(),
            _ => OutboundResponse::new(Code::NOT_FOUND),
        };
        futures::future::ready(resp).boxed()
    }
}

/// A CoAP device on its own tokio runtime.
struct Device {
    _rt: tokio::runtime::Runtime,
    _endpoint: Endpoint,
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Device {
    fn start() -> Device {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handler = Arc::new(Recorder(seen.clone()));
        let endpoint = rt
            .block_on(Endpoint::bind(
                &["127.0.0.1:0".parse().unwrap()],
                TransmissionParams::default(),
                handler,
            ))
            .unwrap();
        let addr = endpoint.local_addrs()[0];
        Device {
            _rt: rt,
            _endpoint: endpoint,
            addr,
            seen,
        }
    }

    fn count(&self, key: &str) -> u32 {
        self.seen
            .lock()
            .unwrap()
            .counts
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Register at the gateway as `ep` (optionally in sector `d`) with this device's base.
    fn register(&self, gw: &Gateway, ep: &str, d: Option<&str>) {
        let peer = Peer::new(gw.addr());
        let sector = d.map(|d| format!("&d={d}")).unwrap_or_default();
        register(
            &peer,
            &format!("ep={ep}{sector}&base=coap://{}", self.addr),
            "</sensors/temp>;obs",
        );
    }
}

struct Setup {
    sim: PlatformSim,
    gw: Gateway,
    device: Device,
}

fn setup(extra_yaml: &str) -> Setup {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            // The Observer would poll the test device's sensor and add to its request counts.
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\nobserver:\n  enabled: false\n{extra_yaml}",
            sim.url()
        ),
        ..GatewayOptions::default()
    });
    sim.wait_type("snapshot", None, WAIT).expect("connected");
    let device = Device::start();
    device.register(&gw, "dev1", None);
    sim.wait_type("device_registered", Some("dev1"), WAIT)
        .expect("registered");
    Setup { sim, gw, device }
}

impl Setup {
    /// Send `command` (an object with an `id`) and return its `command_result`.
    fn run(&mut self, command: Value) -> Value {
        let id = command["id"].as_str().expect("id").to_string();
        let mut frame = command;
        frame["type"] = json!("command");
        self.sim.send_line(&frame.to_string());
        self.sim
            .wait_for(WAIT, |v| {
                v["type"] == "command_result" && v["id"] == id.as_str()
            })
            .unwrap_or_else(|| panic!("no command_result for {id}: {:?}", self.sim.frames()))
    }

    fn results_for(&self, id: &str) -> usize {
        self.sim
            .frames()
            .iter()
            .filter(|v| v["type"] == "command_result" && v["id"] == id)
            .count()
    }

    /// Wait until `n` results carry `id`.
    fn wait_results(&self, id: &str, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.results_for(id) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} results for {id}",
                self.results_for(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After a short settle, exactly `n` results carry `id`.
    fn assert_results(&self, id: &str, n: usize) {
        std::thread::sleep(SETTLE);
        assert_eq!(self.results_for(id), n, "results for {id}");
    }
}

fn error_kind(result: &Value) -> &str {
    result["error"]["kind"].as_str().unwrap_or("<none>")
}

#[test]
fn get_returns_the_devices_answer() {
    let mut s = setup("");
    let r = s.run(
        json!({"id": "g1", "ep": "dev1", "method": "GET", "path": "/sensors/temp",
                         "query": "unit=c&x=1"}),
    );
    assert_eq!(r["code"], "2.05", "{r}");
    assert_eq!(r["payload"], "21.5 C");
    assert_eq!(r["payload_encoding"], "utf8");
    assert_eq!(r["content_format"], 0);
    assert!(r["rtt_ms"].as_u64().is_some(), "{r}");
    assert_eq!(s.device.count("Get /sensors/temp"), 1);
    assert_eq!(
        s.device.seen.lock().unwrap().queries["Get /sensors/temp"],
        vec!["unit=c", "x=1"]
    );
    s.assert_results("g1", 1);
}

#[test]
fn binary_post_reaches_the_device_intact() {
    let mut s = setup("");
    let body: Vec<u8> = (0..=255u8).rev().collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
    let r = s.run(
        json!({"id": "p1", "ep": "dev1", "method": "POST", "path": "/blob",
                         "payload": b64, "payload_encoding": "base64", "content_format": 42}),
    );
    assert_eq!(r["code"], "2.04", "{r}");
    let (cf, got) = s.device.seen.lock().unwrap().bodies["Post /blob"].clone();
    assert_eq!(cf, Some(42));
    assert_eq!(got, body);
    s.assert_results("p1", 1);
}

#[test]
fn a_large_binary_post_goes_out_with_block1() {
    let mut s = setup("");
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
    let r = s.run(
        json!({"id": "p2", "ep": "dev1", "method": "POST", "path": "/blob",
                         "payload": b64, "payload_encoding": "base64"}),
    );
    assert_eq!(r["code"], "2.04", "{r}");
    assert_eq!(s.device.seen.lock().unwrap().bodies["Post /blob"].1, body);
}

#[test]
fn device_errors_are_passed_through_as_successful_results() {
    let mut s = setup("");
    let r = s.run(json!({"id": "n1", "ep": "dev1", "method": "GET", "path": "/nothing/here"}));
    assert_eq!(r["code"], "4.04", "{r}");
    assert!(r.get("error").is_none(), "{r}");
    s.assert_results("n1", 1);
}

#[test]
fn a_3k_response_arrives_whole_via_block2() {
    let mut s = setup("");
    let r = s.run(json!({"id": "b1", "ep": "dev1", "method": "GET", "path": "/big"}));
    assert_eq!(r["code"], "2.05", "{r}");
    assert_eq!(r["content_format"], 42);
    assert_eq!(r["payload_encoding"], "base64");
    let got = base64::engine::general_purpose::STANDARD
        .decode(r["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, big_body());
    // 3 KiB exceeds the largest CoAP block (1024): whole means Block2 was followed. The
    // device's endpoint serves the later blocks from its cache, so the handler ran once.
    assert_eq!(s.device.count("Get /big"), 1);
}

#[test]
fn a_silent_device_times_out_within_the_budget() {
    let mut s = setup("");
    let started = std::time::Instant::now();
    let r = s.run(
        json!({"id": "t1", "ep": "dev1", "method": "GET", "path": "/silent",
                         "timeout_ms": 500}),
    );
    let took = started.elapsed();
    assert_eq!(error_kind(&r), "timeout", "{r}");
    // Generous: the bound is about the budget, not about a slow test machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        took >= Duration::from_millis(450),
        "answered before the budget: {took:?}"
    );
    s.assert_results("t1", 1);
}

#[test]
fn unknown_and_ambiguous_devices() {
    let mut s = setup("");
    let r = s.run(json!({"id": "u1", "ep": "nobody", "method": "GET", "path": "/x"}));
    assert_eq!(error_kind(&r), "unknown_device", "{r}");
    let r = s.run(
        json!({"id": "u2", "ep": "dev1", "d": "elsewhere", "method": "GET",
                         "path": "/x"}),
    );
    assert_eq!(error_kind(&r), "unknown_device", "{r}");

    s.device.register(&s.gw, "twin", Some("a"));
    s.device.register(&s.gw, "twin", Some("b"));
    s.sim
        .wait_for(WAIT, |v| {
            v["type"] == "device_registered"
                && v["device"]["ep"] == "twin"
                && v["device"]["d"] == "b"
        })
        .expect("second twin registered");
    // Without "d" a command names the registration without a sector; `twin` has none, so the
    // refusal names the sectors it does have.
    let r = s.run(json!({"id": "u3", "ep": "twin", "method": "GET", "path": "/sensors/temp"}));
    assert_eq!(error_kind(&r), "unknown_device", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"a\", \"b\""),
        "{r}"
    );
    let r = s.run(json!({"id": "u4", "ep": "twin", "d": "b", "method": "GET",
                         "path": "/sensors/temp"}));
    assert_eq!(r["code"], "2.05", "{r}");
    for id in ["u1", "u2", "u3", "u4"] {
        s.assert_results(id, 1);
    }
    // A refusal sent nothing, so it is not remembered: the same id runs once the device exists.
    s.device.register(&s.gw, "nobody", None);
    s.sim
        .wait_type("device_registered", Some("nobody"), WAIT)
        .expect("registered");
    s.sim.send_line(
        &json!({"type": "command", "id": "u1", "ep": "nobody", "method": "GET",
                "path": "/sensors/temp"})
        .to_string(),
    );
    s.sim
        .wait_for(WAIT, |v| {
            v["type"] == "command_result" && v["id"] == "u1" && v["code"] == "2.05"
        })
        .expect("the retried id is executed");
}

/// Issue 25 item 4: another host registering the same name in a sector of its own neither
/// blocks the commands for the registration without a sector nor takes them over; `"d": ""`
/// names that registration explicitly, and the attacker's sector is reachable only by name.
#[test]
fn a_second_sector_neither_blocks_nor_takes_the_name_without_one() {
    let mut s = setup("");
    s.device.register(&s.gw, "victim-0", None);
    s.sim
        .wait_type("device_registered", Some("victim-0"), WAIT)
        .expect("victim registered");
    // The attacker, from another address, points its registration at a socket that never
    // answers: a command that reached it would time out instead of reading the sensor.
    let attacker_base = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let attacker = Peer::with_socket(
        std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2"),
        s.gw.addr(),
    );
    register(
        &attacker,
        &format!(
            "ep=victim-0&d=attacker&base=coap://{}",
            attacker_base.local_addr().unwrap()
        ),
        "</sensors/temp>",
    );
    s.sim
        .wait_for(WAIT, |v| {
            v["type"] == "device_registered"
                && v["device"]["ep"] == "victim-0"
                && v["device"]["d"] == "attacker"
        })
        .expect("attacker registered");

    let before = s.device.count("Get /sensors/temp");
    let cases = [
        json!({"id": "s1", "ep": "victim-0", "method": "GET", "path": "/sensors/temp"}),
        json!({"id": "s2", "ep": "victim-0", "d": null, "method": "GET", "path": "/sensors/temp"}),
        json!({"id": "s3", "ep": "victim-0", "d": "", "method": "GET", "path": "/sensors/temp"}),
    ];
    for case in cases {
        let id = case["id"].as_str().unwrap().to_string();
        let r = s.run(case);
        assert_eq!(r["code"], "2.05", "{id}: {r}");
        s.assert_results(&id, 1);
    }
    assert_eq!(s.device.count("Get /sensors/temp"), before + 3);

    let r = s.run(
        json!({"id": "s4", "ep": "victim-0", "d": "attacker", "method": "GET",
                         "path": "/sensors/temp", "timeout_ms": 300}),
    );
    assert_eq!(error_kind(&r), "timeout", "{r}");
    assert_eq!(s.device.count("Get /sensors/temp"), before + 3);
}

#[test]
fn malformed_commands_are_bad_commands_with_their_id() {
    let mut s = setup("");
    let cases = [
        json!({"id": "m1", "ep": "dev1", "method": "GET"}),
        json!({"id": "m2", "ep": "dev1", "method": "BREW", "path": "/x"}),
        json!({"id": "m3", "ep": "dev1", "method": "POST", "path": "/blob",
               "payload": "!!not base64!!", "payload_encoding": "base64"}),
        json!({"id": "m4", "ep": "dev1", "method": "GET", "path": "sensors/temp"}),
        json!({"id": "m5", "ep": "dev1", "method": "GET", "path": "/x", "content_format": 70000}),
        json!({"id": "m6", "ep": "dev1", "method": "GET", "path": "/x?a=1"}),
    ];
    for case in cases {
        let id = case["id"].as_str().unwrap().to_string();
        let r = s.run(case);
        assert_eq!(error_kind(&r), "bad_command", "{id}: {r}");
        assert!(
            !r["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{id}: {r}"
        );
    }
    for id in ["m1", "m2", "m3", "m4", "m5", "m6"] {
        s.assert_results(id, 1);
    }
    // Nothing malformed reached the device.
    let seen = s.device.seen.lock().unwrap();
    assert!(
        seen.counts
            .keys()
            .all(|k| !k.contains("/x") && !k.contains("blob")),
        "{:?}",
        seen.counts
    );
}

#[test]
fn a_duplicate_id_is_executed_once_and_answered_twice() {
    let mut s = setup("");
    let cmd = json!({"id": "d1", "ep": "dev1", "method": "POST", "path": "/toggle"});
    let first = s.run(cmd.clone());
    assert_eq!(first["code"], "2.04", "{first}");
    let mut frame = cmd.clone();
    frame["type"] = json!("command");
    s.sim.send_line(&frame.to_string());
    s.wait_results("d1", 2);
    s.assert_results("d1", 2);
    let all: Vec<Value> = s
        .sim
        .frames()
        .into_iter()
        .filter(|v| v["type"] == "command_result" && v["id"] == "d1")
        .map(|mut v| {
            // A new frame (protocol 1.1: its own seq), the same result.
            v.as_object_mut().map(|o| o.remove("seq"));
            v
        })
        .collect();
    assert_eq!(all[0], all[1], "the duplicate gets the first result");
    assert_eq!(s.device.count("Post /toggle"), 1);

    // Sent twice back to back, while the first is still running against a slow answer.
    let cmd = json!({"id": "d2", "ep": "dev1", "method": "GET", "path": "/silent",
                     "timeout_ms": 300});
    let mut frame = cmd;
    frame["type"] = json!("command");
    s.sim.send_line(&frame.to_string());
    s.sim.send_line(&frame.to_string());
    s.wait_results("d2", 2);
    s.assert_results("d2", 2);
    assert_eq!(s.device.count("Get /silent"), 1);
}

#[test]
fn an_offline_device_gets_device_offline() {
    // A device whose base nobody answers: the Pinger marks it 0.
    let mut s = setup("pinger:\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n");
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let peer = Peer::new(s.gw.addr());
    register(
        &peer,
        &format!("ep=gone&base=coap://{dead_addr}"),
        "</sensors/temp>",
    );
    s.sim
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "device_status" && v["ep"] == "gone" && v["status"] == 0
        })
        .expect("the Pinger marks the device 0");
    let r = s.run(json!({"id": "o1", "ep": "gone", "method": "GET", "path": "/sensors/temp"}));
    assert_eq!(error_kind(&r), "device_offline", "{r}");
    s.assert_results("o1", 1);
}

#[test]
fn send_to_offline_sends_anyway_and_reports_the_transport_error() {
    let mut s = setup(
        "pinger:\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\nexecuter:\n  send_to_offline: true\n",
    );
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let peer = Peer::new(s.gw.addr());
    register(
        &peer,
        &format!("ep=gone&base=coap://{dead_addr}"),
        "</sensors/temp>",
    );
    s.sim
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "device_status" && v["ep"] == "gone" && v["status"] == 0
        })
        .expect("the Pinger marks the device 0");
    let r = s.run(
        json!({"id": "o2", "ep": "gone", "method": "GET", "path": "/sensors/temp",
                         "timeout_ms": 2000}),
    );
    // ICMP port unreachable on loopback, or silence: either way not device_offline.
    let kind = error_kind(&r);
    assert!(kind == "coap_error" || kind == "timeout", "{r}");
    s.assert_results("o2", 1);
}

#[test]
fn overload_is_reported_and_not_remembered() {
    let mut s = setup("executer:\n  max_in_flight: 1\n");
    let mut frame = json!({"type": "command", "id": "s1", "ep": "dev1", "method": "GET",
                           "path": "/silent", "timeout_ms": 1500});
    s.sim.send_line(&frame.to_string());
    frame["id"] = json!("s2");
    s.sim.send_line(&frame.to_string());
    let r = s
        .sim
        .wait_for(WAIT, |v| v["type"] == "command_result" && v["id"] == "s2")
        .expect("s2 answered");
    assert_eq!(error_kind(&r), "overloaded", "{r}");
    let r = s
        .sim
        .wait_for(WAIT, |v| v["type"] == "command_result" && v["id"] == "s1")
        .expect("s1 answered");
    assert_eq!(error_kind(&r), "timeout", "{r}");
    // A retry of the overloaded id runs for real now that there is room.
    s.sim.send_line(
        &json!({"type": "command", "id": "s2", "ep": "dev1", "method": "GET",
                "path": "/sensors/temp"})
        .to_string(),
    );
    s.sim
        .wait_for(WAIT, |v| {
            v["type"] == "command_result" && v["id"] == "s2" && v["code"] == "2.05"
        })
        .expect("the retry is executed");
    s.assert_results("s1", 1);
    s.assert_results("s2", 2);
}
