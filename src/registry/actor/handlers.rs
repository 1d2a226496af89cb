//! The Registry's messages: each write is decided (`writes`), then on sled applied at once
//! (`apply`) with its reply parked until its flush (`commit`), on etcd sent in a transaction
//! (`etcd_commit`); subscriptions join the event publishers (`events`).

use std::sync::Arc;

use actix::prelude::*;

use super::writes::Decision;
use super::{Backend, Registry};
use crate::registry::error::RegistryError;
use crate::registry::messages::{
    is_discovered, DiscoveredOutcome, Register, RegisterDiscovered, Registered, Remove, SetStatus,
    Subscribe, Update,
};
use crate::registry::model::Registration;
use crate::registry::subscription::{SubscribeFeed, Subscriber};

/// A write decision for message `M` with reply `T`.
pub(super) type Decide<M, T> = fn(&mut Registry, M) -> Result<Decision<T>, RegistryError>;

impl Registry {
    /// Decide `msg` and store the decision: on sled at once, answered after the flush; on etcd
    /// in the next transaction, answered once the watch has brought it back into the index
    /// (and decided again if another replica changed what the decision read).
    fn write<M: Clone + 'static, T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        msg: M,
        decide: Decide<M, T>,
    ) -> ResponseFuture<Result<T, RegistryError>> {
        if matches!(self.backend, Backend::Etcd(_)) {
            return self.submit_request(ctx, msg, decide);
        }
        let outcome = decide(self, msg);
        let outcome = self.apply_locally(outcome);
        self.park(ctx, outcome)
    }

    /// A discovered registration, unless the device registered itself under this name, or
    /// another address was discovered under it first. The check and the decision happen in
    /// one handler call, so no self-registration can slip in between them.
    fn decide_discovered(
        &mut self,
        msg: RegisterDiscovered,
    ) -> Result<Decision<DiscoveredOutcome>, RegistryError> {
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
            return Ok(Decision {
                change: None,
                value: outcome,
            });
        }
        let Decision { change, value } = self.decide_register(register)?;
        Ok(Decision {
            change,
            value: DiscoveredOutcome::Registered(value),
        })
    }
}

impl Handler<Register> for Registry {
    type Result = ResponseFuture<Result<Registered, RegistryError>>;

    fn handle(&mut self, msg: Register, ctx: &mut Self::Context) -> Self::Result {
        self.write(ctx, msg, Registry::decide_register)
    }
}

impl Handler<RegisterDiscovered> for Registry {
    type Result = ResponseFuture<Result<DiscoveredOutcome, RegistryError>>;

    fn handle(&mut self, msg: RegisterDiscovered, ctx: &mut Self::Context) -> Self::Result {
        self.write(ctx, msg, Registry::decide_discovered)
    }
}

impl Handler<Update> for Registry {
    type Result = ResponseFuture<Result<Arc<Registration>, RegistryError>>;

    fn handle(&mut self, msg: Update, ctx: &mut Self::Context) -> Self::Result {
        self.write(ctx, msg, Registry::decide_update)
    }
}

impl Handler<Remove> for Registry {
    type Result = ResponseFuture<Result<Arc<Registration>, RegistryError>>;

    fn handle(&mut self, msg: Remove, ctx: &mut Self::Context) -> Self::Result {
        self.write(ctx, msg, Registry::decide_remove)
    }
}

impl Handler<SetStatus> for Registry {
    type Result = ResponseFuture<Result<bool, RegistryError>>;

    /// Parked even when nothing changed, so the answer never overtakes an earlier change of
    /// the same registration that is still waiting for its flush.
    fn handle(&mut self, msg: SetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.write(ctx, msg, Registry::decide_set_status)
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
