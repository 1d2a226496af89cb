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
//! - A client that was answered before a flood of spoofed lookups spent the open half of the
//!   budget keeps getting whole answers through it, from the reserve; a newcomer does not.
//! - Duplicates (4-byte datagrams repeating a Message ID) do not replay a cached answer beyond
//!   the bound: before, 100 of them fetched the answer 100 times.
//! - Answering the gateway's own request proves nothing: a spoofed simple registration makes
//!   the gateway ask the victim, and the victim's honest answer used to unlock full-size answers
//!   (and notifications) to everything sent in its name.
//! - Any source may observe, at most 16 times per address over all its ports; notifications to
//!   an unproven observer are paid from the excess budget, and stop when it cannot pay.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::coap_peer::{register, simple_register_at, Peer};
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

/// A constrained stack's request (`common::constrained`), without Observe.
fn request(
    method: RequestType,
    path: &str,
    query: &[&str],
    payload: &[u8],
    mid: u16,
    token: &[u8],
) -> Vec<u8> {
    common::constrained::request(method, path, query, payload, None, mid, token)
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

/// Keep spending the excess budget: lookups whose answers exceed 3x, from 50 addresses that
/// were never heard before, until `stop` (or 20 s at most).
fn flood_lookups(rd: SocketAddr, stop: &std::sync::atomic::AtomicBool) -> usize {
    use std::sync::atomic::Ordering;
    let socks: Vec<UdpSocket> = (100..150)
        .map(|n| {
            let s = UdpSocket::bind(format!("127.0.0.{n}:0")).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    let mut mid = 0u16;
    // One lookup every ~2 ms, round robin: ~200 KB/s asked of an 8,000 B/s open pool, evenly,
    // so the pool never holds a whole answer's excess for long.
    'flood: while Instant::now() < deadline {
        for s in &socks {
            if stop.load(Ordering::Relaxed) {
                break 'flood;
            }
            mid = mid.wrapping_add(1);
            let req = request(
                RequestType::Get,
                "/rd-lookup/ep",
                &["et=flood"],
                b"",
                mid,
                &[9, 9],
            );
            let _ = s.send_to(&req, rd);
            sent += 1;
            // The answers are read only to drop them, as a victim would.
            let mut buf = [0u8; 2048];
            while s.recv_from(&mut buf).is_ok() {}
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    sent
}

#[test]
fn a_client_heard_before_a_flood_keeps_whole_answers_through_it() {
    // Open pool 8,000 B/s, reserve 8,000 B/s, a familiar source's share 1,000 B/s (burst 2,000).
    let (gw, _tmp) = start("  unproven_excess_bytes_per_s: 16000\n");
    let registrar = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").unwrap(), gw.addr());
    for i in 0..6 {
        register(
            &registrar,
            &format!("ep=flood-target-{i}&et=flood"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
    let lookup = |c: &mut Constrained, what: &str| {
        let p = c.ask(RequestType::Get, "/rd-lookup/ep", &["et=flood"], b"");
        let links = assert_whole(&p, what);
        assert_eq!(links.len(), 6, "{what}: {}", text(&p));
        assert!(
            p.payload.len() > 3 * 40,
            "the answer exceeds 3x its request"
        );
    };
    let mut honest = Constrained::at("127.0.0.9", gw.addr());
    lookup(&mut honest, "before the flood");
    // Familiar: answered at least 10 s (FAMILIAR_AFTER) before the flood begins.
    std::thread::sleep(Duration::from_millis(10_500));
    lookup(&mut honest, "still calm");

    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let flood = scope.spawn(|| flood_lookups(gw.addr(), &stop));
        std::thread::sleep(Duration::from_millis(500));
        // A client first heard now cannot be told from a spoofed source: the strict bound.
        // (The open pool pays whoever asks first when it has refilled, so one of a few asks.)
        let mut newcomer = Constrained::at("127.0.0.60", gw.addr());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let cut = (0..5).any(|_| {
                let p = newcomer.ask(RequestType::Get, "/rd-lookup/ep", &["et=flood"], b"");
                assert_eq!(code(&p), "2.05");
                p.get_option(CoapOption::Block2).is_some()
                    && p.get_option(CoapOption::Unknown(252)).is_some()
            });
            assert!(
                cut,
                "the flood spent the open pool: a newcomer gets a small block with Echo"
            );
            for n in 0..8 {
                lookup(&mut honest, &format!("lookup {n} during the flood"));
                std::thread::sleep(Duration::from_millis(400));
            }
        }));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = flood.join().unwrap();
        assert!(sent > 500, "the flood ran ({sent} lookups)");
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
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

/// The Observe option's value, when present.
fn observe_of(p: &Packet) -> Option<u32> {
    p.get_option(CoapOption::Observe)
        .and_then(|v| v.front())
        .map(|v| v.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// A constrained stack's Observe registration on an endpoint lookup.
fn observe_request(mid: u16, token: &[u8], query: &str) -> Vec<u8> {
    common::constrained::request(
        RequestType::Get,
        "/rd-lookup/ep",
        &[query],
        b"",
        Some(0),
        mid,
        token,
    )
}

#[test]
fn a_victim_answering_the_gateway_does_not_unlock_answers_sent_in_its_name() {
    // The strict bound: every byte over 3x would be the attack working.
    let (gw, _tmp) = start("  unproven_excess_bytes_per_s: 0\n");
    let registrar = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").unwrap(), gw.addr());
    for i in 0..30 {
        register(
            &registrar,
            &format!("ep=proof-{i:02}&et=proof"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
    // The attacker's spoofed simple registration from the victim's address: the gateway GETs
    // the victim's /.well-known/core and the victim, an honest device, answers it.
    let outcome = simple_register_at(
        "127.0.0.40:0",
        gw.addr(),
        "/.well-known/rd?ep=planted",
        Some("</p>"),
        Duration::from_secs(10),
    );
    assert_eq!(outcome.wkc_gets, 1, "the gateway asked the victim");
    assert_eq!(outcome.response.map(|r| r.code), Some("2.04".to_string()));

    // Now lookups and observations "from" the victim (another port of its address).
    let victim = UdpSocket::bind("127.0.0.40:0").unwrap();
    let mut sent = 0usize;
    for mid in 1..=20u16 {
        let req = request(
            RequestType::Get,
            "/rd-lookup/ep",
            &["et=proof"],
            b"",
            mid,
            &[7, 7],
        );
        sent += req.len();
        victim.send_to(&req, gw.addr()).unwrap();
    }
    for mid in 100..140u16 {
        let req = observe_request(mid, &mid.to_be_bytes(), "et=proof");
        sent += req.len();
        victim.send_to(&req, gw.addr()).unwrap();
    }
    let (bytes, datagrams, _) = drain(&victim, Duration::from_millis(800));
    assert_eq!(datagrams, 60, "every request answered once");
    assert!(
        bytes <= 3 * sent,
        "{bytes} bytes sent to the victim for {sent}: the victim's answer proved its address"
    );
    // A registration changes the observed lookup: no notification can be paid to the
    // unproven observers, so none arrives (before: one per observation, retransmitted).
    register(
        &registrar,
        "ep=proof-new&et=proof",
        "</sensors/temperature>;rt=\"temperature\"",
    );
    let (late, n, _) = drain(&victim, Duration::from_millis(1_500));
    assert_eq!((late, n), (0, 0), "notifications to an unproven observer");
}

#[test]
fn an_unproven_observer_is_notified_from_the_budget_and_one_address_holds_at_most_16() {
    // The default budget: a constrained client on the LAN observes a lookup like any client.
    let (gw, _tmp) = start("");
    let registrar = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").unwrap(), gw.addr());
    register(&registrar, "ep=watched-0&et=watch", "</s>");
    let observer = UdpSocket::bind("127.0.0.11:0").unwrap();
    observer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = observe_request(1, &[0xa1, 0xa2], "et=watch");
    observer.send_to(&req, gw.addr()).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = observer.recv_from(&mut buf).expect("the first answer");
    let first = Packet::from_bytes(&buf[..n]).unwrap();
    assert_eq!(code(&first), "2.05");
    assert!(observe_of(&first).is_some(), "registered as an observer");
    assert!(text(&first).contains("watched-0"));

    register(&registrar, "ep=watched-1&et=watch", "</s>");
    let (n, _) = observer.recv_from(&mut buf).expect("a notification");
    let note = Packet::from_bytes(&buf[..n]).unwrap();
    assert_eq!(note.get_token(), &[0xa1, 0xa2]);
    assert_eq!(note.header.get_type(), MessageType::Confirmable);
    assert!(observe_of(&note).is_some());
    assert!(text(&note).contains("watched-1"), "{}", text(&note));
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.message_id = note.header.message_id;
    observer
        .send_to(&ack.to_bytes().unwrap(), gw.addr())
        .unwrap();

    // The same address from 20 more ports: 15 more observations are taken, the rest are
    // answered without Observe (RFC 7641 §4.1). Every socket stays bound to the end: a port
    // freed and bound again would send the same message ID from the same endpoint, and get
    // the cached answer of the earlier request (Observe included) as a duplicate.
    let mut accepted = 1;
    let mut ports = Vec::new();
    for port in 0..20u16 {
        let other = UdpSocket::bind("127.0.0.11:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        other
            .send_to(
                &observe_request(2, &port.to_be_bytes(), "et=watch"),
                gw.addr(),
            )
            .unwrap();
        let (n, _) = other.recv_from(&mut buf).expect("an answer");
        let answer = Packet::from_bytes(&buf[..n]).unwrap();
        assert_eq!(code(&answer), "2.05");
        assert_eq!(
            answer.get_token(),
            port.to_be_bytes(),
            "the answer to this request"
        );
        if observe_of(&answer).is_some() {
            accepted += 1;
        }
        ports.push(other);
    }
    assert_eq!(accepted, 16, "observations held by one address");
}

/// How many copies of its separate 2.04 a simple-registering device at `ip` receives when it
/// answers the gateway's GET late (so the answer goes separately) and never acknowledges it.
fn separate_response_copies(ip: &str, limits: &str) -> usize {
    // Short CoAP timers: separate after 150 ms, every retransmission within ~7 s.
    let (gw, _tmp) = start(&format!("{limits}coap:\n  ack_timeout_ms: 300\n"));
    let device = UdpSocket::bind(format!("{ip}:0")).unwrap();
    let post = request(
        RequestType::Post,
        "/.well-known/rd",
        &["ep=slow-answerer"],
        b"",
        0x0101,
        &[5, 5],
    );
    device.send_to(&post, gw.addr()).unwrap();
    let end = Instant::now() + Duration::from_secs(9);
    let mut copies = 0;
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        device
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, from)) = device.recv_from(&mut buf) else {
            break;
        };
        let Ok(p) = Packet::from_bytes(&buf[..n]) else {
            continue;
        };
        match p.header.code {
            MessageClass::Request(RequestType::Get) => {
                // Late enough that the RD stops waiting and answers the POST separately.
                std::thread::sleep(Duration::from_millis(600));
                let mut answer = Packet::new();
                answer.header.set_type(MessageType::Acknowledgement);
                answer.header.code = MessageClass::Response(coap_lite::ResponseType::Content);
                answer.header.message_id = p.header.message_id;
                answer.set_token(p.get_token().to_vec());
                answer.add_option(CoapOption::ContentFormat, vec![40]);
                answer.payload = b"</p>".to_vec();
                device.send_to(&answer.to_bytes().unwrap(), from).unwrap();
            }
            MessageClass::Response(_) if p.get_token() == [5, 5] => {
                assert_eq!(code(&p), "2.04");
                assert_eq!(p.header.get_type(), MessageType::Confirmable, "separate");
                copies += 1;
            }
            _ => {}
        }
    }
    copies
}

#[test]
fn a_separate_response_to_an_unproven_source_is_resent_only_while_the_budget_pays() {
    let strict = separate_response_copies("127.0.0.42", "  unproven_excess_bytes_per_s: 0\n");
    assert_eq!(
        strict, 1,
        "resends to an unproven source are paid from the budget"
    );
    let default = separate_response_copies("127.0.0.43", "");
    assert!(
        default >= 3,
        "with the budget it is retransmitted as usual (RFC 7252 §4.2): {default}"
    );
}
