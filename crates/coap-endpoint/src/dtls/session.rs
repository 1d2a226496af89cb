//! One DTLS session with one peer. The transport hands it each datagram the peer sent and
//! sends whatever records it leaves behind; it never touches a socket, so the transport's
//! receive loop stays the only reader.
//!
//! The handshake runs in an OpenSSL `SSL` over an in-memory wire. Once the peer has shown it
//! finished the handshake too (its first application data; as client, the server's Finished;
//! else after [`COMPACT_AFTER`]), the session derives its record keys and drops the `SSL`
//! (~30 KB) for `dtls/protection.rs` (~100 bytes): a gateway holds tens of thousands of
//! mostly idle sessions. A suite that record layer does not run keeps the `SSL`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::nid::Nid;
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream};

use super::buffers;
use super::keys::{key_block, Aead};
use super::listen::{listen, Listened};
use super::protection::{Protection, Record, Role};
use super::record::RECORD_HEADER;

/// Largest datagram the sessions produce: an IPv6-safe path MTU. Records are never split
/// across datagrams (RFC 6347 §4.1.1).
pub(crate) const MTU: u32 = 1_280;

/// How long after its handshake a session that has received no application data keeps its
/// `SSL`: long enough to answer the retransmissions of a peer that lost our last flight
/// (OpenSSL and libcoap retransmit after 1, 2, 4 s), the one thing the record layer of
/// `dtls/protection.rs` cannot do.
pub(crate) const COMPACT_AFTER: Duration = Duration::from_secs(10);

/// The epoch a DTLS 1.2 session without renegotiation (which the gateway refuses) lives in.
const SESSION_EPOCH: u16 = 1;

/// The datagrams between an `SSL` and the transport: what the peer sent, waiting to be read,
/// and what the `SSL` wrote, waiting to be sent. OpenSSL writes one datagram per call.
#[derive(Default)]
pub(crate) struct Wire {
    inbound: VecDeque<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
    /// The highest sequence number OpenSSL sent in the session's epoch: the record layer
    /// continues after it.
    highest_written: Option<u64>,
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
        if let Some(highest) = highest_sequence_in_epoch(buf, SESSION_EPOCH) {
            self.highest_written = self.highest_written.max(Some(highest));
        }
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
    /// The session switched to its own record layer with this datagram.
    pub compacted: bool,
    /// Records of the datagram the record layer dropped (forged, replayed, other epochs).
    pub records_dropped: usize,
    /// Why the session failed or closed, if it did (for the log and the counters).
    pub failure: Option<String>,
}

/// What runs the session's records.
enum Engine {
    /// OpenSSL: the handshake, and the session until it can switch.
    OpenSsl {
        stream: SslStream<Wire>,
        /// The record buffers were given back while idle ([`Session::release_idle_buffers`]).
        buffers_released: bool,
        /// The highest sequence number in the session's epoch among the datagrams that
        /// authenticated (completed the handshake or carried application data): the record
        /// layer accepts only later ones.
        highest_read: Option<u64>,
    },
    /// The session's own record layer, after the switch.
    Compact(Protection),
}

