//! A small synchronous CoAP client (RFC 7252) for the RD integration tests, written against the
//! wire format only (coap-lite 0.13 over `std::net::UdpSocket`), plus a tolerant RFC 6690
//! link-format reader and helpers shared by the `tests/rd_*.rs` files.
//!
//! It is deliberately independent of the gateway's own code: the tests judge the RD from the
//! outside. Requests are CON with sequential Message IDs and a random token, retransmitted a bounded number
//! of times; the response is matched by token, piggybacked or separate (an empty ACK first, then
//! a CON that we acknowledge). `get_all_blocks` follows Block2 (RFC 7959) to the last block.
//! Set `PEER_DEBUG=1` to trace every message the client receives.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use rand::Rng;

pub const CT_TEXT_PLAIN: u16 = 0;
pub const CT_LINK_FORMAT: u16 = 40;
pub const CT_JSON: u16 = 50;

/// First wait for an ACK; doubled on each retransmission (RFC 7252 §4.2, shortened for tests).
const ACK_TIMEOUT: Duration = Duration::from_millis(800);
const MAX_RETRANSMIT: u32 = 3;
/// Upper bound for one exchange, including a separate response.
const EXCHANGE_BUDGET: Duration = Duration::from_secs(12);

// ---------------------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Req {
    pub method: RequestType,
    pub path: Vec<Vec<u8>>,
    pub query: Vec<Vec<u8>>,
    pub content_format: Option<u16>,
    pub accept: Option<u16>,
    pub observe: Option<u32>,
    /// (block number, SZX); SZX 6 = 1024 bytes.
    pub block2: Option<(u32, u8)>,
    pub payload: Vec<u8>,
    pub confirmable: bool,
    pub etag: Option<Vec<u8>>,
}

