//! A base must not turn the gateway against its own host (issue 25 item 7), seen from another
//! host: the gateway runs in network namespace `a` (10.77.0.1, fd77::1, and its own loopback),
//! the LAN registrant in namespace `b` (10.77.0.2, fd77::2), so its source is not loopback.
//!
//! - A LAN registrant whose `base` (or draft-11 `con`, or a group's `con`, or an update's
//!   `base`) names loopback, an unspecified address, `localhost` or one of the gateway's own
//!   addresses gets 4.00 with a diagnostic, and nothing is stored or changed. The same
//!   registrant may name itself or another LAN host; a registrant on the gateway's host may
//!   still name loopback.
//! - A registration stored by an older version with such a base (a LAN source, a loopback
//!   base): the Observer does not watch it and a platform command for it is answered
//!   `coap_error` unsent, while a normal device next to it is watched and commanded. The
//!   loopback-only service never sees a request.
//! - An mDNS announcement from the LAN that resolves to the gateway's own address is neither
//!   asked nor registered, while a device announced next to it is.
//!
//! Where namespaces cannot be made, the one skip policy applies (`netns_or_skip`).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::registry::{self, EndpointName, Register, RegistryConfig, Store, StoreError};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use common::coap_peer::{lookup, register, Peer, Req};
use common::netns::{netns_or_skip, NetnsPair, Side, A_V4, B_V4, B_V6};
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};
use link_format::Link as GwLink;
use serde_json::json;

/// Generous for a loaded 2-core box: only a real defect runs it out.
const WAIT: Duration = Duration::from_secs(30);

/// A UDP socket bound in namespace `side` on `addr`.
fn socket_in(pair: &NetnsPair, side: Side, addr: SocketAddr) -> UdpSocket {
    pair.run_in(side, move || UdpSocket::bind(addr))
        .expect("enter the namespace")
        .expect("bind in the namespace")
}

