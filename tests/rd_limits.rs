//! Resource limits and endpoint-name protection of the real gateway over real sockets (issue 11):
//! payload and link-count limits (4.13 + Size1), the per-source registration quota (4.03), First
//! Come First Remembered (RFC 9176 §7.5: 4.03), the per-source token bucket (RFC 8516 4.29,
//! drops), the bound on running handlers (5.03 + Max-Age) and the amplification bound (RFC 7252
//! §11.3: small Block2 blocks for an unproven source). Each test checks the code AND that the
//! directory did not change. Distinct sources are distinct loopback addresses (127.0.0.x):
//! the limits key on the IP address, not the port.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::coap_peer::{ep_link, lookup, register, simple_register, Peer, Req};
use common::Gateway;

/// How long an expiry or purge may take to show before it counts as missing: a defect bound for
/// a loaded 2-core box (the lifetimes here are a few seconds), not a timing claim.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);

/// A gateway whose config has `rd_extra` under `rd:` and `limits` as its `limits:` section.
/// Loopback is not exempt: every test source is a loopback address.
fn start(rd_extra: &str, limits: &str) -> (Gateway, tempfile::TempDir) {
    common::start_unexempt(rd_extra, limits)
}

/// A client on loopback address 127.0.0.`host`.
fn peer_at(host: u8, gw: &Gateway) -> Peer {
    let sock = UdpSocket::bind(format!("127.0.0.{host}:0")).unwrap();
    Peer::with_socket(sock, gw.addr())
}

/// A request as a constrained stack encodes it (`common::constrained`), CON or NON, its token
/// the Message ID's bytes.
fn raw_request_packet(
    method: RequestType,
    path: &str,
    query: &[String],
    payload: &[u8],
    confirmable: bool,
    mid: u16,
) -> Packet {
    let query: Vec<&str> = query.iter().map(String::as_str).collect();
    let token = mid.to_be_bytes();
    let mut p =
        common::constrained::request_packet(method, path, &query, payload, None, mid, &token);
    if !confirmable {
        p.header.set_type(MessageType::NonConfirmable);
    }
    p
}

fn raw_request(
    method: RequestType,
    path: &str,
    query: &[String],
    payload: &[u8],
    confirmable: bool,
    mid: u16,
) -> Vec<u8> {
    raw_request_packet(method, path, query, payload, confirmable, mid)
        .to_bytes()
        .unwrap()
}

/// Every datagram arriving on `sock` within `window`, with its size.
fn recv_all(sock: &UdpSocket, window: Duration) -> Vec<(Packet, usize)> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => out.push((Packet::from_bytes(&buf[..n]).unwrap(), n)),
            Err(_) => break,
        }
    }
    out
}

/// How long an expected answer or log line may take before it counts as missing: a defect
/// bound for a loaded 2-core box, not a timing claim.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// Datagrams arriving on `sock` until one satisfies `done` (included) or `budget` runs out:
/// waits for an expected datagram without a fixed window.
fn recv_until(
    sock: &UdpSocket,
    budget: Duration,
    done: impl Fn(&Packet) -> bool,
) -> Vec<(Packet, usize)> {
    let end = Instant::now() + budget;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Some((p, n)) = recv_one(sock, left.max(Duration::from_millis(1))) else {
            break;
        };
        let last = done(&p);
        out.push((p, n));
        if last {
            break;
        }
    }
    out
}

/// The next datagram on `sock`, waiting at most `budget`.
fn recv_one(sock: &UdpSocket, budget: Duration) -> Option<(Packet, usize)> {
    let mut buf = vec![0u8; 65_536];
    sock.set_read_timeout(Some(budget)).unwrap();
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some((Packet::from_bytes(&buf[..n]).unwrap(), n))
}

fn code(p: &Packet) -> String {
    let c = u8::from(p.header.code);
    format!("{}.{:02}", c >> 5, c & 31)
}

