//! Simple registration (RFC 9176 §5.1) against a hostile LAN host (issue 25 items 1 and 2). The
//! gateway runs the production policy (`limits.exempt_loopback: false`), so 127.0.0.x sources
//! are distinct LAN hosts.
//!
//! - A host that sends `POST /.well-known/rd` from many ports and never answers the gateway's
//!   GET holds at most `limits.max_simple_registrations_per_source` (2) fetches; the rest are
//!   answered 5.03 with a Max-Age at once. Before, each held a handler and an outgoing-request
//!   slot for 10 s, and enough of them starved honest clients, the Pinger and the Executer.
//! - All sources together hold at most `limits.max_simple_registrations_in_progress`.
//! - The links a simple registration fetches obey `limits.max_payload_bytes` like a `POST /rd`
//!   body: a device answering with a huge Block2 body is not registered, and the gateway stops
//!   fetching blocks once the bound is passed. Before, 880 KB per device were stored.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::coap_peer::{simple_register_at, Peer};

fn code(p: &Packet) -> String {
    let c = u8::from(p.header.code);
    format!("{}.{:02}", c >> 5, c & 0x1f)
}

fn post_simple(ep: &str, mid: u16) -> Vec<u8> {
    let ep = format!("ep={ep}");
    common::constrained::request(
        RequestType::Post,
        "/.well-known/rd",
        &[&ep],
        b"",
        None,
        mid,
        &mid.to_be_bytes(),
    )
}

/// What one silent simple-registrant socket saw within `window`: the gateway's GETs of its
/// links, and the final answer to its POST (an empty ACK is not an answer).
#[derive(Debug, Default)]
struct Seen {
    gets: usize,
    answer: Option<(String, Option<u32>)>,
}

fn watch(sock: &UdpSocket, window: Duration) -> Seen {
    let end = Instant::now() + window;
    let mut seen = Seen::default();
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let Ok(p) = Packet::from_bytes(&buf[..n]) else {
            continue;
        };
        match p.header.code {
            MessageClass::Request(RequestType::Get) => seen.gets += 1,
            MessageClass::Response(_) => {
                let max_age = p
                    .get_option(CoapOption::MaxAge)
                    .and_then(|v| v.front())
                    .map(|v| v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)));
                seen.answer = Some((code(&p), max_age));
                break;
            }
            _ => {}
        }
    }
    seen
}

#[test]
fn a_host_that_never_answers_holds_two_fetches_and_is_told_5_03_for_the_rest() {
    let (gw, _tmp) = common::start_unexempt("", "");
    let hogs: Vec<UdpSocket> = (0..6)
        .map(|_| UdpSocket::bind("127.0.0.50:0").unwrap())
        .collect();
    for (i, sock) in hogs.iter().enumerate() {
        sock.send_to(&post_simple(&format!("hog-{i}"), 100 + i as u16), gw.addr())
            .unwrap();
    }
    // Well inside the 10 s fetch budget: the refused ones are answered at once, the admitted
    // ones are still waiting for their GET to be answered.
    let seen: Vec<Seen> = hogs
        .iter()
        .map(|s| watch(s, Duration::from_secs(3)))
        .collect();
    // Hosts the gateway asked (a GET may be retransmitted within the window).
    let gets = seen.iter().filter(|s| s.gets > 0).count();
    let refused: Vec<_> = seen.iter().filter_map(|s| s.answer.clone()).collect();
    assert_eq!(refused.len(), 4, "{seen:?}");
    for (code, max_age) in &refused {
        assert_eq!(code, "5.03");
        assert!(
            max_age.is_some_and(|s| s >= 1),
            "with a Max-Age: {max_age:?}"
        );
    }
    assert_eq!(
        gets, 2,
        "the gateway fetched only two hosts' links: {seen:?}"
    );

    // Another host is not affected.
    let honest = simple_register_at(
        "127.0.0.51:0",
        gw.addr(),
        "/.well-known/rd?ep=honest-simple",
        Some("</t>"),
        Duration::from_secs(10),
    );
    assert_eq!(honest.response.map(|r| r.code), Some("2.04".to_string()));
}