fn any_port(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, 0)
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A CoAP service that answers every request (2.05 with `payload` in `content_format` to a
/// GET, with Observe when asked; 2.04 to anything else) and records `METHOD /path` of each. Stops on drop.
struct Service {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Service {
    fn start(sock: UdpSocket, payload: &'static str, content_format: u8) -> Service {
        let addr = sock.local_addr().expect("service address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                let MessageClass::Request(method) = req.header.code else {
                    continue;
                };
                let path = common::constrained::path_of(&req);
                seen2
                    .lock()
                    .unwrap()
                    .push(format!("{method:?} /{}", path.join("/")));
                let mut reply = Packet::new();
                reply.header.set_type(MessageType::Acknowledgement);
                reply.header.message_id = req.header.message_id;
                reply.set_token(req.get_token().to_vec());
                if method == coap_lite::RequestType::Get {
                    reply.header.set_code("2.05");
                    if req.get_option(CoapOption::Observe).is_some() {
                        reply.add_option(CoapOption::Observe, vec![1]);
                    }
                    reply.add_option(CoapOption::ContentFormat, vec![content_format]);
                    reply.payload = payload.as_bytes().to_vec();
                } else {
                    reply.header.set_code("2.04");
                }
                if let Ok(bytes) = reply.to_bytes() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Service { addr, seen, stop }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The gateway in namespace `a` on 10.77.0.1, fd77::1 and 127.0.0.1 (in that order in
/// `rd_addrs`), the Pinger off.
fn start_rd(pair: &NetnsPair) -> Gateway {
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec![
                "10.77.0.1:0".into(),
                "[fd77::1]:0".into(),
                "127.0.0.1:0".into(),
            ],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
    );
    assert_eq!(gw.rd_addrs.len(), 3, "{:?}", gw.rd_addrs);
    gw
}

fn assert_refused(peer: &Peer, uri: &str) {
    let resp = peer.post_links(uri, "</secret>;obs");
    assert_eq!(
        resp.code,
        "4.00",
        "{uri} from {}: {}",
        peer.local_addr(),
        resp.text()
    );
    let why = resp.text();
    assert!(
        why.contains("names the gateway's own host") && why.contains("base"),
        "the diagnostic says why: {why:?}"
    );
}

#[test]
fn a_lan_registrant_cannot_name_the_gateway_host_as_its_base() {
    let Some(pair) = netns_or_skip("basegw") else {
        return;
    };
    let gw = start_rd(&pair);
    let (rd4, rd6, rd_lo) = (gw.rd_addrs[0], gw.rd_addrs[1], gw.rd_addrs[2]);
    let lan4 = Peer::with_socket(socket_in(&pair, Side::B, any_port(B_V4.into())), rd4);
    let lan6 = Peer::with_socket(socket_in(&pair, Side::B, any_port(B_V6.into())), rd6);

    let bad = [
        "coap://127.0.0.1:5800",
        "coap://127.0.0.53:5800",
        "coap://0.0.0.0:5800",
        "coap://[::1]:5800",
        "coap://[::]:5800",
        "coap://[::ffff:127.0.0.1]:5800",
        "coap://10.77.0.1:5800",
        "coap://[fd77::1]:5800",
        "coap://[::ffff:10.77.0.1]:5800",
        "coap://localhost:5800",
        "http://127.0.0.1:8080",
    ];
    for (i, base) in bad.iter().enumerate() {
        assert_refused(&lan4, &format!("/rd?ep=evil-{i}&base={base}"));
        assert_refused(&lan6, &format!("/rd?ep=evil6-{i}&base={base}"));
    }
    // draft-11's `con` is the same parameter.
    assert_refused(&lan4, "/rd?ep=evil-con&con=coap://127.0.0.1:5800");
    let stored = lookup(&lan4, "/rd-lookup/ep?ep=evil*");
    assert!(stored.is_empty(), "nothing is stored: {stored:?}");

    // The same registrant naming itself, or another LAN host, is registered.
    let own = register(&lan4, "ep=lan-self&base=coap://10.77.0.2:5683", "</t>;obs");
    register(&lan4, "ep=lan-other&base=coap://10.77.0.9:5683", "</t>");
    register(&lan6, "ep=lan-self6&base=coap://[fd77::2]:5683", "</t>");
    register(&lan4, "ep=lan-derived", "</t>");

    // An update obeys the same rule and changes nothing when refused.
    for base in [
        "coap://127.0.0.1:5800",
        "coap://10.77.0.1:5800",
        "coap://[::1]",
    ] {
        let resp = lan4.request(&Req::post(&format!("{own}?base={base}")));
        assert_eq!(resp.code, "4.00", "update to {base}: {}", resp.text());
        assert!(resp.text().contains("names the gateway's own host"));
    }
    let after = lookup(&lan4, "/rd-lookup/ep?ep=lan-self");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].get("base"), Some("coap://10.77.0.2:5683"));

    // A draft-11 group's `con` too.
    let group = lan4.post_links(
        "/rd-group?gp=evil-group&con=coap://127.0.0.1:5800",
        "<>;ep=\"lan-self\"",
    );
    assert_eq!(group.code, "4.00", "{}", group.text());

    // A registrant on the gateway's host (its loopback, or one of its addresses) may.
    let local = Peer::with_socket(socket_in(&pair, Side::A, any_port(LOOPBACK)), rd_lo);
    register(&local, "ep=local-svc&base=coap://127.0.0.1:5800", "</s>");
    let on_host = Peer::with_socket(socket_in(&pair, Side::A, any_port(A_V4.into())), rd4);
    register(&on_host, "ep=host-svc&base=coap://[::1]:5801", "</s>");
}

/// Wait until no process holds the store's lock (the in-process registry has stopped).
fn wait_unlocked(dir: &std::path::Path) {
    let started = Instant::now();
    loop {
        match Store::open(dir, 8) {
            Err(StoreError::Locked { .. }) if started.elapsed() < WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => {
                drop(other.expect("the store opens"));
                return;
            }
        }
    }
}

/// What an older version could store: `ep` registered from a LAN source with `base`.
fn store_legacy(dir: &std::path::Path, ep: &str, base: &str, source: SocketAddr) {
    let sys = System::new();
    sys.block_on(async {
        let (addr, _reader) =
            registry::start(RegistryConfig::in_dir(dir.to_path_buf())).expect("the registry opens");
        addr.send(Register {
            identity: None,
            ep: EndpointName::new(ep).expect("a valid name"),
            d: None,
            base: Some(base.to_string()),
            lifetime_s: 3600,
            attrs: Vec::new(),
            links: vec![GwLink::new("/secret")
                .with("obs", None)
                .with("rt", Some("secret"))],
            source,
        })
        .await
        .expect("the registry answers")
        .expect("the registration is stored");
    });
    System::current().stop();
    let _ = sys.run();
    wait_unlocked(dir);
}

#[test]
fn a_stored_base_naming_the_gateway_host_is_neither_watched_nor_commanded() {
    let Some(pair) = netns_or_skip("basegw") else {
        return;
    };
    // A service only the gateway's host can reach, and a normal device on the LAN.
    let secret = Service::start(
        socket_in(&pair, Side::A, any_port(LOOPBACK)),
        "loopback-only secret",
        0,
    );
    let device = Service::start(socket_in(&pair, Side::B, any_port(B_V4.into())), "21.5", 0);

    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    store_legacy(
        &data,
        "legacy",
        &format!("coap://127.0.0.1:{}", secret.addr.port()),
        SocketAddr::new(B_V4.into(), 40_000),
    );

    let mut sim = PlatformSim::start_in_netns(&pair.a, "127.0.0.1:0", None);
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["10.77.0.1:0".into()],
            extra_yaml: format!(
                "platform:\n  url: {:?}\n  reconnect_max_s: 1\npinger:\n  enabled: false\n\
                 observer:\n  enabled: true\n  select: [\"obs\"]\n",
                sim.url()
            ),
            data_dir: Some(data),
        },
    );
    sim.wait_type("snapshot", None, WAIT)
        .expect("the gateway connected to the platform");

    // The normal device registers itself from the LAN and is watched: its value arrives.
    let lan = Peer::with_socket(socket_in(&pair, Side::B, any_port(B_V4.into())), gw.addr());
    register(
        &lan,
        &format!("ep=thermo&base={}", common::coap_peer::base_of(device.addr)),
        "</temp>;obs;rt=\"temperature\"",
    );
    let data = sim.wait_for(WAIT, |v| v["type"] == "data" && v["ep"] == "thermo");
    assert!(
        data.is_some(),
        "the normal device is watched: {:?}\n{}",
        sim.frames(),
        gw.log_text()
    );

    // A command to the stored registration is refused unsent; one to the device is carried.
    sim.send_line(
        &json!({"type": "command", "id": "c-legacy", "ep": "legacy", "method": "PUT",
                "path": "/secret", "payload": "on", "timeout_ms": 5000})
        .to_string(),
    );
    sim.send_line(
        &json!({"type": "command", "id": "c-thermo", "ep": "thermo", "method": "GET",
                "path": "/temp", "timeout_ms": 5000})
        .to_string(),
    );
    let refused = sim
        .wait_for(WAIT, |v| {
            v["type"] == "command_result" && v["id"] == "c-legacy"
        })
        .expect("a result for the stored registration's command");
    assert_eq!(refused["error"]["kind"], "coap_error", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("names the gateway's own host"),
        "the message says why: {refused}"
    );
    let carried = sim
        .wait_for(WAIT, |v| {
            v["type"] == "command_result" && v["id"] == "c-thermo"
        })
        .expect("a result for the device's command");
    assert_eq!(carried["code"], "2.05", "{carried}");

    // By now the Observer has had the stored registration since its start, longer than the
    // device it already watches: nothing reached the loopback service, nothing was streamed.
    assert_eq!(secret.seen(), Vec::<String>::new(), "{}", gw.log_text());
    assert_eq!(
        sim.count(|v| v["type"] == "data" && v["ep"] == "legacy"),
        0,
        "{:?}",
        sim.frames()
    );
    assert!(device.seen().iter().any(|r| r.ends_with("/temp")));
}

