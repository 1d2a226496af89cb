//! A `device-sim` fleet over coaps (`--psk-identity-prefix`, `--psk-hex`) against the real
//! gateway with `security.plain_coap: lookup_only`: every device registers over DTLS as its
//! own identity, its base is `coaps://`, the Pinger keeps it at status 1 through DTLS, and
//! once the fleet is gone the Pinger marks every device 0 (its pings over DTLS fail; nothing
//! falls back to plain CoAP); a plain registration is refused with 4.01 meanwhile.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::RequestType;
use common::coap_peer::*;
use common::device_sim::DeviceSim;
use common::{Gateway, GatewayOptions};

const COUNT: usize = 10;
const KEY_HEX: &str = "73696d2d666c6565742d6b6579";

fn free_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A gateway with coaps on a free port, identities `sim-0..` with `KEY_HEX`, plain CoAP for
/// lookups only, pinging every second.
fn coaps_gateway(dir: &std::path::Path) -> (Gateway, SocketAddr) {
    let mut ids = String::from("identities:\n");
    for i in 0..COUNT {
        ids.push_str(&format!(
            "  - {{identity: sim-{i}, psk_hex: \"{KEY_HEX}\"}}\n"
        ));
    }
    let ids_path = dir.join("identities.yaml");
    std::fs::write(&ids_path, ids).unwrap();
    let coaps: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "pinger:\n  interval_s: 1\n  timeout_ms: 500\n  attempts: 2\n\
             dtls:\n  listen: [\"{coaps}\"]\n  identities_file: \"{}\"\n\
             security:\n  plain_coap: lookup_only\n",
            ids_path.display()
        ),
        ..Default::default()
    });
    assert!(
        gw.wait_for_log(
            &format!("rd listening on coaps://{coaps}"),
            Duration::from_secs(10)
        ),
        "no coaps listener: {}",
        gw.log_text()
    );
    (gw, coaps)
}

fn registered(gw: SocketAddr) -> Vec<Link> {
    lookup(&Peer::new(gw), "/rd-lookup/ep")
}

fn wait_until(what: &str, budget: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < budget, "{what} not within {budget:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_psk_fleet_registers_over_coaps_and_is_pinged_over_dtls() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, coaps) = coaps_gateway(dir.path());
    let sim = DeviceSim::spawn(
        coaps,
        COUNT,
        &[
            "--prefix",
            "sim-",
            "--lt",
            "60",
            "--psk-identity-prefix",
            "sim-",
            "--psk-hex",
            KEY_HEX,
        ],
    );
    wait_until("every device registered", Duration::from_secs(30), || {
        registered(gw.addr()).len() == COUNT
    });
    for link in registered(gw.addr()) {
        let base = link.get("base").expect("a base");
        assert!(base.starts_with("coaps://127.0.0.1:"), "{base}");
    }
    // Plain CoAP may look up, not register (lookup_only).
    let plain = Peer::new(gw.addr())
        .request(&Req::new(RequestType::Post, "/rd?ep=sim-0").payload(b"</x>".to_vec()));
    assert_eq!(plain.code, "4.01", "{plain:?}");
    // A few ping rounds over DTLS: every device stays connected.
    std::thread::sleep(Duration::from_secs(3));
    let connected = lookup(&Peer::new(gw.addr()), "/rd-lookup/ep?status=1");
    assert_eq!(connected.len(), COUNT, "{connected:?}");
    // The fleet goes away: its sessions die with it, the Pinger's new handshakes fail, and
    // every device is marked disconnected, not removed.
    drop(sim);
    wait_until("every device at status 0", Duration::from_secs(30), || {
        lookup(&Peer::new(gw.addr()), "/rd-lookup/ep?status=0").len() == COUNT
    });
    assert_eq!(registered(gw.addr()).len(), COUNT);
    assert!(
        !gw.log_text().contains(KEY_HEX),
        "the key must never be logged"
    );
}
