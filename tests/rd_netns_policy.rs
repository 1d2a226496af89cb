//! The RD under its production policy, seen from another host (issue 18): the real gateway runs
//! in network namespace `a` with the default `limits:` (nothing switched off; `exempt_loopback`
//! is irrelevant because no client is on loopback), and every client runs in namespace `b`
//! (10.77.0.2 / fd77::2), so it is an unproven LAN source like any device.
//!
//! - A constrained client written here (CON only, a 2-byte token, never Block2 or Echo, takes
//!   exactly one datagram as the answer, RFC 7252 retransmission) does everything a device or
//!   a lookup client does: RD discovery (`core.rd*`, `core.rd-lookup-*`), registration, update,
//!   removal, simple registration (its socket answers the RD's GET /.well-known/core), endpoint
//!   and resource lookups with filters and `count`, on IPv4 and IPv6; and it observes a lookup
//!   and gets (and ACKs) a notification when a registration changes.
//! - libcoap's `coap-client-notls`, aiocoap's `aiocoap-client` and the project's own CoAP client
//!   (`coap_gateway::coap`, its socket made inside namespace `b`) discover the RD, register, read
//!   a lookup with several results completely, and observe a lookup.
//!
//! Where namespaces cannot be made, the one skip policy applies (`netns_or_skip`, a failure under
//! `COAP_GATEWAY_NO_SKIPS`), never a silent fall-back to the exempt loopback path.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use common::coap_peer::{link, link_set, parse_links, register, run_bounded, Link, Peer, Ran};
use common::constrained::{code, empty, path_of, request};
use common::netns::{netns_or_skip, NetnsPair, Side, B_V4, B_V6};
use common::{libcoap, require_tool, Gateway, GatewayOptions};

/// Generous for a loaded 2-core box: only a real defect runs it out.
const WAIT: Duration = Duration::from_secs(30);
/// Bound on one external client run.
const TOOL_LIMIT: Duration = Duration::from_secs(30);

/// The RD in namespace `a` on both families. Only the Pinger is switched off (it would probe
/// the test's endpoints); `limits:` is absent, so every limit has its default value.
fn start_rd(pair: &NetnsPair) -> Gateway {
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["10.77.0.1:0".into(), "[fd77::1]:0".into()],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
    );
    let config = std::fs::read_to_string(&gw.config_path).unwrap_or_default();
    assert!(
        !config.contains("limits:"),
        "this test runs the default limits:\n{config}"
    );
    gw
}

fn rd_v4(gw: &Gateway) -> SocketAddr {
    gw.rd_addrs[0]
}

fn rd_v6(gw: &Gateway) -> SocketAddr {
    gw.rd_addrs[1]
}

/// A UDP socket bound in namespace `b` on `ip` (an ephemeral port).
fn b_socket(pair: &NetnsPair, ip: IpAddr) -> UdpSocket {
    pair.run_in(Side::B, move || UdpSocket::bind(SocketAddr::new(ip, 0)))
        .expect("enter namespace b")
        .expect("bind in namespace b")
}

/// A test-side registrar (the coap_peer client) in namespace `b`.
fn b_peer(pair: &NetnsPair, rd: SocketAddr) -> Peer {
    let ip = if rd.is_ipv6() {
        IpAddr::V6(B_V6)
    } else {
        IpAddr::V4(B_V4)
    };
    Peer::with_socket(b_socket(pair, ip), rd)
}

// ---- the constrained client ------------------------------------------------------------

/// RFC 7252 §4.8 defaults: ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RETRANSMIT: u32 = 4;

/// A client that knows only the basics: CON requests with a 2-byte token, one datagram per
/// answer (no Block2, no Echo), empty ACKs and separate responses, ACKs for CON notifications,
/// and a `/.well-known/core` of its own for simple registration.
struct Constrained {
    sock: UdpSocket,
    rd: SocketAddr,
    mid: u16,
    token: u16,
    /// Its own resources, served on GET /.well-known/core.
    wkc: String,
    /// Responses for other tokens (notifications) that came while it waited for an answer.
    queued: Vec<Packet>,
}

fn text(p: &Packet) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

