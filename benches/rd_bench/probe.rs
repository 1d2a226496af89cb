//! One-at-a-time requests beside the load: the checks at each checkpoint, the full Block2
//! retrieval with its consistency check, and the restart probe.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use rand::Rng;
use serde_json::{json, Value};

use crate::load::code_str;
use crate::ports::{fresh_port, MIDS_PER_SOCKET};
use crate::workload::{block2_value, get_request, CODE_CONTENT};

pub struct Probe {
    pub sock: StdUdpSocket,
    pub mid: u16,
    pub sent: u32,
    pub target: SocketAddr,
}

impl Probe {
    pub fn new(target: SocketAddr) -> std::io::Result<Probe> {
        let local = if target.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let sock = fresh_port(|| {
            let s = StdUdpSocket::bind(local)?;
            let port = s.local_addr()?.port();
            Ok((s, port))
        })?;
        sock.connect(target)?;
        Ok(Probe {
            sock,
            mid: rand::thread_rng().gen(),
            sent: 0,
            target,
        })
    }

    /// One request with up to `attempts` transmissions `timeout` apart; the parsed answer.
    pub fn request(
        &mut self,
        mut bytes: Vec<u8>,
        timeout: Duration,
        attempts: u32,
    ) -> Option<Packet> {
        if self.sent >= MIDS_PER_SOCKET {
            *self = Probe::new(self.target).ok()?;
        }
        self.sent += 1;
        self.mid = self.mid.wrapping_add(1);
        let token: u64 = rand::thread_rng().gen();
        bytes[2..4].copy_from_slice(&self.mid.to_be_bytes());
        bytes[4..12].copy_from_slice(&token.to_be_bytes());
        self.sock.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = vec![0u8; 2048];
        for _ in 0..attempts {
            self.sock.send(&bytes).ok()?;
            let until = Instant::now() + timeout;
            while Instant::now() < until {
                let Ok(n) = self.sock.recv(&mut buf) else {
                    break;
                };
                let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if p.header.code == MessageClass::Empty {
                    continue; // empty ACK; the answer follows
                }
                if p.header.get_type() == MessageType::Confirmable {
                    let ack = [0x60, 0, buf[2], buf[3]];
                    let _ = self.sock.send(&ack);
                }
                if p.get_token() == token.to_be_bytes() {
                    return Some(p);
                }
            }
        }
        None
    }
}

pub fn code_u8(p: &Packet) -> u8 {
    u8::from(p.header.code)
}

/// Links of a link-format document, split at top-level commas (quotes respected).
pub fn split_links(doc: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quote, mut in_uri) = (0, false, false);
    for (i, c) in doc.char_indices() {
        match c {
            '"' if !in_uri => in_quote = !in_quote,
            '<' if !in_quote => in_uri = true,
            '>' if !in_quote => in_uri = false,
            ',' if !in_quote && !in_uri => {
                out.push(&doc[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < doc.len() {
        out.push(&doc[start..]);
    }
    out
}

pub fn href(link: &str) -> Option<&str> {
    let l = link.trim_start();
    l.strip_prefix('<')?.split_once('>').map(|(h, _)| h)
}

/// Port of an absolute `coap://host:port/...` href.
pub fn href_port(h: &str) -> Option<u16> {
    let rest = h.strip_prefix("coap://")?;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// Sequential Block2 retrieval of `target` (szx 6), checked against the registered bases.
/// `want` maps each registrant's base port to its number of endpoints (exact check); without
/// it (the RD changes while the transfer runs) only the total is checked against `expected`.
pub fn full_block2(
    target_addr: SocketAddr,
    target: &str,
    want: Option<&HashMap<u16, u64>>,
    expected: u64,
    limit: Duration,
) -> Value {
    let Ok(mut probe) = Probe::new(target_addr) else {
        return json!({"error": "socket"});
    };
    let start = Instant::now();
    let mut body = Vec::new();
    let mut num = 0u32;
    let mut etags = std::collections::BTreeSet::new();
    let mut complete = false;
    let mut error = None;
    while start.elapsed() < limit && num < 1_000_000 {
        let req = get_request(target, &[(CoapOption::Block2, block2_value(num, 6))]);
        // Generous: block 0 renders the whole result, behind any backlog of earlier phases.
        let Some(p) = probe.request(req, Duration::from_secs(2), 5) else {
            error = Some(format!("timeout at block {num}"));
            break;
        };
        if code_u8(&p) != CODE_CONTENT {
            error = Some(format!("{} at block {num}", code_str(code_u8(&p))));
            break;
        }
        if let Some(e) = p.get_first_option(CoapOption::ETag) {
            etags.insert(e.clone());
        }
        body.extend_from_slice(&p.payload);
        let Some(b2) = p.get_first_option(CoapOption::Block2) else {
            complete = true;
            break;
        };
        let v = b2.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
        if v >> 4 != num || v & 7 != 6 {
            error = Some(format!(
                "asked block {num} szx 6, got block {} szx {}",
                v >> 4,
                v & 7
            ));
            break;
        }
        num += 1;
        if v & 8 == 0 {
            complete = true;
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&body);
    let links = split_links(&text);
    let mut got: HashMap<u16, u64> = HashMap::new();
    let mut unexpected = 0u64;
    for l in &links {
        match href(l)
            .filter(|h| h.ends_with("/sensors/temp"))
            .and_then(href_port)
        {
            Some(port) => *got.entry(port).or_insert(0) += 1,
            None => unexpected += 1,
        }
    }
    let (mut missing, mut duplicated) = (0u64, 0u64);
    match want {
        Some(want) => {
            for (port, w) in want {
                let g = got.get(port).copied().unwrap_or(0);
                missing += w.saturating_sub(g);
                duplicated += g.saturating_sub(*w);
            }
            for (port, g) in &got {
                if !want.contains_key(port) {
                    duplicated += g;
                }
            }
        }
        None => {
            let n: u64 = got.values().sum();
            missing = expected.saturating_sub(n);
            duplicated = n.saturating_sub(expected);
        }
    }
    json!({
        "blocks": num, "bytes": body.len(), "seconds": (elapsed * 1000.0).round() / 1000.0,
        "links": links.len(), "expected_links": expected, "exact_check": want.is_some(), "missing": missing,
        "duplicated": duplicated, "unexpected_links": unexpected, "distinct_etags": etags.len(),
        "complete": complete, "error": error,
        "consistent": complete && missing == 0 && duplicated == 0 && unexpected == 0 && etags.len() <= 1,
    })
}

/// One GET; the payload of a 2.05 or None.
pub fn get_once(addr: SocketAddr, target: &str) -> Option<(u8, String)> {
    let mut probe = Probe::new(addr).ok()?;
    let p = probe.request(get_request(target, &[]), Duration::from_secs(2), 3)?;
    Some((
        code_u8(&p),
        String::from_utf8_lossy(&p.payload).into_owned(),
    ))
}
