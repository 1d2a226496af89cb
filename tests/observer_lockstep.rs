//! Issue 26: a fleet that samples in lockstep. 48 test-owned devices (raw UDP sockets), 64
//! observable links each, notify all 3,072 observations in the same instant, several times;
//! that is three times the 1,024 values the Observer's old shared mailbox bound took. With
//! platform-sim keeping up, every value of every burst must arrive as a `data` frame and the
//! gateway must count no value dropped.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::coap_peer::{register, Peer};
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};

const DEVICES: usize = 48;
const LINKS: usize = 64;
const BURSTS: u32 = 3;

/// One device: answers GETs (Observe=0 registers the observer of that path) and, each time
/// `round` moves on, sends one NON notification with payload `round` to every observer at
/// once.
/// Its notifications continue the Message ID sequence of its registration from `first_mid`
/// (the gateway observes through its RD socket: a reused MID would be a duplicate there).
fn run_device(sock: UdpSocket, first_mid: u16, round: Arc<AtomicU32>, stop: Arc<AtomicBool>) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(5)));
    let mut observers: HashMap<String, (SocketAddr, Vec<u8>)> = HashMap::new();
    let mut sent_round = 0u32;
    let mut mid = first_mid;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(pkt) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if pkt.header.code != MessageClass::Request(RequestType::Get) {
                continue;
            }
            let path = pkt
                .get_option(CoapOption::UriPath)
                .map(|segs| {
                    segs.iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .unwrap_or_default();
            let observe = pkt
                .get_option(CoapOption::Observe)
                .and_then(|v| v.front().cloned())
                .map(|v| v.first().copied().unwrap_or(0));
            let mut resp = Packet::new();
            resp.header.set_type(MessageType::Acknowledgement);
            resp.header.message_id = pkt.header.message_id;
            resp.header.code = MessageClass::Response(ResponseType::Content);
            resp.set_token(pkt.get_token().to_vec());
            resp.payload = b"0".to_vec();
            match observe {
                Some(0) => {
                    observers.insert(path, (from, pkt.get_token().to_vec()));
                    resp.add_option(CoapOption::Observe, vec![1]);
                }
                Some(1) => {
                    observers.remove(&path);
                }
                _ => {}
            }
            if let Ok(bytes) = resp.to_bytes() {
                let _ = sock.send_to(&bytes, from);
            }
        }
        let now = round.load(Ordering::Relaxed);
        if now > sent_round {
            sent_round = now;
            for (peer, token) in observers.values() {
                let mut n = Packet::new();
                n.header.set_type(MessageType::NonConfirmable);
                n.header.message_id = mid;
                mid = mid.wrapping_add(1);
                n.header.code = MessageClass::Response(ResponseType::Content);
                n.set_token(token.clone());
                n.add_option(CoapOption::Observe, (now + 1).to_be_bytes()[1..].to_vec());
                n.payload = now.to_string().into_bytes();
                if let Ok(bytes) = n.to_bytes() {
                    let _ = sock.send_to(&bytes, peer);
                }
            }
        }
    }
}

/// Wait until `f()` holds, up to `budget`; `what` names it when it never does.
fn wait_until(budget: Duration, what: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + budget;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {}", what());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_value_of_a_lockstep_burst_reaches_the_platform() {
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\npinger:\n  enabled: false\n\
             observer:\n  enabled: true\n  max_frames_per_s: 1000\n",
            platform.url()
        ),
        ..GatewayOptions::default()
    });
    let links: String = (0..LINKS)
        .map(|j| format!("</o/{j}>;obs"))
        .collect::<Vec<_>>()
        .join(",");
    let round = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..DEVICES {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = Peer::with_socket(sock.try_clone().unwrap(), gw.addr());
        register(&peer, &format!("ep=burst-{i}&lt=3600"), &links);
        let (round, stop) = (round.clone(), stop.clone());
        let first_mid = peer.take_mid();
        threads.push(std::thread::spawn(move || {
            run_device(sock, first_mid, round, stop)
        }));
    }
    let total = DEVICES * LINKS;
    let data_with =
        |payload: &str| platform.count(|v| v["type"] == "data" && v["payload"] == payload);
    // Every observation set up: each link's first value ("0") has arrived.
    wait_until(
        Duration::from_secs(120),
        || format!("{} of {total} observations", data_with("0")),
        || data_with("0") >= total,
    );
    for r in 1..=BURSTS {
        round.store(r, Ordering::Relaxed);
        let payload = r.to_string();
        wait_until(
            Duration::from_secs(60),
            || {
                format!(
                    "burst {r}: {} of {total} values reached the platform; gateway log:\n{}",
                    data_with(&payload),
                    gw.log_text()
                )
            },
            || data_with(&payload) >= total,
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Each observation's values arrived once each.
    let frames = platform.frames();
    let distinct: HashSet<(String, String, String)> = frames
        .iter()
        .filter(|v| v["type"] == "data")
        .map(|v| {
            (
                v["ep"].to_string(),
                v["path"].to_string(),
                v["payload"].to_string(),
            )
        })
        .collect();
    assert_eq!(distinct.len(), total * (BURSTS as usize + 1));
    let log = gw.log_text();
    assert!(
        !log.contains("dropped in the last") && !log.contains("owed queue full"),
        "no value was dropped:\n{log}"
    );
}
