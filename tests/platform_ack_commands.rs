//! Commands under protocol 1.1 (issue 21, "Commands"): a `command_result` is an outbox frame,
//! re-sent until acknowledged, and a re-sent `command` never reaches the device twice. The
//! gateway and `platform-sim` run as real processes; the device is a CoAP server on loopback
//! owned by the test, counting the requests it receives. `platform-sim --drop-after N` drops
//! its first session, nothing acknowledged, after N numbered frames: the snapshot (seq 1), the
//! device's registration (2), then the command results. The first test also reads the re-sent
//! frames and the outbox from the gateway's `/metrics`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_gateway::coap::{
    Code, Endpoint, HandlerFuture, InboundRequest, Method, OutboundResponse, RequestHandler,
    TransmissionParams,
};
use futures::FutureExt;
use serde_json::Value;

use common::coap_peer::*;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};

const WAIT: Duration = Duration::from_secs(30);

/// POST /toggle: counts, and answers the count so far (a second execution would show).
struct Toggle(Arc<AtomicU32>);

impl RequestHandler for Toggle {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        let resp = if req.method == Method::Post && req.path_string() == "/toggle" {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            OutboundResponse::new(Code::CHANGED).with_payload(0, n.to_string().into_bytes())
        } else {
            OutboundResponse::new(Code::NOT_FOUND)
        };
        futures::future::ready(resp).boxed()
    }
}

/// A CoAP device on its own tokio runtime.
struct Device {
    _rt: tokio::runtime::Runtime,
    _endpoint: Endpoint,
    addr: SocketAddr,
    toggles: Arc<AtomicU32>,
}

impl Device {
    fn start() -> Device {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let toggles = Arc::new(AtomicU32::new(0));
        let endpoint = rt
            .block_on(Endpoint::bind(
                &["127.0.0.1:0".parse().unwrap()],
                TransmissionParams::default(),
                Arc::new(Toggle(toggles.clone())),
            ))
            .unwrap();
        let addr = endpoint.local_addrs()[0];
        Device {
            _rt: rt,
            _endpoint: endpoint,
            addr,
            toggles,
        }
    }

    fn toggles(&self) -> u32 {
        self.toggles.load(Ordering::SeqCst)
    }
}

const TOGGLE: &str = r#"{"type":"command","id":"t-1","ep":"dev1","method":"POST","path":"/toggle","timeout_ms":5000}"#;

/// The gateway (with `executer_yaml`), the sim (`--drop-after drop_after`) and the device,
/// registered: the sim has seen the snapshot and the registration.
fn setup(drop_after: u64, executer_yaml: &str) -> (PlatformSim, Gateway, Device) {
    let drop_after = drop_after.to_string();
    let sim = PlatformSim::start_args("127.0.0.1:0", None, &["--drop-after", &drop_after]);
    // With the admin server, for /metrics.
    let gw = Gateway::start_with_http(GatewayOptions {
        // The Observer would poll the device and add frames to the numbered count.
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\nobserver:\n  enabled: false\n{executer_yaml}",
            sim.url()
        ),
        ..GatewayOptions::default()
    });
    sim.wait_type("snapshot", None, WAIT).expect("connected");
    let device = Device::start();
    register(
        &Peer::new(gw.addr()),
        &format!("ep=dev1&base=coap://{}", device.addr),
        "</toggle>",
    );
    sim.wait_type("device_registered", Some("dev1"), WAIT)
        .expect("registered");
    (sim, gw, device)
}

fn results(sim: &PlatformSim) -> Vec<Value> {
    sim.frames()
        .into_iter()
        .filter(|f| f["type"] == "command_result")
        .collect()
}

/// Wait until the sim holds `n` results.
fn wait_results(sim: &PlatformSim, n: usize, gw: &Gateway) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = results(sim);
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} results: {:?}\n{}",
            r.len(),
            sim.frames(),
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the unlabelled sample `name` on the gateway's `/metrics`.
fn metric(gw: &Gateway, name: &str) -> f64 {
    let scrape = common::http::get(gw.http_addr(), "/metrics").text();
    let lines: Vec<String> = scrape.lines().map(str::to_owned).collect();
    let parsed = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).expect("parses");
    let sample = parsed
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no {name} in:\n{scrape}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name} is not a number"),
    }
}

