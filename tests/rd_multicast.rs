//! Multicast RD discovery (RFC 9176 §4.1, RFC 7252 §8), end to end and only inside private
//! network namespaces: the real gateway runs in namespace `a` with `rd.multicast: true` on
//! `veth0`; requests come from sockets made in namespace `b`. Multicast `GET
//! /.well-known/core?rt=core.rd*` to All-CoAP-Nodes and All-CoRE-RDs (IPv4 and IPv6) gets one
//! NON 2.05 from the RD's unicast address within the leisure; nothing else sent by multicast
//! is ever answered; unicast is unchanged.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::coap_peer::Resp;
use common::netns::{netns_or_skip, NetnsPair, Side, A_V4, A_V6, IFACE};
use common::{require_tool, Gateway, GatewayOptions};

/// Short, so the tests are quick; the answer's delay is still checked against it.
const LEISURE: Duration = Duration::from_millis(400);
/// Scheduling and veth latency on a busy 2-core box.
const SLACK: Duration = Duration::from_millis(1_000);

const ALL_COAP_NODES_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
const ALL_CORE_RDS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 190);
const ALL_COAP_NODES_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd);
const ALL_CORE_RDS_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfe);
const ALL_CORE_RDS_V6_SITE: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xfe);

/// The RD's multicast keys. The amplification bound (`limits.amplification_factor`, on by
/// default) is switched off here so that an answer's whole content can be checked in one
/// datagram; `a_multicast_answer_is_bounded_by_the_amplification_factor` checks it on.
fn rd_yaml(leisure: Duration) -> String {
    format!(
        "rd:\n  multicast: true\n  multicast_interfaces: [{IFACE}]\n  multicast_leisure_ms: {}\nlimits:\n  amplification_factor: 0\n",
        leisure.as_millis()
    )
}

/// The gateway in namespace `a`, on the CoAP port of both wildcard addresses.
fn start_gateway(pair: &NetnsPair, leisure: Duration) -> Gateway {
    Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:5683".into(), "[::]:5683".into()],
            extra_yaml: format!("{}pinger:\n  enabled: false\n", rd_yaml(leisure)),
            ..Default::default()
        },
    )
}

/// The index of `veth0` in namespace `b` (the scope of link-local groups and addresses).
fn b_ifindex(pair: &NetnsPair) -> u32 {
    pair.run_in(Side::B, || {
        let name = std::ffi::CString::new(IFACE).unwrap();
        // SAFETY: a NUL-terminated name that lives across the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    })
    .expect("enter namespace b")
}

/// A UDP socket made in namespace `b`, multicast leaving through `veth0`.
fn b_socket(pair: &NetnsPair, v6: bool) -> UdpSocket {
    let index = b_ifindex(pair);
    pair.run_in(Side::B, move || {
        if v6 {
            let s = UdpSocket::bind("[::]:0").unwrap();
            socket2::SockRef::from(&s)
                .set_multicast_if_v6(index)
                .unwrap();
            s
        } else {
            UdpSocket::bind("0.0.0.0:0").unwrap()
        }
    })
    .expect("enter namespace b")
}

fn request(mtype: MessageType, method: RequestType, uri: &str, mid: u16, token: &[u8]) -> Vec<u8> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut p = Packet::new();
    p.header.set_type(mtype);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for item in query.split('&').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriQuery, item.as_bytes().to_vec());
    }
    p.to_bytes().unwrap()
}

fn discovery(mtype: MessageType, query: &str, mid: u16, token: &[u8]) -> Vec<u8> {
    let uri = format!("/.well-known/core{query}");
    request(mtype, RequestType::Get, &uri, mid, token)
}

/// Every datagram arriving within `window`, with when it arrived.
fn collect(sock: &UdpSocket, window: Duration) -> Vec<(Duration, SocketAddr, Packet)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < window {
        let left = window - start.elapsed();
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let packet = Packet::from_bytes(&buf[..n]).expect("a CoAP message");
            got.push((start.elapsed(), from, packet));
        }
    }
    got
}

