//! Group commit: a change's reply is parked until a flush covers it. One flush covers every
//! change parked before it started, the next batch collects meanwhile; once durable (and the
//! acknowledged mark recorded) the batch's replies are answered and its events published in
//! order, or on failure every request is answered with the flush's error.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Backend, Registry};
use crate::limits::LogThrottle;
use crate::registry::error::{RegistryError, StoreError};
use crate::registry::messages::RegistryEvent;

/// Failures to write the acknowledged mark (`watermark`): one line per 10 s.
static MARK_LOG: LogThrottle = LogThrottle::new();

/// Finishes one parked request once its batch's flush is done: `None` on success.
pub(super) type Completion = Box<dyn FnOnce(Option<&StoreError>)>;

/// A change waiting for its flush: the reply to send, the events to publish.
pub(super) struct Parked {
    pub(super) complete: Option<Completion>,
    pub(super) events: Vec<RegistryEvent>,
}

impl Registry {
    /// Park the outcome of a change until the flush that covers it; errors found before any
    /// write are answered at once.
    pub(super) fn park<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Result<(T, Vec<RegistryEvent>), RegistryError>,
    ) -> ResponseFuture<Result<T, RegistryError>> {
        let (value, events) = match outcome {
            Ok(applied) => applied,
            Err(e) => {
                if let RegistryError::Store(store_error) = &e {
                    self.store_failed(store_error, ctx);
                }
                return Box::pin(async move { Err(e) });
            }
        };
        let (tx, rx) = oneshot::channel();
        let complete: Completion = Box::new(move |failure| {
            let reply = match failure {
                None => Ok(value),
                Some(e) => Err(RegistryError::Store(replicate(e))),
            };
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(reply);
        });
        self.batch.push(Parked {
            complete: Some(complete),
            events,
        });
        self.schedule_flush(ctx);
        self.arm_timer(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(RegistryError::Unavailable)) })
    }

    /// Start a flush once the mailbox has been drained and the other tasks on this thread have
    /// had one turn, so that every change already queued or about to be sent joins this batch.
    /// (actix polls spawned futures only after the mailbox is empty; the yield lets senders
    /// woken by the previous batch's replies send again first. Without it, batches alternated
    /// between 4 and 60 with 64 requests in flight; with it they stay at 64.)
    pub(super) fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_in_flight || self.flush_scheduled || self.batch.is_empty() {
            return;
        }
        self.flush_scheduled = true;
        ctx.spawn(
            tokio::task::yield_now()
                .into_actor(self)
                .map(|(), act, ctx| {
                    act.flush_scheduled = false;
                    act.start_flush(ctx);
                }),
        );
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_in_flight || self.batch.is_empty() {
            return;
        }
        let Backend::Sled(store) = &mut self.backend else {
            return;
        };
        let parked = std::mem::take(&mut self.batch);
        self.flush_in_flight = true;
        // A failure here fails the flush below too; the batch is then answered with it.
        let mark = store.seal_batch().ok();
        let flush = store.flush_async();
        ctx.spawn(flush.into_actor(self).map(move |result, act, ctx| {
            act.flush_in_flight = false;
            if let (Ok(()), Some(mark), Backend::Sled(store)) = (&result, mark, &mut act.backend) {
                if let Err(e) = store.record_acknowledged(mark) {
                    if let Some(n) = MARK_LOG.note() {
                        log::warn!(
                            "registry: cannot record the acknowledged mark ({n} times): {e}; a lost database tail may go unnoticed at the next start"
                        );
                    }
                }
            }
            act.finish(parked, result.err(), ctx);
            act.schedule_flush(ctx);
        }));
    }

    fn finish(
        &mut self,
        parked: Vec<Parked>,
        failure: Option<StoreError>,
        ctx: &mut Context<Self>,
    ) {
        match &failure {
            Some(e) => self.store_failed(e, ctx),
            None => self.health.record_flush_ok(),
        }
        if let Some(e) = &failure {
            log::error!(
                "registry {}: flush failed, {} changes not acknowledged: {e}",
                self.backend.describe(),
                parked.len()
            );
        }
        for p in parked {
            let durable_or_nothing_to_write = failure.is_none() || p.complete.is_none();
            if let Some(complete) = p.complete {
                complete(failure.as_ref());
            }
            if durable_or_nothing_to_write {
                self.publish(p.events, ctx);
            }
        }
    }

    /// Purges are written without a waiting caller; piggy-back them on a flush anyway so they
    /// do not sit in memory until the next change.
    pub(super) fn schedule_flush_of_unparked_writes(&mut self, ctx: &mut Context<Self>) {
        self.batch.push(Parked {
            complete: None,
            events: Vec::new(),
        });
        self.schedule_flush(ctx);
    }
}

/// One flush error, answered to every request of its batch. Flushes only fail with sled
/// errors, which are cloneable; anything else is carried as its message.
fn replicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io(inner) => StoreError::Io(inner.clone()),
        StoreError::Etcd(message) | StoreError::WrongCluster(message) => {
            StoreError::Etcd(message.clone())
        }
        other => StoreError::Io(sled::Error::ReportableBug(other.to_string())),
    }
}
