//! The bounded, lossless path from the watches to the platform. Every value (notification or
//! poll result) enters one bounded queue, [`queue_capacity`]`(max_watched)` = two values per
//! watchable link, so a whole fleet notifying in the same instant fits twice over. The actor
//! drains it in batches of up to [`BATCH`] per wake-up and hands each batch to PlatformLink as
//! one [`DataFrames`] message, holding one hand-off permit per frame ([`HANDOFF`] in all) until
//! the link has taken the batch. When the queue is full (the gateway itself is more than two
//! values per link behind) an observation task waits for room (counted as `values waited for
//! room`); a poll result cannot wait and is dropped and counted
//! (`data_frames_dropped_total{reason="mailbox_full"}`). When the link has no permits left the
//! actor stops draining, and the queue holds the values. The platform being slower than the
//! gateway is handled in one place only: PlatformLink's owed queue drops the oldest `data`
//! first.
//!
//! Each value becomes a `data` frame, an error answer (4.xx, 5.xx) a `data_error` frame (never
//! `data`); frames per device are capped by a token bucket (`max_frames_per_s`), drops counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::actor::Observer;
use crate::coap::ClientResponse;
use crate::platform::protocol::{DataErrorFrame, DataFrame, WatchedBy};
use crate::platform::{DataFrames, OutboundFrame};
use crate::registry::RegistrationId;

/// Values waiting for the Observer per watchable link (`observer.max_watched`): a fleet that
/// samples in lockstep delivers one per link at the same instant, and the queue takes two such
/// bursts before anyone waits.
pub(crate) const VALUES_PER_LINK: usize = 2;

/// The queue is never smaller than this (a small `max_watched` still absorbs a burst).
pub(crate) const MIN_QUEUE: usize = 1024;

/// Nor larger (each value holds one response; a bound on memory whatever `max_watched` says).
pub(crate) const MAX_QUEUE: usize = 1 << 22;

/// Values drained from the queue per wake-up, and the most frames in one [`DataFrames`].
pub(crate) const BATCH: usize = 1024;

/// Frames handed to PlatformLink and not yet taken by it (the hand-off permits). The link
/// takes a batch at once (into its socket writer or owed queue), so this only bounds the
/// messages in its mailbox when its thread is busy.
pub(crate) const HANDOFF: usize = 16 * BATCH;

/// The Observer's queue capacity for `max_watched` links.
pub(crate) fn queue_capacity(max_watched: usize) -> usize {
    max_watched
        .saturating_mul(VALUES_PER_LINK)
        .clamp(MIN_QUEUE, MAX_QUEUE)
}

/// A value (or error answer) for the platform, from an observation task or a poll.
pub(super) struct Notified {
    pub(super) id: RegistrationId,
    pub(super) generation: u64,
    pub(super) path: Arc<str>,
    pub(super) response: ClientResponse,
    /// Set when the response is an error answer: not a value, reported as `data_error`.
    pub(super) error: Option<ErrorAnswer>,
    /// When the gateway got it (Unix ms): the frame's `at` ("the Observer got a value"),
    /// not the later moment the actor drained it from the queue.
    pub(super) received_ms: u64,
}

/// An error answer's place in its resource's back-off.
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorAnswer {
    pub(super) via: WatchedBy,
    /// Error answers in a row, this one included.
    pub(super) consecutive: u32,
    /// When the resource is asked again.
    pub(super) retry_in: Duration,
}

impl Observer {
    /// The frame for one value (`data`) or error answer (`data_error`), within the device's
    /// rate; `None` for a stale watch or a value over the rate (counted).
    fn frame_for(&mut self, n: Notified) -> Option<OutboundFrame> {
        let Notified {
            id,
            generation,
            path,
            response: resp,
            error,
            received_ms: now,
        } = n;
        let path_arc = path;
        let path: &str = &path_arc;
        let max_frames_per_s = self.settings.max_frames_per_s;
        let stats = Arc::clone(&self.stats);
        let readings = self.readings.clone();
        let dev = self.current(id, generation)?;
        dev.reg.last_seen.touch(now);
        readings.record(
            id,
            &path_arc,
            now,
            resp.code.to_string(),
            resp.content_format,
            &resp.payload,
        );
        let rate = frame_rate(max_frames_per_s);
        if !dev.bucket.try_take(rate, rate, std::time::Instant::now()) {
            stats.rate_dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().record_data_rate_limited();
            return None;
        }
        let ep = dev.reg.ep.to_string();
        let d = dev.reg.d.as_ref().map(ToString::to_string);
        let frame = match error {
            None => OutboundFrame::Data(DataFrame::new(
                ep,
                d,
                path,
                resp.code.to_string(),
                resp.content_format,
                &resp.payload,
                now,
            )),
            Some(e) => OutboundFrame::DataError(DataErrorFrame {
                ep,
                d,
                path: path.to_owned(),
                code: resp.code.to_string(),
                content_format: resp.content_format,
                payload: crate::platform::protocol::encode_payload(&resp.payload),
                at: crate::time::rfc3339_ms(now),
                via: e.via,
                consecutive: e.consecutive,
                retry_in_ms: u64::try_from(e.retry_in.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        Some(frame)
    }

    /// Drain the queue: up to [`BATCH`] values per wake-up, then room for them at the link
    /// (hand-off permits), then the batch to the link, and again. Runs for the actor's life.
    pub(super) fn drain(&mut self, mut rx: mpsc::Receiver<Notified>, ctx: &mut Context<Self>) {
        let handoff = Arc::clone(&self.handoff);
        ctx.spawn(
            async move {
                let mut batch = Vec::with_capacity(BATCH);
                rx.recv_many(&mut batch, BATCH).await;
                // A batch is at most BATCH ≤ HANDOFF, so the wait ends once the link catches up;
                // meanwhile the queue holds (and, full, makes the tasks wait).
                let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
                let room = handoff.acquire_many_owned(n).await.ok();
                (rx, batch, room)
            }
            .into_actor(self)
            .map(|(rx, batch, room), act, ctx| {
                // Empty only when every sender is gone; the actor holds one, so it is stopping.
                if batch.is_empty() {
                    return;
                }
                act.forward_batch(batch, room);
                act.drain(rx, ctx);
            }),
        );
    }

    /// Turn a drained batch into frames and hand them to the link in one message.
    fn forward_batch(&mut self, batch: Vec<Notified>, room: Option<OwnedSemaphorePermit>) {
        let frames: Vec<OutboundFrame> = batch
            .into_iter()
            .filter_map(|n| self.frame_for(n))
            .collect();
        if frames.is_empty() {
            return;
        }
        let count = frames.len() as u64;
        // do_send: bounded by `room`, not by the link's mailbox (which would refuse a burst).
        self.platform.do_send(DataFrames { frames, room });
        self.stats.frames.fetch_add(count, Ordering::Relaxed);
        crate::metrics::global().record_data_forwarded_n(count);
    }

    /// A poll's value or error answer into the queue; it cannot wait, so a full queue drops it
    /// (counted).
    pub(super) fn enqueue(&self, n: Notified) {
        match self.queue_tx.try_send(n) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.stats.dropped_for_full_queue(),
            // Only while the actor stops.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The per-device frame budget as a token-bucket rate (at least one frame per second).
pub(super) fn frame_rate(max_frames_per_s: u32) -> f64 {
    f64::from(max_frames_per_s.max(1))
}
