//! Polling: selected links without `obs` are asked with GET every `poll_interval_s`, each at a
//! fixed phase of the interval (`schedule`), at most `max_in_flight` at once, released every
//! [`TICK`]. An error answer (4.xx, 5.xx) is not a reading: it is counted
//! (`observer_error_answers_total{code}`), forwarded as `data_error`, and backs the link off:
//! it is asked again after 2, 4, 8, ... intervals up to `observer.error_backoff_max_s`
//! (`schedule::after_error_due_ms`); a value resets it. With `only_changes`, a value equal to
//! the link's previous one is not forwarded.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::debug;

use super::actor::Observer;
use super::forward::{ErrorAnswer, Notified};
use super::observation::REQUEST_BUDGET;
use super::schedule::{after_error_due_ms, next_due_ms};
use super::strategy::{forward_poll, Reading};
use crate::coap::{ClientRequest, ClientResponse};
use crate::pinger::dtls_of;
use crate::platform::protocol::WatchedBy;
use crate::registry::RegistrationId;
use crate::time::now_ms;

/// How often due polls are released.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// A polled link's next turn.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Due {
    pub(super) at_ms: u64,
    pub(super) id: RegistrationId,
    pub(super) generation: u64,
    pub(super) path: Arc<str>,
}

impl Observer {
    pub(super) fn release_polls(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        while self.polls_in_flight < self.settings.max_in_flight {
            match self.polls.peek() {
                Some(Reverse(due)) if due.at_ms <= now => {}
                _ => break,
            }
            let Some(Reverse(due)) = self.polls.pop() else {
                break;
            };
            let Some(dev) = self.current(due.id, due.generation) else {
                continue;
            };
            let peer = dev.peer;
            let dtls = dtls_of(&dev.reg);
            self.polls_in_flight += 1;
            let client = self.client.clone();
            let budget = self.settings.poll_interval.min(REQUEST_BUDGET);
            let mut req = ClientRequest::get(&due.path).timeout(budget);
            if let Some(identity) = dtls {
                req = req.over_dtls(identity);
            }
            ctx.spawn(
                async move { client.request(peer, req).await }
                    .into_actor(self)
                    .map(move |result, act, _| act.finish_poll(due, result)),
            );
        }
    }

    fn finish_poll(&mut self, due: Due, result: Result<ClientResponse, crate::coap::ClientError>) {
        self.polls_in_flight -= 1;
        let interval_ms = self.settings.poll_interval.as_millis() as u64;
        let cap_ms = self.settings.error_backoff_max.as_millis() as u64;
        let only_changes = self.settings.only_changes;
        let stats = Arc::clone(&self.stats);
        let Some(dev) = self.current(due.id, due.generation) else {
            return;
        };
        let now = now_ms();
        let mut next_at = next_due_ms(due.at_ms, interval_ms, now);
        // `Some(error)`: forward the response, as `data_error` when `error` is set.
        let forward = match &result {
            Ok(resp) if !resp.code.is_success() => {
                // Not a reading: count it, back off, report it as an error.
                let errors = dev.poll_errors.entry(Arc::clone(&due.path)).or_insert(0);
                *errors = errors.saturating_add(1);
                let consecutive = *errors;
                // After an error, the next value is news even if it equals the last one.
                dev.last_poll.remove(&due.path);
                stats.error_answers.fetch_add(1, Ordering::Relaxed);
                crate::metrics::global().record_observer_error(resp.code);
                next_at = after_error_due_ms(due.at_ms, interval_ms, consecutive, cap_ms, now);
                Some(Some(ErrorAnswer {
                    via: WatchedBy::Poll,
                    consecutive,
                    retry_in: Duration::from_millis(next_at.saturating_sub(now)),
                }))
            }
            Ok(resp) => {
                dev.poll_errors.remove(&due.path);
                let reading = Reading {
                    code: resp.code.to_string(),
                    content_format: resp.content_format,
                    payload: resp.payload.clone(),
                };
                let fwd = forward_poll(only_changes, dev.last_poll.get(&due.path), &reading);
                if !fwd {
                    stats.unchanged.fetch_add(1, Ordering::Relaxed);
                }
                dev.last_poll.insert(Arc::clone(&due.path), reading);
                fwd.then_some(None)
            }
            Err(e) => {
                stats.polls_failed.fetch_add(1, Ordering::Relaxed);
                debug!("observer: GET {} from {}: {e}", due.path, dev.reg.ep);
                None
            }
        };
        if let (Some(error), Ok(response)) = (forward, result) {
            self.enqueue(Notified {
                id: due.id,
                generation: due.generation,
                path: Arc::clone(&due.path),
                response,
                error,
                received_ms: now,
            });
        }
        self.requeue(due, next_at);
    }

    fn requeue(&mut self, due: Due, at_ms: u64) {
        self.polls.push(Reverse(Due { at_ms, ..due }));
    }
}
