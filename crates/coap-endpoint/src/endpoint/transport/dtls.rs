//! The DTLS transport (CoAP over DTLS, RFC 7252 §9): one UDP socket whose datagrams are
//! demultiplexed by peer address into DTLS sessions (`crate::dtls::session`). The pipeline
//! above sees the decrypted CoAP messages through the same [`DatagramSink`] as plain UDP, and
//! asks [`Transport::peer_identity`] who sent them.
//!
//! Before anything is allocated for a peer (RFC 6347 §4.2.1, RFC 9147 §5.1):
//! - a datagram from an unknown address must be a ClientHello; anything else is dropped;
//! - a hello without a valid cookie is answered with a HelloVerifyRequest computed from the
//!   datagram alone (`dtls::cookie`), and only when it is no larger than the hello, so a
//!   spoofed source can neither make the gateway hold state nor amplify;
//! - a hello with a valid cookie (the sender receives at its address) counts against the
//!   per-source handshake rate and `max_sessions`, then gets a session.
//!
//! The gateway is a DTLS client too ([`Transport::connect`]): a request to a `coaps://` peer
//! goes through the session the peer opened while it lives (DTLS is symmetric), else through a
//! new handshake from this socket, with the PSK of the identity the device registered with or
//! with the server's certificate.
//!
//! A sweep each second ends handshakes older than the handshake timeout, closes sessions
//! idle past the idle timeout, and moves sessions that stayed quiet since their handshake to
//! their own record layer (`dtls/session.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use openssl::ssl::SslContext;
use tokio::net::UdpSocket;

use super::{DatagramSink, Transport};
use crate::admission::{Admission, RateLimiter};
use crate::dtls::cookie::CookieJar;
use crate::dtls::record::{self, client_hello, hello_verify_request};
use crate::dtls::session::{Phase, Session};
use crate::dtls::trim;
use crate::dtls::{client_context, server_context, DtlsError, DtlsServerConfig, DtlsStats};
use crate::endpoint::lock;

/// Sources whose handshake rate is tracked at once.
const RATE_TABLE: usize = 65_536;
/// How often handshake and idle timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A datagram waiting for the end of the receive batch, and where it goes.
type Queued = (Vec<u8>, SocketAddr);

/// A session and, once established, who is on the other end.
struct Entry {
    session: Arc<Mutex<Session>>,
    identity: Option<Arc<str>>,
    /// Woken when the handshake ends, either way (a client `connect` waits on it).
    settled: Arc<tokio::sync::Notify>,
}

impl Entry {
    fn new(session: Session) -> Entry {
        Entry {
            session: Arc::new(Mutex::new(session)),
            identity: None,
            settled: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

struct DtlsIo {
    socket: UdpSocket,
    local: SocketAddr,
    context: SslContext,
    /// For sessions the gateway opens; `None` without credentials.
    client_context: Option<SslContext>,
    cookies: CookieJar,
    config: DtlsServerConfig,
    sessions: Mutex<HashMap<SocketAddr, Entry>>,
    /// This socket's share of `stats.sessions`.
    counted: std::sync::atomic::AtomicU64,
    /// `stats.sessions_compacted` when the heap was last trimmed (`dtls::trim`).
    trimmed_at: std::sync::atomic::AtomicU64,
    /// While the receive loop handles a batch: the datagrams to send when it ends, in one
    /// `sendmmsg` (what answers, handshake flights and alerts the batch produced).
    outbox: Mutex<Option<Vec<Queued>>>,
    handshake_rate: Option<Mutex<RateLimiter>>,
    stats: Arc<DtlsStats>,
}

/// One bound DTLS socket.
pub(crate) struct DtlsTransport {
    io: Arc<DtlsIo>,
}

impl DtlsTransport {
    pub(crate) fn bind(
        addr: SocketAddr,
        buffer: Option<usize>,
        config: &DtlsServerConfig,
        stats: Arc<DtlsStats>,
    ) -> Result<DtlsTransport, DtlsBindError> {
        let context = server_context(config)?;
        let client_context = client_context(config)?;
        let socket = super::udp::bind_one(addr, buffer)
            .and_then(UdpSocket::from_std)
            .map_err(DtlsBindError::Io)?;
        let local = socket.local_addr().map_err(DtlsBindError::Io)?;
        Ok(DtlsTransport {
            io: Arc::new(DtlsIo {
                socket,
                local,
                context,
                client_context,
                cookies: CookieJar::new().map_err(DtlsError::from)?,
                handshake_rate: (config.handshake_rate_per_s > 0.0).then(|| {
                    Mutex::new(RateLimiter::new(
                        config.handshake_rate_per_s,
                        config.handshake_burst,
                        RATE_TABLE,
                    ))
                }),
                config: config.clone(),
                sessions: Mutex::new(HashMap::new()),
                counted: std::sync::atomic::AtomicU64::new(0),
                trimmed_at: std::sync::atomic::AtomicU64::new(0),
                outbox: Mutex::new(None),
                stats,
            }),
        })
    }
}

/// Why a DTLS socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DtlsBindError {
    #[error(transparent)]
    Dtls(#[from] DtlsError),
    #[error(transparent)]
    Io(std::io::Error),
}

impl Transport for DtlsTransport {
    fn local_addr(&self) -> SocketAddr {
        self.io.local
    }

    fn send_now(&self, bytes: Cow<'_, [u8]>, peer: SocketAddr) {
        if !self.io.seal_and_send(&bytes, peer) {
            log::debug!("dtls: no session with {peer}: message dropped");
        }
    }

    fn send<'a>(&'a self, bytes: &'a [u8], peer: SocketAddr) -> BoxFuture<'a, std::io::Result<()>> {
        let sent = self.io.seal_and_send(bytes, peer);
        async move {
            if sent {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "no DTLS session with the peer",
                ))
            }
        }
        .boxed()
    }

    fn receive(&self, sink: Arc<dyn DatagramSink>) -> BoxFuture<'static, ()> {
        recv_loop(Arc::clone(&self.io), sink).boxed()
    }