#[test]
fn all_sources_together_hold_at_most_the_configured_fetches() {
    let (gw, _tmp) = common::start_unexempt(
        "",
        "  max_simple_registrations_in_progress: 3\n  max_simple_registrations_per_source: 2\n",
    );
    let holders: Vec<UdpSocket> = ["127.0.0.52", "127.0.0.52", "127.0.0.53"]
        .iter()
        .map(|ip| UdpSocket::bind(format!("{ip}:0")).unwrap())
        .collect();
    for (i, sock) in holders.iter().enumerate() {
        sock.send_to(
            &post_simple(&format!("held-{i}"), 200 + i as u16),
            gw.addr(),
        )
        .unwrap();
    }
    // Each holder sees the gateway's GET: all three are in progress.
    for sock in &holders {
        let seen = watch(sock, Duration::from_millis(1_500));
        assert!(seen.gets >= 1 && seen.answer.is_none(), "{seen:?}");
    }
    let late = UdpSocket::bind("127.0.0.54:0").unwrap();
    late.send_to(&post_simple("late", 300), gw.addr()).unwrap();
    let seen = watch(&late, Duration::from_secs(3));
    assert_eq!(seen.gets, 0);
    assert_eq!(seen.answer.map(|a| a.0), Some("5.03".to_string()));
}

/// A device at `sock` that answers GET /.well-known/core with `body`, Block2 in 1024-byte
/// blocks, until `post_answered` or the deadline; returns (blocks served, the POST's answer).
fn serve_big_links(sock: &UdpSocket, body: &[u8], token: &[u8]) -> (usize, Option<String>) {
    let end = Instant::now() + Duration::from_secs(15);
    let mut served = 0;
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            break;
        };
        let Ok(p) = Packet::from_bytes(&buf[..n]) else {
            continue;
        };
        match p.header.code {
            MessageClass::Request(RequestType::Get) => {
                let num = p
                    .get_option(CoapOption::Block2)
                    .and_then(|v| v.front())
                    .map_or(0, |v| {
                        v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)) >> 4
                    }) as usize;
                let start = (num * 1024).min(body.len());
                let stop = (start + 1024).min(body.len());
                let more = stop < body.len();
                let mut answer = Packet::new();
                answer.header.set_type(MessageType::Acknowledgement);
                answer.header.code = MessageClass::Response(ResponseType::Content);
                answer.header.message_id = p.header.message_id;
                answer.set_token(p.get_token().to_vec());
                answer.add_option(CoapOption::ContentFormat, vec![40]);
                let value = ((num as u32) << 4) | if more { 8 } else { 0 } | 6;
                let bytes: Vec<u8> = value
                    .to_be_bytes()
                    .into_iter()
                    .skip_while(|b| *b == 0)
                    .collect();
                answer.add_option(CoapOption::Block2, bytes);
                answer.payload = body[start..stop].to_vec();
                sock.send_to(&answer.to_bytes().unwrap(), from).unwrap();
                served += 1;
            }
            MessageClass::Response(_) if p.get_token() == token => {
                if p.header.get_type() == MessageType::Confirmable {
                    let mut ack = Packet::new();
                    ack.header.set_type(MessageType::Acknowledgement);
                    ack.header.message_id = p.header.message_id;
                    sock.send_to(&ack.to_bytes().unwrap(), from).unwrap();
                }
                return (served, Some(code(&p)));
            }
            _ => {}
        }
    }
    (served, None)
}

#[test]
fn fetched_links_larger_than_max_payload_bytes_are_not_registered() {
    let (gw, _tmp) = common::start_unexempt("", "  max_payload_bytes: 4096\n");
    // ~40 KB of valid link-format in 40 links: within max_links, ten times the byte bound.
    let body: String = (0..40)
        .map(|i| format!("</sensor/{i}>;title=\"{}\"", "x".repeat(1000)))
        .collect::<Vec<_>>()
        .join(",");
    let device = UdpSocket::bind("127.0.0.55:0").unwrap();
    let post = post_simple("big-links", 400);
    device.send_to(&post, gw.addr()).unwrap();
    let (served, answer) = serve_big_links(&device, body.as_bytes(), &400u16.to_be_bytes());
    assert_eq!(answer.as_deref(), Some("5.02"), "refused, not registered");
    assert!(
        served <= 5,
        "the gateway stopped fetching past 4096 bytes: {served} blocks of {}",
        body.len().div_ceil(1024)
    );
    let lookup = Peer::with_socket(UdpSocket::bind("127.0.0.1:0").unwrap(), gw.addr());
    let found = lookup.get("/rd-lookup/ep?ep=big-links");
    assert!(
        found.payload.is_empty(),
        "nothing stored: {:?}",
        String::from_utf8_lossy(&found.payload)
    );
}
