//! The platform link: the gateway's WebSocket to the cloud platform, protocol v1
//! (`docs/platform-protocol.md`).
//!
//! - `protocol`: the serde frame types of both directions, payload encoding, lenient parsing of
//!   platform frames into commands or typed errors (pure).
//! - `fit`: keeping every frame within `platform.max_frame_bytes` (snapshot parts cut by
//!   bytes, device objects with truncated links) (pure).
//! - `outbox`: protocol 1.1's sequence numbers and acknowledgements, the bounded outbox of
//!   owed frames (pure), and the sled tree its durable entries live in.
//! - `backoff`: reconnect delays with jitter (pure).
//! - `ca_file`: `platform.ca_file`, the PEM roots trusted for `wss://` besides the web roots.
//! - `error`: why a dial failed.
//! - `messages`: the actor's typed messages (`SendFrame`, `PlatformCommand`, `GetLinkStats`...).
//! - `link`: the PlatformLink actor itself (awc client, ping/pong, reconnects).
//!
//! Devices in frames are rendered by `crate::device_object`, shared with the admin API and
//! rd-dump.

pub(crate) mod backoff;
pub(crate) mod ca_file;
pub(crate) mod error;
pub(crate) mod fit;
pub mod link;
pub(crate) mod messages;
mod metric_labels;
pub(crate) mod outbox;
pub mod protocol;

pub use link::{LinkSettings, Numbering, PlatformLink, SnapshotSource};
pub(crate) use messages::{DataFrames, SetCommandRecipient};
pub use messages::{
    FeedLost, FeedStarted, GetLinkStats, LinkStats, NumberedEvents, PlatformCommand, SendFrame,
    StopLink,
};
pub use outbox::OutboxStore;
pub use protocol::{Command, CommandResult, OutboundFrame};
