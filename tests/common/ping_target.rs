//! The answering half of a test device: a thread on a clone of the device's socket that
//! answers every CoAP ping (an empty CON, RFC 7252 §4.3) with RST and every GET with 2.05
//! and a counter as payload, unless told to be silent, and records when and from where each
//! ping and GET came (a replica is told apart by its socket).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

pub struct PingTarget {
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pings: Log,
    gets: Log,
    thread: Option<JoinHandle<()>>,
}

impl PingTarget {
    /// Answer the pings `sock` receives (a clone of it is read, so the caller keeps its own).
    pub fn start(sock: &UdpSocket) -> PingTarget {
        let sock = sock.try_clone().expect("clone socket");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let silent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let pings = Arc::new(Mutex::new(Vec::new()));
        let gets = Arc::new(Mutex::new(Vec::new()));
        let (s, st, p, g) = (silent.clone(), stop.clone(), pings.clone(), gets.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(pkt) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if pkt.header.code == MessageClass::Request(RequestType::Get) {
                    let mut log = g.lock().expect("lock");
                    log.push((Instant::now(), from));
                    let value = log.len();
                    drop(log);
                    if !s.load(Ordering::Relaxed) {
                        answer_get(&sock, &pkt, from, value);
                    }
                    continue;
                }
                if pkt.header.get_type() != MessageType::Confirmable
                    || pkt.header.code != MessageClass::Empty
                {
                    continue;
                }
                p.lock().expect("lock").push((Instant::now(), from));
                if s.load(Ordering::Relaxed) {
                    continue;
                }
                let mut rst = Packet::new();
                rst.header.set_type(MessageType::Reset);
                rst.header.code = MessageClass::Empty;
                rst.header.message_id = pkt.header.message_id;
                if let Ok(bytes) = rst.to_bytes() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        PingTarget {
            silent,
            stop,
            pings,
            gets,
            thread: Some(thread),
        }
    }

    /// Stop (or resume) answering; pings are still counted.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }

    /// Pings received so far.
    pub fn pings(&self) -> usize {
        self.pings.lock().expect("lock").len()
    }

    /// When `from` first pinged, if it did.
    pub fn first_from(&self, from: SocketAddr) -> Option<Instant> {
        first_from(&self.pings, from)
    }

    /// When `from` first sent a GET, if it did.
    pub fn first_read_from(&self, from: SocketAddr) -> Option<Instant> {
        first_from(&self.gets, from)
    }

    /// The addresses that sent a GET since `since`.
    pub fn read_by(&self, since: Instant) -> BTreeSet<SocketAddr> {
        senders_since(&self.gets, since)
    }

    /// The addresses that pinged since `since`.
    pub fn pinged_by(&self, since: Instant) -> BTreeSet<SocketAddr> {
        senders_since(&self.pings, since)
    }
}

impl Drop for PingTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// When and from where each request of one kind came.
type Log = Arc<Mutex<Vec<(Instant, SocketAddr)>>>;

fn first_from(log: &Log, from: SocketAddr) -> Option<Instant> {
    log.lock()
        .expect("lock")
        .iter()
        .find(|(_, f)| *f == from)
        .map(|(at, _)| *at)
}

fn senders_since(log: &Log, since: Instant) -> BTreeSet<SocketAddr> {
    log.lock()
        .expect("lock")
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(_, from)| *from)
        .collect()
}

/// 2.05 with `value` as text (or, for `/.well-known/core`, one link in link-format, so that
/// Discovery registers the device): piggybacked on an ACK for a CON, a NON for a NON.
fn answer_get(sock: &UdpSocket, request: &Packet, from: SocketAddr, value: usize) {
    let mut response = Packet::new();
    if request.header.get_type() == MessageType::Confirmable {
        response.header.set_type(MessageType::Acknowledgement);
        response.header.message_id = request.header.message_id;
    } else {
        response.header.set_type(MessageType::NonConfirmable);
        response.header.message_id = request.header.message_id.wrapping_add(0x8000);
    }
    response.header.code = MessageClass::Response(ResponseType::Content);
    response.set_token(request.get_token().to_vec());
    let path: Vec<String> = request
        .get_option(CoapOption::UriPath)
        .map(|parts| {
            parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
        .unwrap_or_default();
    if path == [".well-known", "core"] {
        response.set_content_format(ContentFormat::ApplicationLinkFormat);
        response.payload = b"</t>".to_vec();
    } else {
        response.payload = value.to_string().into_bytes();
    }
    if let Ok(bytes) = response.to_bytes() {
        let _ = sock.send_to(&bytes, from);
    }
}
