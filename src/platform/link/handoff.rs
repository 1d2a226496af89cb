//! Handing frames to the socket writer: a frame goes straight to the writer when the link is
//! up, nothing older is owed and the writer holds fewer than [`WRITER_HIGH_WATER`] frames;
//! otherwise it is owed in the bounded [`OwedQueue`](crate::platform::queue::OwedQueue) and
//! pumped out oldest first once the writer has room. Every frame is fitted to the frame bound
//! on the way out.

use actix::prelude::*;
use awc::ws::Message as WsMessage;

use super::connection::LinkState;
use super::{PlatformLink, OVERSIZE_LOG, WRITER_HIGH_WATER};
use crate::platform::fit::frame_within;
use crate::platform::protocol::OutboundFrame;
use crate::platform::queue::PushOutcome;

impl PlatformLink {
    /// Whether the writer can take a frame now (up, and not backed up).
    pub(super) fn writer_has_room(&self) -> bool {
        if self.closing {
            return false;
        }
        match &self.state {
            LinkState::Up(conn) => !conn.tx.is_closed() && conn.in_flight.get() < WRITER_HIGH_WATER,
            _ => false,
        }
    }

    /// Move owed frames to the writer, oldest first, while it has room.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        while !self.queue.is_empty() && self.writer_has_room() {
            let Some(frame) = self.queue.pop_front() else {
                break;
            };
            if !self.write(&frame) {
                let generation = self.generation;
                self.on_lost(generation, "socket writer stopped", ctx);
                break;
            }
        }
        self.stats.queued = self.queue.len();
    }

    /// Hand a frame to the socket writer. False when the writer is gone (the socket died).
    /// Nothing larger than the frame bound is written: a device frame goes with its links
    /// truncated, a command result becomes a failure saying why, anything else is skipped
    /// (counted and logged): the platform would only close the link on it.
    pub(super) fn write(&mut self, frame: &OutboundFrame) -> bool {
        let LinkState::Up(_) = &self.state else {
            return false;
        };
        let text = match frame_within(frame, self.frame_bound) {
            Ok(fitted) => {
                if fitted.device_truncated {
                    self.stats.devices_truncated += 1;
                    if let Some(n) = OVERSIZE_LOG.note() {
                        log::warn!(
                            "platform link: a device frame over {} bytes was sent with its links truncated ({n} oversize event(s) in the last {} s); raise platform.max_frame_bytes if the platform accepts larger frames",
                            self.frame_bound,
                            crate::limits::log_throttle::REPORT_EVERY_S
                        );
                    }
                }
                fitted.text
            }
            Err(too_big) => {
                self.stats.frames_too_big += 1;
                if let Some(n) = OVERSIZE_LOG.note() {
                    log::error!(
                        "platform link: a frame of {} bytes is over the platform's frame limit of {} bytes (platform.max_frame_bytes) and was not sent ({n} oversize event(s) in the last {} s)",
                        too_big.bytes,
                        self.frame_bound,
                        crate::limits::log_throttle::REPORT_EVERY_S
                    );
                }
                return true;
            }
        };
        let LinkState::Up(conn) = &mut self.state else {
            return false;
        };
        conn.largest_frame = conn.largest_frame.max(text.len());
        if !conn.send(WsMessage::Text(text.into())) {
            return false;
        }
        self.stats.frames_sent += 1;
        crate::metrics::global().record_frame_sent(frame.into());
        true
    }

    /// Send now when up and nothing older is waiting; otherwise owe it.
    pub(super) fn deliver(&mut self, frame: OutboundFrame, ctx: &mut Context<Self>) {
        if self.queue.is_empty() && self.writer_has_room() {
            if self.write(&frame) {
                return;
            }
            let generation = self.generation;
            self.owe(frame);
            self.on_lost(generation, "socket writer stopped", ctx);
            return;
        }
        self.owe(frame);
    }

    fn owe(&mut self, frame: OutboundFrame) {
        match self.queue.push(frame) {
            PushOutcome::Queued => {}
            PushOutcome::DroppedData => {
                let n = self.queue.dropped_data();
                if n == 1 || n % 1_000 == 0 {
                    log::warn!(
                        "platform link: owed queue full ({} frames); {n} data frames dropped so far",
                        self.queue.capacity()
                    );
                }
            }
            PushOutcome::DroppedEvent => {
                let n = self.queue.dropped_events();
                if n == 1 || n % 100 == 0 {
                    log::error!(
                        "platform link: owed queue full of events and results ({} frames); dropped the oldest, {n} lost so far (the next snapshot restores the registry view)",
                        self.queue.capacity()
                    );
                }
            }
        }
        self.stats.queued = self.queue.len();
    }
}
