//! Error answers are not readings (issue 23, item 5): a device whose polled resource answers
//! 4.04, and whose observed resource ends its observation with a 4.04 notification (RFC 7641
//! §3.2). The platform (the real `platform-sim`) must see no `data` frame with an error code but
//! `data_error` frames (docs/platform-protocol.md), `/metrics` must count the error answers by
//! code, and the polled resource must be asked far less often than every poll interval once
//! the back-off kicks in. Real gateway binary; the device is a raw UDP responder in this test.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::coap_peer::*;
use common::http::get;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
/// Polls of `/missing` counted from the first one: every 1 s without back-off (~15), at
/// 0, 2, 6 and 14 s with it.
const WINDOW: Duration = Duration::from_secs(15);

/// A device on a raw socket: `GET /missing` is always 4.04 "Not Found"; `GET /gone` with
/// Observe=0 is accepted once (2.05 + Observe), then ended 300 ms later by a 4.04 notification,
/// and every later request for it is 4.04. Pings get a RST (CoAP ping answer).
struct ErrorDevice {
    addr: SocketAddr,
    missing_gets: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn not_found(req: &Packet, kind: MessageType, payload: &[u8]) -> Packet {
    let mut resp = Packet::new();
    resp.header.set_type(kind);
    resp.header.message_id = req.header.message_id;
    resp.header.code = MessageClass::Response(ResponseType::NotFound);
    resp.set_token(req.get_token().to_vec());
    resp.payload = payload.to_vec();
    resp
}

impl ErrorDevice {
    fn start() -> ErrorDevice {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let missing_gets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (gets, st) = (missing_gets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut observed_once = false;
            // (observer, its request, when to end the observation with a 4.04)
            let mut pending_end: Option<(SocketAddr, Packet, Instant)> = None;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Some((peer, req, at)) = &pending_end {
                    if Instant::now() >= *at {
                        let mut end = not_found(req, MessageType::NonConfirmable, b"Gone");
                        end.header.message_id = req.header.message_id.wrapping_add(7);
                        let _ = sock.send_to(&end.to_bytes().unwrap(), peer);
                        pending_end = None;
                    }
                }
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(pkt) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if pkt.header.code == MessageClass::Empty {
                    if pkt.header.get_type() == MessageType::Confirmable {
                        let mut rst = Packet::new();
                        rst.header.set_type(MessageType::Reset);
                        rst.header.message_id = pkt.header.message_id;
                        let _ = sock.send_to(&rst.to_bytes().unwrap(), from);
                    }
                    continue;
                }
                if pkt.header.code != MessageClass::Request(RequestType::Get) {
                    continue;
                }
                let path: Vec<String> = pkt
                    .get_option(CoapOption::UriPath)
                    .map(|segs| {
                        segs.iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let observe = pkt
                    .get_option(CoapOption::Observe)
                    .and_then(|v| v.front().cloned())
                    .map(|v| v.first().copied().unwrap_or(0));
                let resp = match path.join("/").as_str() {
                    "missing" => {
                        gets.lock().unwrap().push(Instant::now());
                        not_found(&pkt, MessageType::Acknowledgement, b"Not Found")
                    }
                    "gone" if observe == Some(0) && !observed_once => {
                        observed_once = true;
                        let mut ok = Packet::new();
                        ok.header.set_type(MessageType::Acknowledgement);
                        ok.header.message_id = pkt.header.message_id;
                        ok.header.code = MessageClass::Response(ResponseType::Content);
                        ok.set_token(pkt.get_token().to_vec());
                        ok.add_option(CoapOption::Observe, vec![2]);
                        ok.payload = b"21.5".to_vec();
                        pending_end = Some((
                            from,
                            pkt.clone(),
                            Instant::now() + Duration::from_millis(300),
                        ));
                        ok
                    }
                    _ => not_found(&pkt, MessageType::Acknowledgement, b"Gone"),
                };
                let _ = sock.send_to(&resp.to_bytes().unwrap(), from);
            }
        });
        ErrorDevice {
            addr,
            missing_gets,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ErrorDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn frames_of(sim: &PlatformSim, ty: &str, path: &str) -> Vec<Value> {
    sim.frames()
        .into_iter()
        .filter(|f| f["type"] == ty && f["ep"] == "broken" && f["path"] == path)
        .collect()
}

/// `coap_gateway_observer_error_answers_total{code="4.04"}`, 0 when absent.
fn error_metric(gw: &Gateway) -> u64 {
    let text = get(gw.http_addr(), "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("coap_gateway_observer_error_answers_total{code=\"4.04\"} "))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

#[test]
fn error_answers_are_reported_as_errors_counted_and_backed_off() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\npinger:\n  enabled: false\n\
             observer:\n  enabled: true\n  poll_interval_s: 1\n  max_frames_per_s: 100\n",
            platform.url()
        ),
        ..GatewayOptions::default()
    });
    platform.wait_type("snapshot", None, WAIT).expect("link up");
    let device = ErrorDevice::start();
    let peer = Peer::new(gw.addr());
    register(
        &peer,
        &format!("ep=broken&lt=600&base=coap://{}", device.addr),
        "</missing>;if=\"sensor\",</gone>;obs",
    );

