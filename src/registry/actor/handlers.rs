//! The Registry's messages: each write is applied (`writes`) and its reply parked until its
//! flush (`commit`); subscriptions join the event publishers (`events`).

use std::sync::Arc;

use actix::prelude::*;

use super::Registry;
use crate::registry::error::RegistryError;
use crate::registry::messages::{
    is_discovered, DiscoveredOutcome, Register, RegisterDiscovered, Registered, Remove, SetStatus,
    Subscribe, Update,
};
use crate::registry::model::Registration;
use crate::registry::subscription::{SubscribeFeed, Subscriber};

impl Handler<Register> for Registry {
    type Result = ResponseFuture<Result<Registered, RegistryError>>;

    fn handle(&mut self, msg: Register, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_register(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<RegisterDiscovered> for Registry {
    type Result = ResponseFuture<Result<DiscoveredOutcome, RegistryError>>;

    /// The check and the write happen in one handler call, so no self-registration can slip in
    /// between them.
    fn handle(&mut self, msg: RegisterDiscovered, ctx: &mut Self::Context) -> Self::Result {
        let register = msg.0;
        let refused = self.reader.with_index(|index| {
            let id = index.find_id_including_expired(&register.ep, register.d.as_ref())?;
            let reg = Arc::clone(index.get_including_expired(id)?);
            if !is_discovered(&reg) {
                Some(DiscoveredOutcome::SelfRegistered(reg))
            } else if reg.source != register.source && !index.is_in_grace(id) {
                Some(DiscoveredOutcome::NameTaken(reg))
            } else {
                None
            }
        });
        if let Some(outcome) = refused {
            return Box::pin(async move { Ok(outcome) });
        }
        let outcome = self
            .apply_register(register)
            .map(|(registered, events)| (DiscoveredOutcome::Registered(registered), events));
        self.park(ctx, outcome)
    }
}

impl Handler<Update> for Registry {
    type Result = ResponseFuture<Result<Arc<Registration>, RegistryError>>;

    fn handle(&mut self, msg: Update, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_update(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<Remove> for Registry {
    type Result = ResponseFuture<Result<Arc<Registration>, RegistryError>>;

    fn handle(&mut self, msg: Remove, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_remove(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<SetStatus> for Registry {
    type Result = ResponseFuture<Result<bool, RegistryError>>;

    /// Parked even when nothing changed, so the answer never overtakes an earlier change of
    /// the same registration that is still waiting for its flush.
    fn handle(&mut self, msg: SetStatus, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.apply_set_status(msg);
        self.park(ctx, outcome)
    }
}

impl Handler<Subscribe> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) {
        self.subscribers.push(Subscriber::plain(msg.0));
    }
}

impl Handler<SubscribeFeed> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SubscribeFeed, _ctx: &mut Self::Context) {
        self.subscribers.push(Subscriber::feed(msg.0));
    }
}
