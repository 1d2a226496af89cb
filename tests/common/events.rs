//! Registry events as a test reads them: an actor that forwards every `RegistryEvent` it is
//! subscribed to into a channel.
#![allow(dead_code)]

use actix::prelude::*;
use coap_gateway::registry::{Registry, RegistryEvent, Subscribe};
use tokio::sync::mpsc;

/// Forwards every registry event into a channel the test reads.
pub struct Collector(pub mpsc::UnboundedSender<RegistryEvent>);

impl Actor for Collector {
    type Context = Context<Self>;

    /// A plain `Subscribe` recipient gets events with `try_send` (issue 11: bounded), so it
    /// needs room for a whole burst; actix's default is 16.
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
    }
}

impl Handler<RegistryEvent> for Collector {
    type Result = ();
    fn handle(&mut self, event: RegistryEvent, _ctx: &mut Self::Context) {
        let _ = self.0.send(event);
    }
}

/// Subscribe a new [`Collector`] to `registry`; its events arrive on the returned receiver.
pub fn collect(registry: &Addr<Registry>) -> mpsc::UnboundedReceiver<RegistryEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    registry.do_send(Subscribe(Collector(tx).start().recipient()));
    rx
}
