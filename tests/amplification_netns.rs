//! The two reflection attacks of issue 18, run between network namespaces: the gateway in `a`
//! (10.77.0.1, default limits except a small excess budget so the bound is tight), the victim
//! an address namespace `b` holds (10.77.0.3 on its veth). The attacker's requests carry the
//! victim's address, so they are sent from sockets bound to it; those sockets count every byte
//! the gateway sends there and, like a victim that never asked for anything, acknowledge
//! nothing.
//!
//! - Duplicates: one 1,025-byte CON lookup, then 500 four-byte duplicates of its Message ID
//!   (`40 01 <mid>`, no token). Before issue 18 each replayed the ~1 KB answer (262x).
//! - Proving a victim: a spoofed simple registration (`POST /.well-known/rd?ep=x`) makes the
//!   gateway GET the victim's `/.well-known/core`, which the victim answers as an honest device
//!   would; then 20 small lookups of a > 1 KB result and 50 ports x 16 Observe lookups from the
//!   victim's address, and one unrelated registration that changes the observed result.
//!
//! Bound in both: bytes at the victim <= 3 x bytes sent from the victim's address (including
//! the victim's own /.well-known/core answer) + the excess budget's burst and refill over the
//! test's duration.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::coap_peer::{register, Peer};
use common::constrained::{code, path_of, request, request_packet};
use common::netns::{netns_or_skip, NetnsPair, Side, B_V4};
use common::{Gateway, GatewayOptions};

/// `limits.unproven_excess_bytes_per_s` for these tests: small, so 3x + budget is a tight bound.
const BUDGET: usize = 4096;
const VICTIM: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const WAIT: Duration = Duration::from_secs(30);

/// The gateway in namespace `a`: default limits but the excess budget; no Pinger.
fn start_rd(pair: &NetnsPair) -> Gateway {
    Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["10.77.0.1:0".into()],
            extra_yaml: format!(
                "pinger:\n  enabled: false\nlimits:\n  unproven_excess_bytes_per_s: {BUDGET}\n"
            ),
            ..Default::default()
        },
    )
}

/// Give namespace `b` the victim's address too.
fn add_victim(pair: &NetnsPair) {
    pair.add_address(Side::B, &format!("{VICTIM}/24"));
}

fn b_socket(pair: &NetnsPair, ip: Ipv4Addr) -> UdpSocket {
    pair.run_in(Side::B, move || {
        UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))
    })
    .expect("enter namespace b")
    .expect("bind in namespace b")
}

/// What the victim's sockets saw and did.
#[derive(Default)]
struct Tally {
    /// Bytes and datagrams the gateway sent to the victim.
    bytes: AtomicUsize,
    datagrams: AtomicUsize,
    /// Bytes the victim itself sent (its /.well-known/core answers).
    answered_bytes: AtomicUsize,
    wkc_served: AtomicUsize,
    /// Responses whose code was 2.04 (the answer to the spoofed simple registration).
    changed: AtomicUsize,
    stop: AtomicBool,
}

/// Count everything arriving at `sock` until `tally.stop`; with `serve_wkc`, answer GET
/// /.well-known/core as an honest device does (and nothing else).
fn listen(sock: UdpSocket, tally: Arc<Tally>, serve_wkc: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 2048];
        while !tally.stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            tally.bytes.fetch_add(n, Ordering::Relaxed);
            tally.datagrams.fetch_add(1, Ordering::Relaxed);
            let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if code(&p) == "2.04" {
                tally.changed.fetch_add(1, Ordering::Relaxed);
            }
            let wkc = matches!(p.header.code, MessageClass::Request(RequestType::Get))
                && path_of(&p) == [".well-known", "core"];
            if serve_wkc && wkc && p.header.get_type() == MessageType::Confirmable {
                let mut reply = Packet::new();
                reply.header.set_type(MessageType::Acknowledgement);
                reply.header.message_id = p.header.message_id;
                reply.set_token(p.get_token().to_vec());
                reply.header.set_code("2.05");
                reply.add_option(CoapOption::ContentFormat, vec![40]);
                reply.payload = b"</v>".to_vec();
                if let Ok(bytes) = reply.to_bytes() {
                    if sock.send_to(&bytes, from).is_ok() {
                        tally
                            .answered_bytes
                            .fetch_add(bytes.len(), Ordering::Relaxed);
                        tally.wkc_served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    })
}

