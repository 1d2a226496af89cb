//! Test peers for the CoAP layer's integration tests: a scripted handler for our endpoint,
//! raw-socket helpers built on coap-lite, and a `coap` crate server acting as a device.
//! Included by each `tests/coap_*.rs` with `#[path]`, so not every helper is used everywhere.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coap_gateway::coap::{
    Code, Endpoint, HandlerFuture, InboundRequest, Method, ObserveKey, OutboundResponse,
    RequestHandler, TransmissionParams,
};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use futures::FutureExt;
use tokio::net::UdpSocket;

pub const V4: &str = "127.0.0.1:0";
pub const V6: &str = "[::1]:0";

/// A body whose every byte depends on its offset, so misplaced blocks are detected.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Printable text of `len` bytes (for CLI peers that print the body).
pub fn text_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Routes used by the tests. `/x` "hello"; `/big` 10 KiB; `/count` counts handler runs;
/// `/panic` and `/panic-later` panic; `/slow` answers after 50 ms, `/slower` after 300 ms; `/echo` (POST) returns the body; `/obs` observable counter; `/bigobs` observable, 3000 + counter bytes;
/// `/text3k` 3 KiB of text; `/shared` the 10 KiB pattern from one shared `Bytes` (counted in
/// `shared_runs`).
#[derive(Default)]
pub struct TestHandler {
    pub runs: AtomicUsize,
    pub count_runs: AtomicUsize,
    pub obs_value: AtomicUsize,
    pub big_len: AtomicUsize,
    pub shared_runs: AtomicUsize,
    pub shared_body: std::sync::OnceLock<bytes::Bytes>,
}

impl RequestHandler for TestHandler {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let path = req.path.join("/");
        let resp = match (req.method, path.as_str()) {
            (Method::Get, "x") => {
                OutboundResponse::new(Code::CONTENT).with_payload(0, b"hello".to_vec())
            }
            (Method::Get, "big") => {
                let len = match self.big_len.load(Ordering::SeqCst) {
                    0 => 10 * 1024,
                    n => n,
                };
                OutboundResponse::new(Code::CONTENT)
                    .with_payload(42, pattern(len))
                    .with_etag(vec![1, 2])
            }
            (Method::Get, "shared") => {
                self.shared_runs.fetch_add(1, Ordering::SeqCst);
                let body = self
                    .shared_body
                    .get_or_init(|| bytes::Bytes::from(pattern(10 * 1024)));
                OutboundResponse::new(Code::CONTENT).with_payload(42, body.clone())
            }
            (Method::Get, "text3k") => {
                OutboundResponse::new(Code::CONTENT).with_payload(0, text_body(3 * 1024))
            }
            (Method::Get, "count") => {
                let n = self.count_runs.fetch_add(1, Ordering::SeqCst) + 1;
                OutboundResponse::new(Code::CONTENT).with_payload(0, n.to_string().into_bytes())
            }
            (Method::Get, "slow") => {
                return async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    OutboundResponse::new(Code::CONTENT).with_payload(0, b"slow".to_vec())
                }
                .boxed()
            }
            (Method::Get, "slower") => {
                return async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    OutboundResponse::new(Code::CONTENT).with_payload(0, b"slower".to_vec())
                }
                .boxed()
            }
            (Method::Get, "panic") => panic!("handler bug (on purpose)"),
            (Method::Get, "panic-later") => {
                return async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    panic!("async handler bug (on purpose)")
                }
                .boxed()
            }
            (Method::Post, "echo") => {
                OutboundResponse::new(Code::CHANGED).with_payload(42, req.payload.clone())
            }
            (Method::Get, "obs") => {
                let v = self.obs_value.load(Ordering::SeqCst);
                OutboundResponse::new(Code::CONTENT)
                    .with_payload(0, v.to_string().into_bytes())
                    .with_observe(ObserveKey("obs".into()))
            }
            (Method::Get, "bigobs") => {
                let v = self.obs_value.load(Ordering::SeqCst);
                OutboundResponse::new(Code::CONTENT)
                    .with_payload(42, pattern(3000 + v))
                    .with_observe(ObserveKey("bigobs".into()))
            }
            _ => OutboundResponse::new(Code::NOT_FOUND),
        };
        futures::future::ready(resp).boxed()
    }
}

