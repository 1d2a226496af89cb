//! Active discovery of a device that speaks only CoAP over DTLS: libcoap's
//! `coap-server-openssl` with a PSK, named as the target `coaps://node1@127.0.0.1:PORT`. The
//! gateway asks its `/.well-known/core` over DTLS with node1's key from the identities file
//! and registers it as node1, with a `coaps://` base; a target whose identity has another key
//! is never registered, and nothing is ever sent to it in plain CoAP.

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::{require_tool, Gateway, GatewayOptions};

/// A port P with P and P + 1 free (libcoap's server takes P for CoAP and P + 1 for DTLS).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn psk_server(port: u16, key: &str) -> Server {
    Server(
        Command::new("coap-server-openssl")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-k", key])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start coap-server-openssl"),
    )
}

#[test]
fn a_coaps_target_is_discovered_over_dtls_as_its_identity() {
    if !require_tool("coap-server-openssl") {
        return;
    }
    let (good, wrong) = (free_port_pair(), free_port_pair());
    let _good = psk_server(good, "secret-node1");
    let _wrong = psk_server(wrong, "not-node2s-key");
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("identities.yaml");
    std::fs::write(
        &ids,
        "identities:\n  - {identity: node1, psk_hex: \"7365637265742d6e6f646531\"}\n  \
         - {identity: node2, psk_hex: \"7365637265742d6e6f646532\"}\n",
    )
    .unwrap();
    let coaps = free_port();
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "pinger:\n  enabled: false\n\
             dtls:\n  listen: [\"127.0.0.1:{coaps}\"]\n  identities_file: \"{}\"\n\
             discovery:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 2000\n  \
             targets: [\"coaps://node1@127.0.0.1:{}\", \"coaps://node2@127.0.0.1:{}\"]\n",
            ids.display(),
            good + 1,
            wrong + 1
        ),
        ..Default::default()
    });
    let peer = Peer::new(gw.addr());
    let t0 = Instant::now();
    let node1 = loop {
        if let Some(link) = ep_link(&peer, "node1") {
            break link;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "node1 not discovered: {}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        node1.get("base"),
        Some(format!("coaps://127.0.0.1:{}", good + 1).as_str())
    );
    // A few more rounds: node2's handshake keeps failing (wrong key); it is never registered.
    assert!(gw.wait_for_log("discovery: round 3", Duration::from_secs(30)));
    assert!(ep_link(&peer, "node2").is_none());
    assert_eq!(lookup(&peer, "/rd-lookup/ep").len(), 1);
}