fn uint(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

fn observe_of(p: &Packet) -> Option<u32> {
    p.get_first_option(CoapOption::Observe).map(|v| uint(v))
}

/// What the client does with one incoming datagram while it waits.
enum Seen {
    /// The answer to the outstanding request (piggybacked or separate).
    Answer(Packet),
    /// The empty ACK of the outstanding request: stop retransmitting, a separate answer follows.
    EmptyAck,
    Other,
}

impl Constrained {
    fn new(sock: UdpSocket, rd: SocketAddr) -> Constrained {
        let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
        Constrained {
            sock,
            rd,
            mid: port.wrapping_mul(31),
            token: port.wrapping_mul(7),
            wkc: String::new(),
            queued: Vec::new(),
        }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.sock.send_to(bytes, to).expect("send");
    }

    /// Read one datagram until `until`; `None` on timeout.
    fn recv(&self, until: Instant) -> Option<(Packet, SocketAddr)> {
        let mut buf = [0u8; 1500];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            let (n, from) = self.sock.recv_from(&mut buf).ok()?;
            // A constrained stack drops what it cannot parse.
            if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                return Some((p, from));
            }
        }
    }

    /// Handle one datagram: serve /.well-known/core, ACK CON responses, queue notifications.
    fn handle(&mut self, p: Packet, from: SocketAddr, mid: u16, token: &[u8]) -> Seen {
        let t = p.header.get_type();
        match p.header.code {
            MessageClass::Request(method) => {
                let mut reply = Packet::new();
                reply.header.set_type(MessageType::Acknowledgement);
                reply.header.message_id = p.header.message_id;
                reply.set_token(p.get_token().to_vec());
                if method == RequestType::Get && path_of(&p) == [".well-known", "core"] {
                    reply.header.set_code("2.05");
                    reply.add_option(CoapOption::ContentFormat, vec![40]);
                    reply.payload = self.wkc.as_bytes().to_vec();
                } else {
                    reply.header.set_code("4.04");
                }
                if t == MessageType::Confirmable {
                    self.send(&reply.to_bytes().expect("encode a reply"), from);
                }
                Seen::Other
            }
            MessageClass::Response(_) => {
                if t == MessageType::Confirmable {
                    self.send(
                        &empty(MessageType::Acknowledgement, p.header.message_id),
                        from,
                    );
                }
                let ours = p.get_token() == token
                    && (t != MessageType::Acknowledgement || p.header.message_id == mid);
                if ours {
                    Seen::Answer(p)
                } else {
                    if t != MessageType::Acknowledgement {
                        self.queued.push(p);
                    }
                    Seen::Other
                }
            }
            MessageClass::Empty
                if t == MessageType::Acknowledgement && p.header.message_id == mid =>
            {
                Seen::EmptyAck
            }
            _ => Seen::Other,
        }
    }

    /// One exchange; the answer is the one datagram that carries it.
    fn ask_with(
        &mut self,
        method: RequestType,
        path: &str,
        query: &[&str],
        payload: &[u8],
        observe: Option<u32>,
    ) -> Packet {
        self.mid = self.mid.wrapping_add(1);
        self.token = self.token.wrapping_add(1);
        let (mid, token) = (self.mid, self.token.to_be_bytes());
        let req = request(method, path, query, payload, observe, mid, &token);
        let started = Instant::now();
        let give_up = started + WAIT;
        let mut timeout = ACK_TIMEOUT;
        let mut next_send = started;
        let mut sent = 0;
        let mut acked = false;
        loop {
            let now = Instant::now();
            assert!(
                now < give_up,
                "no answer to {method:?} {path}?{query:?} within {WAIT:?}"
            );
            if !acked && now >= next_send {
                assert!(
                    sent <= MAX_RETRANSMIT,
                    "{method:?} {path}?{query:?}: no ACK after {MAX_RETRANSMIT} retransmissions"
                );
                self.send(&req, self.rd);
                sent += 1;
                next_send = now + timeout;
                timeout *= 2;
            }
            let until = if acked { give_up } else { next_send };
            let Some((p, from)) = self.recv(until) else {
                continue;
            };
            match self.handle(p, from, mid, &token) {
                Seen::Answer(p) => return p,
                Seen::EmptyAck => acked = true,
                Seen::Other => {}
            }
        }
    }

    fn ask(&mut self, method: RequestType, path: &str, query: &[&str], payload: &[u8]) -> Packet {
        self.ask_with(method, path, query, payload, None)
    }

    /// The next notification for `token` within `budget` (ACKed if CON), queued ones first.
    fn notification(&mut self, token: &[u8], budget: Duration) -> Option<Packet> {
        let deadline = Instant::now() + budget;
        loop {
            if let Some(i) = self.queued.iter().position(|p| p.get_token() == token) {
                return Some(self.queued.remove(i));
            }
            let (p, from) = self.recv(deadline)?;
            // MID 0 / no token: nothing outstanding, so everything lands in `queued`.
            self.handle(p, from, 0, &[]);
        }
    }
}

