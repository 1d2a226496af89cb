//! Sending a handler's answer: Observe registration, Block2 slicing and its cache, the
//! amplification bound on the first block, and piggybacked, separate or multicast delivery.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::amplification::unix_now_s;
use super::server::ReplyCtx;
use super::{lock, Shared, MAX_LEISURE_TASKS};
use crate::admission::{block_size_within, within_budget};
use crate::block::{slice_block, szx_for, BlockOption};
use crate::code::Code;
use crate::codec::{encode_response, MsgType, ResponseExtras};
use crate::message::OutboundResponse;

impl Shared {
    pub(super) fn reply(
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
        self.hooks.response_sent(resp.code, ctx.received.elapsed());
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
    pub(super) fn encode_sliced(
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
    pub(super) fn block2_slice<'a>(
        &self,
        body: &'a [u8],
        asked: Option<BlockOption>,
    ) -> Result<(&'a [u8], Option<BlockOption>), ()> {
        self.block2_slice_at(body, asked, self.params.block_size)
    }

    /// `block2_slice` with blocks of at most `own` bytes.
    #[allow(clippy::type_complexity)]
    pub(super) fn block2_slice_at<'a>(
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
}