/// Wait (bounded by `limit`) until nothing arrives for `quiet`.
fn wait_quiet(tally: &Tally, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = tally.bytes.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < quiet {
        std::thread::sleep(Duration::from_millis(50));
        let now = tally.bytes.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The 3x bound plus the budget's one-second burst and its refill over `elapsed`.
fn allowance(sent: usize, elapsed: Duration) -> usize {
    3 * sent + BUDGET + (BUDGET as f64 * elapsed.as_secs_f64()).ceil() as usize
}

/// `n` endpoints of one link each, registered from 10.77.0.2 (an unrelated host).
fn populate(registrar: &Peer, tag: &str, n: usize) {
    for i in 0..n {
        register(
            registrar,
            &format!("ep={tag}-{i:02}&et={tag}"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
}

#[test]
fn duplicates_of_a_spoofed_lookup_reflect_within_the_bound() {
    let Some(pair) = netns_or_skip("ampns") else {
        return;
    };
    add_victim(&pair);
    let gw = start_rd(&pair);
    let rd = gw.addr();
    populate(&Peer::with_socket(b_socket(&pair, B_V4), rd), "dup", 30);

    // A 1,025-byte lookup: padded with an elective option the gateway ignores (RFC 7252
    // §5.4.1), so the answer is the whole (first block of the) endpoint list.
    let mid = 0x0777u16;
    let build = |pad: usize| {
        let mut p = request_packet(
            RequestType::Get,
            "/rd-lookup/ep",
            &["et=dup"],
            b"",
            None,
            mid,
            &[9, 9],
        );
        for chunk in [250, 250, 250, pad] {
            p.add_option(CoapOption::Unknown(2048), vec![b'p'; chunk]);
        }
        p.to_bytes().expect("encode")
    };
    let pad = 250 + 1025 - build(250).len();
    let first = build(pad);
    assert_eq!(first.len(), 1025);

    let victim = b_socket(&pair, VICTIM);
    let sender = victim.try_clone().expect("clone the victim socket");
    let tally = Arc::new(Tally::default());
    let counter = listen(victim, tally.clone(), false);
    let started = Instant::now();
    sender.send_to(&first, rd).expect("send");
    wait_until("the answer to the 1,025-byte lookup", || {
        tally.datagrams.load(Ordering::Relaxed) >= 1
    });
    let answer = tally.bytes.load(Ordering::Relaxed);
    assert!(answer > 900, "an answer worth replaying: {answer} bytes");
    let dup = [0x40, 0x01, (mid >> 8) as u8, mid as u8];
    for _ in 0..500 {
        sender.send_to(&dup, rd).expect("send a duplicate");
    }
    wait_quiet(&tally, Duration::from_millis(1500), WAIT);
    tally.stop.store(true, Ordering::Relaxed);
    let _ = counter.join();
    let elapsed = started.elapsed();
    let sent = first.len() + 500 * dup.len();
    let (bytes, datagrams) = (
        tally.bytes.load(Ordering::Relaxed),
        tally.datagrams.load(Ordering::Relaxed),
    );
    let bound = allowance(sent, elapsed);
    eprintln!(
        "duplicates: sent {sent} bytes; the victim got {bytes} bytes in {datagrams} datagrams \
         (first answer {answer}) in {:.1} s; bound {bound}",
        elapsed.as_secs_f64()
    );
    assert!(
        bytes <= bound,
        "{bytes} bytes in {datagrams} datagrams at the victim for {sent} sent: more than 3x + \
         the excess budget ({bound})"
    );
}

#[test]
fn a_victim_proven_by_a_spoofed_registration_gets_no_more_than_the_bound() {
    let Some(pair) = netns_or_skip("ampns") else {
        return;
    };
    add_victim(&pair);
    let gw = start_rd(&pair);
    let rd = gw.addr();
    let registrar = Peer::with_socket(b_socket(&pair, B_V4), rd);
    populate(&registrar, "big", 30);

    let tally = Arc::new(Tally::default());
    let main = b_socket(&pair, VICTIM);
    let main_tx = main.try_clone().expect("clone the victim socket");
    let mut counters = vec![listen(main, tally.clone(), true)];
    let mut sent = 0usize;
    let started = Instant::now();

    // The spoofed simple registration; the victim answers the gateway's GET like a device.
    let post = request(
        RequestType::Post,
        "/.well-known/rd",
        &["ep=x"],
        b"",
        None,
        0x1000,
        &[1, 0],
    );
    sent += post.len();
    main_tx.send_to(&post, rd).expect("send");
    wait_until("the gateway's GET /.well-known/core at the victim", || {
        tally.wkc_served.load(Ordering::Relaxed) >= 1
    });
    wait_until("the simple registration's 2.04", || {
        tally.changed.load(Ordering::Relaxed) >= 1
    });

    // 20 small lookups of a big result.
    for i in 0..20u16 {
        let req = request(
            RequestType::Get,
            "/rd-lookup/res",
            &[],
            b"",
            None,
            0x2000 + i,
            &i.to_be_bytes(),
        );
        sent += req.len();
        main_tx.send_to(&req, rd).expect("send a lookup");
    }
    // 50 ports x 16 Observe lookups.
    for port in 0..50u16 {
        let sock = b_socket(&pair, VICTIM);
        for k in 0..16u16 {
            let req = request(
                RequestType::Get,
                "/rd-lookup/res",
                &[],
                b"",
                Some(0),
                0x3000 + k,
                &[port as u8, k as u8],
            );
            sent += req.len();
            sock.send_to(&req, rd).expect("send an observe");
        }
        counters.push(listen(sock, tally.clone(), false));
    }
    wait_quiet(&tally, Duration::from_millis(1500), WAIT);
    let before_change = tally.bytes.load(Ordering::Relaxed);

    // One unrelated registration changes the observed result.
    register(
        &registrar,
        "ep=unrelated&et=other",
        "</other>;rt=\"temperature\"",
    );
    // Notifications and their retransmissions (ACK_TIMEOUT 2-3 s, doubling) for a while.
    std::thread::sleep(Duration::from_secs(12));
    tally.stop.store(true, Ordering::Relaxed);
    for c in counters {
        let _ = c.join();
    }
    let elapsed = started.elapsed();
    sent += tally.answered_bytes.load(Ordering::Relaxed);
    let (bytes, datagrams) = (
        tally.bytes.load(Ordering::Relaxed),
        tally.datagrams.load(Ordering::Relaxed),
    );
    let bound = allowance(sent, elapsed);
    eprintln!(
        "proven victim: sent {sent} bytes from its address; it got {bytes} bytes in \
         {datagrams} datagrams in {:.1} s ({before_change} before the registration change); \
         bound {bound}",
        elapsed.as_secs_f64()
    );
    assert!(
        bytes <= bound,
        "{bytes} bytes in {datagrams} datagrams at the victim for {sent} sent: more than 3x + \
         the excess budget ({bound}); {before_change} of them before the registration change"
    );
}