    fn is_secure(&self) -> bool {
        true
    }

    fn connect<'a>(
        &'a self,
        peer: SocketAddr,
        identity: Option<Arc<str>>,
        deadline: Instant,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        self.io.connect(peer, identity, deadline).boxed()
    }

    fn peer_identity(&self, peer: SocketAddr) -> Option<Arc<str>> {
        lock(&self.io.sessions)
            .get(&peer)
            .and_then(|e| e.identity.clone())
    }

    fn reset(&self, peer: SocketAddr) {
        let session = lock(&self.io.sessions)
            .get(&peer)
            .map(|e| Arc::clone(&e.session));
        if let Some(session) = session {
            let out = {
                let mut s = lock(&session);
                s.close();
                s.take_outbound()
            };
            self.io.send_raw(out, peer);
            self.io.forget(peer, &session);
        }
    }

    fn close_sessions(&self, revoked: &dyn Fn(&str) -> bool) -> usize {
        let doomed: Vec<(SocketAddr, Arc<Mutex<Session>>)> = {
            let mut sessions = lock(&self.io.sessions);
            let peers: Vec<SocketAddr> = sessions
                .iter()
                .filter(|(_, e)| e.identity.as_deref().is_some_and(revoked))
                .map(|(p, _)| *p)
                .collect();
            peers
                .into_iter()
                .filter_map(|p| sessions.remove(&p).map(|e| (p, e.session)))
                .collect()
        };
        for (peer, session) in &doomed {
            let out = {
                let mut s = lock(session);
                s.close();
                s.take_outbound()
            };
            self.io.send_raw(out, *peer);
        }
        self.io.update_gauge();
        doomed.len()
    }
}

/// How often a waiting `connect` looks again even without a wake-up.
const CONNECT_RECHECK: Duration = Duration::from_millis(100);

