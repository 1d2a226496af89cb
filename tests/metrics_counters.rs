//! The metrics of issue 12 against a real gateway: the gateway runs in this process (started
//! with `gateway::start` on 127.0.0.1:0, so `metrics::global()` is the one it records into),
//! and is driven over real UDP by the independent test client (`coap_peer`), by `device-sim`
//! and by test-owned device sockets. Each test renders the exposition before and after,
//! parses both with `prometheus-parse`, and asserts the counters moved by exactly what was
//! done to the gateway.
//!
//! The metrics are process-wide, so the tests of this file take one lock each: under
//! `cargo test` they would otherwise share the counters (nextest runs each in its own process).

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coap_gateway::config::Config;
use coap_gateway::gateway;
use coap_gateway::metrics::{self, ScrapeInputs};
use coap_gateway::platform::{GetLinkStats, PlatformLink};
use common::coap_peer::*;
use common::device_sim::DeviceSim;
use common::platform_sim::PlatformSim;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A gateway on its own actix system thread; dropped = shut down.
struct InProcessGateway {
    addr: SocketAddr,
    /// The platform link, when the config names a platform.
    link: Option<actix::Addr<PlatformLink>>,
    stop: Option<futures::channel::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InProcessGateway {
    fn start(extra_yaml: &str) -> InProcessGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "gateway:\n  id: metrics-test\n  data_dir: {:?}\n  cache_mb: 8\n\
             rd:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"\"\n{extra_yaml}",
            dir.path().join("data").display().to_string()
        );
        let config = Config::from_yaml(&yaml).expect("test config is valid");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let running = gateway::start(&config).await.expect("gateway starts");
                let link = running.platform.as_ref().map(|(link, _)| link.clone());
                addr_tx.send((running.rd.local_addrs()[0], link)).unwrap();
                let _ = stopped.await;
                if let Some(pinger) = &running.pinger {
                    let _ = pinger.send(coap_gateway::pinger::StopPinger).await;
                }
                running.rd.shutdown().await;
            });
        });
        let (addr, link) = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("gateway bound in time");
        InProcessGateway {
            addr,
            link,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for InProcessGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every scalar sample (histograms: `_count` only, which the parser reports as a sample of
/// its own) keyed as `name{labels}`, from one rendered and parsed scrape.
fn scrape() -> BTreeMap<String, f64> {
    scrape_with(&ScrapeInputs::default())
}

fn scrape_with(inputs: &ScrapeInputs) -> BTreeMap<String, f64> {
    let text = metrics::render(metrics::global(), inputs);
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let mut out = BTreeMap::new();
    for s in parsed.samples {
        if let Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) = s.value {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            out.insert(key(&s.metric, &labels), v);
        }
    }
    out
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    // One spelling for a series, whatever order its labels came in.
    let mut labels = labels.to_vec();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if inner.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", inner.join(","))
    }
}

/// How much each series moved between two scrapes (series absent before count from 0).
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

fn moved(d: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    d.get(&key(name, labels)).copied().unwrap_or(0.0)
}

const OPS: &str = "coap_gateway_registration_operations_total";
const CODES: &str = "coap_gateway_coap_responses_total";
const LOOKUPS: &str = "coap_gateway_lookups_total";

