//! Requests over established sessions against the same requests in plain UDP: M channels
//! (DTLS sessions, or plain sockets to the same endpoint's plain socket), K CoAP CON GETs in
//! flight spread over them, for a while; one or more load threads, each with its share of
//! channels and of K. The shape is `benches/coap_get.rs`'s (coap-lite-encoded GET, the answer
//! taken as a 2.05 in the code byte, a window lost to a dropped datagram refilled after
//! 200 ms), so the two rates of one run compare.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use coap_endpoint::Code;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};

use crate::client::{poll_in, pollfd, Conn, Read1};

/// Message IDs one channel uses at most in a run: never two alike within the server's
/// EXCHANGE_LIFETIME deduplication.
const MIDS_PER_CHANNEL: u32 = 30_000;
/// Nothing answered for this long: the window is taken as lost and refilled.
const LOST_AFTER: Duration = Duration::from_millis(200);

/// Something a CoAP message goes through: a DTLS session or a plain connected socket.
pub trait Channel: Send {
    fn fd(&self) -> RawFd;
    fn send(&mut self, message: &[u8]) -> bool;
    /// One received CoAP message, or `None` when nothing is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

impl Channel for Conn {
    fn fd(&self) -> RawFd {
        Conn::fd(self)
    }

    fn send(&mut self, message: &[u8]) -> bool {
        self.write(message)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.read(buf) {
            Read1::Data(n) => Some(n),
            Read1::Empty | Read1::Closed => None,
        }
    }
}

pub struct Plain(UdpSocket);

impl Plain {
    pub fn connect(server: SocketAddr) -> std::io::Result<Plain> {
        let s = UdpSocket::bind(("127.0.0.1", 0))?;
        s.connect(server)?;
        s.set_nonblocking(true)?;
        Ok(Plain(s))
    }
}

impl Channel for Plain {
    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn send(&mut self, message: &[u8]) -> bool {
        self.0.send(message).is_ok()
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.0.recv(buf).ok()
    }
}

fn template() -> Option<Vec<u8>> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::from(1);
    p.set_token(vec![0, 0, 0, 0]);
    p.add_option(CoapOption::UriPath, b"x".to_vec());
    p.to_bytes().ok()
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Rate {
    pub completed: u64,
    pub lost_windows: u64,
    pub seconds: f64,
}

impl Rate {
    pub fn per_s(&self) -> f64 {
        self.completed as f64 / self.seconds.max(1e-9)
    }
}

/// K requests in flight over `channels` for `duration` on `threads` threads.
pub fn run(channels: Vec<Box<dyn Channel>>, k: usize, threads: usize, duration: Duration) -> Rate {
    let threads = threads.clamp(1, channels.len().max(1));
    let mut shares: Vec<Vec<Box<dyn Channel>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in channels.into_iter().enumerate() {
        shares[i % threads].push(c);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut total = Rate::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(t, share)| {
                let k_here = k / threads + usize::from(t < k % threads);
                scope.spawn(move || load(share, k_here.max(1), deadline))
            })
            .collect();
        for h in handles {
            if let Ok(r) = h.join() {
                total.completed += r.completed;
                total.lost_windows += r.lost_windows;
            }
        }
    });
    total.seconds = start.elapsed().as_secs_f64();
    total
}

struct Slot {
    channel: Box<dyn Channel>,
    mid: u16,
    sent: u32,
    in_flight: usize,
    window: usize,
}

fn load(channels: Vec<Box<dyn Channel>>, k: usize, deadline: Instant) -> Rate {
    let mut rate = Rate::default();
    let Some(mut msg) = template() else {
        return rate;
    };
    let m = channels.len().max(1);
    let mut slots: Vec<Slot> = channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| Slot {
            channel,
            mid: rand::random(),
            sent: 0,
            in_flight: 0,
            window: (k / m + usize::from(i < k % m)).max(1),
        })
        .collect();
    // K below M leaves some channels idle: they carry no window.
    if k < m {
        for s in slots.iter_mut().skip(k) {
            s.window = 0;
        }
    }
    let mut fds: Vec<libc::pollfd> = slots.iter().map(|s| pollfd(s.channel.fd())).collect();
    let mut buf = [0u8; 2_048];
    let mut last_answer = Instant::now();
    while Instant::now() < deadline {
        let mut open = false;
        for s in slots.iter_mut() {
            while s.in_flight < s.window && s.sent < MIDS_PER_CHANNEL {
                s.mid = s.mid.wrapping_add(1);
                msg[2..4].copy_from_slice(&s.mid.to_be_bytes());
                msg[4..8].copy_from_slice(&u32::from(s.mid).to_be_bytes());
                if !s.channel.send(&msg) {
                    break;
                }
                s.sent += 1;
                s.in_flight += 1;
            }
            open |= s.in_flight > 0;
        }
        if !open {
            // Every channel spent its Message IDs.
            break;
        }
        if poll_in(&mut fds, Duration::from_millis(50)) == 0 {
            if last_answer.elapsed() >= LOST_AFTER {
                rate.lost_windows += 1;
                slots.iter_mut().for_each(|s| s.in_flight = 0);
                last_answer = Instant::now();
            }
            continue;
        }
        for (s, p) in slots.iter_mut().zip(fds.iter()) {
            if p.revents == 0 {
                continue;
            }
            for _ in 0..256 {
                let Some(n) = s.channel.recv(&mut buf) else {
                    break;
                };
                // A piggybacked 2.05: one request done.
                if n >= 4 && buf[1] == Code::CONTENT.0 {
                    rate.completed += 1;
                    last_answer = Instant::now();
                }
                s.in_flight = s.in_flight.saturating_sub(1);
            }
        }
    }
    rate
}
