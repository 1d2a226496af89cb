//! The client side (RFC 7252 §5.3, §4.2; RFC 7959; RFC 7641 §3): requests with 8-byte random
//! tokens and retransmission, separate responses, RST, NON requests, Block1 upload, Block2
//! reassembly, Observe and ping. Requests leave from the endpoint's socket of the peer's
//! address family, so devices see the RD's own address and port.
//!
//! Bounds: NSTART outstanding requests per peer and `max_in_flight` overall (§4.7); a request
//! that cannot get a slot within its time budget fails with `Overloaded`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::block::BlockOption;
use super::code::Code;
use super::codec::{self, encode_empty, encode_request, MsgType, ParsedResponse, RequestExtras};
use super::endpoint::{lock, Event, ExchangeClaim, Shared};
use super::error::{ClientError, ProtocolError};
use super::exchange::{new_token, Backoff};
use super::message::{ClientRequest, ClientResponse};
use super::observe::Freshness;
use super::peer_slot::PeerSlot;

/// Most members one multicast request collects answers from (RFC 7252 §8: answers can be
/// spoofed, so a group cannot make the client hold an unbounded list).
pub const MAX_GROUP_ANSWERS: usize = 4_096;

/// Cheap, cloneable handle for sending requests through the endpoint's sockets.
#[derive(Clone)]
pub struct CoapClient {
    shared: Arc<Shared>,
}

/// Slots held for one request: NSTART per peer and, for requests, the overall bound.
struct Permits {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Always `Some` until dropped (taken in `drop`, under the map's lock).
    slot: Option<Arc<PeerSlot>>,
    peer_permit: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

impl Permits {
    /// Nothing held yet; the slot's entry is forgotten on drop if nobody else uses it.
    fn new(shared: &Arc<Shared>, peer: SocketAddr, slot: Arc<PeerSlot>) -> Self {
        Permits {
            shared: Arc::clone(shared),
            peer,
            slot: Some(slot),
            peer_permit: None,
            _global: None,
        }
    }

    fn slot(&self) -> Option<&PeerSlot> {
        self.slot.as_deref()
    }
}

impl Drop for Permits {
    fn drop(&mut self) {
        // Forget the peer's slot once nobody holds or waits for it (the map's reference and
        // ours are the only ones left), so the map stays the size of the peers actually being
        // talked to. Our reference is released under the lock too, so of two holders dropping
        // at once the second always sees the first one gone.
        let mut map = lock(&self.shared.per_peer);
        drop(self.peer_permit.take());
        if let Some(slot) = self.slot.take() {
            let unused = map
                .get(&self.peer)
                .is_some_and(|s| Arc::ptr_eq(s, &slot) && Arc::strong_count(s) == 2);
            drop(slot);
            if unused {
                map.remove(&self.peer);
            }
        }
    }
}

/// How a ping got its turn.
enum Turn {
    /// It holds the peer's NSTART slot.
    Slot(OwnedSemaphorePermit),
    /// The holder's request is acknowledged, so not outstanding (RFC 7252 §4.7).
    HolderAcked,
}

impl CoapClient {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        CoapClient { shared }
    }

    /// The peer's slot, created on first use (see `peer_slot.rs`).
    fn peer_slot(&self, peer: SocketAddr) -> Arc<PeerSlot> {
        Arc::clone(
            lock(&self.shared.per_peer)
                .entry(peer)
                .or_insert_with(|| Arc::new(PeerSlot::new(self.shared.params.nstart))),
        )
    }

    async fn acquire(&self, peer: SocketAddr, deadline: Instant) -> Result<Permits, ClientError> {
        let slot = self.peer_slot(peer);
        let sem = Arc::clone(&slot.sem);
        let mut permits = Permits::new(&self.shared, peer, slot);
        let both = async {
            let global = Arc::clone(&self.shared.in_flight)
                .acquire_owned()
                .await
                .map_err(|_| ClientError::Cancelled)?;
            let local = sem
                .acquire_owned()
                .await
                .map_err(|_| ClientError::Cancelled)?;
            Ok::<_, ClientError>((global, local))
        };
        match tokio::time::timeout_at(deadline.into(), both).await {
            Ok(Ok((global, local))) => {
                if let Some(slot) = permits.slot() {
                    slot.taken();
                }
                permits.peer_permit = Some(local);
                permits._global = Some(global);
                Ok(permits)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Overloaded),
        }
    }

    fn socket_for(&self, peer: SocketAddr, secure: bool) -> Result<usize, ClientError> {
        self.shared.socket_for(peer, secure).ok_or_else(|| {
            let kind = if secure { "DTLS " } else { "" };
            ClientError::Unreachable(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("no {kind}socket of {peer}'s address family"),
            ))
        })
    }