impl Req {
    /// `uri` is a path with an optional query, e.g. `/rd?ep=node1&lt=60`. Query items are sent
    /// as they are written (no percent-decoding), one Uri-Query option per `&`-separated item.
    pub fn new(method: RequestType, uri: &str) -> Req {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        // RFC 7252 §6.4: "/" is no Uri-Path at all; otherwise every segment, empty ones too.
        let path = path.strip_prefix('/').unwrap_or(path);
        let path: Vec<Vec<u8>> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').map(|s| s.as_bytes().to_vec()).collect()
        };
        let query = query
            .map(|q| {
                q.split('&')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.as_bytes().to_vec())
                    .collect()
            })
            .unwrap_or_default();
        Req {
            method,
            path,
            query,
            content_format: None,
            accept: None,
            observe: None,
            block2: None,
            payload: Vec::new(),
            confirmable: true,
            etag: None,
        }
    }
    pub fn get(uri: &str) -> Req {
        Req::new(RequestType::Get, uri)
    }
    pub fn post(uri: &str) -> Req {
        Req::new(RequestType::Post, uri)
    }
    pub fn put(uri: &str) -> Req {
        Req::new(RequestType::Put, uri)
    }
    pub fn delete(uri: &str) -> Req {
        Req::new(RequestType::Delete, uri)
    }
    pub fn ct(mut self, cf: u16) -> Req {
        self.content_format = Some(cf);
        self
    }
    pub fn accept(mut self, cf: u16) -> Req {
        self.accept = Some(cf);
        self
    }
    pub fn observe(mut self, v: u32) -> Req {
        self.observe = Some(v);
        self
    }
    /// An ETag option: "I hold this representation" (RFC 7252 §5.10.6).
    pub fn etag(mut self, etag: Vec<u8>) -> Req {
        self.etag = Some(etag);
        self
    }
    pub fn block2(mut self, num: u32, szx: u8) -> Req {
        self.block2 = Some((num, szx));
        self
    }
    pub fn payload(mut self, p: impl Into<Vec<u8>>) -> Req {
        self.payload = p.into();
        self
    }
    /// A link-format body (Content-Format 40).
    pub fn links(self, body: &str) -> Req {
        self.ct(CT_LINK_FORMAT).payload(body.as_bytes().to_vec())
    }
    /// An extra Uri-Query item given as raw bytes (for non-UTF-8 or odd input).
    pub fn query_raw(mut self, item: Vec<u8>) -> Req {
        self.query.push(item);
        self
    }

    fn to_packet(&self, mid: u16, token: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.set_type(if self.confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        p.header.code = MessageClass::Request(self.method);
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        if let Some(e) = &self.etag {
            p.add_option(CoapOption::ETag, e.clone());
        }
        if let Some(o) = self.observe {
            p.add_option(CoapOption::Observe, encode_uint(o));
        }
        for seg in &self.path {
            p.add_option(CoapOption::UriPath, seg.clone());
        }
        if let Some(cf) = self.content_format {
            p.add_option(CoapOption::ContentFormat, encode_uint(cf as u32));
        }
        for q in &self.query {
            p.add_option(CoapOption::UriQuery, q.clone());
        }
        if let Some(a) = self.accept {
            p.add_option(CoapOption::Accept, encode_uint(a as u32));
        }
        if let Some((num, szx)) = self.block2 {
            p.add_option(
                CoapOption::Block2,
                encode_uint((num << 4) | (szx as u32 & 7)),
            );
        }
        p.payload = self.payload.clone();
        p
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub num: u32,
    pub more: bool,
    pub szx: u8,
}

impl Block {
    pub fn size(&self) -> usize {
        16usize << self.szx
    }
}

#[derive(Clone, Debug)]
pub struct Resp {
    /// "2.05"-style.
    pub code: String,
    pub mtype: MessageType,
    pub token: Vec<u8>,
    pub location_path: Vec<String>,
    pub location_query: Vec<String>,
    pub content_format: Option<u16>,
    pub etag: Option<Vec<u8>>,
    pub max_age: Option<u32>,
    pub observe: Option<u32>,
    pub block2: Option<Block>,
    pub payload: Vec<u8>,
}

impl Resp {
    pub fn from_packet(p: &Packet) -> Resp {
        let first = |o: CoapOption| p.get_first_option(o).cloned();
        let all = |o: CoapOption| -> Vec<String> {
            p.get_option(o)
                .map(|l| {
                    l.iter()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        Resp {
            code: p.header.code.to_string(),
            mtype: p.header.get_type(),
            token: p.get_token().to_vec(),
            location_path: all(CoapOption::LocationPath),
            location_query: all(CoapOption::LocationQuery),
            content_format: first(CoapOption::ContentFormat).map(|v| decode_uint(&v) as u16),
            etag: first(CoapOption::ETag),
            max_age: first(CoapOption::MaxAge).map(|v| decode_uint(&v)),
            observe: first(CoapOption::Observe).map(|v| decode_uint(&v)),
            block2: first(CoapOption::Block2).map(|v| {
                let n = decode_uint(&v);
                Block {
                    num: n >> 4,
                    more: n & 8 != 0,
                    szx: (n & 7) as u8,
                }
            }),
            payload: p.payload.clone(),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The registration resource as a path-absolute URI, e.g. `/reg/7`.
    pub fn location(&self) -> String {
        format!("/{}", self.location_path.join("/"))
    }

    pub fn links(&self) -> Vec<Link> {
        parse_links(&self.text())
            .unwrap_or_else(|e| panic!("unparsable link-format from RD ({e}): {:?}", self.text()))
    }
}

pub fn encode_uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

pub fn decode_uint(b: &[u8]) -> u32 {
    b.iter().take(4).fold(0u32, |acc, x| (acc << 8) | *x as u32)
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// One client socket talking to one server address.
pub struct Peer {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    /// Message IDs are allocated sequentially from a random start (RFC 7252 §4.4): a random ID
    /// per request collides within a test often enough that the RD's deduplication answers the
    /// new request with the old exchange's cached response.
    next_mid: std::sync::atomic::AtomicU16,
    /// Upper bound for one exchange; `EXCHANGE_BUDGET` unless `with_budget` shortened it (a
    /// load that kills the server must not wait 12 s per in-flight request).
    budget: Duration,
}

impl Peer {
    /// A fresh socket on the loopback address of the server's family, ephemeral port.
    pub fn new(server: SocketAddr) -> Peer {
        let bind = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(bind).expect("bind client socket");
        Peer {
            sock,
            server,
            next_mid: std::sync::atomic::AtomicU16::new(rand::random()),
            budget: EXCHANGE_BUDGET,
        }
    }

    pub fn with_socket(sock: UdpSocket, server: SocketAddr) -> Peer {
        Peer {
            sock,
            server,
            next_mid: std::sync::atomic::AtomicU16::new(rand::random()),
            budget: EXCHANGE_BUDGET,
        }
    }

    /// The same peer with a shorter exchange budget (retransmissions still follow ACK_TIMEOUT).
    pub fn with_budget(mut self, budget: Duration) -> Peer {
        self.budget = budget;
        self
    }

    /// Take the next Message ID of this peer's sequence, for a message the test builds by
    /// hand on the same socket: a MID reused toward the same endpoint within
    /// EXCHANGE_LIFETIME is a duplicate (RFC 7252 §4.4), and the gateway drops it as one.
    pub fn take_mid(&self) -> u16 {
        self.next_mid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    /// The base the RD derives from this socket when `base` is not given (RFC 9176 §5).
    pub fn derived_base(&self) -> String {
        base_of(self.local_addr())
    }

    /// Send a request and wait for its response; panics on timeout (this is a test client).
    pub fn request(&self, req: &Req) -> Resp {
        self.try_request(req).unwrap_or_else(|e| {
            panic!(
                "no response from RD {} to {:?} {}: {e}",
                self.server,
                req.method,
                show_uri(req)
            )
        })
    }

    pub fn try_request(&self, req: &Req) -> io::Result<Resp> {
        let mut rng = rand::thread_rng();
        let mid = self
            .next_mid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token: Vec<u8> = (0..8).map(|_| rng.gen::<u8>()).collect();
        let packet = req.to_packet(mid, &token);
        self.exchange(packet)
    }

    pub fn get(&self, uri: &str) -> Resp {
        self.request(&Req::get(uri))
    }
    pub fn delete(&self, uri: &str) -> Resp {
        self.request(&Req::delete(uri))
    }
    /// POST with a link-format payload (empty payload: no Content-Format option).
    pub fn post_links(&self, uri: &str, links: &str) -> Resp {
        if links.is_empty() {
            self.request(&Req::post(uri))
        } else {
            self.request(&Req::post(uri).links(links))
        }
    }

    /// GET following Block2 to the last block; the returned response carries the concatenated
    /// payload and the options of the last block. Panics on a gap, a repeated block or a
    /// Content-Format change between blocks. Bounded to 1000 blocks.
    pub fn get_all_blocks(&self, uri: &str, accept: Option<u16>) -> Resp {
        let mut body = Vec::new();
        let mut num = 0u32;
        let mut szx = 6u8;
        let mut first_cf = None;
        let mut first_etag: Option<Option<Vec<u8>>> = None;
        for _ in 0..1000 {
            let mut req = Req::get(uri);
            if let Some(a) = accept {
                req = req.accept(a);
            }
            if num > 0 {
                req = req.block2(num, szx);
            }
            let resp = self.request(&req);
            if !resp.code.starts_with("2.") {
                assert_eq!(
                    num, 0,
                    "error {} in the middle of a Block2 transfer",
                    resp.code
                );
                return resp;
            }
            match &first_etag {
                None => first_etag = Some(resp.etag.clone()),
                Some(e) => assert_eq!(
                    e, &resp.etag,
                    "ETag changed during a Block2 transfer (representation changed)"
                ),
            }
            if num == 0 {
                first_cf = resp.content_format;
            } else {
                assert_eq!(
                    first_cf, resp.content_format,
                    "Content-Format changed mid-transfer"
                );
            }
            match &resp.block2 {
                None => {
                    assert_eq!(num, 0, "block {num} asked but the answer has no Block2");
                    return resp;
                }
                Some(b) => {
                    // A server may answer a bigger request with smaller blocks (RFC 7959 §2.4);
                    // the byte offset is what must line up.
                    assert_eq!(
                        b.num as usize * b.size(),
                        num as usize * (16usize << szx),
                        "Block2 answer out of order: asked {num}/szx{szx}, got {b:?}"
                    );
                    if b.more {
                        assert_eq!(resp.payload.len(), b.size(), "non-last block is short");
                    }
                    body.extend_from_slice(&resp.payload);
                    if !b.more {
                        let mut last = resp.clone();
                        last.payload = body;
                        return last;
                    }
                    szx = b.szx;
                    num = b.num + 1;
                }
            }
        }
        panic!("more than 1000 blocks from {uri}");
    }

    /// Register an Observe (RFC 7641) on `uri`; returns the token and the first response.
    pub fn observe(&self, uri: &str) -> (Vec<u8>, Resp) {
        let resp = self.request(&Req::get(uri).observe(0));
        (resp.token.clone(), resp)
    }

    /// Wait up to `budget` for a notification carrying `token`; ACKs a CON one.
    pub fn wait_notification(&self, token: &[u8], budget: Duration) -> Option<Resp> {
        let deadline = Instant::now() + budget;
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.sock
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .ok()?;
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if is_timeout(&e) => continue,
                Err(_) => return None,
            };
            if from.port() != self.server.port() {
                continue;
            }
            let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if !matches!(p.header.code, MessageClass::Response(_)) || p.get_token() != token {
                continue;
            }
            if p.header.get_type() == MessageType::Confirmable {
                self.send_empty(MessageType::Acknowledgement, p.header.message_id);
            }
            return Some(Resp::from_packet(&p));
        }
    }

    fn send_empty(&self, t: MessageType, mid: u16) {
        let mut ack = Packet::new();
        ack.header.set_type(t);
        ack.header.code = MessageClass::Empty;
        ack.header.message_id = mid;
        if let Ok(b) = ack.to_bytes() {
            let _ = self.sock.send_to(&b, self.server);
        }
    }

    fn exchange(&self, packet: Packet) -> io::Result<Resp> {
        let mid = packet.header.message_id;
        let token = packet.get_token().to_vec();
        // Up to a UDP datagram, not coap-lite's 1,280-byte default: a test may send what a
        // device on loopback can (the gateway takes datagrams of up to 8 KiB whole).
        let bytes = packet
            .to_bytes_with_limit(65_507)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let started = Instant::now();
        let deadline = started + self.budget;
        let mut timeout = ACK_TIMEOUT;
        let mut retransmits = 0;
        let mut acked = !confirmable;
        self.sock.send_to(&bytes, self.server)?;
        let mut retransmit_at = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "exchange budget spent",
                ));
            }
            if !acked && now >= retransmit_at {
                if retransmits >= MAX_RETRANSMIT {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no ACK after {retransmits} retransmissions"),
                    ));
                }
                retransmits += 1;
                timeout *= 2;
                self.sock.send_to(&bytes, self.server)?;
                retransmit_at = now + timeout;
            }
            let until = if acked {
                deadline
            } else {
                retransmit_at.min(deadline)
            };
            let wait = until.saturating_duration_since(Instant::now());
            self.sock
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e),
            };
            if from.port() != self.server.port() {
                continue;
            }
            let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                if std::env::var_os("PEER_DEBUG").is_some() {
                    eprintln!("undecodable {:02x?}", &buf[..n]);
                }
                continue;
            };
            if std::env::var_os("PEER_DEBUG").is_some() {
                eprintln!(
                    "got {:?} {} mid={} tok={:02x?}",
                    p.header.get_type(),
                    p.header.code,
                    p.header.message_id,
                    p.get_token()
                );
            }
            let t = p.header.get_type();
            let same_mid = p.header.message_id == mid;
            match p.header.code {
                MessageClass::Empty => {
                    if same_mid && t == MessageType::Acknowledgement {
                        acked = true; // a separate response follows
                    } else if t == MessageType::Confirmable {
                        // A CoAP ping (e.g. from the Pinger): answer like a device would.
                        self.send_empty(MessageType::Reset, p.header.message_id);
                    } else if same_mid && t == MessageType::Reset {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "RD answered with RST",
                        ));
                    }
                }
                MessageClass::Response(_) if p.get_token() == token => match t {
                    MessageType::Acknowledgement if same_mid => return Ok(Resp::from_packet(&p)),
                    MessageType::Confirmable => {
                        self.send_empty(MessageType::Acknowledgement, p.header.message_id);
                        return Ok(Resp::from_packet(&p));
                    }
                    MessageType::NonConfirmable => return Ok(Resp::from_packet(&p)),
                    _ => {}
                },
                // A stale CON response (an old observation or a duplicate): reject it so the
                // RD stops sending it (RFC 7252 §4.2, RFC 7641 §3.6).
                MessageClass::Response(_) if t == MessageType::Confirmable => {
                    self.send_empty(MessageType::Reset, p.header.message_id);
                }
                _ => {}
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn show_uri(req: &Req) -> String {
    let path: Vec<String> = req
        .path
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let query: Vec<String> = req
        .query
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    format!("/{}?{}", path.join("/"), query.join("&"))
}

