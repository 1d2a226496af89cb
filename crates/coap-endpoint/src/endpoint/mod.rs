//! The endpoint: the owned UDP sockets (one per bind address), one receive loop per socket,
//! and the server side of RFC 7252 on top of the pure modules: deduplication (§4.5),
//! piggybacked responses (§5.2.1), ping → RST (§4.3), option errors (§5.4.1), Block1/Block2
//! (RFC 7959) and Observe registrations and notifications (RFC 7641 §4).
//!
//! The receive loop also routes the client side's traffic (ACK, RST, separate responses and
//! notifications) to the exchanges waiting for it; see `client.rs`.
//!
//! Fast path: a request whose handler future is ready on its first poll is answered inline
//! from the receive loop — no task spawn, and the response is sent with `try_send_to`.
//!
//! Multicast (RFC 7252 §8; Linux, after [`Endpoint::join_multicast`]): a request whose
//! destination was a group gets `InboundRequest::multicast` set and is never ACKed or RST
//! (a malformed one, a ping or a Block1 piece is dropped); only a 2.xx answer is sent, as a NON
//! from the unicast address, after a random delay in `[0, multicast_leisure]` (§8.2); any
//! other answer means "nothing useful to say" and is dropped (§8.2: a server may ignore a
//! multicast request it cannot answer usefully; §8.1: no error responses to multicast).
//!
//! The files, in the order a datagram meets them:
//! - `transport`: the seam below the pipeline ([`transport::Transport`]) and its UDP
//!   implementation: the sockets, the receive loops (batched on Linux) and every send;
//! - `receive`: the per-source rate limit and routing of one datagram;
//! - `exchange_claim`: the routing tables that find the exchange an answer belongs to;
//! - `server`: a request's dedup, Block1 reassembly, handler bound and handler run;
//! - `reply`: the answer's Observe registration, Block2 slicing and delivery;
//! - `amplification`: what may be sent to a source that has not proven its address;
//! - `confirm`: the endpoint's own confirmable messages and their retransmission;
//! - `notify`: Observe notifications.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::admission::{EchoSecret, ExcessBudget, HandlerSlots, ProvenSources, RateLimiter};
use crate::block::{Block1Assembler, Block2Cache};
use crate::client::CoapClient;
use crate::dedup::DedupCache;
use crate::dtls::{DtlsServerConfig, DtlsStats};
use crate::error::{ClientError, CoapError};
use crate::hooks::{EndpointHooks, NoHooks};
use crate::message::{InboundRequest, ObserveKey, OutboundResponse};
use crate::observe::ObserverRegistry;
use crate::params::TransmissionParams;
use crate::peer_slot::PeerSlot;

mod amplification;
mod confirm;
mod exchange_claim;
mod notify;
mod receive;
mod reply;
mod server;
mod transport;

pub(crate) use exchange_claim::{Event, ExchangeClaim, Exchanges};
use transport::dtls::{DtlsBindError, DtlsTransport};
use transport::udp::UdpTransport;
use transport::{is_unreachable, DatagramSink, Transport};

/// What a handler returns; `futures::future::ready(..).boxed()` for synchronous handlers.
pub type HandlerFuture = BoxFuture<'static, OutboundResponse>;

/// The application side of the server: the RD, or a test device.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, req: InboundRequest) -> HandlerFuture;
}

/// Lock a std mutex, ignoring poisoning: every critical section here leaves the state
/// consistent at each step, so a panic elsewhere must not take the endpoint down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Events queued for one exchange. An exchange reads its events as they come; only an
/// observation whose consumer is slower than its device's notifications fills this, and then
/// the newest notifications are dropped (a later one carries the then-current state) rather
/// than queued without bound.
const EXCHANGE_EVENTS: usize = 64;

/// Multicast answers waiting out their leisure (RFC 7252 §8.2) at once; more are dropped.
const MAX_LEISURE_TASKS: usize = 1_024;

/// One bound local address: its transport and the Message IDs of what the endpoint sends
/// from it.
pub(crate) struct SocketCtx {
    transport: Box<dyn Transport>,
    pub local: SocketAddr,
    /// A DTLS socket: requests carry the peer's identity; the client sends plain requests
    /// from the plain sockets only.
    pub secure: bool,
    mid: AtomicU16,
}

