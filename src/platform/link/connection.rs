//! One connection's life on the PlatformLink: the open socket ([`Connection`]) and the link's
//! state, liveness (pings, and silence past `pong_timeout`), the snapshot's acceptance (the
//! Pong that resets the back-off), a 1009 close lowering the frame bound, and losing the
//! connection or dropping it on purpose for a registry feed resync.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use futures::channel::mpsc;

use super::PlatformLink;
use crate::limits::LogThrottle;
use crate::platform::fit::MIN_FRAME_BYTES;

/// Resyncs are logged at most once per 10 s.
static RESYNC_LOG: LogThrottle = LogThrottle::new();
/// Connections lost before the platform accepted the snapshot: at most one line per 10 s.
static UNACCEPTED_LOG: LogThrottle = LogThrottle::new();

/// One open WebSocket.
pub(super) struct Connection {
    pub(super) generation: u64,
    /// Feeds the writer task; dropping it closes the socket after the queued writes.
    pub(super) tx: mpsc::UnboundedSender<WsMessage>,
    /// Messages in `tx` the writer has not taken yet (shared with the writer, same thread).
    pub(super) in_flight: Rc<Cell<usize>>,
    pub(super) reader: SpawnHandle,
    pub(super) last_heard: Instant,
    /// The platform answered the Ping sent behind the snapshot: it read every part. Only then
    /// is the back-off reset, so a platform that refuses a snapshot frame (and closes) is
    /// re-dialled ever more slowly instead of every 0.5 s.
    pub(super) snapshot_accepted: bool,
    /// The largest frame written on this connection, in bytes (for the refusal's log line).
    pub(super) largest_frame: usize,
    pub(super) phase: Phase,
    /// Acked mode: the seq of the snapshot's last part; an ack reaching it accepts the
    /// snapshot (the v1 Ping probe's role).
    pub(super) snapshot_last_seq: Option<u64>,
}

/// Where a connection is in the protocol 1.1 negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// `hello` and the Ping behind it are written: a `welcome` (1.1) or the Pong (a v1
    /// platform, which never sends `welcome`) decides the mode. Nothing else is written yet.
    Negotiating,
    /// The platform answered (`acked`, `last_seq` as in `on_ready`), and the leader of
    /// replicas waits (since `since`) for the registry index to reach the cluster feed's
    /// position before it reads the snapshot. Nothing else is written yet.
    Answered {
        acked: bool,
        last_seq: Option<u64>,
        since: Instant,
    },
    /// Frames flow; `acked`: the platform took up `ack` (seq on every frame, kept until
    /// acknowledged).
    Ready { acked: bool },
}

impl Connection {
    /// Hand a message to the writer, counting it until the writer takes it. False when the
    /// writer is gone.
    pub(super) fn send(&self, message: WsMessage) -> bool {
        if self.tx.unbounded_send(message).is_err() {
            return false;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        true
    }
}

pub(super) enum LinkState {
    /// Waiting for the back-off timer (or not started).
    Down,
    /// A dial is in progress.
    Dialling,
    Up(Connection),
}

impl PlatformLink {
    /// The connection of `generation` is gone: owe frames from now on and re-dial later.
    pub(super) fn on_lost(&mut self, generation: u64, why: &str, ctx: &mut Context<Self>) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        if conn.generation != generation {
            return;
        }
        if self.closing {
            ctx.stop();
            return;
        }
        let mut refused_snapshot = None;
        self.outbox.disconnected();
        if let LinkState::Up(conn) = std::mem::replace(&mut self.state, LinkState::Down) {
            ctx.cancel_future(conn.reader);
            // Best effort: tell the platform we are going; dropping `tx` then closes the socket.
            let _ = conn.send(WsMessage::Close(None));
            if !conn.snapshot_accepted {
                refused_snapshot = Some(conn.largest_frame);
            }
        }
        self.stats.connected = false;
        let delay = self.backoff.next_delay(&mut self.rng);
        match refused_snapshot {
            // The back-off was not reset on this connection, so these grow to
            // `reconnect_max`; the line says why at most once per 10 s.
            Some(largest) => {
                self.stats.snapshots_unaccepted += 1;
                if let Some(n) = UNACCEPTED_LOG.note() {
                    log::error!(
                        "platform link: the connection ended before the platform accepted the snapshot ({why}); largest frame sent {largest} bytes, frame bound {} bytes (platform.max_frame_bytes; a platform whose frame limit is lower refuses larger frames); {n} such connection(s) in the last {} s; re-dialling in {:.1} s",
                        self.frame_bound,
                        crate::limits::log_throttle::REPORT_EVERY_S,
                        delay.as_secs_f64()
                    );
                }
            }
            None => log::warn!(
                "platform link: connection lost ({why}); queueing frames, re-dialling in {:.1} s",
                delay.as_secs_f64()
            ),
        }
        ctx.run_later(delay, |link, ctx| link.dial(ctx));
    }

