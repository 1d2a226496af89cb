//! Handing frames to the socket writer through the outbox: every frame the gateway owes (an
//! event, a result, data, an error reply) gets its seq and its place in the
//! [`Ledger`](crate::platform::outbox::Ledger), durable ones are stored (group commit: one
//! flush at a time covers everything stored before it started), and the pump writes what is
//! ready, oldest first, while the connection is ready and the writer holds fewer than
//! [`WRITER_HIGH_WATER`] frames. In acked mode each frame is written with its `seq` and stays
//! owed until acknowledged; with a v1 platform it is done once written. Every frame is fitted
//! to the frame bound on the way in.

use actix::prelude::*;
use awc::ws::Message as WsMessage;

use super::connection::{LinkState, Phase};
use super::dial::SEQ_ROOM;
use super::{PlatformLink, OVERSIZE_LOG, WRITER_HIGH_WATER};
use crate::limits::LogThrottle;
use crate::platform::fit::frame_within;
use crate::platform::metric_labels::frame_type_of_text;
use crate::platform::outbox::codec::with_seq;
use crate::platform::outbox::store::block_end;
use crate::platform::outbox::{Class, Overflow};
use crate::platform::protocol::OutboundFrame;
use crate::time::now_ms;

/// Outbox store failures: one line per 10 s.
static STORE_LOG: LogThrottle = LogThrottle::new();

impl PlatformLink {
    /// Whether the writer can take a frame now (ready, and not backed up).
    pub(super) fn writer_has_room(&self) -> bool {
        if self.closing {
            return false;
        }
        match &self.state {
            LinkState::Up(conn) => {
                matches!(conn.phase, Phase::Ready { .. })
                    && !conn.tx.is_closed()
                    && conn.in_flight.get() < WRITER_HIGH_WATER
            }
            _ => false,
        }
    }

    fn acked_mode(&self) -> bool {
        matches!(&self.state, LinkState::Up(c) if c.phase == Phase::Ready { acked: true })
    }

