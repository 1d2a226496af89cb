//! The real `device-sim` binary against the real gateway over loopback: 20 devices register
//! from their own sockets and all appear in an endpoint lookup; a device serves its resources
//! (GET/PUT, Observe notifications with a changing value) to an independent CoAP client; a device
//! silenced through stdin goes to status 0 at the Pinger and back to 1 when woken; on SIGTERM
//! the simulator prints what it served.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::device_sim::DeviceSim;
use common::{Gateway, GatewayOptions};

const COUNT: usize = 20;

/// `device-sim` with this file's defaults (names `sim-<i>`, lifetime 60 s).
fn start_sim(rd: SocketAddr, count: usize, extra: &[&str]) -> DeviceSim {
    let mut args = vec!["--prefix", "sim-", "--lt", "60"];
    args.extend_from_slice(extra);
    DeviceSim::spawn(rd, count, &args)
}

fn device_addr(gw: SocketAddr, ep: &str) -> SocketAddr {
    let link = ep_link(&Peer::new(gw), ep).unwrap_or_else(|| panic!("{ep} not registered"));
    let base = link.get("base").expect("base attribute");
    base.strip_prefix("coap://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("base {base} is not coap://127.0.0.1:PORT"))
}

fn status_of(gw: SocketAddr, ep: &str) -> Option<String> {
    ep_link(&Peer::new(gw), ep).and_then(|l| l.get("status").map(str::to_string))
}

fn wait_for_status(gw: SocketAddr, ep: &str, status: &str, budget: Duration) {
    let t0 = Instant::now();
    while status_of(gw, ep).as_deref() != Some(status) {
        assert!(
            t0.elapsed() < budget,
            "{ep} not at status {status} within {budget:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fast_pinging_gateway() -> Gateway {
    Gateway::start_with(GatewayOptions {
        extra_yaml: "pinger:\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n".into(),
        ..Default::default()
    })
}

fn disconnected(gw: SocketAddr) -> Vec<String> {
    let mut eps: Vec<String> = lookup(&Peer::new(gw), "/rd-lookup/ep?status=0")
        .iter()
        .filter_map(|l| l.get("ep").map(str::to_string))
        .collect();
    eps.sort();
    eps
}

fn temperature(resp: &Resp) -> f64 {
    assert_eq!(resp.code, "2.05");
    assert_eq!(resp.content_format, Some(CT_TEXT_PLAIN));
    let v: f64 = resp.text().parse().expect("a number");
    assert!((20.0..30.0).contains(&v), "{v}");
    v
}

#[test]
fn twenty_devices_register_serve_go_silent_and_come_back() {
    let gw = fast_pinging_gateway();
    let mut sim = start_sim(gw.addr(), COUNT, &[]);
    let ready = sim.wait_line("device-sim ready:", Duration::from_secs(30));
    assert_eq!(
        ready,
        format!("device-sim ready: {COUNT} devices registered")
    );

    let eps = lookup(&Peer::new(gw.addr()), "/rd-lookup/ep?ep=sim-*");
    let mut names: Vec<&str> = eps.iter().filter_map(|l| l.get("ep")).collect();
    names.sort();
    let mut expected: Vec<String> = (0..COUNT).map(|i| format!("sim-{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    // Every device registered from its own socket: distinct derived bases on 127.0.0.1.
    let mut bases: Vec<&str> = eps.iter().filter_map(|l| l.get("base")).collect();
    bases.sort();
    bases.dedup();
    assert_eq!(bases.len(), COUNT);
    assert!(bases.iter().all(|b| b.starts_with("coap://127.0.0.1:")));
    assert_eq!(
        lookup(
            &Peer::new(gw.addr()),
            "/rd-lookup/res?ep=sim-7&rt=temperature"
        )
        .len(),
        1
    );

    // The device itself, to an independent client.
    let dev = Peer::new(device_addr(gw.addr(), "sim-7"));
    temperature(&dev.get("/sensors/temp"));
    let wk = dev.get("/.well-known/core");
    assert_eq!(wk.content_format, Some(CT_LINK_FORMAT));
    let targets: Vec<String> = wk.links().into_iter().map(|l| l.target).collect();
    assert_eq!(targets, vec!["/sensors/temp", "/actuators/led"]);
    assert_eq!(dev.get("/actuators/led").text(), "off");
    assert_eq!(
        dev.request(&Req::put("/actuators/led").ct(CT_TEXT_PLAIN).payload("on"))
            .code,
        "2.04"
    );
    assert_eq!(dev.get("/actuators/led").text(), "on");
    assert_eq!(
        dev.request(&Req::put("/actuators/led").payload("dim")).code,
        "4.00"
    );
    assert_eq!(dev.get("/nothing").code, "4.04");

    let observer = Peer::new(device_addr(gw.addr(), "sim-3"));
    let (token, first) = observer.observe("/sensors/temp");
    assert!(first.observe.is_some(), "the sensor accepts observers");
    let v0 = temperature(&first);
    let next = observer
        .wait_notification(&token, Duration::from_secs(4))
        .expect("a notification within 4 s");
    assert_ne!(temperature(&next), v0, "notified on change");

    // Silence one device through stdin: the Pinger marks it 0, another stays 1.
    sim.command("silent 12");
    wait_for_status(gw.addr(), "sim-12", "0", Duration::from_secs(4));
    assert_eq!(status_of(gw.addr(), "sim-11").as_deref(), Some("1"));
    assert!(
        dev_is_silent(device_addr(gw.addr(), "sim-12")),
        "a silent device answers nothing"
    );
    sim.command("wake 12");
    wait_for_status(gw.addr(), "sim-12", "1", Duration::from_secs(4));

    sim.sigterm();
    let summary = sim.wait_line("device-sim requests served:", Duration::from_secs(10));
    assert!(summary.contains("PUT /actuators/led 2"), "{summary}");
    assert!(summary.contains("GET /.well-known/core 1"), "{summary}");
}

/// A GET to a silent device gets no answer at all.
fn dev_is_silent(addr: SocketAddr) -> bool {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut get = coap_lite::Packet::new();
    get.header.set_type(coap_lite::MessageType::Confirmable);
    get.header.code = coap_lite::MessageClass::Request(coap_lite::RequestType::Get);
    get.header.message_id = 0x1234;
    get.set_token(vec![1, 2, 3, 4]);
    get.add_option(coap_lite::CoapOption::UriPath, b"sensors".to_vec());
    get.add_option(coap_lite::CoapOption::UriPath, b"temp".to_vec());
    sock.send_to(&get.to_bytes().unwrap(), addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    sock.recv_from(&mut buf).is_err()
}

#[test]
fn silent_fraction_goes_quiet_and_returns_on_schedule() {
    let gw = fast_pinging_gateway();
    let first_port = {
        // Ports some way below where the kernel is handing out ephemeral ports are rarely taken.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .local_addr()
            .unwrap()
            .port()
            .saturating_sub(2000)
            .max(20_000)
    };
    let mut sim = start_sim(
        gw.addr(),
        10,
        &[
            "--silent-fraction",
            "0.2",
            "--silent-after",
            "1",
            "--return-after",
            "6",
            "--first-port",
            &first_port.to_string(),
        ],
    );
    sim.wait_line(
        "device-sim ready: 10 devices registered",
        Duration::from_secs(30),
    );
    let ready = Instant::now();
    // --first-port: device i on first_port + i.
    assert_eq!(
        device_addr(gw.addr(), "sim-3"),
        SocketAddr::from(([127, 0, 0, 1], first_port + 3))
    );
    // 20% of 10, spread evenly: devices 4 and 9; silent from 1 s, at 0 within one sweep + 2 pings.
    let quiet = vec!["sim-4".to_string(), "sim-9".to_string()];
    while disconnected(gw.addr()) != quiet {
        assert!(
            ready.elapsed() < Duration::from_millis(5_500),
            "the silent fraction did not go to 0: {:?}",
            disconnected(gw.addr())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Back at 6 s, at 1 after the next sweep.
    while !disconnected(gw.addr()).is_empty() {
        assert!(
            ready.elapsed() < Duration::from_secs(9),
            "the silent fraction did not come back: {:?}",
            disconnected(gw.addr())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ready.elapsed() > Duration::from_secs(5),
        "came back after {:?}, before --return-after",
        ready.elapsed()
    );
}

#[test]
fn every_stdin_command_is_confirmed_and_silent_all_silences_every_device() {
    let gw = Gateway::start();
    let mut sim = start_sim(gw.addr(), 3, &[]);
    assert!(sim.ready(Duration::from_secs(30)), "device-sim ready");
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| device_addr(gw.addr(), &format!("sim-{i}")))
        .collect();
    // One reply line per command, in order, on stdout.
    sim.command("silent 0");
    let line = sim.wait_line("device-sim: silent 0", WAIT_REPLY);
    assert!(line.contains("sim-0"), "{line}");
    assert!(dev_is_silent(addrs[0]));
    sim.command("wake 0");
    let line = sim.wait_line("device-sim: wake 0", WAIT_REPLY);
    assert!(line.contains("sim-0"), "{line}");
    sim.command("wake 7");
    let line = sim.wait_line("device-sim: wake 7", WAIT_REPLY);
    assert!(line.contains("no device 7"), "{line}");
    sim.command("reboot 1");
    let line = sim.wait_line("device-sim: unknown command", WAIT_REPLY);
    assert!(
        line.contains("silent all"),
        "the usage is explained: {line}"
    );
    // `silent all` with the default --silent-fraction (0) silences every device.
    sim.command("silent all");
    let line = sim.wait_line("device-sim: silent all", WAIT_REPLY);
    assert!(line.contains("3 devices"), "{line}");
    for addr in &addrs {
        assert!(
            dev_is_silent(*addr),
            "{addr} still answers after `silent all`"
        );
    }
    sim.command("wake all");
    let line = sim.wait_line("device-sim: wake all", WAIT_REPLY);
    assert!(line.contains("3 devices"), "{line}");
    // Answering again: a CON GET is answered within a few tries (bounded).
    assert!(
        (0..10).any(|_| !dev_is_silent(addrs[2])),
        "sim-2 answers after `wake all`"
    );
}

const WAIT_REPLY: Duration = Duration::from_secs(10);

/// The sawtooth step (0..100) of a device-sim temperature ("23.4" → 34).
fn step(resp: &Resp) -> u64 {
    let text = resp.text();
    let (whole, tenth) = text.split_once('.').expect("one decimal");
    (whole.parse::<u64>().expect("whole") - 20) * 10 + tenth.parse::<u64>().expect("tenth")
}

/// Issue 26: every device samples its sensor at each whole second and notifies its observers
/// once, with that second's value: an observer of each of 20 devices gets values that move
/// exactly one step a second (no value twice, none skipped), and device-sim's `--per-second`
/// line for a second after every observation was set up says it notified all 20.
#[test]
fn every_device_notifies_once_a_second_with_that_seconds_value() {
    let gw = Gateway::start();
    let mut sim = start_sim(gw.addr(), COUNT, &["--per-second"]);
    sim.wait_line("device-sim ready:", Duration::from_secs(30));
    // (peer, token, last step, last Observe value) per device.
    let mut observers: Vec<(Peer, Vec<u8>, u64, Option<u32>)> = (0..COUNT)
        .map(|i| {
            let peer = Peer::new(device_addr(gw.addr(), &format!("sim-{i}")));
            let (token, first) = peer.observe("/sensors/temp");
            assert!(first.observe.is_some(), "sim-{i} accepts observers");
            let s = step(&first);
            (peer, token, s, first.observe)
        })
        .collect();
    let all_observed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    // Round by round, every device once per round, so each notification is acknowledged
    // within about a second (an unacknowledged CON notification would be sent again).
    for round in 0..4 {
        for (i, (peer, token, last, seq)) in observers.iter_mut().enumerate() {
            let next = loop {
                let n = peer
                    .wait_notification(token, Duration::from_secs(5))
                    .unwrap_or_else(|| panic!("sim-{i}: notification {round} within 5 s"));
                // A retransmission repeats the Observe value: the same notification.
                if n.observe != *seq {
                    break n;
                }
            };
            let s = step(&next);
            assert_eq!(
                s,
                (*last + 1) % 100,
                "sim-{i}, notification {round}: one step a second ({last} then {s})"
            );
            *last = s;
            *seq = next.observe;
        }
    }
    let line = sim.wait_line(
        &format!("device-sim second {}: ", all_observed + 1),
        Duration::from_secs(10),
    );
    assert!(
        line.contains(&format!(": notified {COUNT}, ")),
        "{line}: every observed device notified once in that second"
    );
}