/// Wait until `/metrics` shows `name` at `want`.
fn wait_metric(gw: &Gateway, name: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = metric(gw, name);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {v}, not {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a result says, without its `seq` and its timing.
fn outcome(result: &Value) -> Value {
    let mut r = result.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("seq");
        o.remove("rtt_ms");
    }
    r
}

/// The platform drops the socket before acknowledging the result: after the reconnect the
/// result is re-sent (same seq); the platform then re-sends the command (same id), and gets
/// the same result again while the device has been asked exactly once (the Executer's dedup
/// window).
#[test]
fn an_unacknowledged_result_is_resent_and_a_resent_command_does_not_run_twice() {
    let (mut sim, gw, device) = setup(3, "");
    sim.send_line(TOGGLE);
    let first = wait_results(&sim, 1, &gw)[0].clone();
    assert_eq!(first["id"], "t-1");
    assert_eq!(first["code"], "2.04", "{first}");
    assert!(
        sim.wait_stderr("dropping the connection after 3", WAIT),
        "{:?}",
        sim.stderr_lines()
    );
    // The second session re-sends it, numbered as before.
    let resent = wait_results(&sim, 2, &gw)[1].clone();
    assert_eq!(resent, first, "re-sent as it was");
    // /metrics: the registration (seq 2) and the result (3) were written again (snapshot
    // parts never are), then everything is acknowledged.
    wait_metric(&gw, "coap_gateway_platform_resent_frames_total", 2.0);
    wait_metric(&gw, "coap_gateway_platform_outbox_frames", 0.0);
    assert_eq!(metric(&gw, "coap_gateway_platform_acked_mode"), 1.0);
    assert!(metric(&gw, "coap_gateway_platform_last_ack_seq") >= 3.0);
    assert_eq!(metric(&gw, "coap_gateway_platform_outbox_bytes"), 0.0);
    assert_eq!(
        metric(&gw, "coap_gateway_platform_oldest_unacked_seconds"),
        0.0
    );
    assert_eq!(
        metric(&gw, "coap_gateway_platform_outbox_overflows_total"),
        0.0
    );
    // The platform retries the command whose result it lost.
    sim.send_line(TOGGLE);
    let again = wait_results(&sim, 3, &gw)[2].clone();
    assert_eq!(outcome(&again), outcome(&first), "the same result");
    assert!(again["seq"].as_u64() > first["seq"].as_u64(), "a new frame");
    assert_eq!(device.toggles(), 1, "the device was asked once");
}

/// A command that arrives while its result waits unacknowledged gets that result from the
/// outbox, even when the Executer remembers nothing (`dedup_window_s: 0`, or a gateway
/// restarted since): the device is asked once; after the drop, both results are re-sent.
#[test]
fn a_command_whose_result_waits_unacknowledged_gets_that_result_again() {
    let (mut sim, gw, device) = setup(4, "executer:\n  dedup_window_s: 0\n");
    sim.send_line(TOGGLE);
    let first = wait_results(&sim, 1, &gw)[0].clone();
    assert_eq!(first["code"], "2.04", "{first}");
    // Nothing is acknowledged in the first session: the result is still owed.
    sim.send_line(TOGGLE);
    let again = wait_results(&sim, 2, &gw)[1].clone();
    assert_eq!(outcome(&again), outcome(&first), "the owed result, again");
    assert_eq!(device.toggles(), 1, "the device was asked once");
    assert!(
        sim.wait_stderr("dropping the connection after 4", WAIT),
        "{:?}",
        sim.stderr_lines()
    );
    // Both are re-sent after the reconnect, in order.
    let all = wait_results(&sim, 4, &gw);
    assert_eq!(all[2], first);
    assert_eq!(all[3], again);
    assert_eq!(device.toggles(), 1);
}