/// The first datagram within `window`.
fn first(sock: &UdpSocket, window: Duration) -> Option<(Duration, SocketAddr, Packet)> {
    let start = Instant::now();
    sock.set_read_timeout(Some(window)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    Some((
        start.elapsed(),
        from,
        Packet::from_bytes(&buf[..n]).expect("a CoAP message"),
    ))
}

/// The checks every multicast discovery answer must pass (for `?rt=core.rd*`: with the
/// lookup interfaces).
fn assert_discovery_answer(packet: &Packet, token: &[u8], lookups: bool) -> Resp {
    let resp = Resp::from_packet(packet);
    assert_eq!(resp.mtype, MessageType::NonConfirmable, "{resp:?}");
    assert_eq!(resp.code, "2.05", "{resp:?}");
    assert_eq!(resp.token, token);
    assert_eq!(resp.content_format, Some(40));
    let text = resp.text();
    assert!(text.contains("</rd>;rt=\"core.rd\""), "{text}");
    for link in [
        "</rd-lookup/ep>;rt=\"core.rd-lookup-ep\"",
        "</rd-lookup/res>;rt=\"core.rd-lookup-res\"",
    ] {
        assert_eq!(text.contains(link), lookups, "{text}");
    }
    resp
}

fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[test]
fn multicast_discovery_is_answered_with_a_non_after_the_leisure() {
    let Some(pair) = netns_or_skip("mcrd") else {
        return;
    };
    let gw = start_gateway(&pair, LEISURE);
    assert!(gw.log_text().contains("joined 224.0.1.190 on veth0"));

    // IPv4, both groups, NON and CON: one NON 2.05 each, from the RD's unicast address and port.
    let v4 = b_socket(&pair, false);
    for (n, group) in [ALL_COAP_NODES_V4, ALL_CORE_RDS_V4].into_iter().enumerate() {
        for (k, mtype) in [MessageType::NonConfirmable, MessageType::Confirmable]
            .into_iter()
            .enumerate()
        {
            let token = [0x40, n as u8, k as u8, 1];
            let mid = 100 + (n * 2 + k) as u16;
            v4.send_to(
                &discovery(mtype, "?rt=core.rd*", mid, &token),
                (group, 5683),
            )
            .unwrap();
            let got = collect(&v4, LEISURE + SLACK);
            assert_eq!(
                got.len(),
                1,
                "{group} {mtype:?}: exactly one answer (no ACK): {got:?}"
            );
            let (after, from, packet) = &got[0];
            assert_eq!(*from, SocketAddr::from((A_V4, 5683)), "{group}");
            assert!(
                *after <= LEISURE + SLACK,
                "{group}: answered after {after:?}"
            );
            assert_discovery_answer(packet, &token, true);
        }
    }

    // IPv6: All-CoAP-Nodes and All-CoRE-RDs, link-local and site-local scope.
    let v6 = b_socket(&pair, true);
    let scope = b_ifindex(&pair);
    for (n, group) in [ALL_COAP_NODES_V6, ALL_CORE_RDS_V6, ALL_CORE_RDS_V6_SITE]
        .into_iter()
        .enumerate()
    {
        let token = [0x60, n as u8];
        let to = SocketAddrV6::new(group, 5683, 0, scope);
        v6.send_to(
            &discovery(
                MessageType::NonConfirmable,
                "?rt=core.rd",
                300 + n as u16,
                &token,
            ),
            to,
        )
        .unwrap();
        let got = collect(&v6, LEISURE + SLACK);
        assert_eq!(got.len(), 1, "{group}: {got:?}");
        let (_, from, packet) = &got[0];
        let IpAddr::V6(ip) = from.ip() else {
            panic!("{group}: IPv4 answer from {from}")
        };
        assert!(
            ip == A_V6 || is_link_local(&ip),
            "{group}: answer from {from}"
        );
        assert_eq!(from.port(), 5683);
        let resp = assert_discovery_answer(packet, &token, false);
        // `rt=core.rd` selects the registration interface alone.
        assert_eq!(resp.text(), "</rd>;rt=\"core.rd\";ct=40", "{group}");
    }

    // The leisure spreads answers over [0, leisure]: several requests at once are not all
    // answered at the same instant, and none later than the leisure allows.
    for i in 0..6u16 {
        let token = [0x70, i as u8];
        v4.send_to(
            &discovery(MessageType::NonConfirmable, "?rt=core.rd*", 400 + i, &token),
            (ALL_CORE_RDS_V4, 5683),
        )
        .unwrap();
    }
    let burst = collect(&v4, LEISURE + SLACK);
    assert_eq!(burst.len(), 6, "{burst:?}");
    let times: Vec<Duration> = burst.iter().map(|(t, _, _)| *t).collect();
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis(20),
        "no leisure spread: {times:?}"
    );
    assert!(times.iter().all(|t| *t <= LEISURE + SLACK), "{times:?}");
}