    // The polled resource: one error report per poll, each with its place in the back-off.
    let first = platform
        .wait_for(WAIT, |f| {
            f["type"] == "data_error" && f["path"] == "/missing"
        })
        .expect("a data_error frame for the polled 4.04");
    assert_eq!(first["ep"], "broken");
    assert_eq!(first["code"], "4.04");
    assert_eq!(first["payload"], "Not Found");
    assert_eq!(first["via"], "poll");
    assert_eq!(first["consecutive"], 1);
    let t0 = device.missing_gets.lock().unwrap()[0];
    std::thread::sleep(WINDOW.saturating_sub(t0.elapsed()));
    let polls = device
        .missing_gets
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.duration_since(t0) <= WINDOW)
        .count();
    assert!(
        (2..=7).contains(&polls),
        "{polls} GETs of /missing in {WINDOW:?} at a 1 s poll interval: the error answers must \
         back the polls off (about 4 expected), yet keep asking"
    );
    let reports = frames_of(&platform, "data_error", "/missing");
    let consecutive: Vec<u64> = reports
        .iter()
        .map(|f| f["consecutive"].as_u64().unwrap())
        .collect();
    assert_eq!(
        consecutive,
        (1..=reports.len() as u64).collect::<Vec<_>>(),
        "{reports:?}"
    );
    let retry: Vec<u64> = reports
        .iter()
        .map(|f| f["retry_in_ms"].as_u64().unwrap())
        .collect();
    eprintln!("{polls} GETs of /missing in {WINDOW:?}; retry_in_ms {retry:?}");
    assert!(
        retry.windows(2).all(|w| w[1] > w[0]) && retry[0] >= 1_000,
        "the back-off grows: {retry:?}"
    );

    // The observed resource: its value is data, the 4.04 that ended the observation is not.
    let value = platform
        .wait_for(WAIT, |f| f["type"] == "data" && f["path"] == "/gone")
        .expect("the observation's first value");
    assert_eq!(value["code"], "2.05");
    let ended = platform
        .wait_for(WAIT, |f| {
            f["type"] == "data_error" && f["path"] == "/gone" && f["consecutive"] == 2
        })
        .expect("data_error for the ending notification and for the refused re-registration");
    assert_eq!(ended["via"], "observe");
    let observe_errors = frames_of(&platform, "data_error", "/gone");
    assert_eq!(observe_errors[0]["consecutive"], 1, "{observe_errors:?}");
    assert_eq!(observe_errors[0]["payload"], "Gone");

    // No error code ever travelled as a reading.
    let errors_as_data: Vec<Value> = platform
        .frames()
        .into_iter()
        .filter(|f| f["type"] == "data" && !f["code"].as_str().unwrap_or("").starts_with("2."))
        .collect();
    assert!(errors_as_data.is_empty(), "{errors_as_data:?}");

    // Every error answer is counted (the metric is bumped before the frame is sent).
    let reported = frames_of(&platform, "data_error", "/missing").len()
        + frames_of(&platform, "data_error", "/gone").len();
    let counted = error_metric(&gw);
    assert!(
        counted >= reported as u64 && counted >= 4,
        "observer_error_answers_total{{code=\"4.04\"}} = {counted}, {reported} reported"
    );
}