    /// Over DTLS, an established session with `peer` first (`Transport::connect`).
    async fn reach(
        &self,
        idx: usize,
        peer: SocketAddr,
        identity: Option<Arc<str>>,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        match self.shared.connect(idx, peer, identity, deadline).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(ClientError::Timeout),
            Err(e) => Err(ClientError::Unreachable(e)),
        }
    }

    fn deadline(&self, req: &ClientRequest) -> Instant {
        Instant::now()
            + req
                .timeout
                .unwrap_or_else(|| self.shared.params.max_transmit_wait())
    }

    /// Send `req` and return its response: Block1 used for large payloads, Block2
    /// reassembled. CON requests are retransmitted; a RST fails at once.
    pub async fn request(
        &self,
        peer: SocketAddr,
        req: ClientRequest,
    ) -> Result<ClientResponse, ClientError> {
        let deadline = self.deadline(&req);
        let _permits = self.acquire(peer, deadline).await?;
        let idx = self.socket_for(peer, req.secure)?;
        if req.secure {
            self.reach(idx, peer, req.dtls_identity.clone(), deadline)
                .await?;
        }
        let token = new_token(&mut rand::thread_rng());
        let mut reg = ExchangeClaim::new(Arc::clone(&self.shared), peer, Some(token));
        let outcome = match self
            .send_body(&mut reg, idx, peer, &req, None, deadline)
            .await
        {
            Ok((first, rtt)) => {
                self.complete_block2(&mut reg, idx, peer, &req, first, rtt, deadline)
                    .await
            }
            Err(e) => Err(e),
        };
        self.shared.after_silence(idx, peer, &outcome);
        outcome
    }

    /// Send `req` once, as a NON, to the multicast `group` (RFC 7252 §8.1) and collect every
    /// response that arrives within `window`, with the unicast address each member answered
    /// from (§8.2; members wait up to their leisure, so `window` should exceed it). Block2 is
    /// not followed: a truncated answer is returned as its first block, and the caller asks
    /// that member by unicast. Fails only when the request cannot be sent.
    pub async fn multicast_request(
        &self,
        group: SocketAddr,
        req: ClientRequest,
        window: Duration,
    ) -> Result<Vec<(SocketAddr, ClientResponse)>, ClientError> {
        let deadline = Instant::now() + window;
        let _permits = self.acquire(group, deadline).await?;
        let idx = self.socket_for(group, false)?;
        let token = new_token(&mut rand::thread_rng());
        let mut reg = ExchangeClaim::new(Arc::clone(&self.shared), group, Some(token));
        let mid = self.shared.next_mid(idx);
        let bytes = encode_request(
            MsgType::Non,
            mid,
            &token,
            &req,
            &req.payload,
            RequestExtras::default(),
        )
        .map_err(|_| ProtocolError::Encode)?;
        let start = Instant::now();
        self.shared.send(idx, &bytes, group).await?;
        let mut answers: Vec<(SocketAddr, ClientResponse)> = Vec::new();
        let mut members: HashSet<SocketAddr> = HashSet::new();
        loop {
            match reg.recv_until(Some(deadline)).await {
                Ok(Some(Event::GroupResponse { packet, from })) => {
                    // A member repeating itself (a retransmitted NON) counts once; and a
                    // group cannot make us collect without bound (answers can be spoofed).
                    if answers.len() >= MAX_GROUP_ANSWERS || !members.insert(from) {
                        continue;
                    }
                    if let Some(p) = codec::parse_response(&packet) {
                        answers.push((from, plain_response(p, start.elapsed())));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(ClientError::Cancelled),
                Err(()) => return Ok(answers),
            }
        }
    }

    /// One message out, its response back: retransmitted while unacknowledged (§4.2), then
    /// waiting for a separate response until the deadline (§5.2.2).
    #[allow(clippy::too_many_arguments)]
    async fn transact(
        &self,
        reg: &mut ExchangeClaim,
        idx: usize,
        peer: SocketAddr,
        req: &ClientRequest,
        payload: &[u8],
        extras: RequestExtras,
        deadline: Instant,
    ) -> Result<(ParsedResponse, Duration), ClientError> {
        let shared = &self.shared;
        let mid = shared.next_mid(idx);
        let mtype = if req.confirmable {
            MsgType::Con
        } else {
            MsgType::Non
        };
        let token = reg.token().unwrap_or_default();
        let bytes = encode_request(mtype, mid, &token, req, payload, extras)
            .map_err(|_| ProtocolError::Encode)?;
        reg.set_mid(peer, mid);
        let start = Instant::now();
        shared.send(idx, &bytes, peer).await?;
        let mut backoff = Backoff::with_rng(&shared.params, &mut rand::thread_rng());
        let mut acked = !req.confirmable;
        let mut next = start + backoff.timeout();
        loop {
            let wake = if acked { deadline } else { next.min(deadline) };
            match reg.recv_until(Some(wake)).await {
                Ok(Some(Event::Response { packet, mtype })) => {
                    // A late ACK for an earlier message of this token is not our answer.
                    if mtype == MsgType::Ack && packet.header.message_id != mid {
                        continue;
                    }
                    reg.clear_mid();
                    let parsed =
                        codec::parse_response(&packet).ok_or(ProtocolError::BadResponse)?;
                    return Ok((parsed, start.elapsed()));
                }
                Ok(Some(Event::EmptyAck)) => acked = true,
                Ok(Some(Event::Reset)) => return Err(ClientError::Reset),
                Ok(Some(Event::Rejected)) => return Err(ProtocolError::BadResponse.into()),
                Ok(Some(Event::GroupResponse { .. })) => {}
                Ok(None) => return Err(ClientError::Cancelled),
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ClientError::Timeout);
                    }
                    if !acked {
                        if !backoff.on_timeout() {
                            return Err(ClientError::Timeout);
                        }
                        shared.send(idx, &bytes, peer).await?;
                        next = now + backoff.timeout();
                    }
                }
            }
        }
    }

    /// The request itself: one message, or Block1 blocks (RFC 7959 §2.3) when the payload
    /// is larger than the block size. Returns the final response (maybe the first of Block2).
    async fn send_body(
        &self,
        reg: &mut ExchangeClaim,
        idx: usize,
        peer: SocketAddr,
        req: &ClientRequest,
        observe: Option<u32>,
        deadline: Instant,
    ) -> Result<(ParsedResponse, Duration), ClientError> {
        let mut size = self.shared.params.block_size;
        if req.payload.len() <= size {
            let extras = RequestExtras {
                observe,
                ..Default::default()
            };
            return self
                .transact(reg, idx, peer, req, &req.payload, extras, deadline)
                .await;
        }
        let mut offset = 0usize;
        let mut first_rtt = None;
        loop {
            let num = (offset / size) as u32;
            let end = (offset + size).min(req.payload.len());
            let more = end < req.payload.len();
            let extras = RequestExtras {
                observe,
                block1: Some(BlockOption::new(num, more, size)),
                size1: (offset == 0).then_some(req.payload.len() as u32),
                ..Default::default()
            };
            let (resp, rtt) = self
                .transact(
                    reg,
                    idx,
                    peer,
                    req,
                    &req.payload[offset..end],
                    extras,
                    deadline,
                )
                .await?;
            let rtt = *first_rtt.get_or_insert(rtt);
            if !more || resp.code != Code::CONTINUE {
                return Ok((resp, rtt));
            }
            // The server may ask for smaller blocks (§2.3): continue at the same byte offset.
            if let Some(b) = resp.block1 {
                if b.size() < size {
                    size = b.size();
                }
            }
            offset = end;
        }
    }

    /// Fetch the remaining blocks of a Block2 response (RFC 7959 §2.4) and assemble.
    #[allow(clippy::too_many_arguments)]
    async fn complete_block2(
        &self,
        reg: &mut ExchangeClaim,
        idx: usize,
        peer: SocketAddr,
        req: &ClientRequest,
        first: ParsedResponse,
        rtt: Duration,
        deadline: Instant,
    ) -> Result<ClientResponse, ClientError> {
        let mut body = first.payload.clone();
        let mut block = first.block2;
        let max = req.max_body.map_or(self.shared.params.max_body, |m| {
            m.min(self.shared.params.max_body)
        });
        if first.size2.is_some_and(|s| s as usize > max) {
            // The peer announced a representation larger than we accept (RFC 7959 §4).
            return Err(ProtocolError::TooLarge(max).into());
        }
        let follow_up = ClientRequest {
            payload: Vec::new(),
            ..req.clone()
        };
        while let Some(b) = block.filter(|b| b.more) {
            if body.len() > max {
                return Err(ProtocolError::TooLarge(max).into());
            }
            let next = BlockOption {
                num: b.num + 1,
                more: false,
                szx: b.szx,
            };
            let extras = RequestExtras {
                block2: Some(next),
                ..Default::default()
            };
            let (resp, _) = self
                .transact(reg, idx, peer, &follow_up, &[], extras, deadline)
                .await?;
            if !resp.code.is_success() {
                return Err(ProtocolError::Block("error response to a follow-up block").into());
            }
            if resp.etag != first.etag {
                return Err(ProtocolError::Block("representation changed between blocks").into());
            }
            match resp.block2 {
                Some(got) if got.offset() == body.len() => {
                    body.extend_from_slice(&resp.payload);
                    block = Some(got);
                }
                _ => return Err(ProtocolError::Block("unexpected block").into()),
            }
        }
        if body.len() > max {
            return Err(ProtocolError::TooLarge(max).into());
        }
        Ok(ClientResponse {
            code: first.code,
            content_format: first.content_format,
            payload: body,
            observe: first.observe,
            max_age: first.max_age,
            etag: first.etag,
            location_path: first.location_path,
            location_query: first.location_query,
            rtt,
        })
    }

    /// CoAP ping (§4.3): an empty CON, retransmitted within `budget`. Ok(rtt) on RST or
    /// empty ACK.
    ///
    /// A ping waits for the peer's NSTART slot within its budget but takes no overall slot:
    /// its caller bounds how many run (the Pinger's `max_in_flight`), so a client saturated
    /// by other work never keeps liveness from being judged. It goes out without the slot as
    /// soon as the holder's request is acknowledged (no longer outstanding, §4.7). When an
    /// unacknowledged exchange holds the slot for the whole budget, or frees it too late for
    /// the ping to be answered, the ping fails with [`ClientError::PeerBusy`], which says
    /// whether the peer answered any of our exchanges meanwhile (see `peer_slot.rs`).
    pub async fn ping(&self, peer: SocketAddr, budget: Duration) -> Result<Duration, ClientError> {
        self.ping_over(peer, None, budget).await
    }

    /// [`CoapClient::ping`], over DTLS when `dtls` is given: through the session the peer
    /// opened, else a new one offering the PSK of the identity in it (or the certificate).
    /// The handshake counts against `budget`.
    pub async fn ping_over(
        &self,
        peer: SocketAddr,
        dtls: Option<Option<Arc<str>>>,
        budget: Duration,
    ) -> Result<Duration, ClientError> {
        let secure = dtls.is_some();
        if self.shared.is_closed() {
            return Err(ClientError::Cancelled);
        }
        let deadline = Instant::now() + budget;
        let slot = self.peer_slot(peer);
        let sem = Arc::clone(&slot.sem);
        let mut permits = Permits::new(&self.shared, peer, slot);
        let Some(slot) = permits.slot.clone() else {
            return Err(ClientError::Cancelled);
        };
        let heard_before = slot.heard();
        let turn = async {
            let acked = slot.acked();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if slot.holder_acked() && sem.available_permits() == 0 {
                return Ok(Turn::HolderAcked);
            }
            tokio::select! {
                permit = Arc::clone(&sem).acquire_owned() => {
                    permit.map(Turn::Slot).map_err(|_| ClientError::Cancelled)
                }
                _ = acked => Ok(Turn::HolderAcked),
            }
        };
        let answered_meanwhile = || slot.heard() != heard_before;
        match tokio::time::timeout_at(deadline.into(), turn).await {
            Ok(Ok(Turn::Slot(permit))) => {
                slot.taken();
                permits.peer_permit = Some(permit);
            }
            Ok(Ok(Turn::HolderAcked)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ClientError::PeerBusy {
                    answered_meanwhile: answered_meanwhile(),
                })
            }
        }
        let idx = self.socket_for(peer, secure)?;
        if let Some(identity) = dtls {
            self.reach(idx, peer, identity, deadline).await?;
        }
        let mid = self.shared.next_mid(idx);
        let bytes = encode_empty(MsgType::Con, mid);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = self
            .shared
            .confirm(idx, peer, mid, &bytes, remaining, &|_| true)
            .await;
        let heard = answered_meanwhile();
        if !heard {
            self.shared.after_silence(idx, peer, &outcome);
        }
        drop(slot);
        drop(permits);
        match outcome {
            Ok((Event::Reset | Event::EmptyAck, rtt)) => Ok(rtt),
            Ok(_) => Err(ProtocolError::BadResponse.into()),
            // The slot came free too late for the ping to be answered in time, but the peer
            // answered the exchange that held it: that is an answer in this attempt.
            Err(ClientError::Timeout) if heard => Err(ClientError::PeerBusy {
                answered_meanwhile: true,
            }),
            Err(e) => Err(e),
        }
    }

    /// Register an observation (RFC 7641 §3.1). The first response is in
    /// [`Observation::first`]; if the server did not include Observe, `next()` yields nothing.
    pub async fn observe(
        &self,
        peer: SocketAddr,
        req: ClientRequest,
    ) -> Result<Observation, ClientError> {
        let deadline = self.deadline(&req);
        let idx = self.socket_for(peer, req.secure)?;
        if req.secure {
            self.reach(idx, peer, req.dtls_identity.clone(), deadline)
                .await?;
        }
        let token = new_token(&mut rand::thread_rng());
        let mut reg = ExchangeClaim::new(Arc::clone(&self.shared), peer, Some(token));
        let (first, rtt) = {
            let _permits = self.acquire(peer, deadline).await?;
            let sent = self
                .send_body(&mut reg, idx, peer, &req, Some(0), deadline)
                .await;
            self.shared.after_silence(idx, peer, &sent);
            sent?
        };
        let seq = first.observe;
        let observing = seq.is_some() && first.code.is_success();
        let first = self
            .complete_block2(&mut reg, idx, peer, &req, first, rtt, deadline)
            .await?;
        let mut freshness = Freshness::default();
        if let Some(s) = seq {
            freshness.accept(s, Instant::now());
        }
        Ok(Observation {
            first,
            client: self.clone(),
            reg: Some(reg),
            idx,
            peer,
            req,
            freshness,
            ended: !observing,
        })
    }
}

