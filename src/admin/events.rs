//! `GET /api/events`: the registry's events as server-sent events (the HTML living standard's
//! `text/event-stream`), so the operator console updates its list without polling the table
//! (issue 24). Each event is the JSON of the frame the platform gets for it
//! (`device_registered`, `device_updated`, `device_status`, `device_removed`), on a `data:`
//! line of its own.
//!
//! One [`EventHub`] is subscribed to the Registry's bounded feed for the gateway's life. With
//! nobody listening it drops each event at once, so the console costs nothing while nobody
//! looks. A listener gets a bounded queue ([`CLIENT_QUEUE`] events); one that falls that far
//! behind is disconnected (an `EventSource` reconnects by itself after the `retry` the stream
//! announces, and a console re-reads its page on every connect). A registry feed overflow
//! becomes an `event: resync` to everyone, for the same re-read. At most [`MAX_CLIENTS`]
//! listen at once; more are answered 503. A comment line every [`KEEPALIVE`] keeps proxies
//! from closing an idle stream and lets the hub notice listeners that went away.

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::platform::OutboundFrame;
use crate::registry::subscription::SUBSCRIBER_MAILBOX;
use crate::registry::{FeedItem, RegistryFeed};
use crate::time::now_ms;

/// Events queued per listener before it is disconnected as too slow.
pub(crate) const CLIENT_QUEUE: usize = 1024;
/// Listeners at once.
pub(crate) const MAX_CLIENTS: usize = 64;
/// A comment line this often.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);
/// What a reconnecting `EventSource` waits, in ms (sent first on every stream).
const RETRY_MS: u64 = 2000;

/// Holds the listeners and fans the registry's events out to them.
#[derive(Default)]
pub struct EventHub {
    clients: Vec<mpsc::Sender<Bytes>>,
}

/// A new listener: its stream, or `None` when [`MAX_CLIENTS`] already listen.
#[derive(Message)]
#[rtype(result = "Option<mpsc::Receiver<Bytes>>")]
pub(crate) struct Listen;

impl EventHub {
    /// Send `chunk` to every listener; a listener gone or too slow is dropped.
    fn broadcast(&mut self, chunk: Bytes) {
        self.clients
            .retain(|client| client.try_send(chunk.clone()).is_ok());
    }
}

/// One event as it goes on the wire.
pub(crate) fn event_chunk(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

impl Actor for EventHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SUBSCRIBER_MAILBOX);
        ctx.run_interval(KEEPALIVE, |hub, _| {
            if !hub.clients.is_empty() {
                hub.broadcast(Bytes::from_static(b": keepalive\n\n"));
            }
        });
    }
}

impl Handler<RegistryFeed> for EventHub {
    type Result = ();

    fn handle(&mut self, feed: RegistryFeed, _: &mut Self::Context) {
        if self.clients.is_empty() {
            return;
        }
        match feed.item {
            FeedItem::Event(event) => match OutboundFrame::from_event(&event, now_ms()).to_json() {
                Ok(json) => self.broadcast(event_chunk(&json)),
                Err(e) => log::error!("admin events: an event not rendered: {e}"),
            },
            FeedItem::Resync { .. } => {
                self.broadcast(Bytes::from_static(b"event: resync\ndata: {}\n\n"));
            }
        }
    }
}

impl Handler<Listen> for EventHub {
    type Result = Option<mpsc::Receiver<Bytes>>;

    fn handle(&mut self, _: Listen, _: &mut Self::Context) -> Self::Result {
        self.clients.retain(|c| !c.is_closed());
        if self.clients.len() >= MAX_CLIENTS {
            return None;
        }
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        // Room for it is certain: the queue is new.
        let _ = tx.try_send(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
        self.clients.push(tx);
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn listeners_get_each_event_and_a_slow_one_is_dropped() {
        let mut hub = EventHub::default();
        let (fast_tx, mut fast) = mpsc::channel(CLIENT_QUEUE);
        let (slow_tx, slow) = mpsc::channel(1);
        hub.clients = vec![fast_tx, slow_tx];
        hub.broadcast(event_chunk("{\"a\":1}"));
        hub.broadcast(event_chunk("{\"a\":2}"));
        assert_eq!(hub.clients.len(), 1, "the full one is dropped");
        assert_eq!(fast.recv().await.unwrap(), "data: {\"a\":1}\n\n");
        assert_eq!(fast.recv().await.unwrap(), "data: {\"a\":2}\n\n");
        drop(slow);
        drop(fast);
        hub.broadcast(event_chunk("{}"));
        assert!(hub.clients.is_empty(), "a closed one is dropped");
    }

    #[actix::test]
    async fn at_most_max_clients_listen() {
        let hub = EventHub::default().start();
        let mut streams = Vec::new();
        for _ in 0..MAX_CLIENTS {
            streams.push(hub.send(Listen).await.unwrap().expect("room"));
        }
        assert!(hub.send(Listen).await.unwrap().is_none());
        let mut first = streams.remove(0);
        assert_eq!(first.recv().await.unwrap(), "retry: 2000\n\n");
        drop(first);
        assert!(
            hub.send(Listen).await.unwrap().is_some(),
            "a gone one frees its place"
        );
    }
}
