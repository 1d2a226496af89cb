//! The workers together (issue 27, "what is not tested together").
//!
//! (a) Limits on with every worker running: `limits.exempt_loopback: false`, so the rate
//! limit, the per-source quota and the amplification bound apply to devices on 127.0.0.2 and
//! 127.0.0.3 as to any host. The Pinger (1 s sweeps), the Observer and the platform link run
//! against them; the gateway must never refuse its own devices: no 4.29/5.03 seen by a device,
//! no status 0, no expiry, data flows, pings are answered, commands round-trip.
//!
//! (b) Pinger + Observer + platform on one device set, the way back: a device that goes
//! silent is marked 0 and gives no data, and on waking returns to status 1 and its data (the
//! observed sensor and the polled actuator) resumes. `tests/device_status_e2e.rs` covers the
//! way down (status 0 before expiry); this covers the return.
//!
//! (c) Notifications the gateway asked for are not charged to the device's request rate: two
//! observed devices behind one address, notifying every second, under a rate of 1 request/s,
//! keep their registrations (their refreshes are never refused) and their data flowing.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::device_sim::DeviceSim;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};
use serde_json::{json, Value};

/// Deadlines for events on a loaded 2-core box: they only fail on a real defect.
const WAIT: Duration = Duration::from_secs(30);

const PINGER: &str =
    "pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 500\n  attempts: 2\n  max_in_flight: 16\n";

fn gateway(platform: &PlatformSim, limits: &str) -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\n\
             observer:\n  enabled: true\n  poll_interval_s: 1\n  select: [\"obs\", \"if=actuator\"]\n\
             {PINGER}{limits}",
            platform.url()
        ),
        ..GatewayOptions::default()
    })
}

fn data_count(platform: &PlatformSim, ep: &str, path: &str) -> usize {
    platform
        .frames()
        .iter()
        .filter(|f| f["type"] == "data" && f["ep"] == ep && f["path"] == path)
        .count()
}