/// `coap://127.0.0.1:PORT` or `coap://[::1]:PORT` (SocketAddr's Display brackets IPv6).
pub fn base_of(addr: SocketAddr) -> String {
    format!("coap://{addr}")
}

/// Whether this machine can bind a UDP socket on ::1.
pub fn can_bind_v6() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------------
// RD helpers (assertions included, for short tests)
// ---------------------------------------------------------------------------------------------

/// POST /rd with `query` (without the leading `?`) and a link-format body; asserts 2.01 with a
/// Location-Path and no Location-Query (RFC 9176 §5) and returns the location.
pub fn register(peer: &Peer, query: &str, links: &str) -> String {
    let resp = peer.post_links(&format!("/rd?{query}"), links);
    assert_eq!(
        resp.code,
        "2.01",
        "registration {query:?} failed: {}",
        resp.text()
    );
    assert!(
        !resp.location_path.is_empty(),
        "2.01 without Location-Path (RFC 9176 §5 MUST)"
    );
    assert!(
        resp.location_query.is_empty(),
        "RFC 9176 §5: no Location-Query allowed, got {:?}",
        resp.location_query
    );
    resp.location()
}

/// GET a lookup (following Block2), assert 2.05 and link-format, return the parsed links.
pub fn lookup(peer: &Peer, uri: &str) -> Vec<Link> {
    let resp = peer.get_all_blocks(uri, None);
    assert_eq!(resp.code, "2.05", "lookup {uri} failed: {}", resp.text());
    if !resp.payload.is_empty() {
        assert_eq!(
            resp.content_format,
            Some(CT_LINK_FORMAT),
            "lookup {uri} answered without ct=40"
        );
    }
    resp.links()
}

