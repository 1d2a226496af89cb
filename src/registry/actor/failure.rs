//! A failed store write or flush: recorded for `GetHealth` (`/health`), then the data
//! directory is probed until it takes writes again; since sled cannot resume after an I/O
//! error, the Registry then asks for a restart (`AwaitStoreRestart`, see `registry::recovery`).

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Backend, Registry};
use crate::registry::health::{EtcdHealth, GetHealth};
use crate::registry::recovery::{probe_writable, AwaitStoreRestart, PROBE_EVERY};
use crate::time::now_ms;

impl Registry {
    /// A write or flush failed: report it, and watch for the disk to take writes again.
    pub(super) fn store_failed(&mut self, error: &dyn std::fmt::Display, ctx: &mut Context<Self>) {
        self.health.record_failure(error, now_ms());
        self.arm_probe(ctx);
    }

    /// While writes fail, probe the data directory every `PROBE_EVERY`; once it takes a write
    /// again, only a restart brings sled back (see `recovery`). A later successful flush
    /// disarms it: the store recovered by itself.
    fn arm_probe(&mut self, ctx: &mut Context<Self>) {
        if self.probe_armed || self.restart_reason.is_some() {
            return;
        }
        self.probe_armed = true;
        ctx.run_later(PROBE_EVERY, |act, ctx| {
            if !act.health.failing() {
                act.probe_armed = false;
                return;
            }
            let Backend::Sled(store) = &act.backend else {
                act.probe_armed = false;
                return;
            };
            let dir = store.path().to_path_buf();
            let probe = tokio::task::spawn_blocking(move || probe_writable(&dir));
            ctx.spawn(probe.into_actor(act).map(|outcome, act, ctx| {
                act.probe_armed = false;
                match outcome {
                    Ok(Ok(())) if act.health.failing() => act.request_restart(),
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        log::debug!("registry: data directory still refuses writes: {e}");
                        act.arm_probe(ctx);
                    }
                    Err(e) => {
                        log::error!("registry: the write probe did not run: {e}");
                        act.arm_probe(ctx);
                    }
                }
            }));
        });
    }

    fn request_restart(&mut self) {
        let reason = format!(
            "the registry database at {} failed a write ({}) and the disk takes writes again, but sled cannot resume after an I/O error: restarting recovers every acknowledged registration from disk",
            self.backend.describe(),
            self.health.last_error().unwrap_or("unknown error")
        );
        log::error!("registry: {reason}; stopping the gateway to exit non-zero");
        for waiter in self.restart_waiters.drain(..) {
            let _ = waiter.send(reason.clone());
        }
        self.restart_reason = Some(reason);
    }
}

impl Handler<GetHealth> for Registry {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _msg: GetHealth, _ctx: &mut Self::Context) -> Self::Result {
        let mut report = self.health.report();
        if let Backend::Etcd(state) = &self.backend {
            let ownership = &state.ownership;
            report.etcd = Some(EtcdHealth {
                member: ownership.me().to_owned(),
                members: ownership.members(),
                member_now: ownership.is_member(),
                lease_remaining_ms: u64::try_from(ownership.lease_remaining().as_millis())
                    .unwrap_or(u64::MAX),
                applied_revision: state.applied,
            });
        }
        MessageResult(report)
    }
}

impl Handler<AwaitStoreRestart> for Registry {
    type Result = ResponseFuture<String>;

    fn handle(&mut self, _msg: AwaitStoreRestart, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(reason) = &self.restart_reason {
            let reason = reason.clone();
            return Box::pin(async move { reason });
        }
        let (tx, rx) = oneshot::channel();
        self.restart_waiters.push(tx);
        // The actor stopped without asking for a restart: never resolve.
        Box::pin(async move {
            match rx.await {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        })
    }
}