#[test]
fn rd_requests_move_their_counters_by_exactly_what_was_done() {
    let _serial = serial();
    let gw = InProcessGateway::start("pinger:\n  enabled: false\n");
    let before = scrape();

    // Three registrations by device-sim (POST /rd, 2.01 each).
    let mut sim = DeviceSim::spawn(gw.addr, 3, &["--lt", "3600"]);
    assert!(
        sim.ready(Duration::from_secs(20)),
        "device-sim did not register"
    );

    let peer = Peer::new(gw.addr);
    let m1 = register(&peer, "ep=metrics-m1&lt=600", "</a>;rt=\"x\"");
    let m2 = register(&Peer::new(gw.addr), "ep=metrics-m2&lt=600", "</b>");
    let short = register(&Peer::new(gw.addr), "ep=metrics-short&lt=1", "</c>");
    assert!(!short.is_empty());
    assert_eq!(peer.request(&Req::post(&m1)).code, "2.04");
    assert_eq!(peer.delete(&m2).code, "2.02");
    assert_eq!(
        peer.request(&Req::post(&m2)).code,
        "4.04",
        "update of a removed one"
    );
    assert_eq!(peer.delete(&m2).code, "4.04", "second removal");
    let no_ep = peer.post_links("/rd?lt=60", "</d>");
    assert_eq!(no_ep.code, "4.00", "registration without ep");

    for uri in [
        "/rd-lookup/ep",
        "/rd-lookup/ep?ep=metrics-m1",
        "/rd-lookup/ep?et=none",
    ] {
        lookup(&Peer::new(gw.addr), uri);
    }
    lookup(&Peer::new(gw.addr), "/rd-lookup/res");
    lookup(&Peer::new(gw.addr), "/rd-lookup/res?rt=x");
    lookup(&Peer::new(gw.addr), "/rd-lookup/d");
    lookup(&Peer::new(gw.addr), "/rd-lookup/gp");
    assert_eq!(peer.get("/no-such-resource").code, "4.04");
    assert_eq!(peer.delete("/rd-lookup/ep").code, "4.05");

    // The lt=1 registration expires on the Registry's timer.
    let deadline = Instant::now() + Duration::from_secs(15);
    let expired = loop {
        let d = delta(&before, &scrape());
        let n = moved(&d, OPS, &[("operation", "expire"), ("outcome", "ok")]);
        if n >= 1.0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(expired, 1.0, "exactly one registration expired");

    let d = delta(&before, &scrape());
    let op = |o: &str, r: &str| moved(&d, OPS, &[("operation", o), ("outcome", r)]);
    assert_eq!(
        op("register", "ok"),
        6.0,
        "3 device-sim + m1, m2, short\n{d:#?}"
    );
    assert_eq!(op("register", "rejected"), 1.0);
    assert_eq!(op("update", "ok"), 1.0);
    assert_eq!(op("update", "not_found"), 1.0);
    assert_eq!(op("remove", "ok"), 1.0);
    assert_eq!(op("remove", "not_found"), 1.0);
    assert_eq!(op("register", "unavailable"), 0.0);

    let kind = |k: &str| moved(&d, LOOKUPS, &[("kind", k)]);
    assert_eq!(
        (kind("ep"), kind("res"), kind("d"), kind("gp")),
        (3.0, 2.0, 1.0, 1.0)
    );

    let code = |c: &str| moved(&d, CODES, &[("code", c)]);
    assert_eq!(code("2.01"), 6.0);
    assert_eq!(code("2.04"), 1.0);
    assert_eq!(code("2.02"), 1.0);
    assert_eq!(code("2.05"), 7.0, "the seven lookups");
    assert_eq!(code("4.00"), 1.0);
    assert_eq!(code("4.04"), 3.0, "update, remove, unknown path");
    assert_eq!(code("4.05"), 1.0);
    let all_codes: f64 = d
        .iter()
        .filter(|(k, _)| k.starts_with(CODES))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(all_codes, 20.0, "no other response was sent\n{d:#?}");
    assert_eq!(
        moved(&d, "coap_gateway_rd_request_duration_seconds_count", &[]),
        20.0,
        "one latency observation per response"
    );
    assert!(moved(&d, "coap_gateway_rd_request_duration_seconds_sum", &[]) > 0.0);
    drop(sim);
}

/// A device socket that answers CoAP pings (empty CON) with RST, or stays silent, and counts
/// every ping it receives.
struct PingTarget {
    _sock: UdpSocket,
    target: common::ping_target::PingTarget,
}

impl PingTarget {
    fn start(sock: UdpSocket, answer: bool) -> PingTarget {
        let target = common::ping_target::PingTarget::start(&sock);
        target.set_silent(!answer);
        PingTarget {
            _sock: sock,
            target,
        }
    }

    fn pings(&self) -> f64 {
        self.target.pings() as f64
    }
}

/// Register `ep` from a fresh socket (so its base is that socket), then hand the socket over.
fn device(gw: SocketAddr, ep: &str) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = Peer::with_socket(sock.try_clone().unwrap(), gw);
    register(&peer, &format!("ep={ep}&lt=600"), "</s>");
    sock
}