/// A live observation. Dropping it makes later notifications answered with RST.
pub struct Observation {
    pub first: ClientResponse,
    client: CoapClient,
    reg: Option<ExchangeClaim>,
    idx: usize,
    peer: SocketAddr,
    req: ClientRequest,
    freshness: Freshness,
    ended: bool,
}

impl Observation {
    /// The next fresh notification (older, re-ordered ones are skipped, RFC 7641 §3.4);
    /// None once the server ended the observation or the endpoint shut down.
    pub async fn next(&mut self) -> Option<ClientResponse> {
        if self.ended {
            return None;
        }
        loop {
            let reg = self.reg.as_mut()?;
            let ev = reg.recv_until(None).await.ok().flatten()?;
            let Event::Response { packet, .. } = ev else {
                continue;
            };
            let Some(parsed) = codec::parse_response(&packet) else {
                continue;
            };
            match parsed.observe {
                Some(seq) if parsed.code.is_success() => {
                    if !self.freshness.accept(seq, Instant::now()) {
                        continue;
                    }
                }
                // A response without Observe, or an error, ends the observation (§3.2).
                _ => self.ended = true,
            }
            return Some(self.assemble_notification(parsed).await);
        }
    }

    async fn assemble_notification(&mut self, parsed: ParsedResponse) -> ClientResponse {
        let plain = ClientResponse {
            code: parsed.code,
            content_format: parsed.content_format,
            payload: parsed.payload.clone(),
            observe: parsed.observe,
            max_age: parsed.max_age,
            etag: parsed.etag.clone(),
            location_path: parsed.location_path.clone(),
            location_query: parsed.location_query.clone(),
            rtt: Duration::ZERO,
        };
        if !parsed.block2.is_some_and(|b| b.more) {
            return plain;
        }
        // A notification larger than a block: fetch the rest with a fresh token (RFC 7959 §3.4).
        let client = self.client.clone();
        let deadline = client.deadline(&self.req);
        let token = new_token(&mut rand::thread_rng());
        let mut reg = ExchangeClaim::new(Arc::clone(&client.shared), self.peer, Some(token));
        let seq = parsed.observe;
        match client
            .complete_block2(
                &mut reg,
                self.idx,
                self.peer,
                &self.req,
                parsed,
                Duration::ZERO,
                deadline,
            )
            .await
        {
            Ok(mut full) => {
                full.observe = seq;
                full
            }
            Err(_) => plain,
        }
    }

