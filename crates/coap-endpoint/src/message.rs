//! The values the endpoint hands to handlers and clients: [`InboundRequest`] /
//! [`OutboundResponse`] on the server side, [`ClientRequest`] / [`ClientResponse`] on the
//! client side. Plain data; the wire format lives in `codec`.
//!
//! A response body is [`Bytes`]: a handler can hand out a cached representation (e.g. a
//! 7 MB lookup result) by reference count, and the endpoint slices each Block2 block from it
//! and keeps it for follow-up blocks without copying.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::block::BlockOption;
use super::code::{Code, Method};

/// Identifies an observable resource; the handler picks it (RFC 7641 §4.1).
#[derive(Clone, Debug, Hash, Eq, PartialEq)]
pub struct ObserveKey(pub String);

/// A request as the handler sees it: body already reassembled from Block1.
#[derive(Clone, Debug)]
pub struct InboundRequest {
    pub source: SocketAddr,
    pub local: SocketAddr,
    pub method: Method,
    pub confirmable: bool,
    /// Uri-Path segments, decoded as UTF-8.
    pub path: Vec<String>,
    /// Uri-Query items as sent, e.g. `ep=node1`, `obs`.
    pub query: Vec<String>,
    pub content_format: Option<u16>,
    pub accept: Option<u16>,
    /// Observe option value: 0 register, 1 deregister (RFC 7641 §2).
    pub observe: Option<u32>,
    pub etags: Vec<Vec<u8>>,
    /// If-Match values (RFC 7252 §5.10.8.1); an empty value means "if it exists".
    pub if_match: Vec<Vec<u8>>,
    /// If-None-Match present (RFC 7252 §5.10.8.2).
    pub if_none_match: bool,
    /// The block the client asked for (late negotiation or a follow-up block).
    pub block2: Option<BlockOption>,
    pub payload: Vec<u8>,
    /// Whether the request was sent to a multicast group (its destination address, from
    /// IP_PKTINFO; only on sockets that joined a group). Such a request gets only a 2.xx
    /// answer, as a NON after the leisure; any other answer is dropped (RFC 7252 §8).
    pub multicast: bool,
    pub token: Vec<u8>,
    /// The identity the peer authenticated with (its PSK identity or certificate CN) when the
    /// request came over DTLS; `None` over plain UDP.
    pub identity: Option<std::sync::Arc<str>>,
}

impl InboundRequest {
    /// `/a/b` form of the path, for logs.
    pub fn path_string(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            s.push('/');
            s.push_str(seg);
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// The value of the first `name=value` query item named `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find_map(|q| {
            let (k, v) = q.split_once('=').unwrap_or((q.as_str(), ""));
            (k == name).then_some(v)
        })
    }
}

/// What the handler answers. The endpoint adds the token, message type, Block2 slicing and,
/// for observations, the Observe sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundResponse {
    pub code: Code,
    pub content_format: Option<u16>,
    pub location_path: Vec<String>,
    pub location_query: Vec<String>,
    pub max_age: Option<u32>,
    pub etag: Option<Vec<u8>>,
    /// Shared, immutable body: cloning a response or slicing a block never copies it.
    pub payload: Bytes,
    /// Some(k): if the request had Observe=0 and the code is 2.xx, the peer becomes an
    /// observer of `k` until it deregisters, resets a notification, or one times out.
    pub observe: Option<ObserveKey>,
    /// Echo option (RFC 9175), e.g. with 4.01.
    pub echo: Option<Vec<u8>>,
}

impl OutboundResponse {
    pub fn new(code: Code) -> Self {
        OutboundResponse {
            code,
            content_format: None,
            location_path: Vec::new(),
            location_query: Vec::new(),
            max_age: None,
            etag: None,
            payload: Bytes::new(),
            observe: None,
            echo: None,
        }
    }

    /// The body with its Content-Format. A `Vec<u8>`/`String` is taken over without a copy;
    /// a [`Bytes`] (e.g. from a cache) is shared.
    pub fn with_payload(mut self, content_format: u16, payload: impl Into<Bytes>) -> Self {
        self.content_format = Some(content_format);
        self.payload = payload.into();
        self
    }