/// A whole answer: 2.05, no Block2 (nothing more to fetch), link-format that parses.
fn assert_whole(p: &Packet, what: &str) -> Vec<Link> {
    assert_eq!(code(p), "2.05", "{what}: {}", text(p));
    assert!(
        p.get_option(CoapOption::Block2).is_none(),
        "{what}: cut into blocks for a client that cannot fetch them: {:?}",
        text(p)
    );
    assert!(
        p.get_option(CoapOption::Unknown(252)).is_none(),
        "{what}: answered with Echo, which this client ignores"
    );
    parse_links(&text(p))
        .unwrap_or_else(|e| panic!("{what}: not whole link-format ({e}): {:?}", text(p)))
}

fn location(p: &Packet) -> String {
    let segs: Vec<String> = p
        .get_option(CoapOption::LocationPath)
        .map(|l| {
            l.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    format!("/{}", segs.join("/"))
}

/// Five endpoints `{tag}-node-N` of type `et={tag}`, two links each, registered from
/// namespace `b`.
fn populate(registrar: &Peer, tag: &str) {
    for i in 0..5 {
        register(
            registrar,
            &format!("ep={tag}-node-{i}&et={tag}"),
            "</sensors/temperature>;rt=\"temperature\";if=\"sensor\";obs,</actuators/led>;rt=\"light\"",
        );
    }
}

/// Discovery, lookups with filters and `count`, registration, update and removal.
fn constrained_client_does_everything(rd_of: fn(&Gateway) -> SocketAddr, ip: IpAddr) {
    let Some(pair) = netns_or_skip("rdpol") else {
        return;
    };
    let gw = start_rd(&pair);
    let rd = rd_of(&gw);
    populate(&b_peer(&pair, rd), "nsb");
    let mut c = Constrained::new(b_socket(&pair, ip), rd);

    let d = c.ask(RequestType::Get, "/.well-known/core", &["rt=core.rd*"], b"");
    let targets: Vec<String> = assert_whole(&d, "discovery of core.rd*")
        .into_iter()
        .map(|l| l.target)
        .collect();
    for t in ["/rd", "/rd-lookup/ep", "/rd-lookup/res"] {
        assert!(targets.iter().any(|x| x == t), "{t} missing: {targets:?}");
    }
    let d = c.ask(
        RequestType::Get,
        "/.well-known/core",
        &["rt=core.rd-lookup-*"],
        b"",
    );
    let lookups = assert_whole(&d, "discovery of core.rd-lookup-*");
    let targets: Vec<&str> = lookups.iter().map(|l| l.target.as_str()).collect();
    assert!(
        targets.contains(&"/rd-lookup/ep") && targets.contains(&"/rd-lookup/res"),
        "{targets:?}"
    );
    assert!(
        !targets.contains(&"/rd"),
        "only lookup interfaces: {targets:?}"
    );

    let eps = c.ask(RequestType::Get, "/rd-lookup/ep", &["et=nsb"], b"");
    let eps = assert_whole(&eps, "endpoint lookup");
    let mut names: Vec<&str> = eps.iter().filter_map(|l| l.get("ep")).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "nsb-node-0",
            "nsb-node-1",
            "nsb-node-2",
            "nsb-node-3",
            "nsb-node-4"
        ]
    );
    let two = c.ask(
        RequestType::Get,
        "/rd-lookup/ep",
        &["et=nsb", "count=2"],
        b"",
    );
    assert_eq!(assert_whole(&two, "endpoint lookup with count").len(), 2);
    let res = c.ask(
        RequestType::Get,
        "/rd-lookup/res",
        &["rt=temperature", "count=3"],
        b"",
    );
    assert_eq!(assert_whole(&res, "resource lookup with count").len(), 3);
    let all = c.ask(RequestType::Get, "/rd-lookup/res", &["et=nsb"], b"");
    let all = assert_whole(&all, "resource lookup");
    assert_eq!(all.len(), 10, "{all:?}");
    let lights = c.ask(
        RequestType::Get,
        "/rd-lookup/res",
        &["rt=light", "ep=nsb-node-3"],
        b"",
    );
    let lights = assert_whole(&lights, "resource lookup with two filters");
    assert_eq!(lights.len(), 1, "{lights:?}");
    assert!(lights[0].target.ends_with("/actuators/led"), "{lights:?}");

    // Its own registration, update and removal.
    let created = c.ask(
        RequestType::Post,
        "/rd",
        &["ep=constrained-1", "lt=300"],
        b"</t>;rt=\"temperature\"",
    );
    assert_eq!(code(&created), "2.01", "{}", text(&created));
    let reg = location(&created);
    assert!(reg.len() > 1, "no Location-Path");
    let upd = c.ask(RequestType::Post, &reg, &["lt=600", "et=updated"], b"");
    assert_eq!(code(&upd), "2.04", "{}", text(&upd));
    let mine = c.ask(RequestType::Get, "/rd-lookup/ep", &["et=updated"], b"");
    let mine = assert_whole(&mine, "own endpoint after the update");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].get("ep"), Some("constrained-1"));
    assert_eq!(
        mine[0].get("base"),
        Some(format!("coap://{}", c.local()).as_str()),
        "the base is the client's own address"
    );
    assert_eq!(code(&c.ask(RequestType::Delete, &reg, &[], b"")), "2.02");
    let gone = c.ask(
        RequestType::Get,
        "/rd-lookup/ep",
        &["ep=constrained-1"],
        b"",
    );
    assert!(assert_whole(&gone, "after removal").is_empty());
}