impl DtlsIo {
    /// An established session with `peer`: the one it has, or a new one this socket opens as
    /// client. When `identity` is given, the session must have authenticated it.
    async fn connect(
        &self,
        peer: SocketAddr,
        identity: Option<Arc<str>>,
        deadline: Instant,
    ) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        let mut opened = false;
        loop {
            let state = lock(&self.sessions).get(&peer).map(|e| {
                (
                    Arc::clone(&e.session),
                    Arc::clone(&e.settled),
                    e.identity.clone(),
                )
            });
            match state {
                Some((session, settled, got)) => {
                    let phase = lock(&session).phase();
                    match phase {
                        Phase::Established => {
                            return match (&identity, got) {
                                (Some(want), Some(got)) if *want != got => Err(Error::new(
                                    ErrorKind::PermissionDenied,
                                    format!(
                                        "the DTLS session with {peer} is {got}'s, not {want}'s"
                                    ),
                                )),
                                _ => Ok(()),
                            };
                        }
                        Phase::Closed => {}
                        Phase::Handshaking => {
                            let now = Instant::now();
                            if now >= deadline {
                                return Err(ErrorKind::TimedOut.into());
                            }
                            let wait = deadline.saturating_duration_since(now).min(CONNECT_RECHECK);
                            let _ = tokio::time::timeout(wait, settled.notified()).await;
                            continue;
                        }
                    }
                }
                None if opened => {
                    return Err(Error::new(
                        ErrorKind::ConnectionRefused,
                        format!("DTLS handshake with {peer} failed"),
                    ))
                }
                None => {}
            }
            if opened {
                return Err(Error::new(
                    ErrorKind::ConnectionRefused,
                    format!("DTLS handshake with {peer} failed"),
                ));
            }
            self.open(peer, identity.clone())?;
            opened = true;
        }
    }

    /// Start a client handshake with `peer`.
    fn open(&self, peer: SocketAddr, identity: Option<Arc<str>>) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        let Some(ctx) = &self.client_context else {
            return Err(Error::new(
                ErrorKind::NotConnected,
                "no DTLS session with the peer, and no credentials to open one",
            ));
        };
        if self.full() {
            DtlsStats::bump(&self.stats.hellos_refused);
            return Err(Error::new(
                ErrorKind::OutOfMemory,
                "DTLS session table full",
            ));
        }
        DtlsStats::bump(&self.stats.handshakes_started);
        let Some(mut session) = Session::connect(ctx, identity, Instant::now()) else {
            DtlsStats::bump(&self.stats.handshakes_failed);
            return Err(Error::other("cannot start a DTLS handshake"));
        };
        let out = session.take_outbound();
        lock(&self.sessions).insert(peer, Entry::new(session));
        self.send_raw(out, peer);
        self.update_gauge();
        Ok(())
    }

    /// Encrypt `plaintext` for `peer`'s session and send it; false without an established
    /// session.
    fn seal_and_send(&self, plaintext: &[u8], peer: SocketAddr) -> bool {
        let Some(session) = lock(&self.sessions)
            .get(&peer)
            .map(|e| Arc::clone(&e.session))
        else {
            return false;
        };
        let out = {
            let mut s = lock(&session);
            if !s.seal(plaintext) {
                return false;
            }
            s.take_outbound()
        };
        self.send_raw(out, peer);
        true
    }

    fn send_raw(&self, datagrams: Vec<Vec<u8>>, peer: SocketAddr) {
        if datagrams.is_empty() {
            return;
        }
        if let Some(queue) = lock(&self.outbox).as_mut() {
            queue.extend(datagrams.into_iter().map(|d| (d, peer)));
            return;
        }
        self.send_unbatched(datagrams, peer);
    }

    fn send_unbatched(&self, datagrams: Vec<Vec<u8>>, peer: SocketAddr) {
        // Straight to sendto(2) on the non-blocking socket: tokio's `try_send_to` refuses
        // until the reactor has seen the socket writable once, which loses the first hello a
        // freshly bound client socket sends. A full buffer (EAGAIN) loses the datagram, as
        // any datagram may be lost; DTLS retransmits its flights.
        let sock = socket2::SockRef::from(&self.socket);
        let to = socket2::SockAddr::from(peer);
        for d in datagrams {
            if let Err(e) = sock.send_to(&d, &to) {
                log::debug!("dtls: send to {peer} failed: {e}");
            }
        }
    }

    /// Bring the endpoint-wide session gauge (shared by every DTLS socket, and what
    /// `max_sessions` bounds) in line with this socket's table.
    fn update_gauge(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = lock(&self.sessions).len() as u64;
        let before = self.counted.swap(n, Relaxed);
        if n >= before {
            self.stats.sessions.fetch_add(n - before, Relaxed);
        } else {
            self.stats.sessions.fetch_sub(before - n, Relaxed);
        }
    }

    /// Whether every DTLS socket of the endpoint together holds `max_sessions`.
    fn full(&self) -> bool {
        self.stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= self.config.max_sessions as u64
    }

    /// One datagram from `peer`.
    fn on_datagram(
        &self,
        datagram: &[u8],
        peer: SocketAddr,
        scratch: &mut [u8],
        sink: &dyn DatagramSink,
    ) {
        if record::record_header(datagram).is_none() {
            DtlsStats::bump(&self.stats.datagrams_dropped);
            return;
        }
        let existing = lock(&self.sessions)
            .get(&peer)
            .map(|e| Arc::clone(&e.session));
        if let Some(hello) = client_hello(datagram) {
            let handshaking = existing
                .as_ref()
                .is_some_and(|s| lock(s).phase() == Phase::Handshaking);
            // A hello during a handshake is the client's retransmission: its session answers.
            // A hello on an established session is a client that lost its session (a reboot):
            // it gets a new one once it proves its address with a cookie.
            if !handshaking {
                return self.on_hello(datagram, &hello, peer);
            }
        }
        let Some(session) = existing else {
            DtlsStats::bump(&self.stats.datagrams_dropped);
            return;
        };
        let now = Instant::now();
        let (received, out, phase, identity) = {
            let mut s = lock(&session);
            let received = s.receive(datagram, scratch, now);
            (
                received,
                s.take_outbound(),
                s.phase(),
                s.identity().cloned(),
            )
        };
        self.send_raw(out, peer);
        if received.compacted {
            DtlsStats::bump(&self.stats.sessions_compacted);
        }
        if received.records_dropped > 0 {
            self.stats.records_dropped.fetch_add(
                received.records_dropped as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if received.established {
            DtlsStats::bump(&self.stats.handshakes_completed);
            if let Some(entry) = lock(&self.sessions).get_mut(&peer) {
                if Arc::ptr_eq(&entry.session, &session) {
                    entry.identity = identity.clone();
                    entry.settled.notify_waiters();
                }
            }
            log::debug!(
                "dtls: session with {peer} established (identity {})",
                identity.as_deref().unwrap_or("-")
            );
        }
        if phase == Phase::Closed {
            // Closed before it had an identity: the handshake failed.
            if identity.is_none() {
                DtlsStats::bump(&self.stats.handshakes_failed);
            }
            log::debug!(
                "dtls: session with {peer} ended: {}",
                received.failure.as_deref().unwrap_or("closed")
            );
            self.forget(peer, &session);
            return;
        }
        for plaintext in &received.plaintexts {
            sink.on_datagram(plaintext, peer, false);
        }
    }

    /// A ClientHello from `peer`: a HelloVerifyRequest, or a new session.
    fn on_hello(&self, datagram: &[u8], hello: &record::ClientHello<'_>, peer: SocketAddr) {
        if !self.cookies.verify(peer, hello) {
            let Some(cookie) = self.cookies.mint(peer, hello) else {
                return;
            };
            let hvr = hello_verify_request(hello.sequence, &cookie);
            // Never answer a datagram with a larger one (no amplification).
            if hvr.len() <= datagram.len() {
                self.send_raw(vec![hvr], peer);
                DtlsStats::bump(&self.stats.hello_verify_sent);
            } else {
                DtlsStats::bump(&self.stats.datagrams_dropped);
            }
            return;
        }
        let now = Instant::now();
        let replaces = lock(&self.sessions).contains_key(&peer);
        if !replaces && self.full() {
            DtlsStats::bump(&self.stats.hellos_refused);
            log::debug!(
                "dtls: session table full ({}): hello from {peer} dropped",
                self.config.max_sessions
            );
            return;
        }
        let exempt = self.config.exempt_loopback && peer.ip().is_loopback();
        if let (Some(rate), false) = (&self.handshake_rate, exempt) {
            if lock(rate).check(peer.ip(), false, now) != Admission::Admit {
                DtlsStats::bump(&self.stats.hellos_refused);
                return;
            }
        }
        DtlsStats::bump(&self.stats.handshakes_started);
        let Some(mut session) = Session::accept(&self.context, datagram, now) else {
            DtlsStats::bump(&self.stats.handshakes_failed);
            return;
        };
        let out = session.take_outbound();
        lock(&self.sessions).insert(peer, Entry::new(session));
        self.send_raw(out, peer);
        self.update_gauge();
    }

    /// Drop `peer`'s session if it is still `session` (not a newer one).
    fn forget(&self, peer: SocketAddr, session: &Arc<Mutex<Session>>) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(&peer)
            .is_some_and(|e| Arc::ptr_eq(&e.session, session))
        {
            if let Some(entry) = sessions.remove(&peer) {
                entry.settled.notify_waiters();
            }
        }
        drop(sessions);
        self.update_gauge();
    }

    /// End handshakes past the handshake timeout and sessions idle past the idle timeout.
    fn sweep(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let sessions = lock(&self.sessions);
            for (peer, entry) in sessions.iter() {
                let Ok(mut s) = entry.session.try_lock() else {
                    continue;
                };
                let stale = match s.phase() {
                    Phase::Handshaking => {
                        now.saturating_duration_since(s.started) > self.config.handshake_timeout
                    }
                    Phase::Established => {
                        now.saturating_duration_since(s.last_active) > self.config.idle_timeout
                    }
                    Phase::Closed => true,
                };
                if stale {
                    expired.push((*peer, Arc::clone(&entry.session), s.phase()));
                } else if s.compact_when_due(now) {
                    // Established long enough that no handshake retransmission can still
                    // need its `SSL`.
                    DtlsStats::bump(&self.stats.sessions_compacted);
                } else if s.phase() == Phase::Established
                    && now.saturating_duration_since(s.last_active) >= SWEEP_EVERY
                {
                    // Quiet for a sweep: its record buffers (~33 KB) go back until the next
                    // datagram (`Session::release_idle_buffers`).
                    s.release_idle_buffers();
                }
            }
        }
        for (peer, session, phase) in expired {
            if phase == Phase::Handshaking {
                DtlsStats::bump(&self.stats.handshakes_timed_out);
            }
            let out = {
                let mut s = lock(&session);
                s.close();
                s.take_outbound()
            };
            self.send_raw(out, peer);
            self.forget(peer, &session);
        }
        self.trim_when_worth_it();
    }

    /// Once enough sessions left their `SSL`s, give the freed heap back (`dtls::trim`).
    fn trim_when_worth_it(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let compacted = self.stats.sessions_compacted.load(Relaxed);
        if compacted.saturating_sub(self.trimmed_at.load(Relaxed)) >= trim::TRIM_AFTER {
            self.trimmed_at.store(compacted, Relaxed);
            // Tens of milliseconds on a heap of 20,000 sessions: never on the receive loop.
            trim::return_free_memory_in_background();
        }
    }
}

