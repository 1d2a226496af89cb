//! The PlatformLink actor's typed messages: what other actors hand it (frames to send, registry
//! events via `RegistryEvent`, the command recipient) and what it hands on (`PlatformCommand`
//! to the Executer). Kept apart from `protocol` so the wire types stay free of actix.

use actix::prelude::*;

use super::protocol::{Command, OutboundFrame};

/// A `command` frame from the platform, for the Executer. The Executer answers by sending
/// exactly one [`SendFrame`] holding an `OutboundFrame::CommandResult` with the same `id`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PlatformCommand {
    pub command: Command,
    /// When the frame arrived (Unix ms), so the Executer can measure the whole round trip.
    pub received_at_ms: u64,
}

/// A frame for the platform (`data` from the Observer, `command_result` from the Executer).
/// Owed in the outbox (bounded, data dropped first) until written, or acknowledged in acked
/// mode.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SendFrame(pub OutboundFrame);

/// A batch of `data` / `data_error` frames from the Observer, drained from its queue in one
/// wake-up. Sent with `do_send`: what bounds these messages is `room`, the Observer's
/// hand-off permits (one per frame), given back when the link has handled the batch, i.e. when
/// every frame is in the socket writer or in the owed queue. The link never refuses a batch;
/// the owed queue is the one place where `data` is dropped (oldest first, a slow platform).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct DataFrames {
    pub frames: Vec<OutboundFrame>,
    /// Never read: dropped with the batch, which gives the permits back.
    #[allow(dead_code)]
    pub room: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Where `command` frames go from now on. `None` (the default) answers every command with a
/// `command_result` error of kind `bad_command` (see `platform::link`). Lets the gateway start
/// the link and the Executer in either order, since each needs the other's address.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetCommandRecipient(pub Option<Recipient<PlatformCommand>>);

/// Close the WebSocket (Close frame "going away", flushed by the writer) and stop the actor,
/// for a graceful gateway shutdown. Stored frames still owed are sent after the next start;
/// the others are lost (and logged as a count).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopLink;

/// Ask for the link's counters (for metrics and tests).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "LinkStats")]
pub struct GetLinkStats;

/// The link's state and counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// A WebSocket is up and `hello`/`snapshot` have been handed to it.
    pub connected: bool,
    /// Dials started (successful or not).
    pub dial_attempts: u64,
    /// Dials that ended in an open WebSocket.
    pub connects: u64,
    /// Connects after the first one.
    pub reconnects: u64,
    /// Dials refused with HTTP 401/403.
    pub auth_failures: u64,
    /// Frames handed to the socket.
    pub frames_sent: u64,
    /// Frames not yet written on the current connection (link down, negotiating, or the
    /// writer backed up).
    pub queued: usize,
    /// Frames handed to the socket writer and not yet taken by it.
    pub in_flight: usize,
    /// `data` (and `error` reply) frames dropped because the outbox was full.
    pub dropped_data: u64,
    /// Events (replaced by a marker) and results dropped because the outbox was full of them.
    pub dropped_events: u64,
    /// Registry resyncs (the registry feed overflowed): each re-sends `hello` + `snapshot`.
    pub resyncs: u64,
    /// The largest frame the link writes now (`platform.max_frame_bytes`, or lower after the
    /// platform closed with 1009 "message too big").
    pub frame_bound: usize,
    /// Snapshots the platform acknowledged (answered the Ping sent behind them).
    pub snapshots_accepted: u64,
    /// Connections that ended before the platform accepted their snapshot.
    pub snapshots_unaccepted: u64,
    /// Device objects sent with their links truncated to fit a frame.
    pub devices_truncated: u64,
    /// Devices left out of a snapshot: too big for a frame even without links.
    pub devices_skipped: u64,
    /// Frames not sent because they could not be made to fit a frame.
    pub frames_too_big: u64,
    /// The current connection uses acknowledged delivery (protocol 1.1).
    pub acked_mode: bool,
    /// The platform's latest cumulative acknowledgement.
    pub last_ack: u64,
    /// Frames in the outbox: not yet written, or written and not yet acknowledged.
    pub outbox_frames: usize,
    /// Bytes of frame text in the outbox (what `platform.outbox_max_bytes` bounds).
    pub outbox_bytes: usize,
    /// Age of the oldest frame still owed, in ms (0 when none).
    pub oldest_unacked_ms: u64,
    /// Frames written again after a reconnect (not acknowledged before).
    pub resent: u64,
    /// Times events were replaced by a snapshot-forcing marker (the outbox was full of them).
    pub overflows: u64,
}

/// The cluster feed of a replica on etcd has opened (`docs/ha-etcd.md` §8): the platform has
/// every frame up to `resume_seq` (the acknowledgement a leader stored); the link keeps the
/// platform's later acknowledgements in `acked` for the feed to store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FeedStarted {
    pub resume_seq: u64,
    pub acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Frames from the cluster feed (registry events and the replicas' device data), each with its
/// revision-derived seq, in seq order.
/// `position`: the last revision the feed has applied (any key of the cluster);
/// `registrations_at`: the last revision that changed a registration (a snapshot must reflect
/// it); `caught_up`: the feed has applied the leader's own election, so the link may dial.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct NumberedEvents {
    pub frames: Vec<(u64, crate::platform::OutboundFrame)>,
    pub position: i64,
    pub registrations_at: i64,
    pub caught_up: bool,
}

/// The cluster feed could not deliver the history from `from` (etcd compacted it): those
/// events are given up and a fresh snapshot restates the registry.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FeedLost {
    pub from: i64,
    pub compacted_at: i64,
}
