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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use coap_lite::Packet;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::block::{
    slice_block, szx_for, Block1Assembler, Block1Outcome, Block2Cache, BlockOption,
};
use super::client::CoapClient;
use super::code::{Code, Method};
use super::codec::{
    self, code_of, encode_empty, encode_response, msg_type, DecodeError, MsgType, ResponseExtras,
};
use super::dedup::{DedupCache, FastBuild, Seen};
use super::error::{ClientError, CoapError};
use super::exchange::Backoff;
use super::message::{InboundRequest, ObserveKey, OutboundResponse};
use super::observe::ObserverRegistry;
use super::params::TransmissionParams;
use super::peer_slot::PeerSlot;
use crate::limits::{
    block_size_within, within_budget, Admission, EchoSecret, ExcessBudget, HandlerSlots,
    LogThrottle, ProvenSources, RateLimiter,
};

/// Answers cut to the amplification bound because the excess budget was spent.
static EXCESS_SPENT_LOG: LogThrottle = LogThrottle::new();
/// Block1 uploads displaced by newer ones (a source over its share, or a full table).
static BLOCK1_EVICTED_LOG: LogThrottle = LogThrottle::new();

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

/// Datagrams that may wait for room in a full socket buffer at once (~ 8 MB of responses at
/// the 1 KiB block size, twice the socket's own 4 MB buffer).
const MAX_DEFERRED_SENDS: usize = 8_192;
/// Multicast answers waiting out their leisure (RFC 7252 §8.2) at once; more are dropped.
const MAX_LEISURE_TASKS: usize = 1_024;

/// An outgoing datagram waiting for the receive loop's batched send.
type Queued = (Vec<u8>, SocketAddr);

pub(crate) struct SocketCtx {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    mid: AtomicU16,
    /// `Some` while the receive loop processes a batch: sends are queued and leave together
    /// in one `sendmmsg` when the batch is done. Checked under the same lock by other tasks,
    /// so nothing is queued after the flush.
    outbox: Mutex<Option<Vec<Queued>>>,
}

/// Something the receive loop delivers to a waiting exchange.
#[derive(Debug)]
pub(crate) enum Event {
    EmptyAck,
    Reset,
    Response {
        packet: Packet,
        mtype: MsgType,
    },
    /// A response we rejected (unknown critical option): the exchange fails.
    Rejected,
    /// A response to a request sent to a group, from the member that answered (RFC 7252 §8.2:
    /// members answer from their unicast addresses).
    GroupResponse {
        packet: Packet,
        from: SocketAddr,
    },
}

#[derive(Default)]
pub(crate) struct Exchanges {
    pub by_token: HashMap<[u8; 8], (SocketAddr, mpsc::Sender<Event>), FastBuild>,
    pub by_mid: HashMap<(SocketAddr, u16), mpsc::Sender<Event>, FastBuild>,
}

pub(crate) struct Shared {
    pub sockets: Vec<SocketCtx>,
    pub params: TransmissionParams,
    handler: Arc<dyn RequestHandler>,
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
    /// Datagrams waiting on a task for room in a full socket buffer.
    deferred_sends: AtomicUsize,
    /// Multicast answers waiting out their leisure (bounded by `MAX_LEISURE_TASKS`).
    leisure_tasks: AtomicUsize,
}

/// Context a response needs once the handler has answered.
struct ReplyCtx {
    idx: usize,
    peer: SocketAddr,
    mid: u16,
    confirmable: bool,
    token: Vec<u8>,
    block1: Option<BlockOption>,
    block2: Option<BlockOption>,
    /// The request to remember if the handler accepts an observation.
    observe_req: Option<InboundRequest>,
    /// Identifies the resource for the Block2 cache.
    block_key: String,
    /// The request was already acknowledged with an empty ACK: the response goes as a CON
    /// of its own (RFC 7252 §5.2.2).
    separate: bool,
    /// When the decoded request reached `on_request` (start of the latency histogram's span).
    received: Instant,
    /// The request arrived by multicast: only a 2.xx is sent, as a NON, after the leisure.
    multicast: bool,
    /// The request datagram's size: the amplification budget is a multiple of it.
    request_len: usize,
}

impl Shared {
    pub fn next_mid(&self, idx: usize) -> u16 {
        self.sockets[idx].mid.fetch_add(1, Ordering::Relaxed)
    }

    /// The socket for a peer: same address family (IPv6 sockets are V6ONLY).
    pub fn socket_for(&self, peer: SocketAddr) -> Option<usize> {
        self.sockets
            .iter()
            .position(|s| s.local.is_ipv4() == peer.is_ipv4())
    }

    /// Send without waiting; a full socket buffer defers the send to a task.
    fn send_now(self: &Arc<Self>, idx: usize, bytes: &[u8], peer: SocketAddr) {
        if let Some(queue) = lock(&self.sockets[idx].outbox).as_mut() {
            queue.push((bytes.to_vec(), peer));
            return;
        }
        self.send_unbatched(idx, bytes, peer);
    }

    /// Like `send_now`, taking ownership so the batched path needs no copy.
    fn send_owned(self: &Arc<Self>, idx: usize, bytes: Vec<u8>, peer: SocketAddr) {
        if let Some(queue) = lock(&self.sockets[idx].outbox).as_mut() {
            queue.push((bytes, peer));
            return;
        }
        self.send_unbatched(idx, &bytes, peer);
    }