#[test]
fn a_constrained_client_in_another_namespace_does_everything_on_ipv4() {
    constrained_client_does_everything(rd_v4, IpAddr::V4(B_V4));
}

#[test]
fn a_constrained_client_in_another_namespace_does_everything_on_ipv6() {
    constrained_client_does_everything(rd_v6, IpAddr::V6(B_V6));
}

#[test]
fn a_constrained_client_registers_simply() {
    let Some(pair) = netns_or_skip("rdpol") else {
        return;
    };
    let gw = start_rd(&pair);
    let rd = rd_v4(&gw);
    let mut c = Constrained::new(b_socket(&pair, IpAddr::V4(B_V4)), rd);
    c.wkc = "</sensors/t>;rt=\"temperature\";if=\"sensor\"".into();
    // RFC 9176 §5.1: POST /.well-known/rd, empty; the RD fetches the client's
    // /.well-known/core (answered inside `ask`) and then answers 2.04.
    let done = c.ask(
        RequestType::Post,
        "/.well-known/rd",
        &["ep=simple-c", "lt=300"],
        b"",
    );
    assert_eq!(code(&done), "2.04", "{}", text(&done));
    let res = c.ask(RequestType::Get, "/rd-lookup/res", &["ep=simple-c"], b"");
    let res = assert_whole(&res, "lookup of the simple registration");
    assert_eq!(
        link_set(&res),
        link_set(&[link(
            &format!("coap://{}/sensors/t", c.local()),
            &[("rt", "temperature"), ("if", "sensor")]
        )])
    );
}

#[test]
fn a_constrained_client_observes_a_lookup_and_acks_the_notifications() {
    let Some(pair) = netns_or_skip("rdpol") else {
        return;
    };
    let gw = start_rd(&pair);
    let rd = rd_v4(&gw);
    let registrar = b_peer(&pair, rd);
    populate(&registrar, "obs");
    let mut c = Constrained::new(b_socket(&pair, IpAddr::V4(B_V4)), rd);
    let first = c.ask_with(RequestType::Get, "/rd-lookup/ep", &["et=obs"], b"", Some(0));
    assert_eq!(assert_whole(&first, "observed lookup").len(), 5);
    let token = first.get_token().to_vec();
    let seq0 = observe_of(&first).unwrap_or_else(|| {
        panic!("the RD did not register the observation (no Observe in its answer)")
    });

    // A registration that changes the result: one notification with the whole new result.
    let loc = register(&registrar, "ep=obs-new&et=obs", "</n>;rt=\"temperature\"");
    let n1 = c
        .notification(&token, WAIT)
        .expect("a notification after a new registration");
    let eps = assert_whole(&n1, "notification");
    assert_eq!(eps.len(), 6, "{eps:?}");
    assert!(eps.iter().any(|l| l.get("ep") == Some("obs-new")));
    let seq1 = observe_of(&n1).expect("a notification carries Observe");
    assert!(seq1 > seq0, "{seq0} then {seq1}");

    // Its removal: another, without it.
    assert_eq!(registrar.delete(&loc).code, "2.02");
    let n2 = c
        .notification(&token, WAIT)
        .expect("a notification after the removal");
    let eps = assert_whole(&n2, "notification after removal");
    assert_eq!(eps.len(), 5, "{eps:?}");
    assert!(observe_of(&n2).is_some_and(|s| s > seq1));
}