const COAP_TYPE: &str = "_coap._udp.local.";

#[test]
fn an_mdns_announcement_naming_the_gateway_host_is_not_asked() {
    let Some(pair) = netns_or_skip("basegw") else {
        return;
    };
    // A service on the gateway's host, bound to its LAN address, and a device on the LAN.
    let internal = Service::start(
        socket_in(&pair, Side::A, any_port(A_V4.into())),
        "</internal>;rt=\"internal\"",
        40,
    );
    let device = Service::start(
        socket_in(&pair, Side::B, any_port(B_V4.into())),
        "</temp>;rt=\"temperature\"",
        40,
    );
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:0".into()],
            extra_yaml: "discovery:\n  enabled: true\n  mdns: true\n  interval_s: 3600\n  \
                         lifetime_s: 7200\n  timeout_ms: 3000\npinger:\n  enabled: false\n"
                .into(),
            ..Default::default()
        },
    );
    // Any host on the LAN may answer mDNS for any name: here b claims the gateway's address.
    let advertiser = pair
        .run_in(Side::B, || {
            mdns_sd::ServiceDaemon::new().expect("an mdns-sd daemon")
        })
        .expect("enter namespace b");
    for (name, ip, port) in [
        ("internal", A_V4, internal.addr.port()),
        ("lamp", B_V4, device.addr.port()),
    ] {
        let info = mdns_sd::ServiceInfo::new(
            COAP_TYPE,
            name,
            &format!("{name}.local."),
            ip.to_string().as_str(),
            port,
            None,
        )
        .expect("service info");
        advertiser.register(info).expect("advertise _coap._udp");
    }

    let rd = SocketAddr::new(A_V4.into(), gw.addr().port());
    let peer = Peer::with_socket(socket_in(&pair, Side::B, any_port(B_V4.into())), rd);
    let lamp = format!("/rd-lookup/ep?ep=disc-10-77-0-2-{}", device.addr.port());
    let deadline = Instant::now() + WAIT;
    while lookup(&peer, &lamp).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(lookup(&peer, &lamp).len(), 1, "{}", gw.log_text());
    // Either outcome of the other announcement ends the wait: refused (logged) or asked.
    const REFUSED: &str = "mDNS services naming this host ignored";
    let deadline = Instant::now() + WAIT;
    while !gw.log_text().contains(REFUSED)
        && internal.seen().is_empty()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        internal.seen(),
        Vec::<String>::new(),
        "the gateway asked its own host:\n{}",
        gw.log_text()
    );
    assert!(
        gw.log_text().contains(REFUSED),
        "the announcement naming the gateway's address was seen and refused:\n{}",
        gw.log_text()
    );
    let all = lookup(&peer, "/rd-lookup/ep?src=discovery");
    assert_eq!(all.len(), 1, "only the LAN device is registered: {all:?}");
    let _ = advertiser.shutdown();
}
