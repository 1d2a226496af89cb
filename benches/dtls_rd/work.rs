//! The requests of each phase (coap-lite encodes them once; the engine patches MID and token)
//! and how an answer is judged: the preloaded directory's registrations, each lane's own
//! registration, endpoint lookups of random preloaded names, and updates of each lane's own
//! registration (RFC 9176 §5.3.1: an empty POST to its location, 2.04 Changed).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};

use crate::engine::Work;

pub const CREATED: u8 = 0x41; // 2.01
pub const CHANGED: u8 = 0x44; // 2.04
pub const CONTENT: u8 = 0x45; // 2.05
const LINK_FORMAT: u8 = 40;
const LINKS: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
</sensors/hum>;rt=\"humidity\";if=\"sensor\",</actuators/led>;rt=\"light\";if=\"actuator\"";

/// A CON request with a zeroed MID and 4-byte token.
fn encode(code: u8, path: &[&str], query: &[String], payload: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::from(code);
    p.set_token(vec![0; 4]);
    for seg in path {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    if !payload.is_empty() {
        p.add_option(CoapOption::ContentFormat, vec![LINK_FORMAT]);
        p.payload = payload.to_vec();
    }
    // An unencodable request is a bug of this file; an empty one is refused by the engine.
    p.to_bytes().unwrap_or_default()
}

fn register(ep: &str, lt: u32) -> Vec<u8> {
    encode(
        2,
        &["rd"],
        &[format!("ep={ep}"), format!("lt={lt}")],
        LINKS.as_bytes(),
    )
}

/// The Location-Path of a 2.01, as segments.
fn location(msg: &[u8]) -> Option<Vec<String>> {
    let p = Packet::from_bytes(msg).ok()?;
    let segs = p.get_option(CoapOption::LocationPath)?;
    Some(
        segs.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// `dev-0` … `dev-<n-1>`, from whichever lane has room.
pub struct Preload {
    pub n: u64,
    pub next: u64,
    pub lt: u32,
}

impl Work for Preload {
    fn next(&mut self, _l: usize) -> Option<Vec<u8>> {
        if self.next >= self.n {
            return None;
        }
        self.next += 1;
        Some(register(&format!("dev-{}", self.next - 1), self.lt))
    }

    fn judge(&mut self, _l: usize, code: u8, _msg: &[u8]) -> bool {
        code == CREATED
    }
}

/// Lane l registers `<prefix><l>` once and keeps its location.
pub struct OwnRegistration {
    pub prefix: &'static str,
    pub lt: u32,
    pub sent: Vec<bool>,
    pub locations: Vec<Option<Vec<String>>>,
}

impl OwnRegistration {
    pub fn new(prefix: &'static str, lanes: usize, lt: u32) -> OwnRegistration {
        OwnRegistration {
            prefix,
            lt,
            sent: vec![false; lanes],
            locations: vec![None; lanes],
        }
    }
}

impl Work for OwnRegistration {
    fn next(&mut self, l: usize) -> Option<Vec<u8>> {
        if std::mem::replace(self.sent.get_mut(l)?, true) {
            return None;
        }
        Some(register(&format!("{}{l}", self.prefix), self.lt))
    }

    fn judge(&mut self, l: usize, code: u8, msg: &[u8]) -> bool {
        if code != CREATED {
            return false;
        }
        let Some(loc) = location(msg) else {
            return false;
        };
        if let Some(slot) = self.locations.get_mut(l) {
            *slot = Some(loc);
        }
        true
    }
}

/// `GET /rd-lookup/ep?ep=dev-<random>` from a pool of pre-encoded requests; a 2.05 with a
/// link naming an endpoint counts.
pub struct Lookups {
    pool: Vec<Vec<u8>>,
    state: u64,
}

impl Lookups {
    pub fn new(n: u64, pool: usize) -> Lookups {
        let pool = (0..pool)
            .map(|_| {
                let i = rand::random::<u64>() % n.max(1);
                encode(1, &["rd-lookup", "ep"], &[format!("ep=dev-{i}")], b"")
            })
            .collect();
        Lookups {
            pool,
            state: rand::random::<u64>() | 1,
        }
    }
}

impl Work for Lookups {
    fn next(&mut self, _l: usize) -> Option<Vec<u8>> {
        // xorshift64: a cheap pick, the same cost for both modes.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let i = (self.state % self.pool.len().max(1) as u64) as usize;
        self.pool.get(i).cloned()
    }

    fn judge(&mut self, _l: usize, code: u8, msg: &[u8]) -> bool {
        // The name goes out bare or quoted, as link_writer decides.
        code == CONTENT
            && msg
                .windows(8)
                .any(|w| w.starts_with(b"ep=dev-") || w == b"ep=\"dev-")
    }
}

/// An empty POST to lane l's own registration, over and over.
pub struct Updates {
    requests: Vec<Vec<u8>>,
}

impl Updates {
    pub fn new(locations: &[Option<Vec<String>>]) -> Updates {
        Updates {
            requests: locations
                .iter()
                .map(|loc| match loc {
                    Some(segs) => {
                        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
                        encode(2, &segs, &[], b"")
                    }
                    None => Vec::new(),
                })
                .collect(),
        }
    }
}

impl Work for Updates {
    fn next(&mut self, l: usize) -> Option<Vec<u8>> {
        self.requests.get(l).filter(|r| !r.is_empty()).cloned()
    }

    fn judge(&mut self, _l: usize, code: u8, _msg: &[u8]) -> bool {
        code == CHANGED
    }
}
