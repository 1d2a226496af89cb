//! One DTLS session with one peer: an OpenSSL `SSL` over an in-memory wire. The transport
//! hands it each datagram the peer sent and sends whatever records it leaves on the wire; it
//! never touches a socket, so the transport's receive loop stays the only reader.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use openssl::nid::Nid;
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream};

use super::buffers;
use super::listen::{listen, Listened};

/// Largest datagram the sessions produce: an IPv6-safe path MTU. Records are never split
/// across datagrams (RFC 6347 §4.1.1).
pub(crate) const MTU: u32 = 1_280;

/// The datagrams between an `SSL` and the transport: what the peer sent, waiting to be read,
/// and what the `SSL` wrote, waiting to be sent. OpenSSL writes one record per call.
#[derive(Default)]
pub(crate) struct Wire {
    inbound: VecDeque<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inbound.pop_front() {
            Some(datagram) => {
                // A datagram longer than OpenSSL's buffer is truncated, as a socket would.
                let n = datagram.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Handshaking,
    Established,
    /// The peer closed it, or it failed: the transport forgets it.
    Closed,
}

/// What one datagram did to a session.
#[derive(Default)]
pub(crate) struct Received {
    /// Decrypted application data, one entry per record: CoAP messages.
    pub plaintexts: Vec<Vec<u8>>,
    /// The handshake completed with this datagram.
    pub established: bool,
    /// Why the session failed or closed, if it did (for the log and the counters).
    pub failure: Option<String>,
}

pub(crate) struct Session {
    stream: SslStream<Wire>,
    phase: Phase,
    identity: Option<Arc<str>>,
    /// The record buffers were given back while idle ([`Session::release_idle_buffers`]).
    buffers_released: bool,
    pub started: Instant,
    pub last_active: Instant,
}

impl Session {
    /// A server session from a hello whose cookie the demultiplexer verified. `None` when
    /// OpenSSL refuses the hello after all.
    pub(crate) fn accept(ctx: &SslContext, hello: &[u8], now: Instant) -> Option<Session> {
        let mut ssl = Ssl::new(ctx).ok()?;
        ssl.set_mtu(MTU).ok()?;
        let mut wire = Wire::default();
        wire.inbound.push_back(hello.to_vec());
        let stream = SslStream::new(ssl, wire).ok()?;
        if listen(stream.ssl()) != Listened::Accepted {
            return None;
        }
        // DTLSv1_listen kept the hello; the first handshake step reads it and writes the
        // server's flight.
        Session::start(stream, now)
    }

    /// A session in handshake over `stream`, after its first handshake step (`None` when
    /// that step already failed).
    fn start(stream: SslStream<Wire>, now: Instant) -> Option<Session> {
        let mut session = Session {
            stream,
            phase: Phase::Handshaking,
            identity: None,
            buffers_released: false,
            started: now,
            last_active: now,
        };
        let mut out = Received::default();
        session.step_handshake(&mut out);
        (session.phase != Phase::Closed).then_some(session)
    }

    /// A client session to a device (the gateway reaching a `coaps://` peer): the hello is
    /// written at once; OpenSSL answers the device's HelloVerifyRequest itself. `identity`
    /// names the PSK the client callback offers (`dtls::client_identity`).
    pub(crate) fn connect(
        ctx: &SslContext,
        identity: Option<Arc<str>>,
        now: Instant,
    ) -> Option<Session> {
        let mut ssl = Ssl::new(ctx).ok()?;
        ssl.set_mtu(MTU).ok()?;
        if let Some(identity) = identity {
            ssl.set_ex_data(super::client_identity_index()?, identity);
        }
        ssl.set_connect_state();
        // The first step writes the hello.
        Session::start(SslStream::new(ssl, Wire::default()).ok()?, now)
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The peer's identity once established: its PSK identity or its certificate's CN.
    pub(crate) fn identity(&self) -> Option<&Arc<str>> {
        self.identity.as_ref()
    }

    /// The datagrams the session wants sent, in order.
    pub(crate) fn take_outbound(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.stream.get_mut().outbound)
    }

    /// Feed one datagram from the peer; `scratch` is the caller's read buffer.
    pub(crate) fn receive(
        &mut self,
        datagram: &[u8],
        scratch: &mut [u8],
        now: Instant,
    ) -> Received {
        let mut out = Received::default();
        if self.phase == Phase::Closed {
            return out;
        }
        self.last_active = now;
        if !self.restore_buffers() {
            self.phase = Phase::Closed;
            out.failure = Some("out of memory for the record buffers".into());
            return out;
        }
        self.stream.get_mut().inbound.push_back(datagram.to_vec());
        if self.phase == Phase::Handshaking {
            self.step_handshake(&mut out);
            if self.phase != Phase::Established {
                self.stream.get_mut().inbound.clear();
                return out;
            }
        }
        // Every record of the datagram (and any left from the handshake's last flight).
        for _ in 0..64 {
            match self.stream.ssl_read(scratch) {
                Ok(0) => break,
                Ok(n) => out.plaintexts.push(scratch[..n].to_vec()),
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.phase = Phase::Closed;
                    out.failure = Some("peer closed the session".into());
                    break;
                }
                Err(e) => {
                    self.phase = Phase::Closed;
                    out.failure = Some(e.to_string());
                    break;
                }
            }
        }
        self.stream.get_mut().inbound.clear();
        if out.established {
            // Most sessions idle from here on (a device registers, then reports rarely); a
            // busy one gets its buffers back with its next datagram.
            self.release_idle_buffers();
        }
        out
    }

    /// Give the `SSL`'s record buffers (~33 KB) back while nothing is buffered in them: an
    /// established session between exchanges needs none (`dtls/buffers.rs`). Every call that
    /// lets OpenSSL read or write restores them first. True when they were released.
    pub(crate) fn release_idle_buffers(&mut self) -> bool {
        if self.phase != Phase::Established || self.buffers_released {
            return false;
        }
        self.buffers_released = buffers::free(self.stream.ssl());
        self.buffers_released
    }

    /// Before OpenSSL may read or write: the record buffers back if they were released.
    fn restore_buffers(&mut self) -> bool {
        if self.buffers_released {
            if !buffers::alloc(self.stream.ssl()) {
                return false;
            }
            self.buffers_released = false;
        }
        true
    }

    fn step_handshake(&mut self, out: &mut Received) {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.phase = Phase::Established;
                self.identity = peer_identity(&self.stream);
                out.established = true;
                if self.identity.is_none() {
                    self.phase = Phase::Closed;
                    out.failure = Some("peer has no usable identity".into());
                }
            }
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {}
            Err(e) => {
                self.phase = Phase::Closed;
                out.failure = Some(handshake_failure(&e));
            }
        }
    }

    /// Encrypt one CoAP message into the wire's outbound datagrams.
    pub(crate) fn seal(&mut self, plaintext: &[u8]) -> bool {
        if self.phase != Phase::Established || !self.restore_buffers() {
            return false;
        }
        match self.stream.ssl_write(plaintext) {
            Ok(_) => true,
            Err(e) => {
                log::debug!("dtls: seal failed: {e}");
                false
            }
        }
    }

    /// Send close_notify (the peer learns the session is gone).
    pub(crate) fn close(&mut self) {
        if self.phase == Phase::Established && self.restore_buffers() {
            let _ = self.stream.shutdown();
        }
        self.phase = Phase::Closed;
    }
}

/// The identity a session authenticated: the PSK identity, else the certificate's subject CN.
fn peer_identity(stream: &SslStream<Wire>) -> Option<Arc<str>> {
    let ssl = stream.ssl();
    if let Some(id) = ssl.psk_identity() {
        return std::str::from_utf8(id).ok().map(Arc::from);
    }
    let cert = ssl.peer_certificate()?;
    let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
    let cn = cn.data().to_string().ok()?;
    Some(Arc::from(cn))
}

/// A handshake failure for the log: OpenSSL's reason, never key material.
fn handshake_failure(e: &openssl::ssl::Error) -> String {
    match e.ssl_error() {
        Some(stack) => stack
            .errors()
            .iter()
            .filter_map(|err| err.reason())
            .collect::<Vec<_>>()
            .join("; "),
        None => e.to_string(),
    }
}