    fn send_unbatched(self: &Arc<Self>, idx: usize, bytes: &[u8], peer: SocketAddr) {
        match self.sockets[idx].socket.try_send_to(bytes, peer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A full socket buffer: wait for room on a task, but only for so many datagrams
                // (no unbounded queue). Beyond that the datagram is lost like any UDP
                // datagram; a CON's retransmission is answered from the deduplication cache.
                if self.deferred_sends.fetch_add(1, Ordering::AcqRel) >= MAX_DEFERRED_SENDS {
                    self.deferred_sends.fetch_sub(1, Ordering::AcqRel);
                    log::debug!("coap: send buffer full, response to {peer} dropped");
                    return;
                }
                let shared = Arc::clone(self);
                let bytes = bytes.to_vec();
                tokio::spawn(async move {
                    let _ = shared.sockets[idx].socket.send_to(&bytes, peer).await;
                    shared.deferred_sends.fetch_sub(1, Ordering::AcqRel);
                });
            }
            Err(e) => log::debug!("coap: send to {peer} failed: {e}"),
        }
    }

    pub async fn send(
        &self,
        idx: usize,
        bytes: &[u8],
        peer: SocketAddr,
    ) -> Result<(), ClientError> {
        match self.sockets[idx].socket.send_to(bytes, peer).await {
            Ok(_) => Ok(()),
            Err(e) if is_unreachable(&e) => Err(ClientError::Unreachable(e)),
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    fn on_datagram(self: &Arc<Self>, idx: usize, bytes: &[u8], peer: SocketAddr, multicast: bool) {
        if self.rate.is_some() && !self.admit(idx, bytes, peer, multicast) {
            return;
        }
        if multicast {
            return self.on_multicast(idx, bytes, peer);
        }
        let packet = match codec::decode(bytes) {
            Ok(p) => p,
            Err(DecodeError::Format {
                mtype: MsgType::Con,
                mid,
            }) => {
                // §4.2: a CON that cannot be processed is rejected.
                self.send_now(idx, &encode_empty(MsgType::Rst, mid), peer);
                return;
            }
            // §4.3: malformed NON, ACK and RST are silently ignored.
            Err(_) => return,
        };
        let mtype = msg_type(&packet);
        let code = code_of(&packet);
        let mid = packet.header.message_id;
        if code.is_empty() {
            match mtype {
                // A "CoAP ping" (§4.3).
                MsgType::Con => self.send_now(idx, &encode_empty(MsgType::Rst, mid), peer),
                MsgType::Non => {}
                MsgType::Ack => self.deliver_by_mid(peer, mid, Event::EmptyAck),
                MsgType::Rst => self.deliver_by_mid(peer, mid, Event::Reset),
            }
            return;
        }
        if code.is_request() {
            if matches!(mtype, MsgType::Con | MsgType::Non) {
                self.on_request(idx, packet, mtype, peer, false, bytes.len());
            }
            return;
        }
        self.on_response(idx, packet, mtype, peer);
    }

    /// A datagram sent to a group (RFC 7252 §8.1): only a well-formed request is processed;
    /// nothing else ever gets an answer (no RST, no ACK, no ping reply).
    fn on_multicast(self: &Arc<Self>, idx: usize, bytes: &[u8], peer: SocketAddr) {
        let Ok(packet) = codec::decode(bytes) else {
            log::debug!("coap: malformed multicast datagram from {peer} dropped");
            return;
        };
        let mtype = msg_type(&packet);
        if code_of(&packet).is_request() && matches!(mtype, MsgType::Con | MsgType::Non) {
            self.on_request(idx, packet, mtype, peer, true, bytes.len());
        } else {
            log::debug!("coap: multicast non-request from {peer} dropped");
        }
    }

    /// The per-source rate limit, checked on the raw datagram before any decoding:
    /// every CON and NON costs a token — requests, pings, undecodable ones, and responses that
    /// match none of our exchanges, since each may make the endpoint answer (a RST at least);
    /// ACK and RST cost nothing (never answered), nor do notifications and separate responses
    /// carrying the token of one of our own requests (traffic the gateway asked for). Over the
    /// rate: one 4.29 now and then for a CON request, silence otherwise (see `limits`).
    fn admit(
        self: &Arc<Self>,
        idx: usize,
        bytes: &[u8],
        peer: SocketAddr,
        multicast: bool,
    ) -> bool {
        let Some(limiter) = &self.rate else {
            return true;
        };
        let Some((mtype, code, mid)) = codec::peek(bytes) else {
            return true;
        };
        let answerable = matches!(mtype, MsgType::Con | MsgType::Non);
        if !answerable || (self.params.admission.exempt_loopback && peer.ip().is_loopback()) {
            return true;
        }
        if !code.is_request() && !code.is_empty() && self.answers_our_exchange(bytes, peer) {
            // A notification or separate response to one of our own requests (an Observer
            // observation, a command) is traffic the gateway asked for: charging it to the
            // device's request rate would make a busy observed device, or many behind one NAT,
            // lose its own registration refreshes to 4.29.
            // Only our random 8-byte tokens match, so a spoofer gains nothing by it.
            return true;
        }
        let now = Instant::now();
        // Only a CON request is worth a 4.29; anything else over the rate is dropped.
        // A multicast request never gets an error (RFC 7252 §8.1), so never a 4.29 either.
        let con_request = !multicast && mtype == MsgType::Con && code.is_request();
        let (admission, log_line) = {
            let mut limiter = lock(limiter);
            // One bucket per source: an IPv4 address, an IPv6 /64 (`source_key.rs`).
            let source = self.params.admission.source_grouping.key(peer.ip());
            let admission = limiter.check(source, con_request, now);
            let log_line = match admission {
                Admission::Admit => None,
                _ => limiter.log_line(now),
            };
            (admission, log_line)
        };
        if let Some(line) = log_line {
            log::warn!("coap: {line}");
        }
        match admission {
            Admission::Admit => true,
            Admission::Drop => false,
            Admission::Refuse { retry_after_s } => {
                let token_len = usize::from(bytes[0] & 0x0f);
                if let Some(token) = bytes.get(4..4 + token_len).filter(|_| token_len <= 8) {
                    let resp =
                        OutboundResponse::new(Code::TOO_MANY_REQUESTS).with_max_age(retry_after_s);
                    let reply = encode_response(
                        MsgType::Ack,
                        mid,
                        token,
                        &resp,
                        &[],
                        ResponseExtras::default(),
                    );
                    self.send_owned(idx, reply, peer);
                    crate::metrics::global()
                        .record_response(Code::TOO_MANY_REQUESTS, Duration::ZERO);
                }
                false
            }
        }
    }

    /// Whether the raw datagram carries the token of one of our exchanges with `peer`.
    fn answers_our_exchange(&self, bytes: &[u8], peer: SocketAddr) -> bool {
        let token_len = usize::from(bytes.first().map_or(0, |b| b & 0x0f));
        let Some(token) = bytes
            .get(4..4 + token_len)
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
        else {
            return false;
        };
        lock(&self.exchanges)
            .by_token
            .get(&token)
            .is_some_and(|(p, _)| *p == peer)
    }

    fn deliver_by_mid(&self, peer: SocketAddr, mid: u16, ev: Event) {
        let acked = matches!(ev, Event::EmptyAck);
        let matched = match lock(&self.exchanges).by_mid.get(&(peer, mid)) {
            Some(tx) => {
                let _ = tx.try_send(ev);
                true
            }
            None => false,
        };
        if matched {
            if let Some(slot) = lock(&self.per_peer).get(&peer) {
                slot.note_heard();
                if acked {
                    slot.note_acked();
                }
            }
        }
    }

    /// The peer answered one of our exchanges: evidence of life for a ping waiting on its
    /// slot (`peer_slot.rs`). Only answers matched by token or MID get here.
    fn note_heard(&self, peer: SocketAddr) {
        if let Some(slot) = lock(&self.per_peer).get(&peer) {
            slot.note_heard();
        }
    }

    /// Shutdown has begun: no new exchange should start.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn on_response(self: &Arc<Self>, idx: usize, packet: Packet, mtype: MsgType, peer: SocketAddr) {
        let mid = packet.header.message_id;
        if matches!(mtype, MsgType::Con | MsgType::Non) {
            let mut dedup = lock(&self.dedup);
            match dedup.check(peer, mid, Instant::now()) {
                Seen::New => {}
                Seen::InProgress => return,
                Seen::Answered(bytes) => {
                    if mtype == MsgType::Con {
                        self.send_now(idx, bytes, peer);
                    }
                    return;
                }
            }
        }
        // A request sent to a group is answered from each member's own address.
        let mut group = false;
        let tx = <[u8; 8]>::try_from(packet.get_token()).ok().and_then(|t| {
            lock(&self.exchanges)
                .by_token
                .get(&t)
                .filter(|(p, _)| *p == peer || p.ip().is_multicast())
                .map(|(p, tx)| {
                    group = p.ip().is_multicast();
                    tx.clone()
                })
        });
        let acceptable = codec::parse_response(&packet).is_some();
        // An answer carrying our random token does not prove its address for the amplification
        // bound: whoever spoofs a simple registration from a victim's address makes us ask the
        // victim, and its honest answer would then unlock large answers to the spoofer's
        // requests. Only a returned Echo value proves an address (`check_echo`).
        if tx.is_some() && !group {
            self.note_heard(peer);
        }
        match mtype {
            MsgType::Ack => {
                if let Some(tx) = tx {
                    let ev = if acceptable {
                        Event::Response { packet, mtype }
                    } else {
                        Event::Rejected
                    };
                    let _ = tx.try_send(ev);
                }
            }
            MsgType::Con | MsgType::Non => {
                // A separate response or notification: ACK it if someone waits for it (§5.2.2),
                // otherwise reject it — that is also how an unwanted notification is refused
                // (RFC 7641 §3.6).
                let wanted = tx.is_some() && acceptable;
                let reply_type = if wanted { MsgType::Ack } else { MsgType::Rst };
                let reply = encode_empty(reply_type, mid);
                if mtype == MsgType::Con || !wanted {
                    self.send_now(idx, &reply, peer);
                }
                if mtype == MsgType::Con {
                    lock(&self.dedup).answered(peer, mid, &reply);
                }
                if let Some(tx) = tx {
                    let ev = match (acceptable, group) {
                        (true, false) => Event::Response { packet, mtype },
                        (true, true) => Event::GroupResponse { packet, from: peer },
                        // One member's bad answer must not end the whole group exchange.
                        (false, true) => return,
                        (false, false) => Event::Rejected,
                    };
                    let _ = tx.try_send(ev);
                }
            }
            MsgType::Rst => {}
        }
    }

    fn on_request(
        self: &Arc<Self>,
        idx: usize,
        mut packet: Packet,
        mtype: MsgType,
        peer: SocketAddr,
        multicast: bool,
        request_len: usize,
    ) {
        let mid = packet.header.message_id;
        let now = Instant::now();
        {
            let mut dedup = lock(&self.dedup);
            match dedup.check(peer, mid, now) {
                Seen::New => {}
                Seen::InProgress => return,
                Seen::Answered(bytes) => {
                    // §8.1: a request sent to a group is never acknowledged, even when its MID
                    // matches one this peer sent by unicast. A replayed answer is bounded like
                    // a fresh one: a 4-byte duplicate must not fetch a 1 KB answer again and
                    // again for an unproven (possibly spoofed) source.
                    if mtype == MsgType::Con
                        && !multicast
                        && self.may_send(peer, bytes.len(), request_len)
                    {
                        self.send_now(idx, bytes, peer);
                    }
                    return;
                }
            }
        }
        let mut ctx = ReplyCtx {
            idx,
            peer,
            mid,
            // §8.1: a multicast request is never acknowledged, whatever its type says.
            confirmable: mtype == MsgType::Con && !multicast,
            token: packet.get_token().to_vec(),
            block1: None,
            block2: None,
            observe_req: None,
            block_key: String::new(),
            separate: false,
            received: now,
            multicast,
            request_len,
        };
        if let Some(proven) = &self.proven {
            self.check_echo(proven, &packet, peer);
        }
        let local = self.sockets[idx].local;
        let parsed = match codec::parse_request(&mut packet, peer, local) {
            Ok(p) => p,
            Err(e) => {
                let resp = OutboundResponse::new(e.code()).with_diagnostic(e.diagnostic());
                self.reply(ctx, resp, ResponseExtras::default());
                return;
            }
        };
        drop(packet);
        let mut req = parsed.request;
        req.multicast = multicast;
        ctx.block2 = req.block2;
        if multicast && parsed.block1.is_some() {
            log::debug!("coap: multicast Block1 request from {peer} dropped");
            return;
        }
        if let Some(b1) = parsed.block1 {
            let key = request_key(&req);
            let a = &self.params.admission;
            let source = (!(a.exempt_loopback && peer.ip().is_loopback()))
                .then(|| a.source_grouping.key(peer.ip()));
            let (outcome, evicted) = {
                let mut assembler = lock(&self.block1);
                let before = assembler.evicted();
                let outcome =
                    assembler.offer(peer, source, key, b1, &req.payload, parsed.size1, now);
                (outcome, assembler.evicted() - before)
            };
            if evicted > 0 {
                if let Some(n) = BLOCK1_EVICTED_LOG.note() {
                    log::warn!(
                        "coap: {n} Block1 upload(s) displaced by newer ones in the last {}s (at \
                         most {} per source, {} in all; the displaced client gets 4.08 and \
                         starts again): a host starting uploads it never finishes does this",
                        crate::limits::log_throttle::REPORT_EVERY_S,
                        crate::coap::block::DEFAULT_TRANSFERS_PER_SOURCE,
                        self.params.max_block1_transfers
                    );
                }
            }
            match outcome {
                Block1Outcome::Continue(b) => {
                    let extras = ResponseExtras {
                        block1: Some(b),
                        ..Default::default()
                    };
                    self.reply(ctx, OutboundResponse::new(Code::CONTINUE), extras);
                    return;
                }
                Block1Outcome::Complete(body, b) => {
                    req.payload = body;
                    ctx.block1 = Some(b);
                }
                Block1Outcome::Incomplete => {
                    self.reply(
                        ctx,
                        OutboundResponse::new(Code::REQUEST_ENTITY_INCOMPLETE),
                        ResponseExtras::default(),
                    );
                    return;
                }
                Block1Outcome::TooLarge => {
                    let extras = ResponseExtras {
                        size1: Some(self.max_request_body() as u32),
                        ..Default::default()
                    };
                    self.reply(
                        ctx,
                        OutboundResponse::new(Code::REQUEST_ENTITY_TOO_LARGE),
                        extras,
                    );
                    return;
                }
            }
        }
        ctx.block_key = request_key(&req);
        if req.block2.is_some_and(|b| b.num > 0) {
            let cached = lock(&self.block2).get(peer, &ctx.block_key, now);
            if let Some(resp) = cached {
                // Cheap: the body is a shared `Bytes`; only the small header fields are cloned.
                self.reply(ctx, (*resp).clone(), ResponseExtras::default());
                return;
            }
        }
        // Taken before the handler's first poll: that poll may already have sent a message
        // (e.g. to the Registry), so a request refused later could still change state.
        let Some(slot) = self.slots.try_take() else {
            self.refuse_busy(ctx);
            return;
        };
        if !multicast {
            self.observe_bookkeeping(&mut ctx, &req);
        }
        // A panicking handler must not take the receive loop down: it answers 5.00 instead.
        let handler = &self.handler;
        let Ok(fut) = catch_unwind(AssertUnwindSafe(|| handler.handle(req))) else {
            self.reply(ctx, internal_error(), ResponseExtras::default());
            return;
        };
        let mut fut = AssertUnwindSafe(fut)
            .catch_unwind()
            .map(|r| r.unwrap_or_else(|_| internal_error()));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match fut.poll_unpin(&mut cx) {
            Poll::Ready(resp) => self.reply(ctx, resp, ResponseExtras::default()),
            Poll::Pending => {
                // The handler really waits (e.g. for the Registry): finish on a task. Polling
                // again with a real waker re-registers interest, so the no-op waker is harmless.
                let shared = Arc::clone(self);
                tokio::spawn(async move {
                    let _slot = slot;
                    let after = shared.params.separate_response_after;
                    let resp = if ctx.confirmable {
                        tokio::select! {
                            resp = &mut fut => resp,
                            _ = tokio::time::sleep(after) => {
                                // Slow answer: stop the client's retransmissions now and send
                                // the response separately. Duplicates get this empty ACK.
                                let ack = encode_empty(MsgType::Ack, ctx.mid);
                                shared.send_now(ctx.idx, &ack, ctx.peer);
                                lock(&shared.dedup).answered(ctx.peer, ctx.mid, &ack);
                                ctx.separate = true;
                                fut.await
                            }
                        }
                    } else {
                        fut.await
                    };
                    shared.reply(ctx, resp, ResponseExtras::default());
                });
            }
        }
    }

    /// Every handler slot is taken: 5.03 with Max-Age for a CON, nothing for a NON (RFC 7252
    /// §5.9.3.4); a log line at most every 10 s.
    fn refuse_busy(self: &Arc<Self>, ctx: ReplyCtx) {
        if let Some(refused) = self.slots.note_refusal() {
            log::warn!(
                "coap: {} requests refused since the last report: all {} handler slots busy \
                 (limits.max_concurrent_handlers)",
                refused,
                self.slots.max()
            );
        }
        if ctx.confirmable {
            let retry = self.params.admission.busy_retry_after.as_secs().max(1) as u32;
            let resp = OutboundResponse::new(Code::SERVICE_UNAVAILABLE).with_max_age(retry);
            self.reply(ctx, resp, ResponseExtras::default());
        }
    }

    /// A request that returns the Echo value of a bounded response proves its address.
    fn check_echo(&self, proven: &Mutex<ProvenSources>, packet: &Packet, peer: SocketAddr) {
        let echo = packet
            .get_option(coap_lite::CoapOption::Unknown(ECHO_OPTION))
            .and_then(|values| values.front());
        if let Some(echo) = echo {
            if self.echo.verify(peer.ip(), echo, unix_now_s()) {
                lock(proven).mark(peer.ip());
            }
        }
    }

    fn max_request_body(&self) -> usize {
        self.params
            .admission
            .max_request_body
            .unwrap_or(self.params.max_body)
    }

    /// The byte budget of a response to `peer` (RFC 7252 §11.3), `None` when unbounded: the
    /// bound is off, the source is proven, or it is an exempt loopback address.
    fn amplification_budget(&self, peer: SocketAddr, request_len: usize) -> Option<usize> {
        let proven = self.proven.as_ref()?;
        let factor = self.params.admission.amplification_factor;
        if lock(proven).is_proven(peer.ip()) {
            return None;
        }
        Some(request_len.saturating_mul(factor))
    }

    /// Whether `len` bytes may go to `peer` in answer to a request of `request_len` bytes:
    /// always when the peer is proven (or the bound is off), within the factor, or when the
    /// excess over the factor can be paid from the gateway-wide budget (which is then spent).
    fn may_send(&self, peer: SocketAddr, len: usize, request_len: usize) -> bool {
        let Some(budget) = self.amplification_budget(peer, request_len) else {
            return true;
        };
        len <= budget || self.spend_excess(peer, len - budget)
    }

    /// Whether `len` bytes that answer no request of the moment (a notification, a resent
    /// separate response) may go to `peer`: always when it is proven (or the bound is off or it
    /// is an exempt loopback address); otherwise all of them are paid from the excess budget.
    fn may_send_unsolicited(&self, peer: SocketAddr, len: usize) -> bool {
        self.may_send(peer, len, 0)
    }

    /// Remember that `peer` was answered, so that it is familiar to the excess budget's
    /// reserve should a flood spend the open pool later (`ExcessBudget`).
    fn note_answered(&self, peer: SocketAddr) {
        if let Some(budget) = &self.excess {
            let source = self.params.admission.source_grouping.key(peer.ip());
            lock(budget).note(source, Instant::now());
        }
    }

    /// Pay `bytes` over the factor from the excess budget; false when it cannot. A strict
    /// configuration (no budget) cuts without a warning: that is what it asked for.
    fn spend_excess(&self, peer: SocketAddr, bytes: usize) -> bool {
        let Some(budget) = &self.excess else {
            return false;
        };
        let source = self.params.admission.source_grouping.key(peer.ip());
        let granted = lock(budget).try_spend(source, bytes, Instant::now());
        if !granted {
            if let Some(n) = EXCESS_SPENT_LOG.note() {
                log::warn!(
                    "coap: {n} answer(s) to unproven sources cut to the amplification bound in \
                     the last {}s: the excess budget (limits.unproven_excess_bytes_per_s) is \
                     spent, which a reflection attack or an unusually busy LAN does",
                    crate::limits::log_throttle::REPORT_EVERY_S
                );
            }
        }
        granted
    }

    /// RFC 7641 §3.6 / §4.1: Observe=1 or a plain GET with an observing token deregisters;
    /// Observe=0 on the first block remembers the request for a possible registration.
    fn observe_bookkeeping(&self, ctx: &mut ReplyCtx, req: &InboundRequest) {
        let first_block = req.block2.is_none_or(|b| b.num == 0);
        match req.observe {
            Some(0) if first_block && matches!(req.method, Method::Get | Method::Fetch) => {
                ctx.observe_req = Some(req.clone());
            }
            _ => {
                if self.observer_total.load(Ordering::Relaxed) > 0
                    && (req.observe == Some(1) || req.method == Method::Get)
                    && first_block
                {
                    let mut obs = lock(&self.observers);
                    if obs.remove(req.source, &req.token) {
                        self.observer_total.store(obs.len(), Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn reply(
        self: &Arc<Self>,
        mut ctx: ReplyCtx,
        mut resp: OutboundResponse,
        mut extras: ResponseExtras,
    ) {
        if ctx.multicast && !resp.code.is_success() {
            log::debug!(
                "coap: multicast request from {} not answered ({})",
                ctx.peer,
                resp.code
            );
            return;
        }
        crate::metrics::global().record_response(resp.code, ctx.received.elapsed());
        if extras.block1.is_none() {
            extras.block1 = ctx.block1;
        }
        if resp.code == Code::REQUEST_ENTITY_TOO_LARGE && extras.size1.is_none() {
            // RFC 7252 §5.10.9: the largest request body this endpoint accepts.
            extras.size1 = Some(self.max_request_body() as u32);
        }
        if let (Some(orig), Some(key)) = (ctx.observe_req.take(), &resp.observe) {
            // Any source may observe, a bounded number of times per source address or /64
            // (`MAX_OBSERVATIONS_PER_SOURCE`). Notifications are unsolicited traffic to the
            // observer's address, so while it has not proven it receives there (RFC 7252 §11.3,
            // RFC 9175 §2.4) every notification byte is paid from the excess budget, and an
            // observer that does not acknowledge them is dropped (`send_notification`).
            if resp.code.is_success() {
                let mut obs = lock(&self.observers);
                let (peer, token) = (orig.source, orig.token.clone());
                if obs.register(key.clone(), orig) {
                    obs.record_etag(peer, &token, resp.etag.as_deref());
                    extras.observe = Some(obs.next_seq());
                }
                self.observer_total.store(obs.len(), Ordering::Relaxed);
            }
        }
        let (mtype, mid) = if ctx.separate {
            (MsgType::Con, self.next_mid(ctx.idx))
        } else if ctx.confirmable {
            (MsgType::Ack, ctx.mid)
        } else {
            (MsgType::Non, self.next_mid(ctx.idx))
        };
        let mut own = self.params.block_size;
        let mut encoded = self.encode_sliced(mtype, mid, &ctx, &resp, extras, own);
        if let (Ok((bytes, _, sent_payload)), Some(budget)) = (
            &encoded,
            self.amplification_budget(ctx.peer, ctx.request_len),
        ) {
            let factor = self.params.admission.amplification_factor;
            if within_budget(bytes.len(), ctx.request_len, factor) && !ctx.multicast {
                self.note_answered(ctx.peer);
            }
            // A unicast answer over the factor goes out with its first block whole while the
            // excess budget lasts (clients without Block2 or Echo then work);
            // otherwise it is cut. A group request stays strict: every member answers it.
            if !within_budget(bytes.len(), ctx.request_len, factor)
                && !resp.payload.is_empty()
                && (ctx.multicast
                    || !self.spend_excess(ctx.peer, bytes.len().saturating_sub(budget)))
            {
                // Too big for a source that has not proven its address: the first block only,
                // small enough to fit (Block2 and Size2 add at most 8 bytes, the Echo option
                // that lets the client prove its address 10).
                resp.echo = Some(self.echo.value(ctx.peer.ip(), unix_now_s()).to_vec());
                let overhead = bytes.len().saturating_sub(*sent_payload) + 18;
                own = block_size_within(budget, overhead, own);
                encoded = self.encode_sliced(mtype, mid, &ctx, &resp, extras, own);
            }
        }
        let bytes = match encoded {
            Ok((bytes, block2, _)) => {
                if block2.is_some_and(|b| b.more) {
                    let size = resp.payload.len();
                    lock(&self.block2).insert(
                        ctx.peer,
                        ctx.block_key.clone(),
                        Arc::new(resp),
                        size,
                        Instant::now(),
                    );
                }
                bytes
            }
            // Nothing useful for a group member to say (RFC 7252 §8.2).
            Err(()) if ctx.multicast => return,
            Err(()) => {
                let err = OutboundResponse::new(Code::BAD_OPTION)
                    .with_diagnostic("block number beyond the representation");
                encode_response(
                    mtype,
                    mid,
                    &ctx.token,
                    &err,
                    &err.payload,
                    ResponseExtras::default(),
                )
            }
        };
        if ctx.separate {
            // Retransmitted until the client ACKs it (or gives up with RST / silence). The
            // first transmission was bounded above; each resend to an unproven source is paid
            // in full from the excess budget, and stops when it cannot be.
            let shared = Arc::clone(self);
            let budget = self.params.max_transmit_wait();
            tokio::spawn(async move {
                let len = bytes.len();
                let pay = |resend: bool| !resend || shared.may_send_unsolicited(ctx.peer, len);
                let _ = shared
                    .confirm(ctx.idx, ctx.peer, mid, &bytes, budget, &pay)
                    .await;
            });
        } else if ctx.multicast {
            // §8.2: every member of the group answers at a random point of the leisure, so
            // the answers do not all arrive at once.
            // Each waiting answer is a task: bounded, so a flood of group requests (spoofed
            // sources each with a fresh rate bucket) cannot pile them up.
            if self.leisure_tasks.fetch_add(1, Ordering::AcqRel) >= MAX_LEISURE_TASKS {
                self.leisure_tasks.fetch_sub(1, Ordering::AcqRel);
                log::debug!(
                    "coap: multicast answer to {} dropped: too many waiting",
                    ctx.peer
                );
                return;
            }
            let leisure = self.params.multicast_leisure;
            let delay = rand::thread_rng().gen_range(Duration::ZERO..=leisure);
            let shared = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.send_owned(ctx.idx, bytes, ctx.peer);
                shared.leisure_tasks.fetch_sub(1, Ordering::AcqRel);
            });
        } else {
            if ctx.confirmable {
                lock(&self.dedup).answered(ctx.peer, ctx.mid, &bytes);
            }
            self.send_owned(ctx.idx, bytes, ctx.peer);
        }
    }

    /// The response's bytes (and the payload bytes among them) with the block of the payload to send (at most `own` bytes per
    /// block), and that block's option. Err: the asked block is beyond the representation.
    fn encode_sliced(
        &self,
        mtype: MsgType,
        mid: u16,
        ctx: &ReplyCtx,
        resp: &OutboundResponse,
        mut extras: ResponseExtras,
        own: usize,
    ) -> Result<(Vec<u8>, Option<BlockOption>, usize), ()> {
        let (payload, block2) = self.block2_slice_at(&resp.payload, ctx.block2, own)?;
        if let Some(b) = block2 {
            extras.block2 = Some(b);
            extras.size2 = Some(resp.payload.len() as u32);
            if b.num > 0 {
                extras.observe = None;
            }
        }
        let bytes = encode_response(mtype, mid, &ctx.token, resp, payload, extras);
        Ok((bytes, block2, payload.len()))
    }

    /// The part of `body` to send: all of it if it fits and no block was asked for, else the
    /// requested (or first) block at min(asked, configured) size. Err: block out of range.
    #[allow(clippy::type_complexity)]
    fn block2_slice<'a>(
        &self,
        body: &'a [u8],
        asked: Option<BlockOption>,
    ) -> Result<(&'a [u8], Option<BlockOption>), ()> {
        self.block2_slice_at(body, asked, self.params.block_size)
    }

    /// `block2_slice` with blocks of at most `own` bytes.
    #[allow(clippy::type_complexity)]
    fn block2_slice_at<'a>(
        &self,
        body: &'a [u8],
        asked: Option<BlockOption>,
        own: usize,
    ) -> Result<(&'a [u8], Option<BlockOption>), ()> {
        match asked {
            None if body.len() <= own => Ok((body, None)),
            None => {
                let b = BlockOption::new(0, false, own);
                slice_block(body, b).map(|(s, b)| (s, Some(b))).ok_or(())
            }
            Some(a) => {
                let size = a.size().min(own);
                // A smaller block size renumbers (RFC 7959 §2.4 late negotiation): keep the
                // byte offset the client asked for.
                let b = BlockOption {
                    num: (a.offset() / size) as u32,
                    more: false,
                    szx: szx_for(size),
                };
                if b.num == 0 && body.len() <= size {
                    return Ok((body, Some(b)));
                }
                slice_block(body, b).map(|(s, b)| (s, Some(b))).ok_or(())
            }
        }
    }

    /// Send a CON (ping, notification, separate response) and wait for its ACK or RST within
    /// `budget`. `still_wanted(resend)` is asked at each timeout, `resend` saying whether a
    /// retransmission is due; false ends the exchange as `Cancelled`. A caller that pays for
    /// what it sends (an unproven peer's share of the excess budget) pays a resend there.
    pub async fn confirm(
        self: &Arc<Self>,
        idx: usize,
        peer: SocketAddr,
        mid: u16,
        bytes: &[u8],
        budget: Duration,
        still_wanted: &(dyn Fn(bool) -> bool + Send + Sync),
    ) -> Result<(Event, Duration), ClientError> {
        let mut reg = ExchangeClaim::new(Arc::clone(self), peer, None);
        reg.set_mid(peer, mid);
        let start = Instant::now();
        let deadline = start + budget;
        let mut backoff = Backoff::with_rng(&self.params, &mut rand::thread_rng());
        let mut next = start + backoff.timeout();
        let mut retransmitting = true;
        self.send(idx, bytes, peer).await?;
        loop {
            let wake = if retransmitting {
                next.min(deadline)
            } else {
                deadline
            };
            match reg.recv_until(Some(wake)).await {
                Ok(Some(ev)) => return Ok((ev, start.elapsed())),
                Ok(None) => return Err(ClientError::Cancelled),
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ClientError::Timeout);
                    }
                    let resend = retransmitting && backoff.on_timeout();
                    if !still_wanted(resend) {
                        return Err(ClientError::Cancelled);
                    }
                    if resend {
                        self.send(idx, bytes, peer).await?;
                        next = now + backoff.timeout();
                    } else {
                        retransmitting = false;
                    }
                }
            }
        }
    }

    fn notify(self: &Arc<Self>, key: &ObserveKey) {
        let observers = lock(&self.observers).observers(key);
        for req in observers {
            let shared = Arc::clone(self);
            tokio::spawn(async move { shared.send_notification(req).await });
        }
    }

    async fn send_notification(self: Arc<Self>, req: InboundRequest) {
        let peer = req.source;
        let token = req.token.clone();
        let Some(idx) = self
            .sockets
            .iter()
            .position(|s| s.local == req.local)
            .or_else(|| self.socket_for(peer))
        else {
            return;
        };
        let block_key = request_key(&req);
        let Some(generation) = lock(&self.observers).begin_notification(peer, &token) else {
            return;
        };
        let current = {
            let shared = Arc::clone(&self);
            let token = token.clone();
            move || lock(&shared.observers).is_current(peer, &token, generation)
        };
        let resp = self.handler.handle(req).await;
        if !current() {
            // A newer notification to this observer is on its way.
            return;
        }
        if resp.code.is_success()
            && !lock(&self.observers).record_etag(peer, &token, resp.etag.as_deref())
        {
            // The observer already has this representation.
            return;
        }
        let mut extras = ResponseExtras::default();
        let ends = !resp.code.is_success();
        if !ends {
            extras.observe = Some(lock(&self.observers).next_seq());
        }
        let (payload, block2) = self
            .block2_slice(&resp.payload, None)
            .unwrap_or((&[], None));
        if block2.is_some() {
            extras.block2 = block2;
            extras.size2 = Some(resp.payload.len() as u32);
        }
        let mid = self.next_mid(idx);
        let bytes = encode_response(MsgType::Con, mid, &token, &resp, payload, extras);
        if block2.is_some_and(|b| b.more) {
            let size = resp.payload.len();
            lock(&self.block2).insert(
                peer,
                block_key,
                Arc::new(resp.clone()),
                size,
                Instant::now(),
            );
        }
        // To an unproven observer every transmission is paid from the excess budget; one that
        // cannot be paid ends the observation (the client re-registers when its Max-Age
        // runs out, RFC 7641 §3.3.1), so a spoofed observer costs at most the budget.
        let len = bytes.len();
        let paid = |resend: bool| !resend || self.may_send_unsolicited(peer, len);
        let outcome = if self.may_send_unsolicited(peer, len) {
            let budget = self.params.max_transmit_wait();
            let still_wanted = |resend: bool| current() && paid(resend);
            self.confirm(idx, peer, mid, &bytes, budget, &still_wanted)
                .await
        } else {
            Err(ClientError::Cancelled)
        };
        if matches!(outcome, Err(ClientError::Cancelled)) && !current() {
            // Superseded by a newer notification to this observer.
            return;
        }
        // RFC 7641 §4.5: a RST or an unacknowledged CON notification ends the observation; so
        // does an error response (§4.2), and a notification the excess budget cannot pay.
        if ends || !matches!(outcome, Ok((Event::EmptyAck, _))) {
            let mut obs = lock(&self.observers);
            obs.remove(peer, &token);
            self.observer_total.store(obs.len(), Ordering::Relaxed);
        }
    }
}