// ---- libcoap ---------------------------------------------------------------------------

/// Six endpoints of one link each (`et=ext`): a result of several links in one block.
fn populate_ext(registrar: &Peer) -> Vec<Link> {
    let base = format!("coap://{}", registrar.local_addr());
    (0..6)
        .map(|i| {
            register(
                registrar,
                &format!("ep=ext-{i}&et=ext"),
                &format!("</s/{i}>;rt=\"ext.sensor\";if=\"sensor\""),
            );
            link(
                &format!("{base}/s/{i}"),
                &[("rt", "ext.sensor"), ("if", "sensor")],
            )
        })
        .collect()
}

fn libcoap_in_b(pair: &NetnsPair, args: &[&str]) -> Ran {
    let mut cmd = pair.command(Side::B, libcoap::TOOL);
    cmd.args(["-B", "20"]).args(args);
    run_bounded(&mut cmd, TOOL_LIMIT)
}

fn assert_discovery(out: &Ran) {
    let links = parse_links(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let targets: Vec<&str> = links.iter().map(|l| l.target.as_str()).collect();
    for t in ["/rd", "/rd-lookup/ep", "/rd-lookup/res"] {
        assert!(targets.contains(&t), "{t} missing: {out:?}");
    }
}

#[test]
fn libcoap_in_another_namespace_discovers_registers_looks_up_and_observes() {
    if !require_tool(libcoap::TOOL) || !require_tool("stdbuf") {
        return;
    }
    let Some(pair) = netns_or_skip("rdpol") else {
        return;
    };
    let gw = start_rd(&pair);
    let (rd, rd6) = (rd_v4(&gw), rd_v6(&gw));
    for rd in [rd, rd6] {
        assert_discovery(&libcoap_in_b(
            &pair,
            &[&format!("coap://{rd}/.well-known/core?rt=core.rd*")],
        ));
    }

    let reg = libcoap_in_b(
        &pair,
        &[
            "-v",
            "6",
            "-m",
            "post",
            "-t",
            "40",
            "-e",
            "</sensors/temp>;rt=\"temperature\"",
            &format!("coap://{rd}/rd?ep=libcoap-ns&et=lc"),
        ],
    );
    let answers: Vec<_> = libcoap::parse(&reg.stdout)
        .into_iter()
        .filter(|m| m.is_response())
        .collect();
    assert!(
        answers.iter().any(|m| m.code == "2.01"),
        "registration: {reg:?}"
    );

    let expected = populate_ext(&b_peer(&pair, rd));
    let out = libcoap_in_b(&pair, &[&format!("coap://{rd}/rd-lookup/res?et=ext")]);
    let links = parse_links(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(link_set(&links), link_set(&expected), "{out:?}");

    // Observe the endpoint lookup, then register one more endpoint of that type.
    let url = format!("coap://{rd}/rd-lookup/ep?et=lc");
    let prefix = ["ip", "netns", "exec", pair.name(Side::B)];
    let obs = libcoap::Running::spawn_with_prefix(
        &prefix,
        90,
        &["-v", "6", "-s", "60", "-B", "70", &url],
    );
    let observing = |m: &libcoap::Message| m.code == "2.05" && m.option("Observe").is_some();
    assert!(
        obs.wait_for(WAIT, |m| m.iter().any(|m| m.code == "2.05")),
        "no answer from the RD:\n{}",
        obs.text()
    );
    assert!(
        obs.messages().iter().any(observing),
        "the RD did not register the observation (no Observe in its answer):\n{}",
        obs.text()
    );
    register(
        &b_peer(&pair, rd),
        "ep=libcoap-ns-2&et=lc",
        "</x>;rt=\"temperature\"",
    );
    assert!(
        obs.wait_for(WAIT, |m| m.iter().filter(|m| observing(m)).any(|m| m
            .payload
            .as_deref()
            .is_some_and(
                |p| p.contains("ep=libcoap-ns-2;") && p.contains("ep=libcoap-ns;")
            ))),
        "libcoap got no notification with the new endpoint:\n{}",
        obs.text()
    );
}

// ---- aiocoap ---------------------------------------------------------------------------

const AIOCOAP: &str = "aiocoap-client";

fn aiocoap_in_b(pair: &NetnsPair, args: &[&str]) -> Ran {
    let mut cmd = pair.command(Side::B, AIOCOAP);
    cmd.args(["--no-pretty-print", "--no-color"]).args(args);
    run_bounded(&mut cmd, TOOL_LIMIT)
}

/// Observe with the aiocoap library itself: the installed `aiocoap-client` (0.4.17) cancels its
/// observation as soon as the first response arrives (the `finally` after
/// `await requester.response` in `aiocoap/cli/client.py`), so its `--observe` never shows a
/// notification. One line per message: `FIRST|NOTIFY <code> <Observe or None> <payload>`,
/// and `ENDED` when the observation ends.
const AIOCOAP_OBSERVE_PY: &str = r#"
import asyncio, sys, aiocoap
async def main():
    ctx = await aiocoap.Context.create_client_context()
    r = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=sys.argv[1], observe=0))
    first = await r.response
    print("FIRST", first.code.dotted, first.opt.observe, first.payload.decode(), flush=True)
    try:
        async for n in r.observation:
            print("NOTIFY", n.code.dotted, n.opt.observe, n.payload.decode(), flush=True)
    except Exception as e:
        print("ENDED", repr(e), flush=True)
    print("ENDED", flush=True)
