//! Publishing the Registry's events: each event is offered to every subscriber without ever
//! waiting (see `registry::subscription`); a feed subscriber too far behind skips events until
//! a poll finds room to queue its `Resync`. Events that need no flush never overtake events
//! still waiting for one.

use std::time::Duration;

use actix::prelude::*;

use super::commit::Parked;
use super::Registry;
use crate::limits::LogThrottle;
use crate::registry::messages::RegistryEvent;
use crate::registry::subscription::{Offer, Subscriber};

/// How often an overflowed subscriber's backlog is checked for room to queue its `Resync`.
const RESYNC_POLL: Duration = Duration::from_millis(20);

/// Subscribers that fell behind (resynced) and plain subscribers that lost events: one log line
/// per kind per 10 s.
static OVERFLOW_LOG: LogThrottle = LogThrottle::new();
static LOST_LOG: LogThrottle = LogThrottle::new();

impl Registry {
    /// Offer each event to every subscriber without ever waiting (see `subscription`): a feed
    /// subscriber that is too far behind skips events until it is resynced from the index.
    pub(super) fn publish(&mut self, events: Vec<RegistryEvent>, ctx: &mut Context<Self>) {
        if events.is_empty() {
            return;
        }
        self.subscribers.retain(Subscriber::connected);
        let mut closed = false;
        for event in events {
            for subscriber in &mut self.subscribers {
                match subscriber.offer(&event) {
                    Offer::Sent => {}
                    Offer::Deferred { overflowed_now } => {
                        if overflowed_now {
                            crate::metrics::global().record_registry_feed_overflow();
                            if let Some(n) = OVERFLOW_LOG.note() {
                                log::warn!(
                                    "registry: {n} subscriber overflow(s) in the last {} s (over {} undelivered events); dropping their events until they resync from the index",
                                    crate::limits::log_throttle::REPORT_EVERY_S,
                                    crate::registry::subscription::EVENT_BACKLOG
                                );
                            }
                        }
                    }
                    Offer::Lost => {
                        if let Some(n) = LOST_LOG.note() {
                            log::error!(
                                "registry: {n} event(s) lost by plain subscribers with a full mailbox (no resync for them)"
                            );
                        }
                    }
                    Offer::Closed => closed = true,
                }
            }
        }
        if closed {
            self.subscribers.retain(Subscriber::connected);
        }
        self.arm_resync_poll(ctx);
    }

    /// While a subscriber is overflowed, look every `RESYNC_POLL` for room to queue its
    /// `Resync`. Never waits: the Registry keeps writing meanwhile.
    fn arm_resync_poll(&mut self, ctx: &mut Context<Self>) {
        if self.resync_poll_armed || !self.subscribers.iter().any(Subscriber::overflowed) {
            return;
        }
        self.resync_poll_armed = true;
        ctx.run_later(RESYNC_POLL, |act, ctx| {
            act.resync_poll_armed = false;
            act.subscribers.retain(Subscriber::connected);
            for subscriber in &mut act.subscribers {
                if let Some(missed) = subscriber.try_resync() {
                    log::info!("registry: subscriber resynced after missing {missed} events");
                }
            }
            act.arm_resync_poll(ctx);
        });
    }

    /// Publish events that need no flush, without overtaking events still waiting for one.
    pub(super) fn publish_in_order(&mut self, events: Vec<RegistryEvent>, ctx: &mut Context<Self>) {
        if self.batch.is_empty() && !self.flush_in_flight {
            self.publish(events, ctx);
        } else {
            self.batch.push(Parked {
                complete: None,
                events,
            });
        }
    }
}