fn uint_option(p: &Packet, opt: CoapOption) -> Option<u32> {
    p.get_option(opt)
        .and_then(|vs| vs.front())
        .map(|v| v.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

#[test]
fn a_payload_over_the_limit_is_4_13_with_size1_and_stores_nothing() {
    let (gw, _tmp) = start("", "  max_payload_bytes: 200\n");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let body = "</sensors/a-long-resource-name-to-fill-the-payload>;rt=\"x\",".repeat(6);
    assert!(body.len() > 200);
    let req = raw_request(
        RequestType::Post,
        "/rd",
        &["ep=big".into()],
        body.as_bytes(),
        true,
        1,
    );
    sock.send_to(&req, gw.addr()).unwrap();
    let (resp, _) =
        recv_one(&sock, ANSWER_DEADLINE).expect("an answer to the oversized registration");
    let resp = &resp;
    assert_eq!(code(resp), "4.13");
    assert_eq!(uint_option(resp, CoapOption::Size1), Some(200));
    let peer = peer_at(1, &gw);
    assert!(ep_link(&peer, "big").is_none(), "nothing stored");
    // Within the limit it is accepted.
    register(&peer, "ep=small", "</a>;rt=\"x\"");
    assert!(ep_link(&peer, "small").is_some());
}

#[test]
fn too_many_links_is_4_13_and_stores_nothing() {
    let (gw, _tmp) = start("", "  max_links: 3\n");
    let peer = peer_at(1, &gw);
    let resp = peer.post_links("/rd?ep=many", "</a>,</b>,</c>,</d>");
    assert_eq!(resp.code, "4.13", "{}", resp.text());
    assert!(ep_link(&peer, "many").is_none());
    register(&peer, "ep=three", "</a>,</b>,</c>");
    // A re-registration with too many links leaves the stored one as it was.
    let resp = peer.post_links("/rd?ep=three", "</a>,</b>,</c>,</d>");
    assert_eq!(resp.code, "4.13");
    let targets: Vec<String> = lookup(&peer, "/rd-lookup/res?ep=three")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert_eq!(targets.len(), 3, "{targets:?}");
}

#[test]
fn the_per_source_quota_refuses_new_names_with_4_03_only_for_that_source() {
    let (gw, _tmp) = start("", "  max_registrations_per_source: 2\n");
    let a1 = peer_at(1, &gw);
    let a2 = peer_at(1, &gw); // same address, another port: the same source
    let b = peer_at(2, &gw);
    let loc_q1 = register(&a1, "ep=q1", "</a>");
    register(&a2, "ep=q2", "</a>");
    let resp = a1.post_links("/rd?ep=q3", "</a>");
    assert_eq!(resp.code, "4.03", "{}", resp.text());
    assert!(ep_link(&b, "q3").is_none());
    // Re-registering a held name is fine; another source is not affected.
    register(&a2, "ep=q1", "</a>,</b>");
    register(&b, "ep=q4", "</a>");
    let eps: Vec<String> = lookup(&b, "/rd-lookup/ep")
        .into_iter()
        .filter_map(|l| {
            l.attrs
                .iter()
                .find(|(k, _)| k == "ep")
                .and_then(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(eps.len(), 3, "{eps:?}");
    // Freeing one makes room again.
    assert_eq!(a1.delete(&loc_q1).code, "2.02");
    register(&a1, "ep=q3", "</a>");
}

#[test]
fn first_come_first_remembered_refuses_another_address_until_removal() {
    let (gw, _tmp) = start("", "");
    let owner = peer_at(1, &gw);
    let thief = peer_at(2, &gw);
    let loc = register(&owner, "ep=fcfr&lt=600", "</own>;rt=\"mine\"");
    let before = ep_link(&owner, "fcfr").expect("registered");

    let resp = thief.post_links("/rd?ep=fcfr&base=coap://127.0.0.2:9", "</stolen>");
    assert_eq!(resp.code, "4.03", "{}", resp.text());
    let resp = thief.request(&Req::post(&format!("{loc}?lt=1")));
    assert_eq!(resp.code, "4.03", "update from another address");
    let resp = thief.delete(&loc);
    assert_eq!(resp.code, "4.03", "delete from another address");
    assert_eq!(ep_link(&owner, "fcfr"), Some(before.clone()), "unchanged");
    let targets: Vec<String> = lookup(&owner, "/rd-lookup/res?ep=fcfr")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert!(targets.iter().all(|t| t.ends_with("/own")), "{targets:?}");

    // Same address, new port (NAT rebinding, reboot): accepted.
    let rebooted = peer_at(1, &gw);
    assert_eq!(
        rebooted.request(&Req::post(&format!("{loc}?lt=700"))).code,
        "2.04"
    );
    // Once the owner removed it, the name is free.
    assert_eq!(rebooted.delete(&loc).code, "2.02");
    register(&thief, "ep=fcfr", "</now-mine>");
    let resp = owner.post_links("/rd?ep=fcfr", "</own>");
    assert_eq!(resp.code, "4.03", "now the first owner is the other one");
    assert!(gw.wait_for_log("writes refused", ANSWER_DEADLINE));
}

/// Issue 25 item 5: the owner registers with `lt=3`; once it has expired, another address
/// used to revive its `/reg/N` with `POST /reg/N?lt=4294967295` (2.04), re-pointing the base
/// and locking the owner out. In grace the registration is still the owner's.
#[test]
fn a_registration_in_grace_is_still_remembered_for_its_owner() {
    let (gw, _tmp) = start("", "");
    let owner = peer_at(1, &gw);
    let thief = peer_at(2, &gw);
    let loc = register(&owner, "ep=graced&lt=3", "</own>");
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    while ep_link(&owner, "graced").is_some() {
        assert!(
            Instant::now() < deadline,
            "not expired within {EXPIRY_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Expired, inside its 3600 s grace.
    let resp = thief.request(&Req::post(&format!("{loc}?lt=4294967295")));
    assert_eq!(resp.code, "4.03", "update in grace from another address");
    let resp = thief.post_links("/rd?ep=graced&lt=600", "</stolen>");
    assert_eq!(
        resp.code, "4.03",
        "re-registration in grace from another address"
    );
    assert_eq!(thief.delete(&loc).code, "4.03", "removal in grace");
    assert!(ep_link(&owner, "graced").is_none(), "nothing revived it");
    // The owner comes back, from a new port, at the same location, with its own base.
    let rebooted = peer_at(1, &gw);
    let resp = rebooted.request(&Req::post(&format!("{loc}?lt=600")));
    assert_eq!(resp.code, "2.04", "{}", resp.text());
    let l = ep_link(&owner, "graced").expect("revived by its owner");
    assert!(l.target.ends_with(&loc), "{l:?}");
    assert_eq!(
        l.get("base"),
        Some(rebooted.derived_base().as_str()),
        "{l:?}"
    );
    let targets: Vec<String> = lookup(&owner, "/rd-lookup/res?ep=graced")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert!(targets.iter().all(|t| t.ends_with("/own")), "{targets:?}");
}

#[test]
fn first_come_first_remembered_forgets_a_registration_after_its_grace() {
    let (gw, _tmp) = start("  expiry_grace_s: 2\n", "");
    let owner = peer_at(1, &gw);
    let next = peer_at(2, &gw);
    register(&owner, "ep=brief&lt=4", "</a>");
    // At once, far inside its 4 s: the live name is protected.
    assert_eq!(next.post_links("/rd?ep=brief", "</b>").code, "4.03");
    // Once it has expired and its 2 s grace is over, the name is free. Each refused attempt
    // writes nothing; the first accepted one is the new owner's.
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    let loc = loop {
        let resp = next.post_links("/rd?ep=brief&lt=600", "</b>");
        if resp.code == "2.01" {
            break resp.location();
        }
        assert_eq!(resp.code, "4.03", "{}", resp.text());
        assert!(
            Instant::now() < deadline,
            "the expired name was not freed within {EXPIRY_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let l = ep_link(&next, "brief").expect("the new owner's registration");
    assert!(l.target.ends_with(&loc), "{l:?}");
    let targets: Vec<String> = lookup(&next, "/rd-lookup/res?ep=brief")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert!(targets.iter().all(|t| t.ends_with("/b")), "{targets:?}");
    assert!(loc.starts_with("/reg/"));
}

#[test]
fn endpoint_protection_off_lets_another_address_take_the_name() {
    let (gw, _tmp) = start("  endpoint_protection: off\n", "");
    let owner = peer_at(1, &gw);
    let other = peer_at(2, &gw);
    register(&owner, "ep=open", "</a>");
    register(&other, "ep=open", "</b>");
    let targets: Vec<String> = lookup(&owner, "/rd-lookup/res?ep=open")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert!(targets.iter().all(|t| t.ends_with("/b")), "{targets:?}");
}

#[test]
fn a_source_over_its_rate_gets_one_4_29_then_silence_and_others_are_served() {
    // Unbounded responses: small Block2 blocks would spend the lookups' tokens.
    let (gw, _tmp) = start(
        "",
        "  request_rate_per_s: 2\n  request_burst: 5\n  amplification_factor: 0\n",
    );
    let noisy = UdpSocket::bind("127.0.0.3:0").unwrap();
    for i in 0..20u16 {
        let req = raw_request(
            RequestType::Post,
            "/rd",
            &[format!("ep=noisy{i}")],
            b"</a>",
            true,
            100 + i,
        );
        noisy.send_to(&req, gw.addr()).unwrap();
    }
    let answers = recv_all(&noisy, Duration::from_millis(1_500));
    let created: Vec<u16> = answers
        .iter()
        .filter(|(p, _)| code(p) == "2.01")
        .map(|(p, _)| p.header.message_id)
        .collect();
    let refused: Vec<&Packet> = answers
        .iter()
        .filter(|(p, _)| code(p) == "4.29")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(created.len(), 5, "the burst is admitted: {answers:?}");
    assert_eq!(refused.len(), 1, "one 4.29, the rest dropped");
    let max_age = uint_option(refused[0], CoapOption::MaxAge).expect("4.29 has Max-Age");
    assert!((1..=2).contains(&max_age), "{max_age}");
    assert_eq!(answers.len(), 6, "nothing else answered");
    // Another source is served meanwhile, and only the admitted registrations exist.
    let quiet = peer_at(1, &gw);
    let eps = lookup(&quiet, "/rd-lookup/ep?ep=noisy*");
    assert_eq!(eps.len(), 5, "{eps:?}");
    // NON over the rate: never answered.
    for i in 0..10u16 {
        let req = raw_request(
            RequestType::Get,
            "/.well-known/core",
            &[],
            b"",
            false,
            200 + i,
        );
        noisy.send_to(&req, gw.addr()).unwrap();
    }
    assert!(
        recv_all(&noisy, Duration::from_millis(300))
            .iter()
            .all(|(p, _)| code(p) != "4.29"),
        "no 4.29 for NON"
    );
    assert!(gw.wait_for_log("rate limit", ANSWER_DEADLINE));
}

/// Lookups with up to `window` outstanding (as a LAN tool or script runs them), `n` of them;
/// the codes of the answers, each awaited at most ANSWER_DEADLINE.
fn windowed_lookups(sock: &UdpSocket, rd: SocketAddr, first_mid: u16, n: u16) -> Vec<String> {
    const WINDOW: u16 = 32;
    let mut codes = Vec::new();
    let (mut next, mut outstanding) = (0u16, 0u16);
    let end = Instant::now() + ANSWER_DEADLINE * 3;
    while (next < n || outstanding > 0) && Instant::now() < end {
        while next < n && outstanding < WINDOW {
            let mid = first_mid.wrapping_add(next);
            let req = raw_request(
                RequestType::Get,
                "/rd-lookup/ep",
                &["ep=tool-0".to_string()],
                b"",
                true,
                mid,
            );
            sock.send_to(&req, rd).unwrap();
            next += 1;
            outstanding += 1;
        }
        let Some((p, _)) = recv_one(sock, Duration::from_secs(2)) else {
            // The rest were dropped (over the rate: one 4.29, then silence).
            break;
        };
        outstanding = outstanding.saturating_sub(1);
        codes.push(code(&p));
    }
    codes
}

#[test]
fn a_lan_tools_burst_of_1000_lookups_is_answered_in_full_at_the_default_limits() {
    // Default limits (200 requests/s per source, burst 1,000), loopback not exempt.
    let (gw, _tmp) = start("", "");
    let registrar = peer_at(2, &gw);
    assert_eq!(
        registrar.post_links("/rd?ep=tool-0&lt=600", "</s>").code,
        "2.01"
    );
    let tool = UdpSocket::bind("127.0.0.8:0").unwrap();
    let started = Instant::now();
    let codes = windowed_lookups(&tool, gw.addr(), 1, 1_000);
    let took = started.elapsed();
    let ok = codes.iter().filter(|c| *c == "2.05").count();
    assert_eq!(
        ok, 1_000,
        "every lookup of the burst answered 2.05: {codes:?}"
    );
    println!("1,000 lookups, 32 outstanding, in {took:?}");
    // Going on at full speed exceeds 200/s once the burst is spent: one 4.29 with Max-Age,
    // then silence, and served again once the Max-Age has passed.
    let more = windowed_lookups(&tool, gw.addr(), 2_000, 1_000);
    let refused = more.iter().filter(|c| *c == "4.29").count();
    assert_eq!(refused, 1, "one 4.29 tells the tool to slow down: {more:?}");
    assert!(more.len() < 1_000, "the rest over the rate are dropped");
    std::thread::sleep(Duration::from_secs(2));
    let after = windowed_lookups(&tool, gw.addr(), 4_000, 50);
    assert_eq!(
        after.iter().filter(|c| *c == "2.05").count(),
        50,
        "{after:?}"
    );
}

/// Block `num` of a `POST /rd?ep=<ep>` upload in 16-byte blocks (RFC 7959 Block1, SZX 0).
fn block1_post(ep: &str, num: u32, more: bool, payload: &[u8], mid: u16) -> Vec<u8> {
    let mut p = raw_request_packet(
        RequestType::Post,
        "/rd",
        &[format!("ep={ep}")],
        payload,
        true,
        mid,
    );
    let value = (num << 4) | (u32::from(more) << 3);
    let bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    p.add_option(CoapOption::Block1, bytes);
    p.to_bytes().unwrap()
}

#[test]
fn first_blocks_from_one_address_do_not_lock_other_hosts_out_of_block1() {
    // The burst is raised so that all 1,030 first blocks reach the reassembly table.
    let (gw, _tmp) = start("", "  request_burst: 5000\n");
    let attacker = UdpSocket::bind("127.0.0.3:0").unwrap();
    let mut continued = 0;
    for batch in 0..(1_030u16).div_ceil(50) {
        for i in 0..50u16 {
            let n = batch * 50 + i;
            if n >= 1_030 {
                break;
            }
            let req = block1_post(&format!("never-finished-{n}"), 0, true, &[b'x'; 16], n + 1);
            attacker.send_to(&req, gw.addr()).unwrap();
        }
        continued += recv_all(&attacker, Duration::from_millis(100))
            .iter()
            .filter(|(p, _)| code(p) == "2.31")
            .count();
    }
    assert!(
        continued > 1_000,
        "the first blocks were taken: {continued} x 2.31"
    );
    // Another host uploads a 21-byte registration in two blocks.
    let body = b"</sensors/temp1>,</x>";
    let honest = UdpSocket::bind("127.0.0.4:0").unwrap();
    let first = block1_post("block1-honest", 0, true, &body[..16], 7_001);
    honest.send_to(&first, gw.addr()).unwrap();
    let got = recv_one(&honest, ANSWER_DEADLINE).expect("an answer to the first block");
    assert_eq!(
        code(&got.0),
        "2.31",
        "the first block is taken, not refused with 4.08"
    );
    let last = block1_post("block1-honest", 1, false, &body[16..], 7_002);
    honest.send_to(&last, gw.addr()).unwrap();
    let got = recv_one(&honest, ANSWER_DEADLINE).expect("an answer to the last block");
    assert_eq!(code(&got.0), "2.01");
    let eps = lookup(&peer_at(5, &gw), "/rd-lookup/res?ep=block1-honest");
    assert_eq!(eps.len(), 2, "both links stored: {eps:?}");
    assert!(gw.wait_for_log("Block1 upload(s) displaced", ANSWER_DEADLINE));
}

#[test]
fn with_every_handler_slot_busy_a_con_gets_5_03_and_a_non_nothing() {
    let (gw, _tmp) = start("", "  max_concurrent_handlers: 1\n");
    // A device asks for simple registration and then does not answer the RD's GET: the
    // registration's handler holds the only slot.
    let device = UdpSocket::bind("127.0.0.4:0").unwrap();
    let post = raw_request(
        RequestType::Post,
        "/.well-known/rd",
        &["ep=slow".into()],
        b"",
        true,
        7,
    );
    device.send_to(&post, gw.addr()).unwrap();
    let got = recv_until(&device, ANSWER_DEADLINE, |p| {
        matches!(p.header.code, MessageClass::Request(RequestType::Get))
    });
    let fetch = got
        .iter()
        .find(|(p, _)| matches!(p.header.code, MessageClass::Request(RequestType::Get)))
        .map(|(p, _)| p.clone())
        .expect("the RD fetches /.well-known/core");

    let other = UdpSocket::bind("127.0.0.5:0").unwrap();
    let reg = raw_request(
        RequestType::Post,
        "/rd",
        &["ep=busy".into()],
        b"</a>",
        true,
        9,
    );
    other.send_to(&reg, gw.addr()).unwrap();
    // The answer, then a short look for any second one (an absence check: no timing claim).
    let mut answers = recv_until(&other, ANSWER_DEADLINE, |_| true);
    answers.extend(recv_all(&other, Duration::from_millis(300)));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(code(&answers[0].0), "5.03");
    assert_eq!(uint_option(&answers[0].0, CoapOption::MaxAge), Some(2));
    let non = raw_request(RequestType::Get, "/.well-known/core", &[], b"", false, 10);
    other.send_to(&non, gw.addr()).unwrap();
    assert!(recv_all(&other, Duration::from_millis(300)).is_empty());
    assert!(gw.wait_for_log("handler slots busy", ANSWER_DEADLINE));

    // The device answers the GET 4.04: the registration fails, the slot is free again and
    // nothing was stored for `busy`.
    let mut not_found = Packet::new();
    not_found.header.set_type(MessageType::Acknowledgement);
    not_found.header.code = MessageClass::Response(coap_lite::ResponseType::NotFound);
    not_found.header.message_id = fetch.header.message_id;
    not_found.set_token(fetch.get_token().to_vec());
    device
        .send_to(&not_found.to_bytes().unwrap(), gw.addr())
        .unwrap();
    let peer = peer_at(1, &gw);
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    loop {
        let resp = peer.get("/rd-lookup/ep?ep=busy");
        if resp.code == "2.05" {
            assert!(resp.payload.is_empty(), "{}", resp.text());
            break;
        }
        assert_eq!(resp.code, "5.03");
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_unproven_source_gets_small_blocks_within_three_times_its_request() {
    // The strict bound: no excess budget (the default's whole first blocks are tested below).
    let (gw, _tmp) = start(
        "",
        "  amplification_factor: 3\n  unproven_excess_bytes_per_s: 0\n",
    );
    let registrar = peer_at(1, &gw);
    for i in 0..30 {
        register(
            &registrar,
            &format!("ep=amp-node-{i:02}&et=amplification-test"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
    // 127.0.0.6 never answered a request of the gateway: unproven.
    let stranger = UdpSocket::bind("127.0.0.6:0").unwrap();
    let mut body = Vec::new();
    let mut num = 0u32;
    let mut szx = 6u8;
    for mid in 1..2_000u16 {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = mid;
        p.set_token(vec![0xab]);
        p.add_option(CoapOption::UriPath, b"rd-lookup".to_vec());
        p.add_option(CoapOption::UriPath, b"ep".to_vec());
        p.add_option(CoapOption::UriQuery, b"et=amplification-test".to_vec());
        if num > 0 {
            let v = (num << 4) | u32::from(szx);
            let bytes: Vec<u8> = v
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            p.add_option(CoapOption::Block2, bytes);
        }
        let req = p.to_bytes().unwrap();
        stranger.send_to(&req, gw.addr()).unwrap();
        let (resp, len) = recv_one(&stranger, ANSWER_DEADLINE).expect("an answer");
        let (resp, len) = (&resp, &len);
        assert_eq!(code(resp), "2.05");
        assert!(
            *len <= 3 * req.len(),
            "block {num}: {len} bytes answered to {} bytes",
            req.len()
        );
        body.extend_from_slice(&resp.payload);
        let block = uint_option(resp, CoapOption::Block2).expect("Block2 on a bounded answer");
        if block & 8 == 0 {
            break;
        }
        szx = (block & 7) as u8;
        num = (block >> 4) + 1;
    }
    assert!(num > 10, "many small blocks: {num}");

    // RFC 9175 §2.4: a bounded answer carries an Echo option; returning it proves the address
    // and the next answer is a full-size block.
    let echoing = UdpSocket::bind("127.0.0.7:0").unwrap();
    let get = |mid: u16, echo: Option<Vec<u8>>| {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = mid;
        p.set_token(vec![0xcd]);
        p.add_option(CoapOption::UriPath, b"rd-lookup".to_vec());
        p.add_option(CoapOption::UriPath, b"ep".to_vec());
        p.add_option(CoapOption::UriQuery, b"et=amplification-test".to_vec());
        if let Some(e) = echo {
            p.add_option(CoapOption::Unknown(252), e);
        }
        p.to_bytes().unwrap()
    };
    let first = get(1, None);
    echoing.send_to(&first, gw.addr()).unwrap();
    let (small, len) = recv_one(&echoing, ANSWER_DEADLINE).expect("an answer");
    assert!(len <= 3 * first.len());
    let echo = small
        .get_option(CoapOption::Unknown(252))
        .and_then(|v| v.front().cloned())
        .expect("a bounded answer carries Echo");
    let wrong = get(2, Some(vec![0; echo.len()]));
    echoing.send_to(&wrong, gw.addr()).unwrap();
    let (_, len) = recv_one(&echoing, ANSWER_DEADLINE).expect("an answer");
    assert!(len <= 3 * wrong.len(), "a wrong Echo proves nothing");
    let again = get(3, Some(echo));
    echoing.send_to(&again, gw.addr()).unwrap();
    let (full, len) = recv_one(&echoing, ANSWER_DEADLINE).expect("an answer");
    assert_eq!(code(&full), "2.05");
    assert_eq!(
        full.payload.len(),
        1024,
        "proven by Echo: a full block ({len} bytes)"
    );
    // Answering a request of the gateway (a simple registration's GET) proves nothing: an
    // attacker can make the gateway ask a victim (issue 18). Still small blocks, with the
    // same representation.
    let outcome = simple_register(
        gw.addr(),
        "/.well-known/rd?ep=prover",
        Some("</p>"),
        Duration::from_secs(10),
    );
    assert_eq!(outcome.response.map(|r| r.code), Some("2.04".to_string()));
    let answered = peer_at(1, &gw);
    let first = answered.get("/rd-lookup/ep?et=amplification-test");
    assert!(
        first.payload.len() < 1024,
        "no full-size first block for an address proven only by answering the gateway"
    );
    let all = answered.get_all_blocks("/rd-lookup/ep?et=amplification-test", None);
    assert_eq!(String::from_utf8_lossy(&body), all.text());
}

#[test]
fn the_per_source_quota_survives_a_restart_and_frees_up_when_registrations_are_purged() {
    let rd = "  expiry_grace_s: 1\n";
    let limits = "  max_registrations_per_source: 1\n";
    let (gw, tmp) = start(rd, limits);
    let peer = peer_at(1, &gw);
    register(&peer, "ep=kept&lt=600", "</a>");
    drop(gw);
    // Restarted on the same data: the count is rebuilt from disk. `kept` lives 600 s, so
    // however long the restart takes, the slot is still held.
    let path = tmp.path().join("config.yaml");
    let gw = Gateway::spawn(&path, tmp.path().join("data"), 1);
    let peer = peer_at(1, &gw);
    let resp = peer.post_links("/rd?ep=second", "</b>");
    assert_eq!(resp.code, "4.03", "{}", resp.text());
    assert!(ep_link(&peer, "second").is_none());
    // The same name is always allowed; re-registered with a short lifetime, `kept` expires
    // and is purged after its 1 s grace: the source's slot is free. Checked at once, far
    // inside those 4 + 1 s, the slot is still taken.
    register(&peer, "ep=kept&lt=4", "</a>");
    let resp = peer.post_links("/rd?ep=second", "</b>");
    assert_eq!(resp.code, "4.03", "{}", resp.text());
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    loop {
        let resp = peer.post_links("/rd?ep=second", "</b>");
        if resp.code == "2.01" {
            break;
        }
        assert_eq!(resp.code, "4.03");
        assert!(
            Instant::now() < deadline,
            "the quota did not free up within {EXPIRY_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(ep_link(&peer, "second").is_some());
    assert!(ep_link(&peer, "kept").is_none());
}

/// A passive device on `sock` answering every GET /.well-known/core with `links`, until `stop`.
fn serve_wkc(
    sock: UdpSocket,
    links: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Packet::from_bytes(&buf[..n]) else {
            continue;
        };
        if !matches!(req.header.code, MessageClass::Request(RequestType::Get)) {
            continue;
        }
        let mut resp = Packet::new();
        resp.header.set_type(MessageType::Acknowledgement);
        resp.header.code = MessageClass::Response(coap_lite::ResponseType::Content);
        resp.header.message_id = req.header.message_id;
        resp.set_token(req.get_token().to_vec());
        resp.add_option(CoapOption::ContentFormat, vec![40]);
        resp.payload = links.as_bytes().to_vec();
        let _ = sock.send_to(&resp.to_bytes().unwrap(), from);
    }
}

#[test]
fn a_discovered_name_is_remembered_for_the_device_address() {
    let device = UdpSocket::bind("127.0.0.8:0").unwrap();
    let device_addr = device.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || serve_wkc(device, "</sensors/temp>;rt=\"temperature\"", stop))
    };
    let discovery = format!(
        "discovery:\n  enabled: true\n  interval_s: 1\n  lifetime_s: 30\n  timeout_ms: 500\n  \
         targets: [\"{device_addr}\"]\n"
    );
    let (gw, _tmp) = start("", &format!("  source_table_size: 1024\n{discovery}"));
    let peer = peer_at(1, &gw);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ep = loop {
        let found = lookup(&peer, "/rd-lookup/ep?src=discovery");
        if let Some(link) = found.first() {
            break link
                .attrs
                .iter()
                .find(|(k, _)| k == "ep")
                .and_then(|(_, v)| v.clone())
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "not discovered:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Another address cannot take the discovered name ...
    let other = peer_at(9, &gw);
    let resp = other.post_links(&format!("/rd?ep={ep}"), "</stolen>");
    assert_eq!(resp.code, "4.03", "{}", resp.text());
    assert_eq!(lookup(&peer, "/rd-lookup/ep?src=discovery").len(), 1);
    // ... the device itself (same address, another port) may register under it.
    let same_host = peer_at(8, &gw);
    register(&same_host, &format!("ep={ep}"), "</own>");
    let own = lookup(&peer, &format!("/rd-lookup/res?ep={ep}"));
    assert!(own.iter().all(|l| l.target.ends_with("/own")), "{own:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// Notifications are unsolicited datagrams to the observer's address (RFC 7252 §11.3). With no
/// excess budget (the strict bound), an unproven source may register but is never sent a
/// notification, and the observation ends at the first one that cannot be paid; once it proves
/// its address with Echo (RFC 9175 §2.4), it is notified as usual.
#[test]
fn with_the_strict_bound_only_an_echo_proven_observer_is_notified() {
    let (gw, _tmp) = start(
        "",
        "  amplification_factor: 3\n  unproven_excess_bytes_per_s: 0\n",
    );
    let registrar = peer_at(1, &gw);
    register(&registrar, "ep=obs-a&et=observe-test", "</s>");
    let observe_get = |mid: u16, echo: Option<&[u8]>| {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Get);
        p.header.message_id = mid;
        p.set_token(vec![0x0b, 0x5e]);
        p.add_option(CoapOption::Observe, vec![]);
        p.add_option(CoapOption::UriPath, b"rd-lookup".to_vec());
        p.add_option(CoapOption::UriPath, b"ep".to_vec());
        p.add_option(CoapOption::UriQuery, b"et=observe-test".to_vec());
        if let Some(e) = echo {
            p.add_option(CoapOption::Unknown(252), e.to_vec());
        }
        p.to_bytes().unwrap()
    };

    let stranger = UdpSocket::bind("127.0.0.8:0").unwrap();
    stranger.send_to(&observe_get(1, None), gw.addr()).unwrap();
    let (answer, _) = recv_one(&stranger, ANSWER_DEADLINE).expect("an answer");
    assert_eq!(code(&answer), "2.05");
    register(&registrar, "ep=obs-b&et=observe-test", "</s>");
    let late = recv_all(&stranger, Duration::from_millis(1_500));
    assert!(
        late.is_empty(),
        "no notification to an unproven address without budget: {late:?}"
    );

    // The Echo of a bounded answer (a lookup too big for 3x a tiny request) proves 127.0.0.8.
    for i in 0..20 {
        register(
            &registrar,
            &format!("ep=obs-pad-{i:02}&et=observe-pad"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\"",
        );
    }
    let lookup = raw_request(
        RequestType::Get,
        "/rd-lookup/ep",
        &["et=observe-pad".to_string()],
        b"",
        true,
        2,
    );
    stranger.send_to(&lookup, gw.addr()).unwrap();
    let (cut, _) = recv_one(&stranger, ANSWER_DEADLINE).expect("an answer");
    let echo = cut
        .get_option(CoapOption::Unknown(252))
        .and_then(|v| v.front().cloned())
        .expect("a bounded answer carries Echo");
    stranger
        .send_to(&observe_get(3, Some(&echo)), gw.addr())
        .unwrap();
    let (answer, _) = recv_one(&stranger, ANSWER_DEADLINE).expect("an answer");
    assert_eq!(code(&answer), "2.05");
    assert!(
        answer.get_option(CoapOption::Observe).is_some(),
        "observing"
    );
    register(&registrar, "ep=obs-c&et=observe-test", "</s>");
    let notes = recv_until(&stranger, ANSWER_DEADLINE, |p| {
        String::from_utf8_lossy(&p.payload).contains("obs-c")
    });
    assert!(
        notes
            .iter()
            .any(|(p, _)| String::from_utf8_lossy(&p.payload).contains("obs-c")),
        "the proven observer is notified: {notes:?}"
    );
}