    /// Write owed frames, oldest first, while the writer has room and they are ready.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        let acked = self.acked_mode();
        while self.writer_has_room() {
            let Some(entry) = self.outbox.next_ready() else {
                break;
            };
            let (seq, class) = (entry.seq, entry.class);
            if class == Class::Marker {
                // Stands for lost events: the snapshot of this connection restates them.
                let done = self.outbox.mark_written(seq);
                self.forget_stored(&done);
                continue;
            }
            let text = if acked {
                with_seq(&entry.text, seq)
            } else {
                entry.text.clone()
            };
            if text.len() > self.frame_bound {
                // The bound was lowered (close 1009) after this frame was fitted.
                self.count_too_big(text.len());
                let done = self.outbox.mark_written(seq);
                self.forget_stored(&done);
                continue;
            }
            if !self.write_text(text) {
                let generation = self.generation;
                self.on_lost(generation, "socket writer stopped", ctx);
                break;
            }
            let done = self.outbox.mark_written(seq);
            self.forget_stored(&done);
        }
        self.stats.queued = self.outbox.unsent();
        self.publish_acked();
    }

    /// Hand a frame outside the outbox (`hello`, a v1 snapshot part) to the socket writer.
    /// False when the writer is gone (the socket died).
    pub(super) fn write(&mut self, frame: &OutboundFrame) -> bool {
        let LinkState::Up(_) = &self.state else {
            return false;
        };
        match frame_within(frame, self.frame_bound) {
            Ok(fitted) => {
                if fitted.device_truncated {
                    self.count_truncated();
                }
                self.write_text(fitted.text)
            }
            Err(too_big) => {
                self.count_too_big(too_big.bytes);
                true
            }
        }
    }

    fn write_text(&mut self, text: String) -> bool {
        let frame_type = frame_type_of_text(&text);
        let LinkState::Up(conn) = &mut self.state else {
            return false;
        };
        conn.largest_frame = conn.largest_frame.max(text.len());
        if !conn.send(WsMessage::Text(text.into())) {
            return false;
        }
        self.stats.frames_sent += 1;
        if let Some(frame_type) = frame_type {
            crate::metrics::global().record_frame_sent(frame_type);
        }
        true
    }

    fn count_truncated(&mut self) {
        self.stats.devices_truncated += 1;
        if let Some(n) = OVERSIZE_LOG.note() {
            log::warn!(
                "platform link: a device frame over {} bytes was sent with its links truncated ({n} oversize event(s) in the last {} s); raise platform.max_frame_bytes if the platform accepts larger frames",
                self.frame_bound,
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
    }

    fn count_too_big(&mut self, bytes: usize) {
        self.stats.frames_too_big += 1;
        if let Some(n) = OVERSIZE_LOG.note() {
            log::error!(
                "platform link: a frame of {bytes} bytes is over the platform's frame limit of {} bytes (platform.max_frame_bytes) and was not sent ({n} oversize event(s) in the last {} s)",
                self.frame_bound,
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
    }

    /// Owe a frame: fitted to the frame bound (room kept for its seq), numbered, stored when
    /// durable, then written as soon as it is ready and everything before it is written.
    pub(super) fn deliver(&mut self, frame: OutboundFrame, ctx: &mut Context<Self>) {
        self.deliver_as(frame, Seq::Next, ctx);
    }

    /// Owe a frame the cluster feed numbered (`outbox.skip_to` its seq first): an event, or
    /// device data a replica relayed through etcd, which must keep its revision's seq rather
    /// than be numbered after the feed's position as this leader's own frames are.
    pub(super) fn deliver_numbered(&mut self, frame: OutboundFrame, ctx: &mut Context<Self>) {
        self.deliver_as(frame, Seq::Given, ctx);
    }

    fn deliver_as(&mut self, frame: OutboundFrame, seq: Seq, ctx: &mut Context<Self>) {
        let text = match frame_within(&frame, self.frame_bound.saturating_sub(SEQ_ROOM)) {
            Ok(fitted) => {
                if fitted.device_truncated {
                    self.count_truncated();
                }
                fitted.text
            }
            Err(too_big) => {
                self.count_too_big(too_big.bytes);
                return;
            }
        };
        let class = Class::of(&frame);
        drop(frame);
        self.owe(class, text, seq, ctx);
    }

    /// Owe a frame's text, already fitted to the frame bound (room kept for its seq).
    pub(super) fn deliver_text(&mut self, class: Class, text: String, ctx: &mut Context<Self>) {
        self.owe(class, text, Seq::Next, ctx);
    }

    fn owe(&mut self, class: Class, text: String, seq: Seq, ctx: &mut Context<Self>) {
        let durable = self.settings.outbox.is_some()
            && match class {
                Class::Event | Class::Result => true,
                Class::Data => self.settings.durable_data,
                Class::Reply | Class::Marker | Class::Snapshot => false,
            };
        self.reserve_seq();
        if class != Class::Event && seq == Seq::Next && !self.number_non_event() {
            return;
        }
        let overflows_before = self.outbox.counters().overflows;
        let pushed = self.outbox.push(class, text, durable, now_ms());
        if let Some(store) = &self.settings.outbox {
            let mut result = Ok(());
            if pushed.kept && durable {
                if let Some(entry) = self.outbox.get(pushed.seq) {
                    result = store.put(entry);
                }
            }
            if let Some(marker) = pushed.marker.and_then(|seq| self.outbox.get(seq)) {
                result = result.and(store.put(marker));
            }
            result = result.and(store.remove(&pushed.removed));
            if let Err(e) = result {
                if let Some(n) = STORE_LOG.note() {
                    log::error!("platform link: {e} ({n} failure(s) in the last {} s); owed frames may not survive a restart", crate::limits::log_throttle::REPORT_EVERY_S);
                }
            }
        }
        self.report_overflow(pushed.overflow, overflows_before, ctx);
        if durable && pushed.kept {
            self.schedule_flush(ctx);
        }
        self.pump(ctx);
    }

    fn report_overflow(
        &mut self,
        overflow: Overflow,
        overflows_before: u64,
        ctx: &mut Context<Self>,
    ) {
        let c = self.outbox.counters();
        let bound = self.outbox.capacity();
        match overflow {
            Overflow::None => {}
            Overflow::DroppedData => {
                let n = c.dropped_data;
                if n == 1 || n % 1_000 == 0 {
                    log::warn!(
                        "platform link: outbox full ({} bytes / {} frames: platform.outbox_max_bytes, platform.queue_capacity); {n} data frames dropped so far",
                        bound.max_bytes,
                        bound.max_frames
                    );
                }
            }
            Overflow::EventsReplaced => {
                let n = c.events_lost;
                if c.overflows > overflows_before || n % 100 == 0 {
                    log::error!(
                        "platform link: outbox full of events ({} bytes / {} frames): the oldest events are replaced by a marker that forces a fresh snapshot; {n} events lost so far, {} overflow(s)",
                        bound.max_bytes,
                        bound.max_frames,
                        c.overflows
                    );
                }
                if c.overflows > overflows_before && matches!(self.state, LinkState::Up(_)) {
                    // The snapshot of this connection was sent before the loss.
                    self.reconnect_for_snapshot(ctx);
                }
            }
            Overflow::ResultsLost => {
                log::error!(
                    "platform link: outbox full of command results ({} bytes / {} frames); dropped the oldest, {} results lost so far",
                    bound.max_bytes,
                    bound.max_frames,
                    c.results_lost
                );
            }
        }
    }

    /// Before a seq is handed out: make sure it is below the reserved mark, so that a restart
    /// never numbers a new frame with a seq the platform may have seen.
    pub(super) fn reserve_seq(&mut self) {
        if self.outbox.next_seq() < self.seq_reserved {
            return;
        }
        let Some(store) = &self.settings.outbox else {
            return;
        };
        let upto = block_end(self.outbox.next_seq());
        match store.reserve(upto) {
            Ok(()) => self.seq_reserved = upto,
            Err(e) => {
                if let Some(n) = STORE_LOG.note() {
                    log::error!("platform link: cannot reserve sequence numbers: {e} ({n} failure(s) in the last {} s)", crate::limits::log_throttle::REPORT_EVERY_S);
                }
            }
        }
    }

    /// Delete the records of entries that are done.
    pub(super) fn forget_stored(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        if let Some(store) = &self.settings.outbox {
            if let Err(e) = store.remove(seqs) {
                if let Some(n) = STORE_LOG.note() {
                    log::error!(
                        "platform link: {e} ({n} failure(s) in the last {} s)",
                        crate::limits::log_throttle::REPORT_EVERY_S
                    );
                }
            }
        }
    }

    /// Group commit: one flush at a time; entries stored while it runs wait for the next one.
    /// Once a flush is done, every durable entry numbered before it started may be written.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_in_flight {
            self.flush_wanted = true;
            return;
        }
        let Some(flush) = self.settings.outbox.as_ref().map(|s| s.flush_async()) else {
            return;
        };
        self.flush_in_flight = true;
        self.flush_wanted = false;
        let upto = self.outbox.next_seq().saturating_sub(1);
        ctx.spawn(flush.into_actor(self).map(move |result, link, ctx| {
            link.flush_in_flight = false;
            if let Err(e) = result {
                // Still sent: holding frames back would not make the disk work again.
                if let Some(n) = STORE_LOG.note() {
                    log::error!("platform link: outbox flush failed: {e} ({n} failure(s) in the last {} s); owed frames may not survive a restart", crate::limits::log_throttle::REPORT_EVERY_S);
                }
            }
            link.outbox.set_durable_upto(upto);
            if link.flush_wanted {
                link.schedule_flush(ctx);
            }
            link.pump(ctx);
        }));
    }
}

/// How a frame owed to the platform gets its seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    /// The outbox's next (for a leader of replicas, frames that are not events are numbered
    /// after the cluster feed's position).
    Next,
    /// Already set by the cluster feed.
    Given,
}