/// Poll a lookup every 200 ms until `done` holds or `budget` runs out; the last answer.
pub fn lookup_until(
    peer: &Peer,
    uri: &str,
    budget: std::time::Duration,
    done: impl Fn(&[Link]) -> bool,
) -> Vec<Link> {
    let deadline = std::time::Instant::now() + budget;
    loop {
        let links = lookup(peer, uri);
        if done(&links) || std::time::Instant::now() > deadline {
            return links;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The endpoint-lookup link of `ep`, if listed.
pub fn ep_link(peer: &Peer, ep: &str) -> Option<Link> {
    let links = lookup(peer, &format!("/rd-lookup/ep?ep={ep}"));
    assert!(links.len() <= 1, "ep={ep} listed more than once: {links:?}");
    links.into_iter().next()
}

/// Targets of a resource lookup, sorted.
pub fn res_targets(peer: &Peer, uri: &str) -> Vec<String> {
    let mut t: Vec<String> = lookup(peer, uri).into_iter().map(|l| l.target).collect();
    t.sort();
    t
}

// ---------------------------------------------------------------------------------------------
// Link format (RFC 6690 §2), read tolerantly
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    /// In document order; `None` for a valueless parameter such as `obs`.
    pub attrs: Vec<(String, Option<String>)>,
}

impl Link {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
    /// All values of `name` (a repeated parameter).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.attrs
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
    pub fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n == name)
    }
    /// Order-independent identity: target plus the set of (name, value).
    pub fn key(&self) -> LinkKey {
        (self.target.clone(), self.attrs.iter().cloned().collect())
    }
}

