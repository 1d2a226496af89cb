//! What the receive loop does with one datagram: the per-source rate limit, then routing: a
//! request goes to the server pipeline (`server`), an ACK, RST or response to the exchange
//! waiting for it (`exchange_claim`), a multicast request to its own checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::Packet;

use super::exchange_claim::Event;
use super::{lock, Shared};
use crate::admission::Admission;
use crate::code::Code;
use crate::codec::{
    self, code_of, encode_empty, encode_response, msg_type, DecodeError, MsgType, ResponseExtras,
};
use crate::dedup::Seen;
use crate::message::OutboundResponse;

impl Shared {
    pub(super) fn on_datagram(
        self: &Arc<Self>,
        idx: usize,
        bytes: &[u8],
        peer: SocketAddr,
        multicast: bool,
    ) {
        if self.rate.is_some() && !self.admit(idx, bytes, peer, multicast) {
            return;
        }
        if self.sockets[idx].secure {
            // A DTLS peer answered a cookie at its address: it is no reflection victim.
            if let Some(proven) = &self.proven {
                lock(proven).mark(peer.ip());
            }
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
    pub(super) fn on_multicast(self: &Arc<Self>, idx: usize, bytes: &[u8], peer: SocketAddr) {
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
    pub(super) fn admit(
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
                    self.hooks
                        .response_sent(Code::TOO_MANY_REQUESTS, Duration::ZERO);
                }
                false
            }
        }
    }

    /// Whether the raw datagram carries the token of one of our exchanges with `peer`.
    pub(super) fn answers_our_exchange(&self, bytes: &[u8], peer: SocketAddr) -> bool {
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

    pub(super) fn deliver_by_mid(&self, peer: SocketAddr, mid: u16, ev: Event) {
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
    pub(super) fn note_heard(&self, peer: SocketAddr) {
        if let Some(slot) = lock(&self.per_peer).get(&peer) {
            slot.note_heard();
        }
    }

    pub(super) fn on_response(
        self: &Arc<Self>,
        idx: usize,
        packet: Packet,
        mtype: MsgType,
        peer: SocketAddr,
    ) {
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
}
