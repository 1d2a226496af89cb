//! Requests as a constrained CoAP stack encodes them (issue 18): CON, a short token, Uri-Path
//! and Uri-Query, Content-Format 40 when there is a body, Observe when asked; nothing else (no
//! Block2, no Echo, no Size2). Shared by the namespace tests of the production policy
//! (`rd_netns_policy.rs`), of the amplification attacks (`amplification_netns.rs`) and of the
//! limits (`rd_limits.rs`).
#![allow(dead_code)]

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};

/// The request as a packet, so a test can add options (e.g. padding) before encoding.
pub fn request_packet(
    method: RequestType,
    path: &str,
    query: &[&str],
    payload: &[u8],
    observe: Option<u32>,
    mid: u16,
    token: &[u8],
) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    if let Some(o) = observe {
        // RFC 7641: the value as a minimal unsigned integer (0 is empty).
        let v: Vec<u8> = o
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        p.add_option(CoapOption::Observe, v);
    }
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
    p
}

/// The request's bytes.
pub fn request(
    method: RequestType,
    path: &str,
    query: &[&str],
    payload: &[u8],
    observe: Option<u32>,
    mid: u16,
    token: &[u8],
) -> Vec<u8> {
    request_packet(method, path, query, payload, observe, mid, token)
        .to_bytes()
        .expect("encode a request")
}

/// An empty message (ACK or RST) for `mid`.
pub fn empty(mtype: MessageType, mid: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(mtype);
    p.header.code = MessageClass::Empty;
    p.header.message_id = mid;
    p.to_bytes().expect("encode an empty message")
}

/// "2.05"-style code of a message.
pub fn code(p: &Packet) -> String {
    let c = u8::from(p.header.code);
    format!("{}.{:02}", c >> 5, c & 0x1f)
}

/// The Uri-Path segments of a request.
pub fn path_of(p: &Packet) -> Vec<String> {
    p.get_option(CoapOption::UriPath)
        .map(|l| {
            l.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