pub(crate) struct Shared {
    pub sockets: Vec<SocketCtx>,
    pub params: TransmissionParams,
    handler: Arc<dyn RequestHandler>,
    /// The application's callbacks (counters).
    hooks: Arc<dyn EndpointHooks>,
    dedup: Mutex<DedupCache>,
    block1: Mutex<Block1Assembler>,
    block2: Mutex<Block2Cache<Arc<OutboundResponse>>>,
    observers: Mutex<ObserverRegistry>,
    observer_total: AtomicUsize,
    pub exchanges: Mutex<Exchanges>,
    pub in_flight: Arc<Semaphore>,
    /// Set (and `closing` notified) by shutdown: every waiting exchange ends as Cancelled.
    closed: std::sync::atomic::AtomicBool,
    closing: tokio::sync::Notify,
    /// NSTART slots and answers heard, per peer being talked to (`peer_slot.rs`).
    pub per_peer: Mutex<HashMap<SocketAddr, Arc<PeerSlot>>>,
    /// Per-source request rate; `None` when `limits.request_rate_per_s` is 0.
    rate: Option<Mutex<RateLimiter>>,
    /// Handlers running at once.
    slots: Arc<HandlerSlots>,
    /// Sources proven to receive at their address; `None` when amplification is unbounded.
    proven: Option<Mutex<ProvenSources>>,
    /// Keys the Echo values of bounded responses (RFC 9175 §2.4).
    echo: EchoSecret,
    /// Bytes per second that one-block answers to unproven sources may exceed the factor by;
    /// `None` when the bound is off or strict.
    excess: Option<Mutex<ExcessBudget>>,
    /// Multicast answers waiting out their leisure (bounded by `MAX_LEISURE_TASKS`).
    leisure_tasks: AtomicUsize,
    /// The DTLS sockets' handshake and session counters (all zero without DTLS).
    dtls_stats: Arc<DtlsStats>,
}

impl Shared {
    pub fn next_mid(&self, idx: usize) -> u16 {
        self.sockets[idx].mid.fetch_add(1, Ordering::Relaxed)
    }

    /// The socket for a peer: same address family (IPv6 sockets are V6ONLY), DTLS or plain.
    pub fn socket_for(&self, peer: SocketAddr, secure: bool) -> Option<usize> {
        self.sockets
            .iter()
            .position(|s| s.secure == secure && s.local.is_ipv4() == peer.is_ipv4())
    }

    /// Shutdown has begun: no new exchange should start.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Send from socket `idx` without waiting (see [`Transport::send_now`]).
    pub(super) fn send_now(&self, idx: usize, bytes: &[u8], peer: SocketAddr) {
        self.sockets[idx]
            .transport
            .send_now(std::borrow::Cow::Borrowed(bytes), peer);
    }

    /// Like `send_now`, taking ownership so the batched path needs no copy.
    pub(super) fn send_owned(&self, idx: usize, bytes: Vec<u8>, peer: SocketAddr) {
        self.sockets[idx]
            .transport
            .send_now(std::borrow::Cow::Owned(bytes), peer);
    }

    /// Over DTLS, an established session with `peer` (see [`Transport::connect`]).
    pub async fn connect(
        &self,
        idx: usize,
        peer: SocketAddr,
        identity: Option<Arc<str>>,
        deadline: Instant,
    ) -> std::io::Result<()> {
        self.sockets[idx]
            .transport
            .connect(peer, identity, deadline)
            .await
    }

    /// After an exchange over DTLS got no answer at all: forget the session, so that the next
    /// one handshakes again rather than sealing into a session the peer no longer has.
    pub fn after_silence(
        &self,
        idx: usize,
        peer: SocketAddr,
        outcome: &Result<impl Sized, ClientError>,
    ) {
        if self.sockets[idx].secure && matches!(outcome, Err(ClientError::Timeout)) {
            self.sockets[idx].transport.reset(peer);
        }
    }

    /// Send from socket `idx`, waiting for room.
    pub async fn send(
        &self,
        idx: usize,
        bytes: &[u8],
        peer: SocketAddr,
    ) -> Result<(), ClientError> {
        match self.sockets[idx].transport.send(bytes, peer).await {
            Ok(()) => Ok(()),
            Err(e) if is_unreachable(&e) => Err(ClientError::Unreachable(e)),
            Err(e) => Err(ClientError::Io(e)),
        }
    }
}

