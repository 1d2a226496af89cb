//! Bounded registry-event subscriptions with recovery ("bounded queues everywhere").
//!
//! The Registry must never block on a slow subscriber, yet a subscriber must never end up with a
//! view that differs from the registry. So each `SubscribeFeed` subscriber gets at most
//! [`EVENT_BACKLOG`] undelivered [`RegistryFeed`] messages in its mailbox (counted by a slot that
//! each message carries and releases when it is handled or discarded). When the backlog is full
//! the subscriber is marked overflowed: further events for it are dropped and counted. Once its
//! backlog has drained below [`RESUME_BELOW`], the Registry queues one `Resync` behind whatever
//! is still in the mailbox and resumes sending events. On `Resync` the subscriber rebuilds its
//! view from the shared [`super::RegistryReader`] index, which already holds every dropped change
//! (the index is written before any event is published). Events after the `Resync` are applied
//! on top, so the last event per registration wins, as without an overflow.
//!
//! Called by the Registry actor (`publish`, the resync timer); subscribers (PlatformLink,
//! Observer, RdServer) handle [`RegistryFeed`]. The legacy [`super::Subscribe`] (a plain
//! `Recipient<RegistryEvent>`, used by tests and tools) is bounded by the subscriber's actix
//! mailbox capacity (`try_send`) and loses events on overflow, counted and logged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::RegistryEvent;

/// Undelivered feed messages per subscriber before it is marked overflowed. Each is one
/// `Arc<Registration>` clone plus an envelope (~100 bytes), so 400 KB per subscriber at most.
pub const EVENT_BACKLOG: usize = 4096;
/// An overflowed subscriber is resynced once its backlog is below this: resyncing sooner would
/// overflow it again at once and rebuild twice.
pub const RESUME_BELOW: usize = EVENT_BACKLOG / 4;
/// The actix mailbox capacity of every feed subscriber, which refuses its `try_send` senders
/// (data frames, command results, notifications) once it holds this many messages. The
/// registry feed (at most [`EVENT_BACKLOG`] plus one `Resync`, sent with `do_send` under the
/// slot bound) is never refused by it, so a mailbox holds at most this + 4,097 + one message
/// per `try_send` sender.
pub(crate) const SUBSCRIBER_MAILBOX: usize = 8192;

/// One message of the registry feed. The private slot frees one unit of the subscriber's
/// backlog when this message is dropped (handled, or discarded with the mailbox).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegistryFeed {
    pub item: FeedItem,
    _slot: BacklogSlot,
}

impl RegistryFeed {
    /// A feed message outside any backlog (tests that drive a subscriber directly).
    #[cfg(test)]
    pub(crate) fn unbounded(item: FeedItem) -> Self {
        RegistryFeed {
            item,
            _slot: BacklogSlot(None),
        }
    }
}

/// What a feed message carries.
#[derive(Debug)]
pub enum FeedItem {
    Event(RegistryEvent),
    /// Events were dropped for this subscriber (`dropped` of them): rebuild from the index.
    Resync {
        dropped: u64,
    },
}

/// Subscribe to the bounded registry feed (with resync on overflow). Gateway subscribers use
/// this rather than [`super::Subscribe`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeFeed(pub Recipient<RegistryFeed>);

struct BacklogSlot(Option<Arc<AtomicUsize>>);

impl Drop for BacklogSlot {
    fn drop(&mut self) {
        if let Some(backlog) = &self.0 {
            backlog.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What happened to one offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    Sent,
    /// Dropped; the subscriber will be resynced. `true` for the drop that overflowed it.
    Deferred {
        overflowed_now: bool,
    },
    /// Dropped for good: a plain `Subscribe` recipient's mailbox was full.
    Lost,
    /// The subscriber is gone.
    Closed,
}

/// The Registry's side of one subscription.
pub(super) enum Subscriber {
    Plain(Recipient<RegistryEvent>),
    Feed {
        recipient: Recipient<RegistryFeed>,
        backlog: Arc<AtomicUsize>,
        /// Events dropped since the overflow; `None` while in sync.
        dropped: Option<u64>,
    },
}

impl Subscriber {
    pub(super) fn plain(recipient: Recipient<RegistryEvent>) -> Self {
        Subscriber::Plain(recipient)
    }

    pub(super) fn feed(recipient: Recipient<RegistryFeed>) -> Self {
        Subscriber::Feed {
            recipient,
            backlog: Arc::default(),
            dropped: None,
        }
    }

    pub(super) fn connected(&self) -> bool {
        match self {
            Subscriber::Plain(r) => r.connected(),
            Subscriber::Feed { recipient, .. } => recipient.connected(),
        }
    }

    pub(super) fn overflowed(&self) -> bool {
        matches!(
            self,
            Subscriber::Feed {
                dropped: Some(_),
                ..
            }
        )
    }

    /// Hand one event over without ever waiting.
    pub(super) fn offer(&mut self, event: &RegistryEvent) -> Offer {
        match self {
            Subscriber::Plain(recipient) => match recipient.try_send(event.clone()) {
                Ok(()) => Offer::Sent,
                Err(SendError::Full(_)) => Offer::Lost,
                Err(SendError::Closed(_)) => Offer::Closed,
            },
            Subscriber::Feed {
                recipient,
                backlog,
                dropped,
            } => {
                if let Some(n) = dropped {
                    *n += 1;
                    return Offer::Deferred {
                        overflowed_now: false,
                    };
                }
                if backlog.load(Ordering::Acquire) >= EVENT_BACKLOG {
                    *dropped = Some(1);
                    return Offer::Deferred {
                        overflowed_now: true,
                    };
                }
                if !recipient.connected() {
                    return Offer::Closed;
                }
                // do_send under the slot bound: the feed must not compete with the
                // subscriber's lossy try_send senders for its actix mailbox capacity.
                recipient.do_send(slotted(backlog, FeedItem::Event(event.clone())));
                Offer::Sent
            }
        }
    }

    /// For an overflowed subscriber whose backlog has drained: queue its `Resync` and resume.
    /// Returns the number of events it missed when the resync was queued.
    pub(super) fn try_resync(&mut self) -> Option<u64> {
        let Subscriber::Feed {
            recipient,
            backlog,
            dropped,
        } = self
        else {
            return None;
        };
        let missed = (*dropped)?;
        if backlog.load(Ordering::Acquire) >= RESUME_BELOW {
            return None;
        }
        recipient.do_send(slotted(backlog, FeedItem::Resync { dropped: missed }));
        *dropped = None;
        Some(missed)
    }
}

fn slotted(backlog: &Arc<AtomicUsize>, item: FeedItem) -> RegistryFeed {
    backlog.fetch_add(1, Ordering::AcqRel);
    RegistryFeed {
        item,
        _slot: BacklogSlot(Some(Arc::clone(backlog))),
    }
}
