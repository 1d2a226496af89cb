//! The amplification defence as a device on the LAN meets it (issue 18): the gateway runs the
//! production policy (`limits.exempt_loopback: false`, so 127.0.0.x sources are treated like any
//! LAN host that has not proven its address), and the clients are raw sockets on other loopback
//! addresses.
//!
//! - A constrained client that implements neither Block2 nor Echo, uses a 2-byte token and
//!   reads exactly one datagram gets complete answers: RD discovery, endpoint and resource
//!   lookups with filters and `count`, registration, update and removal. Before issue 18 the
//!   discovery answer was cut to 64 bytes in the middle of a link.
//! - What spoofed lookups reflect to a victim stays within 3x what was sent plus the
//!   gateway-wide excess budget (`limits.unproven_excess_bytes_per_s`).
//! - Duplicates (4-byte datagrams repeating a Message ID) do not replay a cached answer beyond
//!   the bound: before, 100 of them fetched the answer 100 times.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::coap_peer::{register, Peer};
use common::Gateway;

fn start(limits: &str) -> (Gateway, tempfile::TempDir) {
    common::start_unexempt("", limits)
}

/// A client that knows only the basics: CON, a 2-byte token, one datagram in, one out.
struct Constrained {
    sock: UdpSocket,
    rd: SocketAddr,
    mid: u16,
}

impl Constrained {
    fn at(ip: &str, rd: SocketAddr) -> Constrained {
        let sock = UdpSocket::bind(format!("{ip}:0")).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Constrained {
            sock,
            rd,
            mid: 0x4000,
        }
    }

    /// One request, one datagram back (its ACK), parsed as the whole answer.
    fn ask(&mut self, method: RequestType, path: &str, query: &[&str], payload: &[u8]) -> Packet {
        self.mid = self.mid.wrapping_add(1);
        let req = request(
            method,
            path,
            query,
            payload,
            self.mid,
            &self.mid.to_be_bytes(),
        );
        self.sock.send_to(&req, self.rd).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = self.sock.recv_from(&mut buf).expect("an answer");
            let p = Packet::from_bytes(&buf[..n]).expect("a CoAP message");
            if p.header.message_id == self.mid {
                return p;
            }
        }
    }
}