pub(crate) struct Session {
    engine: Engine,
    role: Role,
    phase: Phase,
    identity: Option<Arc<str>>,
    /// Records sealed and waiting for the transport (the `SSL`'s wire holds its own).
    outbound: Vec<Vec<u8>>,
    pub started: Instant,
    pub last_active: Instant,
    established_at: Option<Instant>,
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
        Session::start(stream, Role::Server, now)
    }

    /// A session in handshake over `stream`, after its first handshake step (`None` when
    /// that step already failed).
    fn start(stream: SslStream<Wire>, role: Role, now: Instant) -> Option<Session> {
        let mut session = Session {
            engine: Engine::OpenSsl {
                stream,
                buffers_released: false,
                highest_read: None,
            },
            role,
            phase: Phase::Handshaking,
            identity: None,
            outbound: Vec::new(),
            started: now,
            last_active: now,
            established_at: None,
        };
        let mut out = Received::default();
        session.step_handshake(&mut out, now);
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
        Session::start(
            SslStream::new(ssl, Wire::default()).ok()?,
            Role::Client,
            now,
        )
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The peer's identity once established: its PSK identity or its certificate's CN.
    pub(crate) fn identity(&self) -> Option<&Arc<str>> {
        self.identity.as_ref()
    }

    /// Whether the session runs on its own record layer (the `SSL` is gone).
    pub(crate) fn is_compact(&self) -> bool {
        matches!(self.engine, Engine::Compact(_))
    }

    /// The datagrams the session wants sent, in order.
    pub(crate) fn take_outbound(&mut self) -> Vec<Vec<u8>> {
        let mut out = std::mem::take(&mut self.outbound);
        if let Engine::OpenSsl { stream, .. } = &mut self.engine {
            out.append(&mut stream.get_mut().outbound);
        }
        out
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
        if let Engine::Compact(protection) = &mut self.engine {
            let opened = protection.open(datagram);
            out.records_dropped = opened.dropped;
            for record in opened.records {
                match record {
                    Record::ApplicationData(plaintext) => out.plaintexts.push(plaintext),
                    Record::Closed { fatal, description } => {
                        self.phase = Phase::Closed;
                        out.failure = Some(if fatal {
                            format!("peer sent fatal alert {description}")
                        } else {
                            "peer closed the session".into()
                        });
                        break;
                    }
                }
            }
            return out;
        }
        if !self.restore_buffers() {
            self.phase = Phase::Closed;
            out.failure = Some("out of memory for the record buffers".into());
            return out;
        }
        let Engine::OpenSsl { stream, .. } = &mut self.engine else {
            return out;
        };
        stream.get_mut().inbound.push_back(datagram.to_vec());
        if self.phase == Phase::Handshaking {
            self.step_handshake(&mut out, now);
            if self.phase != Phase::Established {
                self.clear_inbound();
                return out;
            }
        }
        let Engine::OpenSsl {
            stream,
            highest_read,
            ..
        } = &mut self.engine
        else {
            return out;
        };
        // Every record of the datagram (and any left from the handshake's last flight).
        for _ in 0..64 {
            match stream.ssl_read(scratch) {
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
        stream.get_mut().inbound.clear();
        let authenticated = out.established || !out.plaintexts.is_empty();
        if authenticated {
            if let Some(highest) = highest_sequence_in_epoch(datagram, SESSION_EPOCH) {
                *highest_read = (*highest_read).max(Some(highest));
            }
        }
        if self.phase != Phase::Established {
            return out;
        }
        // The peer's application data shows it finished the handshake; a client's handshake
        // ends with the server's Finished, after which the server retransmits nothing.
        if !out.plaintexts.is_empty() || (out.established && self.role == Role::Client) {
            out.compacted = self.compact();
        }
        if out.established && !out.compacted {
            // Most sessions idle from here on (a device registers, then reports rarely); a
            // busy one gets its buffers back with its next datagram.
            self.release_idle_buffers();
        }
        out
    }

    fn clear_inbound(&mut self) {
        if let Engine::OpenSsl { stream, .. } = &mut self.engine {
            stream.get_mut().inbound.clear();
        }
    }

    /// Switch an established session from its `SSL` to the record layer of
    /// `dtls/protection.rs`. False (the `SSL` stays) for a suite that layer does not run or
    /// when a key or a sequence number cannot be had.
    fn compact(&mut self) -> bool {
        if self.phase != Phase::Established {
            return false;
        }
        let Engine::OpenSsl {
            stream,
            highest_read: Some(read_through),
            ..
        } = &mut self.engine
        else {
            return false;
        };
        let read_through = *read_through;
        let next_write = stream.get_ref().highest_written.map_or(0, |h| h + 1);
        let Some(protection) = record_keys(stream.ssl(), self.role, next_write, read_through)
        else {
            return false;
        };
        let pending = std::mem::take(&mut stream.get_mut().outbound);
        self.outbound.extend(pending);
        self.engine = Engine::Compact(protection);
        true
    }

    /// From the sweep: a session established for [`COMPACT_AFTER`] without receiving
    /// application data switches anyway. True when it switched.
    pub(crate) fn compact_when_due(&mut self, now: Instant) -> bool {
        let due = self
            .established_at
            .is_some_and(|at| now.saturating_duration_since(at) >= COMPACT_AFTER);
        due && !self.is_compact() && self.compact()
    }

    /// Give the `SSL`'s record buffers (~33 KB) back while nothing is buffered in them: an
    /// established session between exchanges needs none (`dtls/buffers.rs`). Every call that
    /// lets OpenSSL read or write restores them first. True when they were released.
    pub(crate) fn release_idle_buffers(&mut self) -> bool {
        let phase = self.phase;
        let Engine::OpenSsl {
            stream,
            buffers_released,
            ..
        } = &mut self.engine
        else {
            return false;
        };
        if phase != Phase::Established || *buffers_released {
            return false;
        }
        *buffers_released = buffers::free(stream.ssl());
        *buffers_released
    }

    /// Before OpenSSL may read or write: the record buffers back if they were released.
    fn restore_buffers(&mut self) -> bool {
        if let Engine::OpenSsl {
            stream,
            buffers_released: released @ true,
            ..
        } = &mut self.engine
        {
            if !buffers::alloc(stream.ssl()) {
                return false;
            }
            *released = false;
        }
        true
    }

    fn step_handshake(&mut self, out: &mut Received, now: Instant) {
        let Engine::OpenSsl { stream, .. } = &mut self.engine else {
            return;
        };
        match stream.do_handshake() {
            Ok(()) => {
                self.phase = Phase::Established;
                self.established_at = Some(now);
                self.identity = peer_identity(stream);
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

    /// Encrypt one CoAP message into the outbound datagrams.
    pub(crate) fn seal(&mut self, plaintext: &[u8]) -> bool {
        if self.phase != Phase::Established || !self.restore_buffers() {
            return false;
        }
        match &mut self.engine {
            Engine::Compact(protection) => match protection.seal_application_data(plaintext) {
                Some(record) => {
                    self.outbound.push(record);
                    true
                }
                None => {
                    // Sequence numbers used up (or the cipher failed): the session ends and
                    // the peer handshakes again.
                    log::debug!("dtls: cannot seal on this session any more: closing it");
                    self.close();
                    false
                }
            },
            Engine::OpenSsl { stream, .. } => match stream.ssl_write(plaintext) {
                Ok(_) => true,
                Err(e) => {
                    log::debug!("dtls: seal failed: {e}");
                    false
                }
            },
        }
    }

    /// Send close_notify (the peer learns the session is gone).
    pub(crate) fn close(&mut self) {
        if self.phase == Phase::Established && self.restore_buffers() {
            match &mut self.engine {
                Engine::Compact(protection) => {
                    if let Some(record) = protection.seal_close_notify() {
                        self.outbound.push(record);
                    }
                }
                Engine::OpenSsl { stream, .. } => {
                    let _ = stream.shutdown();
                }
            }
        }
        self.phase = Phase::Closed;
    }
}

/// The record layer for an established `ssl`: its suite's AEAD and the keys derived from the
/// session's master secret. `None` for a suite `dtls/protection.rs` does not run.
fn record_keys(
    ssl: &openssl::ssl::SslRef,
    role: Role,
    next_write: u64,
    read_through: u64,
) -> Option<Protection> {
    let aead = Aead::of_suite(ssl.current_cipher()?.name())?;
    let session = ssl.session()?;
    let mut master = [0u8; 48];
    if session.master_key(&mut master) != master.len() {
        return None;
    }
    let mut client_random = [0u8; 32];
    let mut server_random = [0u8; 32];
    if ssl.client_random(&mut client_random) != 32 || ssl.server_random(&mut server_random) != 32 {
        return None;
    }
    let keys = key_block(&master, &client_random, &server_random).ok();
    master.fill(0);
    Some(Protection::new(
        aead,
        keys?,
        role,
        SESSION_EPOCH,
        next_write,
        read_through,
    ))
}

/// The highest record sequence number in `epoch` among a datagram's records.
fn highest_sequence_in_epoch(datagram: &[u8], epoch: u16) -> Option<u64> {
    let mut highest = None;
    let mut rest = datagram;
    while let Some(header) = rest.get(..RECORD_HEADER) {
        if u16::from_be_bytes([header[3], header[4]]) == epoch {
            let mut sequence = [0u8; 8];
            sequence[2..].copy_from_slice(&header[5..11]);
            highest = highest.max(Some(u64::from_be_bytes(sequence)));
        }
        let length = usize::from(u16::from_be_bytes([header[11], header[12]]));
        rest = rest.get(RECORD_HEADER + length..).unwrap_or_default();
    }
    highest
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

#[cfg(test)]
mod tests {
    //! A real OpenSSL handshake between two sessions over their in-memory wires, then records
    //! both ways across the switch: OpenSSL seals, the record layer opens, and back. This is
    //! what proves `keys.rs` and `protection.rs` speak OpenSSL's record format.
    use super::*;
    use crate::dtls::cookie::CookieJar;
    use crate::dtls::record::{client_hello, hello_verify_request};
    use crate::dtls::{server_context, DtlsServerConfig, PskStore};
    use openssl::ssl::{SslContext, SslMethod};

    const KEY: &[u8] = b"secret-node1";

    struct OneKey;
    impl PskStore for OneKey {
        fn psk(&self, identity: &[u8], out: &mut [u8]) -> Option<usize> {
            (identity == b"node1").then(|| {
                out[..KEY.len()].copy_from_slice(KEY);
                KEY.len()
            })
        }
    }

    fn client_ctx(suites: &str) -> SslContext {
        let mut b = SslContext::builder(SslMethod::dtls()).unwrap();
        b.set_cipher_list(suites).unwrap();
        b.set_psk_client_callback(|_, _, identity, psk| {
            identity[..6].copy_from_slice(b"node1\0");
            psk[..KEY.len()].copy_from_slice(KEY);
            Ok(KEY.len())
        });
        b.build()
    }

    /// Deliver every datagram `from` has for `to`; returns the plaintexts `to` got.
    fn pump(from: &mut Session, to: &mut Session, now: Instant) -> Received {
        let mut scratch = vec![0u8; 16_384];
        let mut all = Received::default();
        for d in from.take_outbound() {
            let r = to.receive(&d, &mut scratch, now);
            all.plaintexts.extend(r.plaintexts);
            all.established |= r.established;
            all.compacted |= r.compacted;
            all.records_dropped += r.records_dropped;
            all.failure = all.failure.or(r.failure);
        }
        all
    }

    /// Client and server sessions after a complete PSK handshake with `suites`.
    fn handshake(suites: &str) -> (Session, Session) {
        let now = Instant::now();
        let config = DtlsServerConfig {
            psk: Some(Arc::new(OneKey)),
            ..DtlsServerConfig::default()
        };
        let server_ctx = server_context(&config).unwrap();
        let mut client = Session::connect(&client_ctx(suites), None, now).unwrap();
        // The cookie exchange the transport does before a server session exists.
        let peer = "127.0.0.1:5000".parse().unwrap();
        let jar = CookieJar::new().unwrap();
        let hello = client.take_outbound().remove(0);
        let parsed = client_hello(&hello).unwrap();
        let hvr = hello_verify_request(parsed.sequence, &jar.mint(peer, &parsed).unwrap());
        let mut scratch = vec![0u8; 16_384];
        client.receive(&hvr, &mut scratch, now);
        let hello = client.take_outbound().remove(0);
        assert!(jar.verify(peer, &client_hello(&hello).unwrap()));
        let mut server = Session::accept(&server_ctx, &hello, now).unwrap();
        for _ in 0..8 {
            pump(&mut server, &mut client, now);
            pump(&mut client, &mut server, now);
            if client.phase() == Phase::Established && server.phase() == Phase::Established {
                break;
            }
        }
        assert_eq!(client.phase(), Phase::Established);
        assert_eq!(server.phase(), Phase::Established);
        assert_eq!(server.identity().map(|i| &**i), Some("node1"));
        (client, server)
    }

    fn records_cross_the_switch(suites: &str) {
        let now = Instant::now();
        let (mut client, mut server) = handshake(suites);
        // The client switched at once; the server keeps its SSL until the client shows it
        // finished the handshake (its last flight may still need resending).
        assert!(client.is_compact());
        assert!(!server.is_compact());

        // OpenSSL seals, the record layer opens.
        assert!(server.seal(b"from OpenSSL"));
        assert_eq!(
            pump(&mut server, &mut client, now).plaintexts,
            vec![b"from OpenSSL".to_vec()]
        );

        // The record layer seals, OpenSSL opens; that application data moves the server.
        assert!(client.seal(b"from the record layer"));
        let got = pump(&mut client, &mut server, now);
        assert_eq!(got.plaintexts, vec![b"from the record layer".to_vec()]);
        assert!(got.compacted && server.is_compact());

        // Both on the record layer, in both directions, with sequence numbers continuing
        // past OpenSSL's: nothing is taken for a replay.
        for i in 0..3u8 {
            assert!(server.seal(&[i; 40]));
            let got = pump(&mut server, &mut client, now);
            assert_eq!(
                (got.plaintexts, got.records_dropped),
                (vec![vec![i; 40]], 0)
            );
            assert!(client.seal(&[i; 7]));
            let got = pump(&mut client, &mut server, now);
            assert_eq!((got.plaintexts, got.records_dropped), (vec![vec![i; 7]], 0));
        }

        // A replayed datagram is dropped, counted, and does not reach the application.
        assert!(client.seal(b"once"));
        let datagram = client.take_outbound().remove(0);
        let mut scratch = vec![0u8; 16_384];
        assert_eq!(
            server
                .receive(&datagram, &mut scratch, now)
                .plaintexts
                .len(),
            1
        );
        let again = server.receive(&datagram, &mut scratch, now);
        assert!(again.plaintexts.is_empty());
        assert_eq!(again.records_dropped, 1);

        // close_notify from the record layer ends the peer's session.
        client.close();
        let got = pump(&mut client, &mut server, now);
        assert_eq!(server.phase(), Phase::Closed);
        assert_eq!(got.failure.as_deref(), Some("peer closed the session"));
    }

    #[test]
    fn ccm_8_records_cross_between_openssl_and_the_record_layer() {
        records_cross_the_switch("PSK-AES128-CCM8");
    }

    #[test]
    fn gcm_records_cross_between_openssl_and_the_record_layer() {
        records_cross_the_switch("PSK-AES128-GCM-SHA256");
    }

    #[test]
    fn the_record_layer_closes_to_an_openssl_peer() {
        let now = Instant::now();
        let (mut client, mut server) = handshake("PSK-AES128-CCM8");
        assert!(!server.is_compact());
        client.close();
        let got = pump(&mut client, &mut server, now);
        assert_eq!(server.phase(), Phase::Closed);
        assert_eq!(got.failure.as_deref(), Some("peer closed the session"));
    }

    #[test]
    fn a_quiet_session_switches_after_the_grace_period_only() {
        let (_client, mut server) = handshake("PSK-AES128-CCM8");
        let established = server.established_at.unwrap();
        assert!(!server.compact_when_due(established + COMPACT_AFTER / 2));
        assert!(!server.is_compact());
        assert!(server.compact_when_due(established + COMPACT_AFTER));
        assert!(server.is_compact());
    }
}
