//! Lifetime expiry (RFC 9176 §5, `lt`): one timer, armed at the earliest of the next lifetime
//! end and the next end of grace. An expired registration leaves the live views (event
//! `Removed{Expired}`) but stays revivable for the grace period; then it is purged from the
//! index and sled.

use std::time::Duration;

use actix::prelude::*;

use super::{Backend, Registry};
use crate::registry::messages::{RegistryEvent, RemovalReason};
use crate::time::now_ms;

/// The longest the expiry timer sleeps before looking again; keeps wake-ups sane when the
/// next deadline is years away or the wall clock jumps.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(3600);
/// On etcd, the least the timer sleeps: expiries in flight keep their deadline in the index.
const ETCD_EXPIRY_PAUSE: Duration = Duration::from_millis(200);

impl Registry {
    /// (Re-)arm the expiry timer for the earliest of the next lifetime end and the next end of
    /// grace, unless it is already armed for that instant or earlier.
    pub(super) fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let grace_ms = self.grace_ms;
        let next = self.reader.with_index(|index| {
            let purge = index.next_grave().map(|at| at.saturating_add(grace_ms));
            match (index.next_deadline(), purge) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        let Some(at) = next else { return };
        if let Some((armed_at, handle)) = self.timer {
            if armed_at <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let mut delay = Duration::from_millis(at.saturating_sub(now_ms())).min(MAX_TIMER_SLEEP);
        if matches!(self.backend, Backend::Etcd(_)) {
            // What is due stays in the index until the watch brings its expiry back.
            delay = delay.max(ETCD_EXPIRY_PAUSE);
        }
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.expire(ctx);
            act.arm_timer(ctx);
        });
        self.timer = Some((at, handle));
    }

    fn expire(&mut self, ctx: &mut Context<Self>) {
        let Backend::Sled(store) = &mut self.backend else {
            self.expire_on_etcd(ctx);
            return;
        };
        let now = now_ms();
        let cutoff = now.saturating_sub(self.grace_ms);
        let (expired, purged) = {
            let mut index = self.reader.write();
            (index.expire_due(now), index.purge_graves(cutoff))
        };
        let mut failures = Vec::new();
        for reg in &purged {
            self.counts.remove(reg.source.ip());
            // Losing this delete in a crash is harmless: the next start purges it again.
            if let Err(e) = store.remove(reg.id) {
                log::error!(
                    "registry: cannot delete expired registration {}: {e}",
                    reg.id
                );
                failures.push(e);
            }
        }
        for e in failures {
            self.store_failed(&e, ctx);
        }
        if !purged.is_empty() {
            self.trim_link_sets();
            self.schedule_flush_of_unparked_writes(ctx);
        }
        if !expired.is_empty() {
            crate::metrics::global().record_expired(expired.len());
            log::debug!("registry: {} registrations expired", expired.len());
            let events = expired
                .into_iter()
                .map(|registration| RegistryEvent::Removed {
                    registration,
                    reason: RemovalReason::Expired,
                })
                .collect();
            self.publish_in_order(events, ctx);
        }
    }

    pub(super) fn trim_link_sets(&mut self) {
        let held = self
            .reader
            .with_index(|index| index.len_live() + index.len_in_grace());
        self.link_sets.trim(held);
    }
}