/// Build a link for set comparisons: `link("<t>", &[("rt", "x")])`.
pub fn link(target: &str, attrs: &[(&str, &str)]) -> Link {
    Link {
        target: target.to_string(),
        attrs: attrs
            .iter()
            .map(|(n, v)| (n.to_string(), Some(v.to_string())))
            .collect(),
    }
}

/// A link as an order-independent value: target plus the set of its (name, value) attributes.
pub type LinkKey = (String, BTreeSet<(String, Option<String>)>);

pub fn link_set(links: &[Link]) -> BTreeSet<LinkKey> {
    links.iter().map(Link::key).collect()
}

/// Parse a link-format document. Quoted values may contain `,` `;` and `\"`; whitespace
/// (including line breaks) between links and parameters is skipped.
pub fn parse_links(s: &str) -> Result<Vec<Link>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if i == b.len() {
        return Ok(out);
    }
    loop {
        skip_ws(&mut i);
        if i >= b.len() || b[i] != '<' {
            return Err(format!("expected '<' at {i}"));
        }
        i += 1;
        let start = i;
        while i < b.len() && b[i] != '>' {
            i += 1;
        }
        if i >= b.len() {
            return Err("unterminated '<'".into());
        }
        let target: String = b[start..i].iter().collect();
        i += 1;
        let mut attrs = Vec::new();
        loop {
            skip_ws(&mut i);
            if i >= b.len() || b[i] == ',' {
                break;
            }
            if b[i] != ';' {
                return Err(format!("expected ';' or ',' at {i}, found {:?}", b[i]));
            }
            i += 1;
            skip_ws(&mut i);
            let ns = i;
            while i < b.len() && !matches!(b[i], '=' | ';' | ',') && !b[i].is_whitespace() {
                i += 1;
            }
            let name: String = b[ns..i].iter().collect();
            if name.is_empty() {
                return Err(format!("empty parameter name at {ns}"));
            }
            skip_ws(&mut i);
            if i < b.len() && b[i] == '=' {
                i += 1;
                skip_ws(&mut i);
                if i < b.len() && b[i] == '"' {
                    i += 1;
                    let mut v = String::new();
                    loop {
                        if i >= b.len() {
                            return Err("unterminated quoted string".into());
                        }
                        match b[i] {
                            '\\' if i + 1 < b.len() => {
                                v.push(b[i + 1]);
                                i += 2;
                            }
                            '"' => {
                                i += 1;
                                break;
                            }
                            c => {
                                v.push(c);
                                i += 1;
                            }
                        }
                    }
                    attrs.push((name, Some(v)));
                } else {
                    let vs = i;
                    while i < b.len() && !matches!(b[i], ';' | ',') {
                        i += 1;
                    }
                    let v: String = b[vs..i].iter().collect();
                    attrs.push((name, Some(v.trim().to_string())));
                }
            } else {
                attrs.push((name, None));
            }
        }
        out.push(Link { target, attrs });
        skip_ws(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        // b[i] == ','
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// A device for simple registration (RFC 9176 §5.1)
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct SimpleRegOutcome {
    /// The device's address: the RD must derive the base from it.
    pub device: SocketAddr,
    /// The final (non-empty) response to the POST, if one came.
    pub response: Option<Resp>,
    /// How many GET /.well-known/core requests the RD sent us.
    pub wkc_gets: usize,
    /// Whether the first GET /.well-known/core arrived before the final response.
    pub get_before_response: bool,
    /// Accept option values the RD's GETs carried.
    pub accepts: Vec<Option<u16>>,
}

/// Play a device on one socket: send `POST uri` (empty payload) to the RD, answer the RD's
/// `GET /.well-known/core` with `wkc_links` (ct=40; `None`: with 4.04), acknowledge a separate response, and
/// return when both happened or `budget` ran out. The same socket does both because the RD
/// fetches from the request's source address.
pub fn simple_register(
    rd: SocketAddr,
    uri: &str,
    wkc_links: Option<&str>,
    budget: Duration,
) -> SimpleRegOutcome {
    let bind = if rd.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    simple_register_at(bind, rd, uri, wkc_links, budget)
}

/// [`simple_register`] from a device socket bound to `bind` (e.g. "127.0.0.40:0").
pub fn simple_register_at(
    bind: &str,
    rd: SocketAddr,
    uri: &str,
    wkc_links: Option<&str>,
    budget: Duration,
) -> SimpleRegOutcome {
    let sock = UdpSocket::bind(bind).expect("bind device socket");
    let device = sock.local_addr().expect("device addr");
    let mut rng = rand::thread_rng();
    let mid: u16 = rng.gen();
    let token: Vec<u8> = (0..4).map(|_| rng.gen::<u8>()).collect();
    let post = Req::post(uri).to_packet(mid, &token);
    let post_bytes = post.to_bytes().expect("encode POST");
    sock.send_to(&post_bytes, rd).expect("send POST");
    let started = Instant::now();
    let deadline = started + budget;
    let mut acked = false;
    let mut retransmit_at = started + Duration::from_secs(1);
    let mut retransmits = 0;
    let mut out = SimpleRegOutcome {
        device,
        response: None,
        wkc_gets: 0,
        get_before_response: false,
        accepts: Vec::new(),
    };
    // After the final response, give a late (draft-11 style) GET a little time to arrive.
    let mut linger_until: Option<Instant> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline || linger_until.is_some_and(|l| now >= l) {
            return out;
        }
        if !acked && out.response.is_none() && now >= retransmit_at && retransmits < MAX_RETRANSMIT
        {
            retransmits += 1;
            let _ = sock.send_to(&post_bytes, rd);
            retransmit_at = now + Duration::from_secs(1 << retransmits);
        }
        let until = linger_until.unwrap_or(deadline).min(deadline);
        let wait = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(200))
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait)).expect("set timeout");
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => panic!("device socket: {e}"),
        };
        let Ok(p) = Packet::from_bytes(&buf[..n]) else {
            continue;
        };
        let t = p.header.get_type();
        match p.header.code {
            MessageClass::Request(RequestType::Get) => {
                let path: Vec<String> = p
                    .get_option(CoapOption::UriPath)
                    .map(|l| {
                        l.iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let mut reply = Packet::new();
                reply.header.set_type(if t == MessageType::Confirmable {
                    MessageType::Acknowledgement
                } else {
                    MessageType::NonConfirmable
                });
                reply.header.message_id = if t == MessageType::Confirmable {
                    p.header.message_id
                } else {
                    rng.gen()
                };
                reply.set_token(p.get_token().to_vec());
                if path == [".well-known", "core"] {
                    out.wkc_gets += 1;
                    out.accepts.push(
                        p.get_first_option(CoapOption::Accept)
                            .map(|v| decode_uint(v) as u16),
                    );
                    if out.response.is_none() {
                        out.get_before_response = true;
                    }
                    match wkc_links {
                        Some(links) => {
                            reply.header.set_code("2.05");
                            reply.add_option(
                                CoapOption::ContentFormat,
                                encode_uint(CT_LINK_FORMAT as u32),
                            );
                            reply.payload = links.as_bytes().to_vec();
                        }
                        None => reply.header.set_code("4.04"),
                    }
                } else {
                    reply.header.set_code("4.04");
                }
                if let Ok(bytes) = reply.to_bytes() {
                    let _ = sock.send_to(&bytes, from);
                }
                if out.response.is_some() {
                    linger_until = Some(Instant::now() + Duration::from_millis(300));
                }
            }
            MessageClass::Empty
                if p.header.message_id == mid && t == MessageType::Acknowledgement =>
            {
                acked = true;
            }
            MessageClass::Response(_) if p.get_token() == token.as_slice() => {
                if t == MessageType::Confirmable {
                    let mut ack = Packet::new();
                    ack.header.set_type(MessageType::Acknowledgement);
                    ack.header.message_id = p.header.message_id;
                    if let Ok(bytes) = ack.to_bytes() {
                        let _ = sock.send_to(&bytes, from);
                    }
                }
                if out.response.is_none() {
                    out.response = Some(Resp::from_packet(&p));
                    let extra = if out.wkc_gets == 0 { 3000 } else { 300 };
                    linger_until = Some(Instant::now() + Duration::from_millis(extra));
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Subprocesses with a bound
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Ran {
    /// `None` when the process was killed at the bound.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` to completion or kill it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Ran {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Ran {
        status,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    }
}