    /// Deregister (RFC 7641 §3.6): GET with Observe=1 and the same token.
    pub async fn cancel(mut self) {
        let Some(mut reg) = self.reg.take() else {
            return;
        };
        if self.ended {
            return;
        }
        let client = self.client.clone();
        let budget = self
            .req
            .timeout
            .unwrap_or(client.shared.params.max_transmit_wait());
        let deadline = Instant::now() + budget;
        let req = ClientRequest {
            payload: Vec::new(),
            ..self.req.clone()
        };
        let extras = RequestExtras {
            observe: Some(1),
            ..Default::default()
        };
        // Drop notifications already queued; one arriving during the exchange may be taken as
        // its answer, which is harmless: the registration goes away with `reg` either way, and
        // later notifications are then answered with RST (another deregistration, §3.6).
        while reg.rx.try_recv().is_ok() {}
        let _ = client
            .transact(&mut reg, self.idx, self.peer, &req, &[], extras, deadline)
            .await;
    }
}

/// A single-message response as the caller sees it (no Block2 follow-up).
fn plain_response(p: ParsedResponse, rtt: Duration) -> ClientResponse {
    ClientResponse {
        code: p.code,
        content_format: p.content_format,
        payload: p.payload,
        observe: p.observe,
        max_age: p.max_age,
        etag: p.etag,
        location_path: p.location_path,
        location_query: p.location_query,
        rtt,
    }
}