/// The pipeline as one socket's transport sees it.
struct SocketSink {
    shared: Arc<Shared>,
    idx: usize,
}

impl DatagramSink for SocketSink {
    fn on_datagram(&self, bytes: &[u8], peer: SocketAddr, multicast: bool) {
        self.shared.on_datagram(self.idx, bytes, peer, multicast);
    }
}

/// The bound endpoint. Dropping it (or [`Endpoint::shutdown`]) stops the receive loops.
pub struct Endpoint {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Cheap handle for notifying observers.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Send a notification to every observer of `key` (the handler is re-run with each
    /// observer's original request).
    pub fn notify(&self, key: &ObserveKey) {
        self.shared.notify(key);
    }

    pub fn observer_count(&self, key: &ObserveKey) -> usize {
        lock(&self.shared.observers).count(key)
    }
}

impl Endpoint {
    /// Bind one socket per address and start serving `handler`; nothing is reported.
    pub async fn bind(
        addrs: &[SocketAddr],
        params: TransmissionParams,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<Endpoint, CoapError> {
        Endpoint::bind_with_hooks(addrs, params, handler, Arc::new(NoHooks)).await
    }

    /// [`Endpoint::bind`], reporting the endpoint's work to `hooks`.
    pub async fn bind_with_hooks(
        addrs: &[SocketAddr],
        params: TransmissionParams,
        handler: Arc<dyn RequestHandler>,
        hooks: Arc<dyn EndpointHooks>,
    ) -> Result<Endpoint, CoapError> {
        Endpoint::bind_secure(addrs, None, params, handler, hooks).await
    }

    /// Bind plain UDP sockets on `addrs` and, with `dtls`, DTLS sockets (CoAP over DTLS,
    /// RFC 7252 §9) on its addresses, all serving `handler`. Requests over DTLS carry
    /// [`InboundRequest::identity`]; [`Endpoint::dtls_stats`] counts the handshakes.
    pub async fn bind_secure(
        addrs: &[SocketAddr],
        dtls: Option<(&[SocketAddr], &DtlsServerConfig)>,
        params: TransmissionParams,
        handler: Arc<dyn RequestHandler>,
        hooks: Arc<dyn EndpointHooks>,
    ) -> Result<Endpoint, CoapError> {
        if addrs.is_empty() && dtls.is_none_or(|(a, _)| a.is_empty()) {
            return Err(CoapError::NoAddress);
        }
        let mut rng = rand::thread_rng();
        let mut sockets = Vec::with_capacity(addrs.len());
        let deferred_sends = Arc::new(AtomicUsize::new(0));
        for &addr in addrs {
            let transport = UdpTransport::bind(
                addr,
                params.socket_buffer_bytes,
                Arc::clone(&deferred_sends),
            )
            .map_err(|source| CoapError::Bind { addr, source })?;
            sockets.push(SocketCtx {
                local: transport.local_addr(),
                transport: Box::new(transport),
                secure: false,
                mid: AtomicU16::new(rng.gen()),
            });
        }
        let dtls_stats = Arc::new(DtlsStats::default());
        if let Some((dtls_addrs, config)) = dtls {
            for &addr in dtls_addrs {
                let transport = DtlsTransport::bind(
                    addr,
                    params.socket_buffer_bytes,
                    config,
                    Arc::clone(&dtls_stats),
                )
                .map_err(|e| match e {
                    DtlsBindError::Io(source) => CoapError::Bind { addr, source },
                    DtlsBindError::Dtls(e) => CoapError::Dtls(e),
                })?;
                sockets.push(SocketCtx {
                    local: transport.local_addr(),
                    secure: transport.is_secure(),
                    transport: Box::new(transport),
                    mid: AtomicU16::new(rng.gen()),
                });
            }
        }
        let shared = Arc::new(Shared {
            sockets,
            dedup: Mutex::new(DedupCache::new(
                params.exchange_lifetime,
                params.dedup_capacity,
                params.dedup_max_bytes,
            )),
            block1: Mutex::new(Block1Assembler::new(
                params.admission.max_request_body.unwrap_or(params.max_body),
                params.max_block1_transfers,
                params.exchange_lifetime,
            )),
            block2: Mutex::new(Block2Cache::new(
                Duration::from_secs(60),
                params.max_block1_transfers,
                params.block2_max_bytes,
            )),
            observers: Mutex::new(ObserverRegistry::new(
                params.max_observers,
                params.admission.source_grouping,
            )),
            observer_total: AtomicUsize::new(0),
            exchanges: Mutex::new(Exchanges::default()),
            in_flight: Arc::new(Semaphore::new(params.max_in_flight)),
            closed: std::sync::atomic::AtomicBool::new(false),
            closing: tokio::sync::Notify::new(),
            per_peer: Mutex::new(HashMap::new()),
            rate: params.admission.rate_limited().then(|| {
                let a = &params.admission;
                Mutex::new(RateLimiter::new(a.rate_per_s, a.burst, a.source_table_size))
            }),
            slots: HandlerSlots::new(params.admission.max_handlers),
            proven: (params.admission.amplification_factor > 0).then(|| {
                let a = &params.admission;
                Mutex::new(ProvenSources::new(a.source_table_size, a.exempt_loopback))
            }),
            echo: EchoSecret::default(),
            excess: (params.admission.amplification_factor > 0
                && params.admission.unproven_excess_bytes_per_s > 0.0)
                .then(|| {
                    Mutex::new(ExcessBudget::new(
                        params.admission.unproven_excess_bytes_per_s,
                        params.admission.source_table_size,
                        Instant::now(),
                    ))
                }),
            leisure_tasks: AtomicUsize::new(0),
            dtls_stats,
            handler,
            hooks,
            params,
        });
        let tasks = (0..shared.sockets.len())
            .map(|idx| {
                let sink = Arc::new(SocketSink {
                    shared: Arc::clone(&shared),
                    idx,
                });
                tokio::spawn(shared.sockets[idx].transport.receive(sink))
            })
            .collect();
        Ok(Endpoint { shared, tasks })
    }

    /// The plain UDP sockets' addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .sockets
            .iter()
            .filter(|s| !s.secure)
            .map(|s| s.local)
            .collect()
    }

