//! The wire format (RFC 7252 §3) over coap-lite: decoding with the RFC's error rules, request
//! parsing for handlers, and encoding of requests, responses and empty messages.
//!
//! Decoding never panics. A datagram shorter than a header or of another version is silently
//! ignored (§3); a message format error is [`DecodeError::Format`], which the endpoint answers
//! with RST for a CON and drops otherwise (§4.2, §4.3). Request-level problems (unknown critical
//! option → 4.02, malformed option values → 4.00, unknown method → 4.05) are [`RequestError`]s
//! answered with a piggybacked response (§5.4.1, §5.8).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};

use super::block::{encode_uint, BlockOption};
use super::code::{Code, Method};
use super::message::{ClientRequest, InboundRequest, OutboundResponse};

/// Largest UDP payload we build (responses above the block size are sliced anyway).
const MAX_DATAGRAM: usize = 65_507;

pub mod opt {
    pub const IF_MATCH: u16 = 1;
    pub const URI_HOST: u16 = 3;
    pub const ETAG: u16 = 4;
    pub const IF_NONE_MATCH: u16 = 5;
    pub const OBSERVE: u16 = 6;
    pub const URI_PORT: u16 = 7;
    pub const LOCATION_PATH: u16 = 8;
    pub const OSCORE: u16 = 9;
    pub const URI_PATH: u16 = 11;
    pub const CONTENT_FORMAT: u16 = 12;
    pub const MAX_AGE: u16 = 14;
    pub const URI_QUERY: u16 = 15;
    pub const ACCEPT: u16 = 17;
    pub const LOCATION_QUERY: u16 = 20;
    pub const BLOCK2: u16 = 23;
    pub const BLOCK1: u16 = 27;
    pub const SIZE2: u16 = 28;
    pub const PROXY_URI: u16 = 35;
    pub const PROXY_SCHEME: u16 = 39;
    pub const SIZE1: u16 = 60;
    pub const ECHO: u16 = 252;
    pub const NO_RESPONSE: u16 = 258;
    pub const REQUEST_TAG: u16 = 292;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgType {
    Con,
    Non,
    Ack,
    Rst,
}

impl MsgType {
    fn bits(self) -> u8 {
        match self {
            MsgType::Con => 0,
            MsgType::Non => 1,
            MsgType::Ack => 2,
            MsgType::Rst => 3,
        }
    }
    fn lite(self) -> MessageType {
        match self {
            MsgType::Con => MessageType::Confirmable,
            MsgType::Non => MessageType::NonConfirmable,
            MsgType::Ack => MessageType::Acknowledgement,
            MsgType::Rst => MessageType::Reset,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a CoAP 1 message we can even answer: drop silently.
    Ignore,
    /// Message format error in a message whose type and MID are readable.
    Format { mtype: MsgType, mid: u16 },
}

/// Type, code and MID of a datagram, read without parsing the rest.
pub fn peek(buf: &[u8]) -> Option<(MsgType, Code, u16)> {
    if buf.len() < 4 || buf[0] >> 6 != 1 {
        return None;
    }
    let mtype = match (buf[0] >> 4) & 3 {
        0 => MsgType::Con,
        1 => MsgType::Non,
        2 => MsgType::Ack,
        _ => MsgType::Rst,
    };
    Some((mtype, Code(buf[1]), u16::from_be_bytes([buf[2], buf[3]])))
}

/// Decode a datagram with RFC 7252's format rules.
pub fn decode(buf: &[u8]) -> Result<Packet, DecodeError> {
    let (mtype, code, mid) = peek(buf).ok_or(DecodeError::Ignore)?;
    let format = DecodeError::Format { mtype, mid };
    let tkl = usize::from(buf[0] & 0x0f);
    if tkl > 8 {
        return Err(format);
    }
    // §3: classes 1, 6 and 7 are reserved; §4.1: an Empty message is exactly 4 bytes.
    if matches!(code.class(), 1 | 6 | 7) || (code.is_empty() && buf.len() != 4) {
        return Err(format);
    }
    let packet = Packet::from_bytes(buf).map_err(|_| format)?;
    // §3: a payload marker followed by a zero-length payload is a format error. coap-lite
    // accepts it; it can only have happened if the last byte is a marker and re-encoding the
    // (payload-less) packet comes out one byte shorter.
    if packet.payload.is_empty()
        && buf.last() == Some(&0xff)
        && packet
            .to_bytes_with_limit(MAX_DATAGRAM)
            .is_ok_and(|b| b.len() + 1 == buf.len())
    {
        return Err(format);
    }
    Ok(packet)
}

pub fn msg_type(p: &Packet) -> MsgType {
    match p.header.get_type() {
        MessageType::Confirmable => MsgType::Con,
        MessageType::NonConfirmable => MsgType::Non,
        MessageType::Acknowledgement => MsgType::Ack,
        MessageType::Reset => MsgType::Rst,
    }
}

pub fn code_of(p: &Packet) -> Code {
    Code(u8::from(p.header.code))
}

/// An Empty message (ACK or RST, or a CON ping) — 4 bytes, built by hand.
pub fn encode_empty(mtype: MsgType, mid: u16) -> [u8; 4] {
    let m = mid.to_be_bytes();
    [0x40 | mtype.bits() << 4, 0, m[0], m[1]]
}

/// Why a request cannot be handed to the handler; answered with the code given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// 4.02: unrecognised or repeated critical option.
    BadOption(u16),
    /// 4.00 with a diagnostic.
    BadRequest(&'static str),
    /// 4.05: a request code we do not know.
    MethodNotAllowed,
    /// 5.05: Proxy-Uri / Proxy-Scheme.
    ProxyingNotSupported,
}

impl RequestError {
    pub fn code(&self) -> Code {
        match self {
            RequestError::BadOption(_) => Code::BAD_OPTION,
            RequestError::BadRequest(_) => Code::BAD_REQUEST,
            RequestError::MethodNotAllowed => Code::METHOD_NOT_ALLOWED,
            RequestError::ProxyingNotSupported => Code(5 << 5 | 5),
        }
    }
    pub fn diagnostic(&self) -> String {
        match self {
            RequestError::BadOption(n) => format!("unsupported critical option {n}"),
            RequestError::BadRequest(why) => (*why).to_string(),
            RequestError::MethodNotAllowed => "unknown method".into(),
            RequestError::ProxyingNotSupported => "proxying not supported".into(),
        }
    }
}

/// A parsed request plus the Block1 state the endpoint needs before the handler runs.
pub struct ParsedRequest {
    pub request: InboundRequest,
    pub block1: Option<BlockOption>,
    pub size1: Option<u32>,
}

fn known_request_option(n: u16) -> bool {
    use opt::*;
    matches!(
        n,
        IF_MATCH
            | URI_HOST
            | ETAG
            | IF_NONE_MATCH
            | OBSERVE
            | URI_PORT
            | URI_PATH
            | CONTENT_FORMAT
            | URI_QUERY
            | ACCEPT
            | BLOCK2
            | BLOCK1
            | SIZE2
            | SIZE1
            | PROXY_URI
            | PROXY_SCHEME
    )
}

/// Critical options that may appear once (RFC 7252 §5.4.5: a repeated one is unrecognised).
fn non_repeatable_critical(n: u16) -> bool {
    use opt::*;
    matches!(
        n,
        URI_HOST | IF_NONE_MATCH | URI_PORT | ACCEPT | BLOCK2 | BLOCK1 | PROXY_URI | PROXY_SCHEME
    )
}

fn uint(bytes: &[u8], max_len: usize) -> Option<u32> {
    if bytes.len() > max_len {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
}

fn first_uint(
    p: &Packet,
    number: u16,
    max_len: usize,
    err: &'static str,
) -> Result<Option<u32>, RequestError> {
    match p.get_first_option(CoapOption::from(number)) {
        None => Ok(None),
        Some(v) => uint(v, max_len)
            .map(Some)
            .ok_or(RequestError::BadRequest(err)),
    }
}

fn strings(p: &Packet, number: u16, err: &'static str) -> Result<Vec<String>, RequestError> {
    match p.get_option(CoapOption::from(number)) {
        None => Ok(Vec::new()),
        Some(list) => list
            .iter()
            .map(|v| {
                std::str::from_utf8(v)
                    .map(str::to_owned)
                    .map_err(|_| RequestError::BadRequest(err))
            })
            .collect(),
    }
}

/// Turn a decoded request packet into what the handler sees (§5.4 option processing).
pub fn parse_request(
    p: &mut Packet,
    source: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> Result<ParsedRequest, RequestError> {
    let method = Method::from_code(code_of(p)).ok_or(RequestError::MethodNotAllowed)?;
    for (&number, values) in p.options() {
        let critical = number & 1 == 1;
        if critical && !known_request_option(number) {
            return Err(RequestError::BadOption(number));
        }
        if non_repeatable_critical(number) && values.len() > 1 {
            return Err(RequestError::BadOption(number));
        }
    }
    if p.get_option(CoapOption::ProxyUri).is_some()
        || p.get_option(CoapOption::ProxyScheme).is_some()
    {
        return Err(RequestError::ProxyingNotSupported);
    }
    let block = |n: u16| -> Result<Option<BlockOption>, RequestError> {
        match p.get_first_option(CoapOption::from(n)) {
            None => Ok(None),
            Some(v) => BlockOption::decode(v)
                .map(Some)
                .ok_or(RequestError::BadOption(n)),
        }
    };
    let content_format = first_uint(p, opt::CONTENT_FORMAT, 2, "bad Content-Format")?;
    let accept = first_uint(p, opt::ACCEPT, 2, "bad Accept")?;
    let request = InboundRequest {
        source,
        local,
        method,
        confirmable: msg_type(p) == MsgType::Con,
        path: strings(p, opt::URI_PATH, "Uri-Path is not UTF-8")?,
        query: strings(p, opt::URI_QUERY, "Uri-Query is not UTF-8")?,
        content_format: content_format.map(|v| v as u16),
        accept: accept.map(|v| v as u16),
        observe: first_uint(p, opt::OBSERVE, 3, "bad Observe")?,
        etags: p
            .get_option(CoapOption::ETag)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default(),
        if_match: p
            .get_option(CoapOption::IfMatch)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default(),
        if_none_match: p.get_option(CoapOption::IfNoneMatch).is_some(),
        block2: block(opt::BLOCK2)?,
        payload: Vec::new(),
        multicast: false,
        token: p.get_token().to_vec(),
        identity: None,
    };
    let block1 = block(opt::BLOCK1)?;
    let size1 = first_uint(p, opt::SIZE1, 4, "bad Size1")?;
    let mut request = request;
    // The body moves to the handler's request; the packet is not used afterwards.
    request.payload = std::mem::take(&mut p.payload);
    Ok(ParsedRequest {
        request,
        block1,
        size1,
    })
}

/// Extra options the endpoint adds to a handler's response.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseExtras {
    pub observe: Option<u32>,
    pub block1: Option<BlockOption>,
    pub block2: Option<BlockOption>,
    pub size1: Option<u32>,
    pub size2: Option<u32>,
}

/// The one option writer under both encoders: header and token, then options (coap-lite
/// keeps them ordered by number, so the order of the calls does not matter), then the payload.
struct MessageWriter {
    packet: Packet,
}

impl MessageWriter {
    fn new(mtype: MsgType, code: Code, mid: u16, token: &[u8]) -> Self {
        let mut packet = Packet::new();
        packet.header.set_type(mtype.lite());
        packet.header.code = MessageClass::from(code.0);
        packet.header.message_id = mid;
        packet.set_token(token.to_vec());
        MessageWriter { packet }
    }

    fn uint(&mut self, option: CoapOption, value: Option<u32>) -> &mut Self {
        if let Some(v) = value {
            self.packet.add_option(option, encode_uint(v));
        }
        self
    }

    fn opaque(&mut self, option: CoapOption, value: Option<&Vec<u8>>) -> &mut Self {
        if let Some(v) = value {
            self.packet.add_option(option, v.clone());
        }
        self
    }

    fn strings<'a>(
        &mut self,
        option: CoapOption,
        values: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        for v in values {
            self.packet.add_option(option, v.as_bytes().to_vec());
        }
        self
    }

    fn blocks(
        &mut self,
        block1: Option<BlockOption>,
        block2: Option<BlockOption>,
        size1: Option<u32>,
    ) -> &mut Self {
        for (option, block) in [(CoapOption::Block1, block1), (CoapOption::Block2, block2)] {
            if let Some(b) = block {
                self.packet.add_option(option, b.encode());
            }
        }
        self.uint(CoapOption::Size1, size1)
    }

    /// The datagram; `Err` only when an option is longer than 65 KiB.
    fn finish(mut self, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
        self.packet.payload = payload.to_vec();
        self.packet
            .to_bytes_with_limit(MAX_DATAGRAM)
            .map_err(|_| EncodeError)
    }
}

/// Encode a response (piggybacked ACK, CON/NON separate response or notification).
pub fn encode_response(
    mtype: MsgType,
    mid: u16,
    token: &[u8],
    resp: &OutboundResponse,
    payload: &[u8],
    extras: ResponseExtras,
) -> Vec<u8> {
    let mut w = MessageWriter::new(mtype, resp.code, mid, token);
    w.uint(
        CoapOption::Observe,
        extras.observe.map(|seq| seq & 0x00ff_ffff),
    )
    .opaque(CoapOption::ETag, resp.etag.as_ref())
    .strings(
        CoapOption::LocationPath,
        resp.location_path.iter().map(|s| s.as_str()),
    )
    .strings(
        CoapOption::LocationQuery,
        resp.location_query.iter().map(|s| s.as_str()),
    )
    .uint(
        CoapOption::ContentFormat,
        resp.content_format.map(u32::from),
    )
    .uint(CoapOption::MaxAge, resp.max_age)
    .blocks(extras.block1, extras.block2, extras.size1)
    .uint(CoapOption::Size2, extras.size2)
    .opaque(CoapOption::Unknown(opt::ECHO), resp.echo.as_ref());
    // Only an option longer than 65 KiB could fail to encode; a handler bug, not input.
    w.finish(payload)
        .unwrap_or_else(|_| encode_empty(mtype, mid).to_vec())
}

/// Options of one request block the client sends.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestExtras {
    pub observe: Option<u32>,
    pub block1: Option<BlockOption>,
    pub block2: Option<BlockOption>,
    pub size1: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("request cannot be encoded (an option is longer than 65 KiB)")]
pub struct EncodeError;

pub fn encode_request(
    mtype: MsgType,
    mid: u16,
    token: &[u8],
    req: &ClientRequest,
    payload: &[u8],
    extras: RequestExtras,
) -> Result<Vec<u8>, EncodeError> {
    let mut w = MessageWriter::new(mtype, req.method.code(), mid, token);
    for etag in &req.etags {
        w.opaque(CoapOption::ETag, Some(etag));
    }
    w.uint(CoapOption::Observe, extras.observe)
        .strings(CoapOption::UriPath, req.path_segments())
        .uint(CoapOption::ContentFormat, req.content_format.map(u32::from))
        .strings(CoapOption::UriQuery, req.query.iter().map(|s| s.as_str()))
        .uint(CoapOption::Accept, req.accept.map(u32::from))
        .blocks(extras.block1, extras.block2, extras.size1);
    w.finish(payload)
}

/// A response as the client reads it, before Block2 reassembly.
#[derive(Clone, Debug)]
pub struct ParsedResponse {
    pub code: Code,
    pub content_format: Option<u16>,
    pub observe: Option<u32>,
    pub max_age: Option<u32>,
    pub etag: Option<Vec<u8>>,
    pub location_path: Vec<String>,
    pub location_query: Vec<String>,
    pub block1: Option<BlockOption>,
    pub block2: Option<BlockOption>,
    pub size2: Option<u32>,
    pub payload: Vec<u8>,
}

/// `None` when the response carries an unrecognised critical option or malformed values:
/// the client rejects it (RFC 7252 §5.4.1).
pub fn parse_response(p: &Packet) -> Option<ParsedResponse> {
    use opt::*;
    for (&number, _) in p.options() {
        let known = matches!(
            number,
            ETAG | OBSERVE
                | LOCATION_PATH
                | CONTENT_FORMAT
                | MAX_AGE
                | LOCATION_QUERY
                | BLOCK2
                | BLOCK1
                | SIZE2
                | SIZE1
                | URI_HOST
                | URI_PORT
                | URI_PATH
                | URI_QUERY
                | IF_MATCH
                | IF_NONE_MATCH
                | ACCEPT
        );
        if number & 1 == 1 && !known {
            return None;
        }
    }
    let first = |n: u16, max: usize| -> Result<Option<u32>, ()> {
        match p.get_first_option(CoapOption::from(n)) {
            None => Ok(None),
            Some(v) => uint(v, max).map(Some).ok_or(()),
        }
    };
    let block = |n: u16| -> Result<Option<BlockOption>, ()> {
        match p.get_first_option(CoapOption::from(n)) {
            None => Ok(None),
            Some(v) => BlockOption::decode(v).map(Some).ok_or(()),
        }
    };
    let text = |n: u16| -> Vec<String> {
        p.get_option(CoapOption::from(n))
            .map(|l| {
                l.iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(ParsedResponse {
        code: code_of(p),
        content_format: first(CONTENT_FORMAT, 2).ok()?.map(|v| v as u16),
        observe: first(OBSERVE, 3).ok()?,
        max_age: first(MAX_AGE, 4).ok()?,
        etag: p.get_first_option(CoapOption::ETag).cloned(),
        location_path: text(LOCATION_PATH),
        location_query: text(LOCATION_QUERY),
        block1: block(BLOCK1).ok()?,
        block2: block(BLOCK2).ok()?,
        size2: first(SIZE2, 4).ok()?,
        payload: p.payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn addr() -> SocketAddr {
        "127.0.0.1:5683".parse().unwrap()
    }

    fn get_bytes(mtype: MsgType, path: &str) -> Vec<u8> {
        encode_request(
            mtype,
            0x1234,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &ClientRequest::get(path).query("ep=n1").accept(40),
            &[],
            RequestExtras::default(),
        )
        .unwrap()
    }

    #[test]
    fn request_round_trip() {
        let bytes = get_bytes(MsgType::Con, "/rd-lookup/ep");
        let mut p = decode(&bytes).unwrap();
        assert_eq!(msg_type(&p), MsgType::Con);
        let r = parse_request(&mut p, addr(), addr()).unwrap().request;
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, vec!["rd-lookup", "ep"]);
        assert_eq!(r.query, vec!["ep=n1"]);
        assert_eq!(r.accept, Some(40));
        assert_eq!(r.token, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(r.confirmable);
    }

    #[test]
    fn response_round_trip() {
        let resp = OutboundResponse::new(Code::CREATED)
            .with_location_path(["rd", "4521"])
            .with_payload(40, b"</a>".to_vec());
        let extras = ResponseExtras {
            observe: Some(7),
            block2: Some(BlockOption::new(1, true, 64)),
            size2: Some(200),
            ..Default::default()
        };
        let bytes = encode_response(MsgType::Ack, 9, &[5], &resp, &resp.payload, extras);
        let p = decode(&bytes).unwrap();
        assert_eq!(msg_type(&p), MsgType::Ack);
        assert_eq!(p.header.message_id, 9);
        let r = parse_response(&p).unwrap();
        assert_eq!(r.code, Code::CREATED);
        assert_eq!(r.location_path, vec!["rd", "4521"]);
        assert_eq!(r.content_format, Some(40));
        assert_eq!(r.observe, Some(7));
        assert_eq!(r.block2, Some(BlockOption::new(1, true, 64)));
        assert_eq!(r.size2, Some(200));
        assert_eq!(r.payload, b"</a>");
    }

    #[test]
    fn format_errors_carry_type_and_mid() {
        // Too short or another version: ignored.
        assert_eq!(decode(&[0x40, 1, 0]).unwrap_err(), DecodeError::Ignore);
        assert_eq!(decode(&[0x80, 1, 0, 1]).unwrap_err(), DecodeError::Ignore);
        // TKL 9.
        assert_eq!(
            decode(&[0x49, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            DecodeError::Format {
                mtype: MsgType::Con,
                mid: 7
            }
        );
        // Token shorter than TKL.
        assert!(matches!(
            decode(&[0x54, 1, 0, 7, 1]).unwrap_err(),
            DecodeError::Format {
                mtype: MsgType::Non,
                ..
            }
        ));
        // Empty message with a token.
        assert!(decode(&[0x41, 0, 0, 1, 9]).is_err());
        // Reserved class 1.
        assert!(decode(&[0x40, 0x21, 0, 1]).is_err());
        // Option delta 15 without a marker.
        assert!(decode(&[0x40, 1, 0, 1, 0xf0]).is_err());
        // Option length beyond the datagram.
        assert!(decode(&[0x40, 1, 0, 1, 0xb5, b'a']).is_err());
        // Payload marker with no payload.
        assert!(decode(&[0x40, 1, 0, 1, 0xff]).is_err());
        // An empty CON (ping) is fine.
        assert!(decode(&encode_empty(MsgType::Con, 3)).is_ok());
    }

    #[test]
    fn option_errors_map_to_4_02_and_4_00() {
        let mut p = decode(&get_bytes(MsgType::Con, "/x")).unwrap();
        p.add_option(CoapOption::Unknown(2049), vec![1]);
        assert_eq!(
            parse_request(&mut p, addr(), addr()).err(),
            Some(RequestError::BadOption(2049))
        );
        let mut p = decode(&get_bytes(MsgType::Con, "/x")).unwrap();
        p.add_option(CoapOption::Unknown(2048), vec![1]);
        assert!(
            parse_request(&mut p, addr(), addr()).is_ok(),
            "elective ignored"
        );
        let mut p = decode(&get_bytes(MsgType::Con, "/x")).unwrap();
        p.add_option(CoapOption::ContentFormat, vec![1, 2, 3]);
        assert_eq!(
            parse_request(&mut p, addr(), addr())
                .err()
                .map(|e| e.code()),
            Some(Code::BAD_REQUEST)
        );
        let mut p = decode(&get_bytes(MsgType::Con, "/x")).unwrap();
        p.add_option(CoapOption::UriPath, vec![0xff, 0xfe]);
        assert_eq!(
            parse_request(&mut p, addr(), addr())
                .err()
                .map(|e| e.code()),
            Some(Code::BAD_REQUEST)
        );
        let mut p = decode(&get_bytes(MsgType::Con, "/x")).unwrap();
        p.header.code = MessageClass::from(0x0a);
        assert_eq!(
            parse_request(&mut p, addr(), addr()).err(),
            Some(RequestError::MethodNotAllowed)
        );
    }

    #[test]
    fn decode_never_panics_on_prefixes() {
        let bytes = get_bytes(MsgType::Con, "/a/very/long/path/with/segments");
        for n in 0..=bytes.len() {
            let _ = decode(&bytes[..n]);
        }
    }
}
