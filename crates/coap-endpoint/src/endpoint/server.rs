//! The server side of a request: deduplication (RFC 7252 §4.5), Block1 reassembly (RFC 7959),
//! the handler bound, running the handler and handing its answer to `reply`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use coap_lite::Packet;
use futures::FutureExt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{lock, Shared};
use crate::admission::LogThrottle;
use crate::block::{Block1Outcome, BlockOption};
use crate::code::{Code, Method};
use crate::codec::{self, encode_empty, MsgType, ResponseExtras};
use crate::dedup::Seen;
use crate::message::{InboundRequest, OutboundResponse};

/// Block1 uploads displaced by newer ones (a source over its share, or a full table).
pub(super) static BLOCK1_EVICTED_LOG: LogThrottle = LogThrottle::new();

/// Context a response needs once the handler has answered.
pub(super) struct ReplyCtx {
    pub(super) idx: usize,
    pub(super) peer: SocketAddr,
    pub(super) mid: u16,
    pub(super) confirmable: bool,
    pub(super) token: Vec<u8>,
    pub(super) block1: Option<BlockOption>,
    pub(super) block2: Option<BlockOption>,
    /// The request to remember if the handler accepts an observation.
    pub(super) observe_req: Option<InboundRequest>,
    /// Identifies the resource for the Block2 cache.
    pub(super) block_key: String,
    /// The request was already acknowledged with an empty ACK: the response goes as a CON
    /// of its own (RFC 7252 §5.2.2).
    pub(super) separate: bool,
    /// When the decoded request reached `on_request` (start of the latency histogram's span).
    pub(super) received: Instant,
    /// The request arrived by multicast: only a 2.xx is sent, as a NON, after the leisure.
    pub(super) multicast: bool,
    /// The request datagram's size: the amplification budget is a multiple of it.
    pub(super) request_len: usize,
}

impl Shared {
    pub(super) fn on_request(
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
        if self.sockets[idx].secure {
            req.identity = self.sockets[idx].transport.peer_identity(peer);
        }
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
                        crate::admission::log_throttle::REPORT_EVERY_S,
                        crate::block::DEFAULT_TRANSFERS_PER_SOURCE,
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
    pub(super) fn refuse_busy(self: &Arc<Self>, ctx: ReplyCtx) {
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

    pub(super) fn max_request_body(&self) -> usize {
        self.params
            .admission
            .max_request_body
            .unwrap_or(self.params.max_body)
    }

    /// RFC 7641 §3.6 / §4.1: Observe=1 or a plain GET with an observing token deregisters;
    /// Observe=0 on the first block remembers the request for a possible registration.
    pub(super) fn observe_bookkeeping(&self, ctx: &mut ReplyCtx, req: &InboundRequest) {
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
}

pub(super) fn internal_error() -> OutboundResponse {
    OutboundResponse::new(Code::INTERNAL_SERVER_ERROR).with_diagnostic("handler failed")
}

/// What identifies "the same resource" across Block1 blocks (RFC 7959 §2.5).
pub(super) fn request_key(req: &InboundRequest) -> String {
    let mut k = format!("{:?} ", req.method);
    k.push_str(&req.path.join("/"));
    for q in &req.query {
        k.push('?');
        k.push_str(q);
    }
    k
}