    /// The registry feed dropped `dropped` events for this link: give the platform a fresh
    /// snapshot, which protocol v1 allows only after `hello` on a new connection.
    pub(super) fn resync(&mut self, dropped: u64, ctx: &mut Context<Self>) {
        self.stats.resyncs += 1;
        if let Some(n) = RESYNC_LOG.note() {
            log::warn!(
                "platform link: registry events dropped ({dropped} this time, {n} resync(s) in the last {} s); reconnecting to send a fresh snapshot",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
        self.reconnect_for_snapshot(ctx);
    }

    /// Close the connection (frames already handed to the writer go out first) and re-dial at
    /// once: the new connection sends a fresh snapshot. Nothing to do while down or dialling.
    pub(super) fn reconnect_for_snapshot(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let LinkState::Up(_) = &self.state else {
            // Down or dialling: the next connect reads the snapshot after this point anyway.
            return;
        };
        self.outbox.disconnected();
        if let LinkState::Up(conn) = std::mem::replace(&mut self.state, LinkState::Down) {
            ctx.cancel_future(conn.reader);
            // Queued behind the frames the writer holds, which are written first.
            let _ = conn.send(WsMessage::Close(Some(awc::ws::CloseCode::Restart.into())));
        }
        self.stats.connected = false;
        self.dial(ctx);
    }

    /// A Pong: during negotiation, the one to the Ping behind `hello` (no `welcome` before
    /// it: a v1 platform); with a v1 platform after the snapshot, proof that the platform read
    /// every part (acked mode learns that from an ack instead).
    pub(super) fn on_pong(&mut self, payload: &[u8], ctx: &mut Context<Self>) {
        let LinkState::Up(conn) = &mut self.state else {
            return;
        };
        match conn.phase {
            Phase::Negotiating if payload == super::dial::HELLO_PROBE => {
                // Many WebSocket libraries (Python's websockets, Node's ws, actix-ws with a
                // reader task) answer a Ping as soon as it arrives, before the application has
                // answered `hello`: a `welcome` may follow the Pong by the platform's own
                // processing time. Only a connection still undecided after the grace is v1.
                let generation = conn.generation;
                ctx.run_later(super::dial::WELCOME_GRACE, move |link, ctx| {
                    let undecided = matches!(&link.state,
                        LinkState::Up(c) if c.generation == generation
                            && c.phase == Phase::Negotiating);
                    if undecided {
                        link.on_ready(false, None, ctx);
                    }
                });
            }
            Phase::Ready { acked: false } => self.accept_snapshot(),
            Phase::Negotiating | Phase::Answered { .. } | Phase::Ready { acked: true } => {}
        }
    }

    /// The platform has read the whole snapshot: the connection works, reset the back-off.
    pub(super) fn accept_snapshot(&mut self) {
        let LinkState::Up(conn) = &mut self.state else {
            return;
        };
        if conn.snapshot_accepted {
            return;
        }
        conn.snapshot_accepted = true;
        self.backoff.reset();
        self.stats.snapshots_accepted += 1;
        log::debug!("platform link: the platform accepted the snapshot");
    }

    /// The platform closed with 1009 "message too big": its frame limit is below our bound.
    /// Halve the bound below the largest frame this connection carried (never under
    /// [`MIN_FRAME_BYTES`]), so the next snapshot is cut finer and events get through.
    pub(super) fn lower_frame_bound(&mut self) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        let largest = conn.largest_frame;
        let lowered = (self.frame_bound.min(largest) / 2).max(MIN_FRAME_BYTES);
        if lowered >= self.frame_bound {
            log::error!(
                "platform link: the platform refused a frame as too big (close 1009; largest frame sent {largest} bytes) although frames are already at the floor of {MIN_FRAME_BYTES} bytes"
            );
            return;
        }
        log::error!(
            "platform link: the platform refused a frame as too big (close 1009; largest frame sent {largest} bytes): frames are limited to {lowered} bytes from now on; set platform.max_frame_bytes (now {}) to the platform's limit",
            self.settings.max_frame_bytes
        );
        self.frame_bound = lowered;
        self.stats.frame_bound = lowered;
    }

    pub(super) fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        if conn.last_heard.elapsed() > self.settings.pong_timeout {
            let generation = conn.generation;
            let silence = conn.last_heard.elapsed().as_secs_f64();
            self.on_lost(
                generation,
                &format!("no pong or frame for {silence:.1} s"),
                ctx,
            );
            return;
        }
        let _ = conn.send(WsMessage::Ping(Default::default()));
    }
}