#[test]
fn multicast_gets_silence_when_nothing_matches_or_the_request_is_not_discovery() {
    let Some(pair) = netns_or_skip("mcsilent") else {
        return;
    };
    let gw = start_gateway(&pair, LEISURE);
    let v4 = b_socket(&pair, false);
    let group = (ALL_COAP_NODES_V4, 5683);
    let send = |bytes: Vec<u8>, to: (Ipv4Addr, u16)| {
        v4.send_to(&bytes, to).unwrap();
    };
    let con = MessageType::Confirmable;
    let non = MessageType::NonConfirmable;
    // Discovery that matches nothing (unicast: 4.04), CON and NON.
    send(discovery(non, "?rt=no-such-thing", 1, &[1]), group);
    send(
        discovery(con, "?rt=no-such-thing", 2, &[2]),
        (ALL_CORE_RDS_V4, 5683),
    );
    // A malformed query (unicast: 4.00) and an unacceptable Accept (unicast: 4.06).
    send(discovery(con, "?=x", 3, &[3]), group);
    let mut accept = Packet::from_bytes(&discovery(con, "", 4, &[4])).unwrap();
    accept.add_option(CoapOption::Accept, vec![50]);
    send(accept.to_bytes().unwrap(), group);
    // Not discovery: a registration, a lookup, an unknown path, a DELETE.
    let mut register = Packet::from_bytes(&request(
        con,
        RequestType::Post,
        "/rd?ep=by-multicast",
        5,
        &[5],
    ))
    .unwrap();
    register.add_option(CoapOption::ContentFormat, vec![40]);
    register.payload = b"</sensors/temp>;rt=temperature".to_vec();
    send(register.to_bytes().unwrap(), group);
    send(
        request(con, RequestType::Get, "/rd-lookup/ep", 6, &[6]),
        group,
    );
    send(
        request(non, RequestType::Get, "/no/such/path", 7, &[7]),
        group,
    );
    send(request(con, RequestType::Delete, "/reg/1", 8, &[8]), group);
    // A CoAP ping and malformed CON messages (unicast: RST).
    send(vec![0x40, 0x00, 0x00, 0x09], group);
    send(vec![0x4f, 0x01, 0x00, 0x0a], group); // token length 15: a format error
    send(vec![0x40, 0x01, 0x00, 0x0b, 0xff], group); // payload marker, no payload
    let heard = collect(&v4, LEISURE + SLACK);
    assert!(heard.is_empty(), "multicast must get silence: {heard:?}");

    // The POST really did nothing, and unicast still answers exactly as before.
    let unicast = SocketAddr::from((A_V4, 5683));
    let ask = |bytes: Vec<u8>| {
        v4.send_to(&bytes, unicast).unwrap();
        let (after, from, packet) = first(&v4, SLACK).expect("unicast answer");
        assert_eq!(from, unicast);
        assert!(
            after < LEISURE,
            "unicast must not wait the leisure: {after:?}"
        );
        Resp::from_packet(&packet)
    };
    let lookup = ask(request(con, RequestType::Get, "/rd-lookup/ep", 20, &[20]));
    assert_eq!(lookup.code, "2.05");
    assert!(!lookup.text().contains("by-multicast"), "{}", lookup.text());
    let found = ask(discovery(con, "?rt=core.rd*", 21, &[21]));
    assert_eq!(found.mtype, MessageType::Acknowledgement);
    assert_discovery_answer_fields(&found);
    let none = ask(discovery(con, "?rt=no-such-thing", 22, &[22]));
    assert_eq!(
        (none.mtype, none.code.as_str()),
        (MessageType::Acknowledgement, "4.04")
    );
    let ping = ask(vec![0x40, 0x00, 0x00, 23]);
    assert_eq!(ping.mtype, MessageType::Reset);
    drop(gw);
}

fn assert_discovery_answer_fields(resp: &Resp) {
    assert_eq!(resp.code, "2.05");
    assert!(
        resp.text().contains("</rd>;rt=\"core.rd\""),
        "{}",
        resp.text()
    );
}

#[test]
fn a_repeated_multicast_request_is_answered_once() {
    let Some(pair) = netns_or_skip("mcdedup") else {
        return;
    };
    let _gw = start_gateway(&pair, LEISURE);
    let v4 = b_socket(&pair, false);
    let bytes = discovery(MessageType::Confirmable, "?rt=core.rd*", 77, &[7, 7]);
    for _ in 0..3 {
        v4.send_to(&bytes, (ALL_CORE_RDS_V4, 5683)).unwrap();
    }
    let got = collect(&v4, LEISURE + SLACK);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_discovery_answer(&got[0].2, &[7, 7], true);
}

#[test]
fn multicast_off_joins_nothing() {
    let Some(pair) = netns_or_skip("mcoff") else {
        return;
    };
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:5683".into()],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
    );
    let v4 = b_socket(&pair, false);
    v4.send_to(
        &discovery(MessageType::NonConfirmable, "?rt=core.rd*", 5, &[5]),
        (ALL_CORE_RDS_V4, 5683),
    )
    .unwrap();
    assert!(collect(&v4, LEISURE + SLACK).is_empty());
    assert!(!gw.log_text().contains("joined"), "{}", gw.log_text());
}