/// RFC 9175 §2.2.1.
const ECHO_OPTION: u16 = 252;

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn internal_error() -> OutboundResponse {
    OutboundResponse::new(Code::INTERNAL_SERVER_ERROR).with_diagnostic("handler failed")
}

fn is_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
    )
}

/// What identifies "the same resource" across Block1 blocks (RFC 7959 §2.5).
fn request_key(req: &InboundRequest) -> String {
    let mut k = format!("{:?} ", req.method);
    k.push_str(&req.path.join("/"));
    for q in &req.query {
        k.push('?');
        k.push_str(q);
    }
    k
}

/// An exchange's claim on a token and/or MID in the routing tables, removed on drop (so a
/// cancelled request leaves nothing behind).
pub(crate) struct ExchangeClaim {
    shared: Arc<Shared>,
    token: Option<[u8; 8]>,
    mid: Option<(SocketAddr, u16)>,
    tx: mpsc::Sender<Event>,
    pub rx: mpsc::Receiver<Event>,
}

impl ExchangeClaim {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, token: Option<[u8; 8]>) -> ExchangeClaim {
        let (tx, rx) = mpsc::channel(EXCHANGE_EVENTS);
        if let Some(t) = token {
            lock(&shared.exchanges)
                .by_token
                .insert(t, (peer, tx.clone()));
        }
        ExchangeClaim {
            shared,
            token,
            mid: None,
            tx,
            rx,
        }
    }

    /// The next event, `Ok(None)` once the endpoint shuts down, `Err(())` when `wake` passes.
    pub async fn recv_until(&mut self, wake: Option<Instant>) -> Result<Option<Event>, ()> {
        // Created before the flag check: it then sees a notify_waiters() that races with us.
        let closing = self.shared.closing.notified();
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = self.rx.recv() => Ok(ev),
            _ = closing => Ok(None),
            _ = timer => Err(()),
        }
    }

    pub fn token(&self) -> Option<[u8; 8]> {
        self.token
    }

    /// Route empty ACK/RST for (peer, mid) here, instead of the previous message's.
    pub fn set_mid(&mut self, peer: SocketAddr, mid: u16) {
        let mut ex = lock(&self.shared.exchanges);
        if let Some(old) = self.mid.take() {
            ex.by_mid.remove(&old);
        }
        ex.by_mid.insert((peer, mid), self.tx.clone());
        self.mid = Some((peer, mid));
    }

    pub fn clear_mid(&mut self) {
        if let Some(old) = self.mid.take() {
            lock(&self.shared.exchanges).by_mid.remove(&old);
        }
    }
}