    /// The DTLS sockets' addresses.
    pub fn secure_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .sockets
            .iter()
            .filter(|s| s.secure)
            .map(|s| s.local)
            .collect()
    }

    /// The DTLS handshake and session counters.
    pub fn dtls_stats(&self) -> Arc<DtlsStats> {
        Arc::clone(&self.shared.dtls_stats)
    }

    /// Close (with close_notify) every DTLS session whose identity `revoked` names: an
    /// identity removed from the credentials must not keep talking. How many were closed.
    pub fn close_dtls_sessions(&self, revoked: &dyn Fn(&str) -> bool) -> usize {
        self.shared
            .sockets
            .iter()
            .map(|s| s.transport.close_sessions(revoked))
            .sum()
    }

    pub fn client(&self) -> CoapClient {
        CoapClient::new(Arc::clone(&self.shared))
    }

    /// Join `group` on interface `ifindex` (RFC 7252 §8) with the socket bound to the
    /// unspecified address of the group's family on `port` (only such a socket receives
    /// datagrams sent to the group's port). From then on requests sent to the group reach the
    /// handler with `multicast` set. `NotFound` when no such socket is bound.
    #[cfg(target_os = "linux")]
    pub fn join_multicast(
        &self,
        group: std::net::IpAddr,
        port: u16,
        ifindex: u32,
    ) -> std::io::Result<()> {
        let ctx = self
            .shared
            .sockets
            .iter()
            .find(|s| {
                s.local.is_ipv4() == group.is_ipv4()
                    && s.local.ip().is_unspecified()
                    && s.local.port() == port
            })
            .ok_or_else(|| {
                let any = if group.is_ipv4() { "0.0.0.0" } else { "[::]" };
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no socket bound to {any}:{port}"),
                )
            })?;
        ctx.transport.join_multicast(group, ifindex)
    }

    pub fn server(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stop the receive loops and fail pending client requests with `Cancelled`. The sockets
    /// close once the last client handle is dropped.
    pub async fn shutdown(mut self) {
        self.stop();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    fn stop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.in_flight.close();
        self.shared.closed.store(true, Ordering::Release);
        self.shared.closing.notify_waiters();
        let mut ex = lock(&self.shared.exchanges);
        ex.by_token.clear();
        ex.by_mid.clear();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}
