//! Sending a confirmable message of the endpoint's own (ping, notification, separate
//! response) and waiting for its ACK or RST, with RFC 7252 §4.2 retransmissions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exchange_claim::{Event, ExchangeClaim};
use super::Shared;
use crate::error::ClientError;
use crate::exchange::Backoff;

impl Shared {
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
}
