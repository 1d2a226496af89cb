//! One observation's life, as a task of its own: a link with `obs` gets one RFC 7641
//! observation (§3.1) through the RD's `CoapClient`; every notification goes to the Observer's
//! queue (waiting for room when it is full). The task re-establishes the observation with
//! back-off when it is lost: the stream ends (a final response, §3.2; a RST ends it on the
//! client side too) or no notification arrives within Max-Age plus a margin (§3.3.1). An
//! observation ended by an error (RFC 7641 §3.2) is re-established after the set-up back-off.
//! It deregisters (§3.6, GET with Observe=1) when cancelled.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::forward::{ErrorAnswer, Notified};
use super::stats::Stats;
use super::strategy::{backoff, loss_deadline};
use crate::coap::{ClientRequest, ClientResponse, CoapClient};
use crate::platform::protocol::WatchedBy;
use crate::registry::RegistrationId;
use crate::time::now_ms;

/// Budget of one observation set-up or deregistration.
pub(super) const REQUEST_BUDGET: Duration = Duration::from_secs(10);

/// One observation's life: establish, forward, re-establish with back-off, deregister.
pub(super) struct ObservationTask {
    pub(super) client: CoapClient,
    pub(super) setups: Arc<Semaphore>,
    pub(super) queue: mpsc::Sender<Notified>,
    pub(super) stats: Arc<Stats>,
    pub(super) peer: SocketAddr,
    /// Over DTLS (a `coaps://` base), as this identity.
    pub(super) dtls: Option<Option<Arc<str>>>,
    pub(super) id: RegistrationId,
    pub(super) generation: u64,
    pub(super) path: Arc<str>,
}

impl ObservationTask {
    /// Hand a value to the Observer's queue; when it is full, wait for room (the CoAP layer
    /// holds this observation's next notifications meanwhile). False when the Observer is
    /// gone.
    pub(super) async fn notify(
        &self,
        response: ClientResponse,
        error: Option<ErrorAnswer>,
    ) -> bool {
        let n = Notified {
            id: self.id,
            generation: self.generation,
            path: Arc::clone(&self.path),
            response,
            error,
            received_ms: now_ms(),
        };
        match self.queue.try_send(n) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(n)) => {
                self.stats.waited_for_room();
                self.queue.send(n).await.is_ok()
            }
        }
    }

    /// [`Self::notify`] unless cancelled meanwhile: false when the task should end.
    async fn deliver(
        &self,
        cancel: &mut oneshot::Receiver<()>,
        response: ClientResponse,
        error: Option<ErrorAnswer>,
    ) -> bool {
        tokio::select! {
            biased;
            _ = cancel => false,
            delivered = self.notify(response, error) => delivered,
        }
    }

    /// Count an error answer and place it in the back-off (`failures` set-up attempts failed
    /// in a row, this one included).
    fn error_answer(&self, response: &ClientResponse, failures: u32) -> ErrorAnswer {
        self.stats.error_answers.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().record_observer_error(response.code);
        ErrorAnswer {
            via: WatchedBy::Observe,
            consecutive: failures,
            retry_in: backoff(failures.saturating_sub(1)),
        }
    }

    pub(super) async fn run(self, mut cancel: oneshot::Receiver<()>) {
        let mut failures = 0u32;
        loop {
            let setup = async {
                // Bounded set-ups: a registry load of 10k devices must not flood the socket.
                let _permit = self.setups.acquire().await.ok()?;
                let mut req = ClientRequest::get(&self.path).timeout(REQUEST_BUDGET);
                if let Some(identity) = &self.dtls {
                    req = req.over_dtls(identity.clone());
                }
                Some(self.client.observe(self.peer, req).await)
            };
            let attempt = tokio::select! {
                biased;
                _ = &mut cancel => return,
                attempt = setup => attempt,
            };
            match attempt {
                None => return, // the semaphore is never closed; nothing to do without it
                Some(Ok(mut obs)) => {
                    let observing = obs.first.code.is_success() && obs.first.observe.is_some();
                    let mut quiet = loss_deadline(obs.first.max_age);
                    let error = if obs.first.code.is_success() {
                        None
                    } else {
                        failures += 1;
                        Some(self.error_answer(&obs.first, failures))
                    };
                    if !self.deliver(&mut cancel, obs.first.clone(), error).await {
                        obs.cancel().await;
                        return;
                    }
                    if observing {
                        failures = 0;
                        let mut ended_by_error = false;
                        loop {
                            tokio::select! {
                                biased;
                                _ = &mut cancel => {
                                    obs.cancel().await;
                                    return;
                                }
                                next = tokio::time::timeout(quiet, obs.next()) => match next {
                                    Ok(Some(resp)) if !resp.code.is_success() => {
                                        // RFC 7641 §3.2: an error notification ends the
                                        // observation; ask again only after the back-off.
                                        failures = 1;
                                        ended_by_error = true;
                                        let error = self.error_answer(&resp, failures);
                                        if !self.deliver(&mut cancel, resp, Some(error)).await {
                                            return;
                                        }
                                        break;
                                    }
                                    Ok(Some(resp)) => {
                                        quiet = loss_deadline(resp.max_age);
                                        if !self.deliver(&mut cancel, resp, None).await {
                                            obs.cancel().await;
                                            return;
                                        }
                                    }
                                    // Ended by the device (final response or RST) or lost.
                                    Ok(None) | Err(_) => break,
                                },
                            }
                        }
                        if !ended_by_error {
                            self.stats.lost.fetch_add(1, Ordering::Relaxed);
                            debug!(
                                "observer: observation of {} at {} lost",
                                self.path, self.peer
                            );
                        }
                    } else if obs.first.code.is_success() {
                        // A value without Observe: the device does not offer observation now.
                        failures += 1;
                    }
                }
                Some(Err(e)) => {
                    failures += 1;
                    self.stats.setup_failed.fetch_add(1, Ordering::Relaxed);
                    debug!(
                        "observer: cannot observe {} at {}: {e}",
                        self.path, self.peer
                    );
                }
            }
            let wait = if failures == 0 {
                Duration::ZERO
            } else {
                backoff(failures - 1)
            };
            tokio::select! {
                biased;
                _ = &mut cancel => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