impl Drop for ExchangeClaim {
    fn drop(&mut self) {
        let mut ex = lock(&self.shared.exchanges);
        if let Some(t) = self.token {
            ex.by_token.remove(&t);
        }
        if let Some(m) = self.mid {
            ex.by_mid.remove(&m);
        }
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

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // So that 0.0.0.0:P and [::]:P can both be bound.
        socket.set_only_v6(true)?;
    }
    #[cfg(target_os = "linux")]
    super::multicast::only_own_groups(&socket, addr.is_ipv4());
    // Absorb bursts (many devices re-registering at once); the kernel caps it anyway.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl Endpoint {
    pub async fn bind(
        addrs: &[SocketAddr],
        params: TransmissionParams,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<Endpoint, CoapError> {
        if addrs.is_empty() {
            return Err(CoapError::NoAddress);
        }
        let mut rng = rand::thread_rng();
        let mut sockets = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let bind_err = |source| CoapError::Bind { addr, source };
            let std_socket = bind_one(addr).map_err(bind_err)?;
            let socket = UdpSocket::from_std(std_socket).map_err(bind_err)?;
            let local = socket.local_addr().map_err(bind_err)?;
            sockets.push(SocketCtx {
                socket,
                local,
                mid: AtomicU16::new(rng.gen()),
                outbox: Mutex::new(None),
            });
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
            deferred_sends: AtomicUsize::new(0),
            leisure_tasks: AtomicUsize::new(0),
            handler,
            params,
        });
        let tasks = (0..shared.sockets.len())
            .map(|idx| tokio::spawn(recv_loop(Arc::clone(&shared), idx)))
            .collect();
        Ok(Endpoint { shared, tasks })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.sockets.iter().map(|s| s.local).collect()
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
        super::multicast::join(&ctx.socket, group, ifindex)
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

#[cfg(not(target_os = "linux"))]
async fn recv_loop(shared: Arc<Shared>, idx: usize) {
    // The largest UDP payload: a datagram must never be truncated into a "valid" message.
    let mut buf = vec![0u8; 65_536];
    loop {
        let socket = &shared.sockets[idx].socket;
        // Drain what is queued before sleeping again: one readiness wake-up per burst.
        match socket.try_recv_from(&mut buf) {
            Ok((n, peer)) => {
                shared.on_datagram(idx, &buf[..n], peer, false);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::debug!("coap: receive error on {}: {e}", shared.sockets[idx].local);
                continue;
            }
        }
        if let Err(e) = socket.readable().await {
            log::warn!("coap: socket {} failed: {e}", shared.sockets[idx].local);
            return;
        }
    }
}

/// Linux: receive up to 32 datagrams per `recvmmsg`, handle them, and send every answer of
/// the batch with `sendmmsg`.
#[cfg(target_os = "linux")]
async fn recv_loop(shared: Arc<Shared>, idx: usize) {
    use super::batch_io::{send_batch, RecvBatch};
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let ctx = &shared.sockets[idx];
    let fd = ctx.socket.as_raw_fd();
    let mut batch = RecvBatch::new();
    loop {
        match ctx.socket.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => {
                *lock(&ctx.outbox) = Some(Vec::with_capacity(n));
                for i in 0..n {
                    let (bytes, peer, truncated) = batch.get(i);
                    let Some(peer) = peer else { continue };
                    let multicast = batch.destination(i).is_some_and(|d| d.is_multicast());
                    if truncated {
                        // Too big to have been read whole: reject a CON (RFC 7252 §4.2), the
                        // client should have used Block1. Never a RST to multicast (§8.1).
                        if let (Some((MsgType::Con, _, mid)), false) =
                            (codec::peek(bytes), multicast)
                        {
                            shared.send_now(idx, &encode_empty(MsgType::Rst, mid), peer);
                        }
                        continue;
                    }
                    shared.on_datagram(idx, bytes, peer, multicast);
                }
                let out = lock(&ctx.outbox).take().unwrap_or_default();
                let mut sent = 0;
                while sent < out.len() {
                    match ctx
                        .socket
                        .try_io(Interest::WRITABLE, || send_batch(fd, &out[sent..]))
                    {
                        Ok(0) => sent += 1,
                        Ok(k) => sent += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            for (bytes, peer) in &out[sent..] {
                                shared.send_unbatched(idx, bytes, *peer);
                            }
                            break;
                        }
                        // The first datagram was refused (e.g. unreachable): skip it.
                        Err(e) => {
                            log::debug!("coap: send to {} failed: {e}", out[sent].1);
                            sent += 1;
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = ctx.socket.readable().await {
                    log::warn!("coap: socket {} failed: {e}", ctx.local);
                    return;
                }
            }
            Err(e) => log::debug!("coap: receive error on {}: {e}", ctx.local),
        }
    }
}