/// Wait until `ep`'s `path` produced at least `n` data frames.
fn wait_data(platform: &PlatformSim, ep: &str, path: &str, n: usize) {
    let deadline = Instant::now() + WAIT * 2;
    while data_count(platform, ep, path) < n {
        assert!(
            Instant::now() < deadline,
            "{ep}{path}: {} data frames, wanted {n}",
            data_count(platform, ep, path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn command(platform: &mut PlatformSim, cmd: Value) -> Value {
    let id = cmd["id"].as_str().unwrap_or_default().to_string();
    let mut frame = cmd;
    frame["type"] = json!("command");
    platform.send_line(&frame.to_string());
    platform
        .wait_for(WAIT, |v| {
            v["type"] == "command_result" && v["id"] == id.as_str()
        })
        .unwrap_or_else(|| panic!("no command_result for {id}"))
}

/// A device on a raw socket at a chosen loopback address: registers (and re-registers every
/// 3 s, within its 10 s lifetime), answers pings with RST and GET/PUT `/led`, and records the
/// code of every answer the RD gives it, so a 4.29 or 5.03 aimed at it is seen.
struct RawDevice {
    codes: Arc<Mutex<Vec<u8>>>,
    pings: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn registration(mid: u16, ep: &str) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.add_option(CoapOption::UriQuery, format!("ep={ep}").into_bytes());
    p.add_option(CoapOption::UriQuery, b"lt=10".to_vec());
    p.payload = b"</led>;rt=\"light\";if=\"actuator\"".to_vec();
    p
}

fn answer(req: &Packet, code: u8, payload: &[u8]) -> Packet {
    let mut r = Packet::new();
    r.header.set_type(MessageType::Acknowledgement);
    r.header.message_id = req.header.message_id;
    r.header.code = MessageClass::from(code);
    r.set_token(req.get_token().to_vec());
    r.payload = payload.to_vec();
    r
}

impl RawDevice {
    fn start(bind: &str, rd: SocketAddr, ep: &str) -> RawDevice {
        let sock = UdpSocket::bind(bind).expect("bind the raw device");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let codes = Arc::new(Mutex::new(Vec::new()));
        let pings = Arc::new(AtomicUsize::new(0));
        let gets = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, p, g, s, ep) = (
            codes.clone(),
            pings.clone(),
            gets.clone(),
            stop.clone(),
            ep.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let mut mid = 0x4000u16;
            let mut last_reg: Option<Instant> = None;
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if last_reg.is_none_or(|t| t.elapsed() >= Duration::from_secs(3)) {
                    mid = mid.wrapping_add(1);
                    if let Ok(bytes) = registration(mid, &ep).to_bytes() {
                        let _ = sock.send_to(&bytes, rd);
                    }
                    last_reg = Some(Instant::now());
                }
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(pkt) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                let code = u8::from(pkt.header.code);
                let reply = match (pkt.header.get_type(), code) {
                    // A ping (empty CON) is answered with RST (RFC 7252 §4.3).
                    (MessageType::Confirmable, 0) => {
                        p.fetch_add(1, Ordering::Relaxed);
                        let mut r = Packet::new();
                        r.header.set_type(MessageType::Reset);
                        // coap-lite's default code is GET; an RST is empty (0.00).
                        r.header.code = MessageClass::Empty;
                        r.header.message_id = pkt.header.message_id;
                        Some(r)
                    }
                    (_, 0) => None,
                    (t, 1..=31) => {
                        let path: Vec<&[u8]> = pkt
                            .get_option(CoapOption::UriPath)
                            .map(|v| v.iter().map(Vec::as_slice).collect())
                            .unwrap_or_default();
                        let r = match (code, path.as_slice()) {
                            (1, [b"led"]) => {
                                g.fetch_add(1, Ordering::Relaxed);
                                answer(&pkt, 0x45, b"on")
                            }
                            (3, [b"led"]) => answer(&pkt, 0x44, b""),
                            _ => answer(&pkt, 0x84, b""),
                        };
                        (t == MessageType::Confirmable).then_some(r)
                    }
                    // An answer to one of our registrations.
                    (t, _) => {
                        c.lock().unwrap().push(code);
                        (t == MessageType::Confirmable).then(|| {
                            let mut ack = Packet::new();
                            ack.header.set_type(MessageType::Acknowledgement);
                            ack.header.code = MessageClass::Empty;
                            ack.header.message_id = pkt.header.message_id;
                            ack
                        })
                    }
                };
                if let Some(r) = reply.and_then(|r| r.to_bytes().ok()) {
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        RawDevice {
            codes,
            pings,
            gets,
            stop,
            thread: Some(thread),
        }
    }

    fn codes(&self) -> Vec<u8> {
        self.codes.lock().unwrap().clone()
    }
}

impl Drop for RawDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn code_text(c: u8) -> String {
    format!("{}.{:02}", c >> 5, c & 0x1f)
}

#[test]
fn limits_on_with_pinger_observer_and_platform_never_refuse_the_gateways_own_devices() {
    let mut platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform, "limits:\n  exempt_loopback: false\n");
    platform
        .wait_type("snapshot", None, WAIT)
        .expect("platform link up");
    // device-sim from 127.0.0.2 (short lifetime: refreshes every 7.5 s go through the limits).
    let mut sim = DeviceSim::spawn(
        gw.addr(),
        2,
        &["--bind", "127.0.0.2", "--prefix", "lim-", "--lt", "10"],
    );
    assert!(sim.ready(WAIT), "device-sim registered from 127.0.0.2");
    let raw = RawDevice::start("127.0.0.3:0", gw.addr(), "lim-raw");

    for ep in ["lim-0", "lim-1"] {
        wait_data(&platform, ep, "/sensors/temp", 1);
        wait_data(&platform, ep, "/actuators/led", 1);
    }
    wait_data(&platform, "lim-raw", "/led", 1);

    let put = command(
        &mut platform,
        json!({"id": "lim-put", "ep": "lim-1", "method": "PUT", "path": "/actuators/led",
               "payload": "on", "content_format": 0}),
    );
    assert_eq!(put["code"], "2.04", "{put}");
    let get = command(
        &mut platform,
        json!({"id": "lim-get", "ep": "lim-raw", "method": "GET", "path": "/led"}),
    );
    assert_eq!(get["code"], "2.05", "{get}");
    assert_eq!(get["payload"], "on", "{get}");

    // Run well past the 10 s lifetime: a refused refresh would show as an expiry, a dropped
    // answer as status 0, a dropped notification as data stopping.
    let base = [
        data_count(&platform, "lim-0", "/sensors/temp"),
        data_count(&platform, "lim-1", "/sensors/temp"),
    ];
    wait_data(&platform, "lim-0", "/sensors/temp", base[0] + 12);
    wait_data(&platform, "lim-1", "/sensors/temp", base[1] + 6);
    let deadline = Instant::now() + WAIT;
    while raw.codes().len() < 6 || raw.pings.load(Ordering::Relaxed) < 5 {
        assert!(
            Instant::now() < deadline,
            "raw device: answers {:?}, pings {}",
            raw.codes(),
            raw.pings.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let refused: Vec<String> = raw
        .codes()
        .into_iter()
        .filter(|c| c >> 5 != 2)
        .map(code_text)
        .collect();
    assert!(
        refused.is_empty(),
        "the RD refused its own device: {refused:?}"
    );
    assert!(
        raw.gets.load(Ordering::Relaxed) >= 2,
        "the Observer polls it"
    );
    let frames = platform.frames();
    for ep in ["lim-0", "lim-1", "lim-raw"] {
        assert!(
            !frames
                .iter()
                .any(|f| f["type"] == "device_status" && f["ep"] == ep && f["status"] == 0),
            "{ep} was marked disconnected while answering"
        );
        assert!(
            !frames.iter().any(
                |f| f["type"] == "device_removed" && (f["ep"] == ep || f["device"]["ep"] == ep)
            ),
            "{ep} expired: its refreshes were refused"
        );
        assert!(
            !frames
                .iter()
                .any(|f| f["type"] == "data_error" && f["ep"] == ep),
            "{ep}: error answers"
        );
    }
    let log = gw.log_text();
    for needle in ["rate limit (", "4.29", "5.03"] {
        assert!(
            !log.contains(needle),
            "the gateway refused traffic of its own devices ({needle}):\n{log}"
        );
    }

    // The limits are live for loopback sources in this configuration: a flood from another
    // loopback address over the burst gets its 4.29, so the silence above means something.
    assert!(
        flood_gets_429(gw.addr(), "127.0.0.4:0"),
        "no 4.29 for a flood: the limits are not applied to loopback sources"
    );
    drop(sim);
}

/// Send more CON requests than the default burst (1,000) from `bind` and watch for a 4.29.
fn flood_gets_429(rd: SocketAddr, bind: &str) -> bool {
    let sock = UdpSocket::bind(bind).expect("bind the flooding socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    // Read while sending, into a buffer that holds every answer: over a thousand answers come
    // back, far more than a socket's default receive buffer (~200 KB, ~270 small datagrams)
    // holds, and the 4.29 comes last. Under a full parallel test run the reader thread can be
    // descheduled for long enough that the default buffer drops the 4.29 itself.
    grow_receive_buffer(&sock, 4 << 20);
    let reader = {
        let sock = sock.try_clone().expect("clone the flooding socket");
        std::thread::spawn(move || {
            let deadline = Instant::now() + WAIT;
            let mut buf = [0u8; 1500];
            while Instant::now() < deadline {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    if Packet::from_bytes(&buf[..n]).is_ok_and(|p| u8::from(p.header.code) == 0x9d)
                    {
                        return true;
                    }
                }
            }
            false
        })
    };
    for i in 0..1_500u16 {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.message_id = i;
        p.set_token(i.to_be_bytes().to_vec());
        p.add_option(CoapOption::UriPath, b"nothing-here".to_vec());
        if let Ok(bytes) = p.to_bytes() {
            let _ = sock.send_to(&bytes, rd);
        }
    }
    reader.join().unwrap_or(false)
}

/// Ask for `bytes` of receive buffer: SO_RCVBUFFORCE when the test runs as root (CI does),
/// otherwise as much as `net.core.rmem_max` allows.
fn grow_receive_buffer(sock: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on an open socket with a c_int value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

fn status_position(frames: &[Value], ep: &str, status: u64, after: usize) -> Option<usize> {
    frames
        .iter()
        .enumerate()
        .skip(after)
        .find(|(_, f)| f["type"] == "device_status" && f["ep"] == ep && f["status"] == status)
        .map(|(i, _)| i)
}

fn wait_status(platform: &PlatformSim, ep: &str, status: u64, after: usize) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(i) = status_position(&platform.frames(), ep, status, after) {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "{ep} never reached status {status} after frame {after}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data_after(frames: &[Value], ep: &str, path: &str, after: usize) -> usize {
    frames
        .iter()
        .skip(after)
        .filter(|f| f["type"] == "data" && f["ep"] == ep && f["path"] == path)
        .count()
}

#[test]
fn a_device_that_wakes_returns_to_status_1_and_its_data_resumes() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = gateway(&platform, "");
    platform
        .wait_type("snapshot", None, WAIT)
        .expect("platform link up");
    let mut sim = DeviceSim::spawn(gw.addr(), 2, &["--prefix", "wk-", "--lt", "120"]);
    assert!(sim.ready(WAIT), "device-sim ready");
    for ep in ["wk-0", "wk-1"] {
        wait_data(&platform, ep, "/sensors/temp", 2);
        wait_data(&platform, ep, "/actuators/led", 2);
    }

    sim.command("silent 0");
    let down = wait_status(&platform, "wk-0", 0, 0);
    // While it is silent and at 0: wk-1 keeps producing, wk-0 produces nothing (one frame
    // already on its way when the status was sent is tolerated).
    let frames = platform.frames();
    let base = data_after(&frames, "wk-1", "/sensors/temp", down);
    let deadline = Instant::now() + WAIT;
    while data_after(&platform.frames(), "wk-1", "/sensors/temp", down) < base + 4 {
        assert!(Instant::now() < deadline, "wk-1's data stopped too");
        std::thread::sleep(Duration::from_millis(50));
    }
    let frames = platform.frames();
    let silent_data = data_after(&frames, "wk-0", "/sensors/temp", down)
        + data_after(&frames, "wk-0", "/actuators/led", down);
    assert!(
        silent_data <= 1,
        "data from a silent device at status 0: {silent_data} frames"
    );
    let wake_from = frames.len();

    sim.command("wake 0");
    let up = wait_status(&platform, "wk-0", 1, wake_from);
    assert!(up > down);
    // Data resumes: the observed sensor (the Observer re-observes or the old observation
    // carries on) and the polled actuator.
    for path in ["/sensors/temp", "/actuators/led"] {
        let deadline = Instant::now() + WAIT;
        while data_after(&platform.frames(), "wk-0", path, wake_from) < 3 {
            assert!(
                Instant::now() < deadline,
                "wk-0{path}: no data after waking ({} frames)",
                data_after(&platform.frames(), "wk-0", path, wake_from)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let frames = platform.frames();
    assert!(
        status_position(&frames, "wk-0", 0, up).is_none(),
        "wk-0 fell back to 0 after waking while answering"
    );
    assert!(
        status_position(&frames, "wk-1", 0, 0).is_none(),
        "wk-1 answered all along and was marked 0"
    );
}

#[test]
fn notifications_do_not_use_up_the_request_rate_of_devices_behind_one_address() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    // 1 request/s with a burst of 3 from 127.0.0.2: plenty for two devices' own refreshes
    // (one each per 7.5 s), far less than their two notifications a second.
    let gw = gateway(
        &platform,
        "limits:\n  exempt_loopback: false\n  request_rate_per_s: 1\n  request_burst: 3\n",
    );
    let mut sim = DeviceSim::spawn(
        gw.addr(),
        2,
        &["--bind", "127.0.0.2", "--prefix", "nat-", "--lt", "10"],
    );
    assert!(sim.ready(WAIT), "device-sim ready line");
    for ep in ["nat-0", "nat-1"] {
        wait_data(&platform, ep, "/sensors/temp", 3);
    }
    // Two lifetimes and more: each device refreshed at least twice meanwhile.
    let until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < until {
        let removed: Vec<Value> = platform
            .frames()
            .into_iter()
            .filter(|f| f["type"] == "device_removed")
            .collect();
        assert!(
            removed.is_empty(),
            "a device lost its registration: its refreshes were refused: {removed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for ep in ["nat-0", "nat-1"] {
        let before = data_count(&platform, ep, "/sensors/temp");
        wait_data(&platform, ep, "/sensors/temp", before + 2);
    }
    drop(sim);
}