async fn recv_loop(io: Arc<DtlsIo>, sink: Arc<dyn DatagramSink>) {
    let mut reader = Reader::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = io.socket.readable() => {
                if let Err(e) = ready {
                    log::warn!("dtls: socket {} failed: {e}", io.local);
                    return;
                }
                reader.drain(&io, &*sink);
            }
            _ = sweep.tick() => io.sweep(Instant::now()),
        }
    }
}

/// The receive loop's buffers, and how it reads what is queued on the socket.
struct Reader {
    /// On Linux, as the plain transport does (`udp.rs`): up to `BATCH` datagrams per
    /// `recvmmsg`, and what their handling sends leaves in one `sendmmsg` at the end of the
    /// batch. Per-datagram system calls, not cryptography, were what made a lookup over DTLS
    /// cost twice a plain one (docs/benchmarks.md).
    #[cfg(target_os = "linux")]
    batch: crate::batch_io::RecvBatch,
    /// Elsewhere one datagram at a time, into the largest UDP payload: a datagram must never
    /// be truncated into a "valid" record.
    #[cfg(not(target_os = "linux"))]
    buf: Vec<u8>,
    /// One TLS record's plaintext at most.
    scratch: Vec<u8>,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            #[cfg(target_os = "linux")]
            batch: crate::batch_io::RecvBatch::new(),
            #[cfg(not(target_os = "linux"))]
            buf: vec![0u8; 65_536],
            scratch: vec![0u8; 16_384],
        }
    }

    /// Handle what is queued, boundedly, so the sweep gets its turn.
    #[cfg(target_os = "linux")]
    fn drain(&mut self, io: &DtlsIo, sink: &dyn DatagramSink) {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        let fd = io.socket.as_raw_fd();
        for _ in 0..8 {
            match io.socket.try_io(Interest::READABLE, || self.batch.recv(fd)) {
                Ok(n) => io.on_batch(&self.batch, n, &mut self.scratch, sink),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("dtls: receive error on {}: {e}", io.local);
                    break;
                }
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn drain(&mut self, io: &DtlsIo, sink: &dyn DatagramSink) {
        for _ in 0..256 {
            match io.socket.try_recv_from(&mut self.buf) {
                Ok((n, peer)) => io.on_datagram(&self.buf[..n], peer, &mut self.scratch, sink),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("dtls: receive error on {}: {e}", io.local);
                    break;
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl DtlsIo {
    /// The first `n` datagrams of `batch`, then everything they made the sessions send.
    fn on_batch(
        &self,
        batch: &crate::batch_io::RecvBatch,
        n: usize,
        scratch: &mut [u8],
        sink: &dyn DatagramSink,
    ) {
        *lock(&self.outbox) = Some(Vec::with_capacity(n));
        for i in 0..n {
            let (bytes, peer, truncated) = batch.get(i);
            let Some(peer) = peer else { continue };
            // A datagram cut short must never be parsed as records (DTLS records are never
            // split across datagrams, and no peer of ours sends one this large).
            if truncated {
                DtlsStats::bump(&self.stats.datagrams_dropped);
                continue;
            }
            self.on_datagram(bytes, peer, scratch, sink);
        }
        let out = lock(&self.outbox).take().unwrap_or_default();
        // What the socket will not take now goes out one by one, and is lost if the buffer
        // stays full: DTLS and CoAP both retransmit.
        super::send_batched(&self.socket, &out, |bytes, peer| {
            self.send_unbatched(vec![bytes.to_vec()], peer)
        });
    }
}
