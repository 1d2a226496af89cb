//! What a CoAP message goes through: a DTLS session or a plain connected UDP socket, each with
//! the Message IDs it has used (the gateway deduplicates on peer and MID for 247 s, so a lane
//! never reuses one within a run).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use crate::client::Conn;

/// Message IDs one lane sends at most in a run: below 65,536, so none repeats.
pub const MIDS_PER_LANE: u32 = 60_000;

pub trait Channel {
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
        self.read(buf)
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

/// A channel and its Message ID counter, kept across phases.
pub struct Lane {
    pub channel: Box<dyn Channel>,
    pub mid: u16,
    pub used: u32,
}

impl Lane {
    pub fn new(channel: Box<dyn Channel>) -> Lane {
        Lane {
            channel,
            mid: rand::random(),
            used: 0,
        }
    }
}