#[test]
fn pings_sent_and_failed_match_what_the_devices_saw() {
    let _serial = serial();
    let gw = InProcessGateway::start(
        "pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n  max_in_flight: 8\n",
    );
    let before = scrape();
    let alive = PingTarget::start(device(gw.addr, "metrics-alive"), true);
    let silent = PingTarget::start(device(gw.addr, "metrics-silent"), false);

    // The Pinger records a ping when its attempt ends (an answer, or the 200 ms timeout), so
    // between sweeps the counters equal what the two devices received. Sweeps run every
    // second; poll for such a moment after both devices were pinged a few times.
    let deadline = Instant::now() + Duration::from_secs(20);
    let last;
    loop {
        let d = delta(&before, &scrape());
        let sent = moved(&d, "coap_gateway_pings_sent_total", &[]);
        let failed = moved(&d, "coap_gateway_pings_failed_total", &[]);
        let (a, s) = (alive.pings(), silent.pings());
        if a >= 2.0 && s >= 3.0 && sent == a + s && failed == s {
            last = (sent, failed, a, s);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pings: sent {sent}, failed {failed}; devices saw alive {a}, silent {s}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let (sent, failed, a, s) = last;
    assert_eq!(sent, a + s);
    assert_eq!(
        failed, s,
        "every ping to the silent device failed, no other did"
    );
}

const FRAMES: &str = "coap_gateway_platform_frames_sent_total";

#[test]
fn commands_and_frames_match_what_the_platform_received() {
    let _serial = serial();
    let mut platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = InProcessGateway::start(&format!(
        "pinger:\n  enabled: false\nplatform:\n  url: {:?}\n  reconnect_max_s: 1\n",
        platform.url()
    ));
    let link = gw.link.clone().expect("a platform is configured");
    let wait = Duration::from_secs(20);
    platform.wait_type("snapshot", None, wait).expect("link up");
    let before = scrape();

    // Two devices whose /sensors/temp (Observe, a new value every second) the Observer forwards.
    let mut sim = DeviceSim::spawn(gw.addr, 2, &["--prefix", "pm-", "--lt", "3600"]);
    assert!(sim.ready(wait), "device-sim did not register");
    platform
        .wait_type("device_registered", Some("pm-1"), wait)
        .expect("announced");

    for frame in [
        json!({"type": "command", "id": "m-get", "ep": "pm-0", "method": "GET", "path": "/sensors/temp"}),
        json!({"type": "command", "id": "m-none", "ep": "nobody", "method": "GET", "path": "/x"}),
    ] {
        platform.send_line(&frame.to_string());
    }
    for id in ["m-get", "m-none"] {
        platform
            .wait_for(wait, |v| v["type"] == "command_result" && v["id"] == id)
            .unwrap_or_else(|| panic!("no result for {id}"));
    }
    platform
        .wait_for(wait, |v| v["type"] == "data" && v["ep"] == "pm-1")
        .expect("data from pm-1");

    // Frames are counted when handed to the socket writer and data keeps flowing, so poll for
    // a moment where everything written has arrived.
    let types = [
        "device_registered",
        "data",
        "command_result",
        "snapshot",
        "hello",
    ];
    let deadline = Instant::now() + wait;
    let (d, received) = loop {
        let stats = futures::executor::block_on(link.send(GetLinkStats)).expect("link answers");
        let d = delta(
            &before,
            &scrape_with(&ScrapeInputs {
                platform: Some((&stats).into()),
                ..ScrapeInputs::default()
            }),
        );
        let frames = platform.frames();
        let received: BTreeMap<&str, f64> = types
            .iter()
            .map(|t| (*t, frames.iter().filter(|v| v["type"] == *t).count() as f64))
            .collect();
        let before_data = before
            .get(&key(FRAMES, &[("type", "data")]))
            .copied()
            .unwrap_or(0.0);
        let sent = |t: &str| moved(&d, FRAMES, &[("type", t)]);
        let settled = sent("device_registered") == received["device_registered"]
            && sent("command_result") == received["command_result"]
            && sent("data") + before_data == received["data"]
            && sent("data") == moved(&d, "coap_gateway_data_frames_forwarded_total", &[]);
        if settled {
            break (d, received);
        }
        assert!(
            Instant::now() < deadline,
            "frames never settled: {d:#?}\n{received:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(received["device_registered"], 2.0);
    assert_eq!(received["command_result"], 2.0);
    assert!(received["data"] >= 1.0);
    let result = |r: &str| moved(&d, "coap_gateway_commands_total", &[("result", r)]);
    assert_eq!(result("response"), 1.0);
    assert_eq!(result("unknown_device"), 1.0);
    assert_eq!(
        result("timeout") + result("coap_error") + result("overloaded"),
        0.0
    );
    assert_eq!(
        moved(&d, "coap_gateway_command_round_trip_seconds_count", &[]),
        1.0,
        "only the answered command has a round trip"
    );
    let now = scrape_with(&ScrapeInputs {
        platform: Some((&futures::executor::block_on(link.send(GetLinkStats)).unwrap()).into()),
        ..ScrapeInputs::default()
    });
    assert_eq!(now[&key("coap_gateway_commands_in_flight", &[])], 0.0);
    assert_eq!(now[&key("coap_gateway_platform_connected", &[])], 1.0);
    assert_eq!(
        now[&key("coap_gateway_platform_reconnects_total", &[])],
        0.0
    );
    let dropped = |r: &str| now[&key("coap_gateway_data_frames_dropped_total", &[("reason", r)])];
    assert_eq!(dropped("queue_full"), 0.0);
    drop(sim);
}