fn request(
    method: RequestType,
    path: &str,
    query: &[&str],
    payload: &[u8],
    mid: u16,
    token: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    if !payload.is_empty() {
        p.add_option(CoapOption::ContentFormat, vec![40]);
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

fn code(p: &Packet) -> String {
    let c = u8::from(p.header.code);
    format!("{}.{:02}", c >> 5, c & 0x1f)
}

fn text(p: &Packet) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// Whole answer: no Block2 (nothing more to fetch), and the body is link-format that parses.
fn assert_whole(p: &Packet, what: &str) -> Vec<common::coap_peer::Link> {
    assert_eq!(code(p), "2.05", "{what}: {}", text(p));
    assert!(
        p.get_option(CoapOption::Block2).is_none(),
        "{what}: cut into blocks for a client that cannot fetch them: {:?}",
        text(p)
    );
    common::coap_peer::parse_links(&text(p))
        .unwrap_or_else(|e| panic!("{what}: not whole link-format ({e}): {:?}", text(p)))
}

#[test]
fn a_constrained_client_on_the_lan_gets_whole_answers() {
    let (gw, _tmp) = start("");
    let registrar = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").unwrap(), gw.addr());
    for i in 0..5 {
        register(
            &registrar,
            &format!("ep=lan-node-{i}&et=lan-test"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\";obs,</actuators/led>;rt=\"light\"",
        );
    }
    let mut c = Constrained::at("127.0.0.9", gw.addr());

    let discovery = c.ask(
        RequestType::Get,
        "/.well-known/core",
        &["rt=core.rd-lookup-*"],
        b"",
    );
    let links = assert_whole(&discovery, "RD discovery");
    let targets: Vec<&str> = links.iter().map(|l| l.target.as_str()).collect();
    assert!(
        targets.contains(&"/rd-lookup/ep") && targets.contains(&"/rd-lookup/res"),
        "{targets:?}"
    );
    let rd = c.ask(RequestType::Get, "/.well-known/core", &["rt=core.rd"], b"");
    assert_eq!(assert_whole(&rd, "registration interface")[0].target, "/rd");

    let eps = c.ask(RequestType::Get, "/rd-lookup/ep", &["et=lan-test"], b"");
    assert_eq!(assert_whole(&eps, "endpoint lookup").len(), 5);
    let res = c.ask(
        RequestType::Get,
        "/rd-lookup/res",
        &["rt=temperature", "count=3"],
        b"",
    );
    assert_eq!(assert_whole(&res, "resource lookup with count").len(), 3);
    let all = c.ask(RequestType::Get, "/rd-lookup/res", &["et=lan-test"], b"");
    assert_eq!(assert_whole(&all, "resource lookup").len(), 10);

    // Its own registration, update and removal.
    let created = c.ask(
        RequestType::Post,
        "/rd",
        &["ep=constrained-1", "lt=300"],
        b"</t>;rt=\"temperature\"",
    );
    assert_eq!(code(&created), "2.01");
    let location: Vec<String> = created
        .get_option(CoapOption::LocationPath)
        .map(|v| {
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(location.len(), 2, "{location:?}");
    let reg = format!("/{}", location.join("/"));
    assert_eq!(
        code(&c.ask(RequestType::Post, &reg, &["lt=600"], b"")),
        "2.04"
    );
    let mine = c.ask(
        RequestType::Get,
        "/rd-lookup/ep",
        &["ep=constrained-1"],
        b"",
    );
    let mine = assert_whole(&mine, "own endpoint");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].get("ep"), Some("constrained-1"));
    assert_eq!(code(&c.ask(RequestType::Delete, &reg, &[], b"")), "2.02");
}

/// Bytes arriving at `sock` until it stays quiet for `quiet`.
fn drain(sock: &UdpSocket, quiet: Duration) -> (usize, usize, usize) {
    sock.set_read_timeout(Some(quiet)).unwrap();
    let (mut bytes, mut datagrams, mut cut) = (0, 0, 0);
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        bytes += n;
        datagrams += 1;
        if let Ok(p) = Packet::from_bytes(&buf[..n]) {
            if p.get_option(CoapOption::Unknown(252)).is_some() {
                cut += 1;
            }
        }
    }
    (bytes, datagrams, cut)
}

#[test]
fn spoofed_lookups_reflect_at_most_three_times_plus_the_excess_budget() {
    const BUDGET: usize = 4_000;
    let (gw, _tmp) = start(&format!("  unproven_excess_bytes_per_s: {BUDGET}\n"));
    let registrar = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").unwrap(), gw.addr());
    for i in 0..30 {
        register(
            &registrar,
            &format!("ep=reflect-{i:02}&et=reflect"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
    // The "victim": every datagram the gateway sends to this address is reflection, since the
    // victim never asked (the requests carry its address as their source).
    let victim = UdpSocket::bind("127.0.0.20:0").unwrap();
    let started = Instant::now();
    let mut sent = 0usize;
    for mid in 1..=150u16 {
        let req = request(
            RequestType::Get,
            "/rd-lookup/ep",
            &["et=reflect"],
            b"",
            mid,
            &[1, 2],
        );
        sent += req.len();
        victim.send_to(&req, gw.addr()).unwrap();
    }
    let (bytes, datagrams, cut) = drain(&victim, Duration::from_millis(800));
    let elapsed = started.elapsed().as_secs_f64();
    // One second's burst plus what refilled while the test ran.
    let allowance = 3 * sent + BUDGET + (BUDGET as f64 * elapsed).ceil() as usize;
    assert!(datagrams > 0, "the lookups were answered");
    assert!(
        bytes <= allowance,
        "reflected {bytes} bytes for {sent} sent: more than 3x + the budget ({allowance})"
    );
    assert!(
        cut > 0,
        "once the budget is spent, answers are cut to the strict bound (with Echo)"
    );
}

#[test]
fn duplicates_do_not_replay_an_answer_beyond_the_bound() {
    // The strict bound, so every byte over 3x would be a replay leak.
    let (gw, _tmp) = start("  unproven_excess_bytes_per_s: 0\n");
    let registrar = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").unwrap(), gw.addr());
    for i in 0..30 {
        register(
            &registrar,
            &format!("ep=dup-{i:02}&et=dup"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
    let victim = UdpSocket::bind("127.0.0.30:0").unwrap();
    victim
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // One large request (a long, harmless query) earns a large answer within 3x ...
    let padding = format!("title={}", "x".repeat(180));
    let first = request(
        RequestType::Get,
        "/rd-lookup/ep",
        &["et=dup", &padding],
        b"",
        0x0777,
        &[9, 9],
    );
    victim.send_to(&first, gw.addr()).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = victim.recv_from(&mut buf).expect("the first answer");
    assert!(n <= 3 * first.len(), "{n} bytes for {}", first.len());
    assert!(n > 12, "an answer worth replaying: {n} bytes");
    // ... then 100 four-byte duplicates of its Message ID (CON GET, no token).
    let dup = [0x40, 0x01, 0x07, 0x77];
    for _ in 0..100 {
        victim.send_to(&dup, gw.addr()).unwrap();
    }
    let (bytes, datagrams, _) = drain(&victim, Duration::from_millis(800));
    assert!(
        bytes <= 3 * dup.len() * 100,
        "{datagrams} replays, {bytes} bytes for 400 bytes of duplicates"
    );
}
