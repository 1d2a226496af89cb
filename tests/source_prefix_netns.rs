//! Per-source limits count an IPv6 host by its /64 (issue 25 item 8), seen from another host:
//! the gateway runs in network namespace `a` (fd77::1), and one host in namespace `b` holds six
//! addresses of its /64 (fd77::3 to fd77::8), as SLAAC, privacy addresses or `ip addr add`
//! give any IPv6 host.
//!
//! - The registration quota (`limits.max_registrations_per_source`): six new names from six
//!   addresses of one /64 get three 2.01 and then 4.03. The same host with
//!   `limits.ipv6_source_prefix: 128` (every address counted alone, what the limits did before)
//!   registers all six: the review's "fd99::3–8 filled the registry".
//! - The request rate (`limits.request_rate_per_s`, `request_burst`): the burst is shared by the
//!   /64, so changing the address does not buy a new one.
//!
//! Where namespaces cannot be made, the one skip policy applies (`netns_or_skip`).

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::coap_peer::Peer;
use common::netns::{netns_or_skip, NetnsPair, Side};
use common::{Gateway, GatewayOptions};

/// The host's six addresses in fd77::/64 (namespace `b` already has fd77::2).
fn host_addresses(pair: &NetnsPair) -> Vec<Ipv6Addr> {
    (3..=8u16)
        .map(|n| {
            let addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, n);
            pair.add_address(Side::B, &format!("{addr}/64"));
            addr
        })
        .collect()
}

fn start_rd(pair: &NetnsPair, limits: &str) -> Gateway {
    Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["[fd77::1]:0".into()],
            extra_yaml: format!("pinger:\n  enabled: false\nlimits:\n{limits}"),
            ..Default::default()
        },
    )
}

fn peer_at(pair: &NetnsPair, ip: Ipv6Addr, rd: SocketAddr) -> Peer {
    let sock = pair
        .run_in(Side::B, move || {
            UdpSocket::bind(SocketAddr::new(IpAddr::V6(ip), 0))
        })
        .expect("enter namespace b")
        .expect("bind in namespace b");
    Peer::with_socket(sock, rd).with_budget(Duration::from_secs(10))
}

/// One new name from each address; the answer codes in order.
fn register_one_name_per_address(pair: &NetnsPair, prefix: u8) -> Vec<String> {
    let addrs = host_addresses(pair);
    let gw = start_rd(
        pair,
        &format!("  max_registrations_per_source: 3\n  ipv6_source_prefix: {prefix}\n"),
    );
    addrs
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let p = peer_at(pair, *ip, gw.rd_addrs[0]);
            p.post_links(&format!("/rd?ep=v6-host-{i}"), "</s>").code
        })
        .collect()
}

#[test]
fn six_addresses_of_one_64_share_one_registration_quota() {
    let Some(pair) = netns_or_skip("pfx64") else {
        return;
    };
    let codes = register_one_name_per_address(&pair, 64);
    assert_eq!(
        codes,
        ["2.01", "2.01", "2.01", "4.03", "4.03", "4.03"],
        "the /64 is one source"
    );
}

#[test]
fn counted_per_address_the_same_host_fills_beyond_its_quota() {
    // The control: what the limits did before issue 25 item 8, still selectable.
    let Some(pair) = netns_or_skip("pfx128") else {
        return;
    };
    let codes = register_one_name_per_address(&pair, 128);
    assert_eq!(codes, ["2.01"; 6], "every address counted alone");
}

#[test]
fn six_addresses_of_one_64_share_one_request_burst() {
    let Some(pair) = netns_or_skip("pfxrate") else {
        return;
    };
    let addrs = host_addresses(&pair);
    // 5 requests at once, then 1 per 10 s: the test's pace never earns a sixth.
    let gw = start_rd(
        &pair,
        "  request_rate_per_s: 0.1\n  request_burst: 5\n  max_registrations_per_source: 100\n",
    );
    let mut answered = 0;
    for ip in &addrs {
        let p = peer_at(&pair, *ip, gw.rd_addrs[0]).with_budget(Duration::from_secs(3));
        // A refused request gets one 4.29 (then silence, which try_request reports as an error).
        match p.try_request(&common::coap_peer::Req::get("/.well-known/core")) {
            Ok(r) if r.code == "2.05" => answered += 1,
            Ok(r) => assert_eq!(r.code, "4.29", "over the shared burst"),
            Err(_) => {}
        }
    }
    assert_eq!(answered, 5, "one burst for the whole /64");
}