asyncio.run(main())
"#;

/// A background aiocoap observer (`AIOCOAP_OBSERVE_PY`) in namespace `b`, its output
/// collected; killed on drop.
struct AiocoapObserver {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl AiocoapObserver {
    fn spawn(pair: &NetnsPair, url: &str) -> AiocoapObserver {
        let mut child = pair
            .command(Side::B, "python3")
            .args(["-c", AIOCOAP_OBSERVE_PY, url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3 with aiocoap");
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = out.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        AiocoapObserver { child, out }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Wait until the output so far satisfies `pred`, or the observation ended.
    fn wait_for(&self, budget: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            let text = self.text();
            if pred(&text) {
                return true;
            }
            if text.contains("ENDED") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pred(&self.text())
    }
}

impl Drop for AiocoapObserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn aiocoap_in_another_namespace_discovers_registers_looks_up_and_observes() {
    if !require_tool(AIOCOAP) || !require_tool("python3") {
        return;
    }
    let Some(pair) = netns_or_skip("rdpol") else {
        return;
    };
    let gw = start_rd(&pair);
    let rd = rd_v4(&gw);
    let d = aiocoap_in_b(
        &pair,
        &[&format!("coap://{rd}/.well-known/core?rt=core.rd*")],
    );
    assert_eq!(d.status, Some(0), "{d:?}");
    assert_discovery(&d);

    let reg = aiocoap_in_b(
        &pair,
        &[
            "-m",
            "POST",
            "--content-format",
            "application/link-format",
            "--payload",
            "</sensors/temp>;rt=\"temperature\"",
            &format!("coap://{rd}/rd?ep=aiocoap-ns&et=aio"),
        ],
    );
    assert_eq!(reg.status, Some(0), "{reg:?}");
    assert!(
        format!("{}{}", reg.stdout, reg.stderr).contains("indicate new resource"),
        "no Location reported: {reg:?}"
    );

    let expected = populate_ext(&b_peer(&pair, rd));
    let out = aiocoap_in_b(&pair, &[&format!("coap://{rd}/rd-lookup/res?et=ext")]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let links = parse_links(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(link_set(&links), link_set(&expected), "{out:?}");

    let obs = AiocoapObserver::spawn(&pair, &format!("coap://{rd}/rd-lookup/ep?et=aio"));
    assert!(
        obs.wait_for(WAIT, |t| t.contains("FIRST 2.05")),
        "no first answer:\n{}",
        obs.text()
    );
    let first = obs.text();
    assert!(first.contains("ep=aiocoap-ns;"), "{first}");
    assert!(
        !first.contains("FIRST 2.05 None"),
        "the RD did not register the observation: {first}"
    );
    register(
        &b_peer(&pair, rd),
        "ep=aiocoap-ns-2&et=aio",
        "</x>;rt=\"temperature\"",
    );
    assert!(
        obs.wait_for(WAIT, |t| t.lines().any(
            |l| l.starts_with("NOTIFY 2.05") && l.contains("ep=aiocoap-ns-2;")
        )),
        "aiocoap got no notification with the new endpoint:\n{}",
        obs.text()
    );
}

// ---- the project's own client ----------------------------------------------------------

/// The own client's endpoint serves nothing.
struct NoResources;

impl coap_gateway::coap::RequestHandler for NoResources {
    fn handle(
        &self,
        _req: coap_gateway::coap::InboundRequest,
    ) -> coap_gateway::coap::HandlerFuture {
        use futures::FutureExt;
        futures::future::ready(coap_gateway::coap::OutboundResponse::new(
            coap_gateway::coap::Code::NOT_FOUND,
        ))
        .boxed()
    }
}

#[test]
fn the_own_client_in_another_namespace_discovers_registers_looks_up_and_observes() {
    use coap_gateway::coap::{ClientRequest, Code, Endpoint, Method, TransmissionParams};
    let Some(pair) = netns_or_skip("rdpol") else {
        return;
    };
    let gw = start_rd(&pair);
    let rd = rd_v4(&gw);
    let expected = populate_ext(&b_peer(&pair, rd));
    let registrar = b_peer(&pair, rd);
    // The whole client runs on a thread inside namespace `b`: its endpoint's socket is made there.
    let outcome = pair.run_in(Side::B, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let ep = Endpoint::bind(
                &[SocketAddr::new(IpAddr::V4(B_V4), 0)],
                TransmissionParams::default(),
                Arc::new(NoResources),
            )
            .await
            .expect("bind the client endpoint in namespace b");
            let client = ep.client();

            let d = client
                .request(
                    rd,
                    ClientRequest::get("/.well-known/core").query("rt=core.rd*"),
                )
                .await
                .expect("discovery");
            assert_eq!(d.code, Code::CONTENT);
            let d = parse_links(&String::from_utf8_lossy(&d.payload)).expect("link-format");
            for t in ["/rd", "/rd-lookup/ep", "/rd-lookup/res"] {
                assert!(d.iter().any(|l| l.target == t), "{t} missing: {d:?}");
            }

            let reg = client
                .request(
                    rd,
                    ClientRequest::new(Method::Post, "/rd")
                        .query("ep=own-ns")
                        .query("et=own")
                        .payload(Some(40), b"</t>;rt=\"temperature\"".to_vec()),
                )
                .await
                .expect("registration");
            assert_eq!(reg.code, Code::CREATED);
            assert!(!reg.location_path.is_empty());

            let res = client
                .request(rd, ClientRequest::get("/rd-lookup/res").query("et=ext"))
                .await
                .expect("lookup");
            assert_eq!(res.code, Code::CONTENT);
            let links = parse_links(&String::from_utf8_lossy(&res.payload)).expect("link-format");
            assert_eq!(link_set(&links), link_set(&expected));

            let mut obs = client
                .observe(rd, ClientRequest::get("/rd-lookup/ep").query("et=own"))
                .await
                .expect("observe");
            assert!(
                obs.first.observe.is_some(),
                "the RD did not register the observation: {:?}",
                obs.first
            );
            register(&registrar, "ep=own-ns-2&et=own", "</x>;rt=\"temperature\"");
            let n = tokio::time::timeout(WAIT, obs.next())
                .await
                .expect("a notification in time")
                .expect("the observation is live");
            let eps = parse_links(&String::from_utf8_lossy(&n.payload)).expect("link-format");
            let mut names: Vec<&str> = eps.iter().filter_map(|l| l.get("ep")).collect();
            names.sort();
            assert_eq!(names, ["own-ns", "own-ns-2"]);
            obs.cancel().await;
            ep.shutdown().await;
        })
    });
    outcome.expect("the client in namespace b failed (see its panic above)");
}
