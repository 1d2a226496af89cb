//! The PlatformLink's messages from the rest of the gateway: frames to send (registry
//! events, the Executer's results, the Observer's data batches), the command recipient, the
//! graceful stop, and the stats.

use std::time::Duration;

use actix::prelude::*;
use awc::ws::Message as WsMessage;

use super::connection::LinkState;
use super::PlatformLink;
use crate::platform::messages::{
    DataFrames, GetLinkStats, SendFrame, SetCommandRecipient, StopLink,
};
use crate::platform::protocol::OutboundFrame;
use crate::registry::{FeedItem, RegistryEvent, RegistryFeed};
use crate::time::now_ms;

/// How long a graceful stop waits for the platform to answer our Close frame (RFC 6455 §7.1.1:
/// the server closes the TCP connection first).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Handler<StopLink> for PlatformLink {
    type Result = ();

    fn handle(&mut self, _: StopLink, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.stats.connected = false;
        if !self.outbox.is_empty() {
            log::warn!(
                "platform link: stopping with {} frames still owed to the platform{}",
                self.outbox.len(),
                if self.settings.outbox.is_some() {
                    " (events and results are stored and sent after the next start)"
                } else {
                    ""
                }
            );
        }
        match &self.state {
            LinkState::Up(conn) => {
                // The closing handshake: our Close, the platform's Close, then the platform
                // closes TCP. Stopping the actor drops the writer's sender, which ends it.
                let _ = conn.send(WsMessage::Close(Some(awc::ws::CloseCode::Away.into())));
                ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
            }
            _ => ctx.stop(),
        }
    }
}

impl Handler<RegistryEvent> for PlatformLink {
    type Result = ();

    fn handle(&mut self, event: RegistryEvent, ctx: &mut Context<Self>) {
        let frame = OutboundFrame::from_event(&event, now_ms());
        self.deliver(frame, ctx);
    }
}

impl Handler<RegistryFeed> for PlatformLink {
    type Result = ();

    fn handle(&mut self, feed: RegistryFeed, ctx: &mut Context<Self>) {
        match feed.item {
            FeedItem::Event(event) => {
                let frame = OutboundFrame::from_event(&event, now_ms());
                self.deliver(frame, ctx);
            }
            FeedItem::Resync { dropped } => self.resync(dropped, ctx),
        }
    }
}

impl Handler<SendFrame> for PlatformLink {
    type Result = ();

    fn handle(&mut self, SendFrame(frame): SendFrame, ctx: &mut Context<Self>) {
        self.deliver(frame, ctx);
    }
}

impl Handler<DataFrames> for PlatformLink {
    type Result = ();

    /// Every frame goes to the writer or, behind a busy writer or while down, to the owed
    /// queue; the Observer's hand-off permits return when this returns.
    fn handle(&mut self, batch: DataFrames, ctx: &mut Context<Self>) {
        for frame in batch.frames {
            self.deliver(frame, ctx);
        }
    }
}

impl Handler<SetCommandRecipient> for PlatformLink {
    type Result = ();

    fn handle(
        &mut self,
        SetCommandRecipient(recipient): SetCommandRecipient,
        _: &mut Context<Self>,
    ) {
        self.commands = recipient;
    }
}

impl Handler<GetLinkStats> for PlatformLink {
    type Result = MessageResult<GetLinkStats>;

    fn handle(&mut self, _: GetLinkStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.queued = self.outbox.unsent();
        stats.in_flight = match &self.state {
            LinkState::Up(conn) => conn.in_flight.get(),
            _ => 0,
        };
        let c = self.outbox.counters();
        stats.dropped_data = c.dropped_data;
        stats.dropped_events = c.events_lost + c.results_lost;
        stats.outbox_frames = self.outbox.len();
        stats.outbox_bytes = self.outbox.bytes();
        stats.oldest_unacked_ms = self
            .outbox
            .oldest_born_ms()
            .map_or(0, |born| now_ms().saturating_sub(born));
        stats.resent = c.resent;
        stats.overflows = c.overflows;
        stats.last_ack = self.outbox.acked();
        MessageResult(stats)
    }
}
