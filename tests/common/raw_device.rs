//! A test-owned observable device on a raw UDP socket (RFC 7641 server side, minimal): serves
//! any GET, registers an observer on Observe=0, notifies it every 200 ms, and counts
//! deregistrations (GET with Observe=1, §3.6) and RSTs. Used by tests/observer_e2e.rs and
//! tests/graceful_shutdown.rs.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

/// A test-owned observable device on a raw UDP socket: serves `/temp` with Observe, notifies
/// every 200 ms, and counts deregistrations (GET with Observe=1, RFC 7641 §3.6) and RSTs.
pub struct RawDevice {
    pub addr: std::net::SocketAddr,
    pub deregistrations: Arc<AtomicUsize>,
    pub resets: Arc<AtomicUsize>,
    pub notifications: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawDevice {
    pub fn start() -> RawDevice {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let deregistrations = Arc::new(AtomicUsize::new(0));
        let resets = Arc::new(AtomicUsize::new(0));
        let notifications = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (dr, rs, nt, st) = (
            deregistrations.clone(),
            resets.clone(),
            notifications.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut observer: Option<(std::net::SocketAddr, Vec<u8>)> = None;
            let mut seq = 2u32;
            let mut mid = 1000u16;
            let mut last_notify = Instant::now();
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let Ok(pkt) = Packet::from_bytes(&buf[..n]) else {
                        continue;
                    };
                    if pkt.header.get_type() == MessageType::Reset {
                        rs.fetch_add(1, Ordering::Relaxed);
                        observer = None;
                        continue;
                    }
                    if pkt.header.code != MessageClass::Request(RequestType::Get) {
                        continue;
                    }
                    let observe = pkt
                        .get_option(CoapOption::Observe)
                        .and_then(|v| v.front().cloned())
                        .map(|v| v.first().copied().unwrap_or(0));
                    let mut resp = Packet::new();
                    resp.header.set_type(MessageType::Acknowledgement);
                    resp.header.message_id = pkt.header.message_id;
                    resp.header.code = MessageClass::Response(ResponseType::Content);
                    resp.set_token(pkt.get_token().to_vec());
                    resp.payload = b"0".to_vec();
                    match observe {
                        Some(0) => {
                            observer = Some((from, pkt.get_token().to_vec()));
                            resp.add_option(CoapOption::Observe, vec![seq as u8]);
                        }
                        Some(1) => {
                            dr.fetch_add(1, Ordering::Relaxed);
                            observer = None;
                        }
                        _ => {}
                    }
                    let _ = sock.send_to(&resp.to_bytes().unwrap(), from);
                }
                if last_notify.elapsed() >= Duration::from_millis(200) {
                    last_notify = Instant::now();
                    if let Some((peer, token)) = &observer {
                        seq += 1;
                        mid = mid.wrapping_add(1);
                        let mut n = Packet::new();
                        n.header.set_type(MessageType::NonConfirmable);
                        n.header.message_id = mid;
                        n.header.code = MessageClass::Response(ResponseType::Content);
                        n.set_token(token.clone());
                        n.add_option(CoapOption::Observe, seq.to_be_bytes()[1..].to_vec());
                        n.payload = seq.to_string().into_bytes();
                        let _ = sock.send_to(&n.to_bytes().unwrap(), peer);
                        nt.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        RawDevice {
            addr,
            deregistrations,
            resets,
            notifications,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RawDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
