//! Observe notifications (RFC 7641 §4.2): re-running an observed request when its resource
//! changed and sending the result to each observer, paid like any unsolicited traffic.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::exchange_claim::Event;
use super::server::request_key;
use super::{lock, Shared};
use crate::codec::{encode_response, MsgType, ResponseExtras};
use crate::error::ClientError;
use crate::message::{InboundRequest, ObserveKey};

impl Shared {
    pub(super) fn notify(self: &Arc<Self>, key: &ObserveKey) {
        let observers = lock(&self.observers).observers(key);
        for req in observers {
            let shared = Arc::clone(self);
            tokio::spawn(async move { shared.send_notification(req).await });
        }
    }

    pub(super) async fn send_notification(self: Arc<Self>, req: InboundRequest) {
        let peer = req.source;
        let token = req.token.clone();
        let Some(idx) = self
            .sockets
            .iter()
            .position(|s| s.local == req.local)
            .or_else(|| self.socket_for(peer, req.identity.is_some()))
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