/// Short timers so failure paths finish quickly.
pub fn fast_params() -> TransmissionParams {
    TransmissionParams {
        ack_timeout: Duration::from_millis(100),
        ack_random_factor: 1.5,
        max_retransmit: 3,
        separate_response_after: Duration::from_millis(50),
        ..TransmissionParams::default()
    }
}

pub async fn start(addr: &str) -> (Endpoint, Arc<TestHandler>, SocketAddr) {
    start_with(addr, fast_params()).await
}

pub async fn start_with(
    addr: &str,
    params: TransmissionParams,
) -> (Endpoint, Arc<TestHandler>, SocketAddr) {
    let handler = Arc::new(TestHandler::default());
    let ep = Endpoint::bind(&[addr.parse().unwrap()], params, handler.clone())
        .await
        .unwrap();
    let local = ep.local_addrs()[0];
    (ep, handler, local)
}

pub async fn raw_socket(addr: &str) -> UdpSocket {
    UdpSocket::bind(addr).await.unwrap()
}

pub fn request(mtype: MessageType, code: u8, mid: u16, token: &[u8], path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(mtype);
    p.header.code = MessageClass::from(code);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

/// An empty message (an ACK or RST answering `mid`, or a ping), as bytes.
pub fn empty(mtype: MessageType, mid: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(mtype);
    p.header.code = MessageClass::Empty;
    p.header.message_id = mid;
    p.to_bytes().expect("an empty message encodes")
}

pub fn get(mid: u16, path: &str) -> Vec<u8> {
    request(MessageType::Confirmable, 1, mid, &[0xa, 0xb], path)
        .to_bytes()
        .unwrap()
}

/// Receive one datagram, or None after `wait`.
pub async fn recv(sock: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

pub async fn recv_packet(sock: &UdpSocket, wait: Duration) -> Option<(Packet, SocketAddr)> {
    let (bytes, from) = recv(sock, wait).await?;
    Some((Packet::from_bytes(&bytes).unwrap(), from))
}

pub fn code(p: &Packet) -> Code {
    Code(u8::from(p.header.code))
}

pub fn block_value(p: &Packet, opt: CoapOption) -> Option<(u32, bool, u8)> {
    let v = p.get_first_option(opt)?;
    let n = v.iter().fold(0u32, |a, b| a << 8 | u32::from(*b));
    Some((n >> 4, n & 8 != 0, (n & 7) as u8))
}

pub fn uint_option(p: &Packet, opt: CoapOption) -> Option<u32> {
    p.get_first_option(opt)
        .map(|v| v.iter().fold(0u32, |a, b| a << 8 | u32::from(*b)))
}

/// A `coap` crate server (an independent implementation) acting as a device: `/hello` and
/// `/big` (10 KiB, served block-wise by its block handler). Returns its address.
pub async fn coap_crate_device(addr: &str) -> SocketAddr {
    let socket = UdpSocket::bind(addr).await.unwrap();
    let local = socket.local_addr().unwrap();
    let listener = coap::server::UdpCoapListener::from_socket(socket);
    let server = coap::Server::from_listeners(vec![Box::new(listener)]);
    tokio::spawn(async move {
        let _ = server
            .run(
                |mut req: Box<coap_lite::CoapRequest<SocketAddr>>| async move {
                    let path = req.get_path();
                    if let Some(resp) = req.response.as_mut() {
                        match path.as_str() {
                            "hello" => resp.message.payload = b"device says hi".to_vec(),
                            "big" => resp.message.payload = pattern(10 * 1024),
                            _ => resp.set_status(coap_lite::ResponseType::NotFound),
                        }
                    }
                    req
                },
            )
            .await;
    });
    local
}
