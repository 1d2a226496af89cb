//! Multicast discovery targets (issue 9), only inside private network namespaces: the gateway
//! runs in namespace `a` with `discovery.targets: [224.0.1.187, "[ff02::fd%veth0]"]`; in
//! namespace `b`, two `device-sim` devices that do not register themselves join All-CoAP-Nodes
//! (one on IPv4, one on IPv6, both on port 5683). Each round asks both groups once, and every
//! device that answers is registered with its own name and address.

mod common;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use common::coap_peer::{lookup, lookup_until, Peer};
use common::device_sim::{self, DeviceSim};
use common::netns::{netns_or_skip, NetnsPair, Side, A_V4, IFACE};
use common::{Gateway, GatewayOptions};

const WAIT: Duration = Duration::from_secs(30);

/// A `device-sim` device in namespace `b` on port 5683 that does not register itself.
fn start_sim(pair: &NetnsPair, bind: &str, prefix: &str, extra: &[&str]) -> DeviceSim {
    let mut cmd = pair.command(Side::B, device_sim::bin());
    cmd.args(["--bind", bind, "--first-port", "5683", "--count", "1"])
        .args(["--no-register", "--prefix", prefix])
        .args(extra);
    let mut sim = DeviceSim::spawn_command(cmd);
    assert!(sim.ready(WAIT), "device-sim ({bind}) did not get ready");
    sim
}

#[test]
fn devices_answering_a_group_are_registered_each_under_its_own_name() {
    let Some(pair) = netns_or_skip("mcdisc") else {
        return;
    };
    let yaml = format!(
        "discovery:\n  enabled: true\n  interval_s: 2\n  lifetime_s: 30\n  timeout_ms: 1500\n  \
         targets: [\"224.0.1.187\", \"[ff02::fd%{IFACE}]\"]\n\
         pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 300\n  attempts: 1\n"
    );
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:5683".into(), "[::]:5683".into()],
            extra_yaml: yaml,
            ..Default::default()
        },
    );
    let leisure = ["--join-multicast", "--multicast-leisure-ms", "300"];
    let _v4 = start_sim(&pair, "0.0.0.0", "mc4-", &leisure);
    let _v6 = start_sim(&pair, "::", "mc6-", &leisure);
    // A device that does not join the group is not found by it.
    let mut deaf = pair.command(Side::B, device_sim::bin());
    deaf.args(["--bind", "0.0.0.0", "--first-port", "5700", "--count", "1"])
        .args(["--no-register"]);
    let _deaf = DeviceSim::spawn_command(deaf);

    // Lookups from the link: a registration with a link-local base is shown only to
    // link-local requesters (RFC 9176 §6.1), and the IPv6 device answered from fe80::.
    let peer = link_local_peer(&pair);
    let found = lookup_until(&peer, "/rd-lookup/ep?src=discovery", WAIT, |l| l.len() >= 2);
    assert_eq!(found.len(), 2, "{found:?}\n{}", gw.log_text());
    let names: Vec<&str> = found.iter().filter_map(|l| l.get("ep")).collect();
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1], "{found:?}");
    let bases: Vec<&str> = found.iter().filter_map(|l| l.get("base")).collect();
    assert!(bases.contains(&"coap://10.77.0.2:5683"), "{bases:?}");
    assert!(
        bases
            .iter()
            .any(|b| b.starts_with("coap://[fe80:") && b.ends_with("]:5683")),
        "{bases:?}"
    );
    // Each group answered, and the links came with the registrations.
    assert!(
        gw.wait_for_log("group 224.0.1.187:5683: 1 answered", WAIT),
        "{}",
        gw.log_text()
    );
    assert!(
        gw.log_text().contains("group [ff02::fd%"),
        "{}",
        gw.log_text()
    );
    let resources = lookup(&peer, "/rd-lookup/res?src=discovery");
    assert_eq!(
        resources
            .iter()
            .filter(|l| l.target.ends_with("/sensors/temp"))
            .count(),
        2,
        "{resources:?}"
    );
    // A requester off the link sees only the IPv4 device.
    let sock = pair
        .run_in(Side::B, || UdpSocket::bind("0.0.0.0:0").unwrap())
        .expect("enter namespace b");
    let global = Peer::with_socket(sock, SocketAddr::from((A_V4, 5683)));
    let seen = lookup(&global, "/rd-lookup/ep?src=discovery");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].get("base"), Some("coap://10.77.0.2:5683"));
    // Still exactly two after further rounds: a round refreshes, it does not duplicate.
    assert!(
        gw.wait_for_log("discovery: round 3", WAIT),
        "{}",
        gw.log_text()
    );
    assert_eq!(lookup(&peer, "/rd-lookup/ep?src=discovery").len(), 2);
    // The Pinger reaches both: the link-local base gets its interface from the source the
    // device was found at (a base carries no zone id). Positively: two sweeps that started
    // after both were registered complete with both pinged and both alive, and none was ever
    // marked disconnected.
    let sweeps_before = completed_sweeps(&gw.log_text()).len();
    let deadline = std::time::Instant::now() + WAIT;
    let both_alive = loop {
        let log = gw.log_text();
        let sweeps = completed_sweeps(&log);
        let later: Vec<&String> = sweeps.iter().skip(sweeps_before + 1).collect();
        if later.len() >= 2 {
            break later.into_iter().cloned().collect::<Vec<String>>();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not two completed Pinger sweeps after discovery:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for sweep in &both_alive {
        assert!(
            sweep.contains("pinged 2, alive 2, failed 0, inconclusive 0"),
            "a sweep did not find both devices alive: {sweep}\n{}",
            gw.log_text()
        );
    }
    assert!(
        !gw.log_text().contains("(status 0)"),
        "a discovered device was marked disconnected:\n{}",
        gw.log_text()
    );
}

/// The Pinger's "sweep N done" lines, in order.
fn completed_sweeps(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("pinger: sweep ") && l.contains(" done in "))
        .map(str::to_owned)
        .collect()
}

/// A client in namespace `b` talking to the RD's link-local address on `veth0`.
fn link_local_peer(pair: &NetnsPair) -> Peer {
    let out = std::process::Command::new("ip")
        .args([
            "-n", &pair.a, "-6", "addr", "show", "dev", IFACE, "scope", "link",
        ])
        .output()
        .expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rd_ip: Ipv6Addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address in namespace a: {text}"));
    let (sock, scope) = pair
        .run_in(Side::B, || {
            let name = std::ffi::CString::new(IFACE).unwrap();
            // SAFETY: a NUL-terminated name that lives across the call.
            let scope = unsafe { libc::if_nametoindex(name.as_ptr()) };
            (UdpSocket::bind("[::]:0").unwrap(), scope)
        })
        .expect("enter namespace b");
    Peer::with_socket(
        sock,
        SocketAddr::V6(SocketAddrV6::new(rd_ip, 5683, 0, scope)),
    )
}