    /// A diagnostic payload (RFC 7252 §5.5.2), no Content-Format.
    pub fn with_diagnostic(mut self, text: impl Into<String>) -> Self {
        self.payload = Bytes::from(text.into());
        self
    }

    pub fn with_location_path<I, S>(mut self, segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.location_path = segments.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_max_age(mut self, seconds: u32) -> Self {
        self.max_age = Some(seconds);
        self
    }

    pub fn with_etag(mut self, etag: Vec<u8>) -> Self {
        self.etag = Some(etag);
        self
    }

    pub fn with_observe(mut self, key: ObserveKey) -> Self {
        self.observe = Some(key);
        self
    }
}

/// A request the gateway sends to a device.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    pub method: Method,
    /// `/a/b`; empty segments are dropped, segments are not percent-decoded.
    pub path: String,
    pub query: Vec<String>,
    pub payload: Vec<u8>,
    pub content_format: Option<u16>,
    pub accept: Option<u16>,
    pub confirmable: bool,
    /// Overall budget including retransmissions and every block; None = MAX_TRANSMIT_WAIT
    /// per block exchange.
    pub timeout: Option<Duration>,
    pub etags: Vec<Vec<u8>>,
    /// Largest response body this request accepts, Block2 reassembled (None: the endpoint's
    /// `max_body`). Beyond it the exchange ends with `ProtocolError::TooLarge` without
    /// fetching the rest, so a peer cannot make us hold more than the caller can use.
    pub max_body: Option<usize>,
    /// Send over DTLS (a `coaps://` peer): through the session the peer opened, else a new
    /// one the endpoint opens as client.
    pub secure: bool,
    /// The identity whose PSK a new session offers, and that the session must have
    /// authenticated (the identity the device registered with).
    pub dtls_identity: Option<std::sync::Arc<str>>,
}

impl ClientRequest {
    pub fn new(method: Method, path: &str) -> Self {
        ClientRequest {
            method,
            path: path.to_string(),
            query: Vec::new(),
            payload: Vec::new(),
            content_format: None,
            accept: None,
            confirmable: true,
            timeout: None,
            etags: Vec::new(),
            secure: false,
            dtls_identity: None,
            max_body: None,
        }
    }

    pub fn get(path: &str) -> Self {
        ClientRequest::new(Method::Get, path)
    }

    pub fn query(mut self, item: impl Into<String>) -> Self {
        self.query.push(item.into());
        self
    }

    pub fn payload(mut self, content_format: Option<u16>, payload: Vec<u8>) -> Self {
        self.content_format = content_format;
        self.payload = payload;
        self
    }

    pub fn accept(mut self, content_format: u16) -> Self {
        self.accept = Some(content_format);
        self
    }

    pub fn non_confirmable(mut self) -> Self {
        self.confirmable = false;
        self
    }

    /// Send over DTLS (see [`ClientRequest::secure`]).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Send over DTLS as `identity` (see [`ClientRequest::dtls_identity`]).
    pub fn over_dtls(mut self, identity: Option<std::sync::Arc<str>>) -> Self {
        self.secure = true;
        self.dtls_identity = identity;
        self
    }

    pub fn timeout(mut self, budget: Duration) -> Self {
        self.timeout = Some(budget);
        self
    }

    /// Accept a response body of at most `bytes` (see [`ClientRequest::max_body`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Uri-Path segments of `path`.
    pub fn path_segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }
}

/// A response as the client returns it: Block2 already reassembled.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    pub code: Code,
    pub content_format: Option<u16>,
    pub payload: Vec<u8>,
    pub observe: Option<u32>,
    pub max_age: Option<u32>,
    pub etag: Option<Vec<u8>>,
    pub location_path: Vec<String>,
    pub location_query: Vec<String>,
    /// From the first transmission to the (first block of the) response.
    pub rtt: Duration,
}
