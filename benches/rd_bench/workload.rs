//! What each phase of the RD benchmark sends and how it judges an answer: CoAP request
//! templates (a zeroed MID and token that the load lanes patch in place), the registrations
//! with their link payloads, the updates, and the directory of endpoints this run registered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};

pub const TOKEN_LEN: usize = 8;
const CONTENT_FORMAT_LINK: u16 = 40;

const PAYLOAD3: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
</sensors/hum>;rt=\"humidity\";if=\"sensor\",\
</actuators/led>;rt=\"light\";if=\"actuator\"";
const RARE_LINK: &str = ",</x>;rt=\"rare\"";

const CODE_CREATED: u8 = 0x41; // 2.01
const CODE_CHANGED: u8 = 0x44; // 2.04
pub const CODE_CONTENT: u8 = 0x45; // 2.05

/// Encode a CON request with a zeroed MID and an 8-byte zero token; lanes patch both in place.
pub fn encode_request(
    code: u8,
    path: &[&str],
    query: &[String],
    extra: &[(CoapOption, Vec<u8>)],
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::from(code);
    p.set_token(vec![0; TOKEN_LEN]);
    for seg in path {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    for (opt, value) in extra {
        p.add_option(*opt, value.clone());
    }
    p.payload = payload.to_vec();
    // Our own requests are far below any size limit: an encoding failure is a bug here.
    p.to_bytes_unlimited().expect("request encodes")
}

pub fn uint_bytes(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

pub fn block2_value(num: u32, szx: u8) -> Vec<u8> {
    uint_bytes((num << 4) | u32::from(szx))
}

pub fn split_target(target: &str) -> (Vec<&str>, Vec<String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs = path.split('/').filter(|s| !s.is_empty()).collect();
    let qs = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    (segs, qs)
}

pub fn get_request(target: &str, extra: &[(CoapOption, Vec<u8>)]) -> Vec<u8> {
    let (p, q) = split_target(target);
    encode_request(1, &p, &q, extra, b"")
}

/// What a phase sends and how it judges an answer.
pub trait Workload {
    fn request(&mut self, i: u64) -> Vec<u8>;
    /// `local_port` is the source port the request left from (the registrant's base).
    fn response(&mut self, i: u64, code: u8, msg: &[u8], local_port: u16) -> bool;
}

/// The same request every time; any answer with `want` counts.
pub struct Fixed {
    pub bytes: Vec<u8>,
    pub want: u8,
}

impl Workload for Fixed {
    fn request(&mut self, _i: u64) -> Vec<u8> {
        self.bytes.clone()
    }
    fn response(&mut self, _i: u64, code: u8, _msg: &[u8], _port: u16) -> bool {
        code == self.want
    }
}

/// The endpoints this run registered: where each one lives and which source port its base is.
#[derive(Default)]
pub struct Directory {
    pub locations: Vec<Option<Vec<String>>>,
    pub base_port: Vec<u16>,
    pub rare: Vec<bool>,
}

impl Directory {
    pub fn registered(&self) -> u64 {
        self.locations.iter().filter(|l| l.is_some()).count() as u64
    }

    /// Registered endpoints per base (source) port: what a resource lookup must list.
    pub fn base_histogram(&self) -> HashMap<u16, u64> {
        let mut want = HashMap::new();
        for (loc, port) in self.locations.iter().zip(&self.base_port) {
            if loc.is_some() {
                *want.entry(*port).or_insert(0) += 1;
            }
        }
        want
    }
}

pub struct Registrations {
    pub first: u64,
    pub lt: u32,
    pub dir: Rc<RefCell<Directory>>,
    pub distinct_links: bool,
}

impl Workload for Registrations {
    fn request(&mut self, i: u64) -> Vec<u8> {
        let ep = self.first + i;
        let query = vec![format!("ep=dev-{ep}"), format!("lt={}", self.lt)];
        let rare = self.dir.borrow().rare[ep as usize];
        let links = if self.distinct_links {
            format!(
                "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs;title=\"dev-{ep}\",\
                 </sensors/hum/{ep}>;rt=\"humidity\";if=\"sensor\",\
                 </actuators/led/{ep}>;rt=\"light\";if=\"actuator\""
            )
        } else {
            PAYLOAD3.to_string()
        };
        let payload = if rare {
            format!("{links}{RARE_LINK}")
        } else {
            links
        };
        encode_request(
            2,
            &["rd"],
            &query,
            &[(
                CoapOption::ContentFormat,
                uint_bytes(u32::from(CONTENT_FORMAT_LINK)),
            )],
            payload.as_bytes(),
        )
    }
    fn response(&mut self, i: u64, code: u8, msg: &[u8], port: u16) -> bool {
        if code != CODE_CREATED {
            return false;
        }
        let Ok(p) = Packet::from_bytes(msg) else {
            return false;
        };
        let Some(loc) = p.get_option(CoapOption::LocationPath) else {
            return false;
        };
        let segs: Vec<String> = loc
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let ep = (self.first + i) as usize;
        let mut dir = self.dir.borrow_mut();
        dir.locations[ep] = Some(segs);
        dir.base_port[ep] = port;
        true
    }
}

/// Empty POSTs to the registration resources, round-robin over the registered endpoints.
pub struct Updates {
    pub endpoints: Vec<usize>,
    pub dir: Rc<RefCell<Directory>>,
}

impl Updates {
    fn endpoint(&self, i: u64) -> usize {
        self.endpoints[(i % self.endpoints.len() as u64) as usize]
    }
}

impl Workload for Updates {
    fn request(&mut self, i: u64) -> Vec<u8> {
        let ep = self.endpoint(i);
        let dir = self.dir.borrow();
        let segs: Vec<&str> = dir.locations[ep]
            .as_ref()
            .map(|l| l.iter().map(String::as_str).collect())
            .unwrap_or_default();
        encode_request(2, &segs, &[], &[], b"")
    }
    fn response(&mut self, i: u64, code: u8, _msg: &[u8], port: u16) -> bool {
        if code != CODE_CHANGED {
            return false;
        }
        // The RD moves a base it derived from the source address to the update's source.
        let ep = self.endpoint(i);
        self.dir.borrow_mut().base_port[ep] = port;
        true
    }
}
