//! The link of the leader of replicas on etcd ([`Numbering::Revision`](super::Numbering),
//! `docs/ha-etcd.md` §8). Registry events do not come from this replica's registry feed but
//! from the cluster feed (`cluster::feed`), which reads them from etcd's history with seqs
//! derived from their revisions: a new leader resumes at the acknowledgement the previous one
//! stored and sends again, under the same seqs, what the platform may not have, so a leader
//! change neither loses nor renumbers an event. Frames that are not events are numbered after
//! the feed's position ([`revision_seq`]). The link dials only once the feed has caught up
//! with the leader's own election, and reads each snapshot once the registry index has
//! applied the feed's position, so the snapshot is never older than the events before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::PlatformLink;
use crate::limits::LogThrottle;
use crate::platform::messages::{FeedLost, FeedStarted, NumberedEvents};
use crate::platform::outbox::revision_seq;
use crate::registry::Registration;

/// How often a snapshot waiting for the index is tried again.
pub(super) const SNAPSHOT_RETRY: Duration = Duration::from_millis(5);
/// An index this far behind the feed is not waited for any longer (its own watch is broken;
/// `/health` says so): the snapshot is read as it is.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(2);

static SLOTS_LOG: LogThrottle = LogThrottle::new();

/// Where the cluster feed is.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    /// The last revision the feed has applied.
    position: i64,
    /// The last revision that changed a registration: the snapshot reflects at least it.
    registrations_at: i64,
    /// The feed has applied the leader's election: the link may dial.
    caught_up: bool,
    /// The platform's acknowledgement, for the feed to store on etcd.
    acked: Option<Arc<AtomicU64>>,
}

impl PlatformLink {
    /// Number the next frame that is not an event: after the feed's position. False when the
    /// position's slots are used up (2^19 frames without a new revision: the frame is
    /// dropped and logged; the acknowledgements the feed stores move the position on).
    pub(super) fn number_non_event(&mut self) -> bool {
        let Some(feed) = &self.feed else {
            return true;
        };
        self.outbox
            .skip_to(revision_seq::non_event_floor(feed.position));
        if revision_seq::non_event_fits(self.outbox.next_seq(), feed.position) {
            return true;
        }
        if let Some(n) = SLOTS_LOG.note() {
            log::error!(
                "platform link: {n} frame(s) dropped: no sequence numbers left after revision {} until the cluster feed moves on",
                feed.position
            );
        }
        false
    }

    /// Hand the platform's acknowledgement to the cluster feed, which stores it (with a v1
    /// platform, what was written counts, as the outbox has it).
    pub(super) fn publish_acked(&self) {
        if let Some(acked) = self.feed.as_ref().and_then(|f| f.acked.as_ref()) {
            acked.fetch_max(self.outbox.acked(), Ordering::Relaxed);
        }
    }

    /// The snapshot of the leader of replicas: `Ok(None)` without a cluster feed (the
    /// snapshot taken at connect is used), `Err(())` while the index is behind the feed.
    pub(super) fn cluster_snapshot(
        &self,
        waiting_since: Instant,
    ) -> Result<Option<Vec<Arc<Registration>>>, ()> {
        let Some(feed) = &self.feed else {
            return Ok(None);
        };
        if let Some(devices) = self.snapshot.snapshot_at(feed.registrations_at) {
            return Ok(Some(devices));
        }
        if waiting_since.elapsed() < SNAPSHOT_PATIENCE {
            return Err(());
        }
        log::warn!(
            "platform link: the registry index has not reached revision {} after {} s; sending the snapshot it has",
            feed.registrations_at,
            SNAPSHOT_PATIENCE.as_secs()
        );
        Ok(Some(self.snapshot.snapshot()))
    }
}

impl Handler<FeedStarted> for PlatformLink {
    type Result = ();

    fn handle(&mut self, started: FeedStarted, _: &mut Context<Self>) {
        let Some(feed) = &mut self.feed else {
            return;
        };
        // The platform has everything up to the stored acknowledgement.
        self.outbox.skip_to(started.resume_seq.saturating_add(1));
        let done = self.outbox.ack(started.resume_seq);
        started
            .acked
            .fetch_max(started.resume_seq, Ordering::Relaxed);
        feed.acked = Some(started.acked);
        feed.position = feed
            .position
            .max(revision_seq::revision_of(started.resume_seq));
        self.forget_stored(&done);
    }
}

impl Handler<NumberedEvents> for PlatformLink {
    type Result = ();

    fn handle(&mut self, batch: NumberedEvents, ctx: &mut Context<Self>) {
        let Some(feed) = &mut self.feed else {
            return;
        };
        feed.position = feed.position.max(batch.position);
        feed.registrations_at = feed.registrations_at.max(batch.registrations_at);
        let dial = batch.caught_up && !feed.caught_up;
        feed.caught_up |= batch.caught_up;
        for (seq, frame) in batch.frames {
            if seq < self.outbox.next_seq() {
                // The platform has it: acknowledged before this term (the stored
                // acknowledgement), or named by its `welcome.last_seq`.
                continue;
            }
            self.outbox.skip_to(seq);
            self.deliver_numbered(frame, ctx);
        }
        if dial {
            log::info!(
                "platform link: the cluster feed has caught up (revision {}); dialling",
                batch.position
            );
            self.dial(ctx);
        }
    }
}

impl Handler<FeedLost> for PlatformLink {
    type Result = ();

    fn handle(&mut self, lost: FeedLost, ctx: &mut Context<Self>) {
        log::error!(
            "platform link: etcd compacted its history at revision {}: the events from revision {} on are given up; a fresh snapshot restates every device",
            lost.compacted_at,
            lost.from
        );
        self.stats.resyncs += 1;
        self.reconnect_for_snapshot(ctx);
    }
}