#[test]
fn an_ipv4_only_listener_joins_the_ipv4_groups_and_says_why_not_the_others() {
    let Some(pair) = netns_or_skip("mcv4") else {
        return;
    };
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:5683".into(), "[::]:0".into()],
            extra_yaml: rd_yaml(LEISURE),
            ..Default::default()
        },
    );
    let log = gw.log_text();
    assert!(log.contains("joined 224.0.1.187 on veth0"), "{log}");
    assert!(log.contains("joined 224.0.1.190 on veth0"), "{log}");
    assert!(log.contains("no [::]:5683 in rd.listen"), "{log}");
    assert!(!log.contains("joined ff0"), "{log}");
    let v4 = b_socket(&pair, false);
    let token = [0x44];
    v4.send_to(
        &discovery(MessageType::NonConfirmable, "?rt=core.rd*", 9, &token),
        (ALL_CORE_RDS_V4, 5683),
    )
    .unwrap();
    let (_, from, packet) = first(&v4, LEISURE + SLACK).expect("an answer");
    assert_eq!(from, SocketAddr::from((A_V4, 5683)));
    assert_discovery_answer(&packet, &token, true);
}

#[test]
fn an_unknown_interface_stops_the_start() {
    let Some(pair) = netns_or_skip("mcbadif") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let opts = GatewayOptions {
        listen: vec!["0.0.0.0:5683".into()],
        extra_yaml: "rd:\n  multicast: true\n  multicast_interfaces: [nosuchif0]\n".into(),
        ..Default::default()
    };
    let config = common::write_config(tmp.path(), &tmp.path().join("data"), &opts);
    let out = pair
        .command(Side::A, common::gateway_bin())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "an unusable setting: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("rd.multicast_interfaces") && stderr.contains("nosuchif0"),
        "{stderr}"
    );
}

#[test]
fn libcoap_client_discovers_the_rd_by_multicast() {
    if !require_tool("coap-client-notls") {
        return;
    }
    let Some(pair) = netns_or_skip("mclibcoap") else {
        return;
    };
    let _gw = start_gateway(&pair, LEISURE);
    let out = pair
        .command(Side::B, "timeout")
        .args([
            "20",
            "coap-client-notls",
            "-N",
            "-m",
            "get",
            "-B",
            "3",
            "coap://224.0.1.187/.well-known/core?rt=core.rd*",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("</rd>;rt=\"core.rd\""),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A group answer to a source that has not proven its address (RFC 7252 §11.3: multicast is
/// where amplification hurts most) is at most `amplification_factor` times the request: the
/// first Block2 block only, with Echo so the client can prove its address for the rest.
#[test]
fn a_multicast_answer_is_bounded_by_the_amplification_factor() {
    let Some(pair) = netns_or_skip("mcamp") else {
        return;
    };
    let _gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:5683".into()],
            extra_yaml: format!(
                "rd:\n  multicast: true\n  multicast_interfaces: [{IFACE}]\n  multicast_leisure_ms: {}\nlimits:\n  amplification_factor: 3\npinger:\n  enabled: false\n",
                LEISURE.as_millis()
            ),
            ..Default::default()
        },
    );
    let v4 = b_socket(&pair, false);
    let bytes = discovery(MessageType::NonConfirmable, "?rt=core.rd*", 91, &[9, 1]);
    v4.send_to(&bytes, (ALL_COAP_NODES_V4, 5683)).unwrap();
    let (_, from, packet) = first(&v4, LEISURE + SLACK).expect("a bounded answer");
    assert_eq!(from.ip(), std::net::IpAddr::V4(common::netns::A_V4));
    let wire = packet.to_bytes().unwrap().len();
    assert!(
        wire <= 3 * bytes.len(),
        "{wire} bytes answer a {}-byte request",
        bytes.len()
    );
    let resp = Resp::from_packet(&packet);
    assert_eq!(resp.mtype, MessageType::NonConfirmable);
    assert_eq!(resp.code, "2.05");
    let block = resp
        .block2
        .clone()
        .expect("the answer is the first Block2 block");
    assert_eq!(block.num, 0);
    assert!(block.more, "more blocks follow");
    assert!(resp.text().starts_with("</rd>"), "{}", resp.text());
    assert!(
        packet
            .get_option(coap_lite::CoapOption::Unknown(252))
            .is_some(),
        "Echo (RFC 9175) lets the client prove its address"
    );
}
