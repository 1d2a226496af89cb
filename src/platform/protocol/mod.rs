//! The platform link's wire format, protocol version 1 and its 1.1 features
//! (`docs/platform-protocol.md`).
//!
//! Owns the serde types of both directions (every frame is one JSON object tagged by `type`),
//! the payload encoding rules (`utf8` when the bytes are valid UTF-8, else standard padded
//! `base64`), and the lenient parsing of platform frames into either a [`Command`] or a typed
//! [`InboundFrameError`] that the link answers instead of crashing. Pure: no actix, no sockets.
//! Called by `platform::link` (both directions) and, later, by the Executer and Observer, which
//! build [`DataFrame`] and [`CommandResult`] values.
//!
//! Choices where the contract is silent:
//! - Unknown fields are ignored in both directions (serde's default; never `deny_unknown_fields`).
//! - A frame with `"type": "command"` that carries a string `id` but is otherwise invalid is a
//!   command all the same: the contract promises exactly one `command_result` per command id, so
//!   it is answered with a `command_result` whose error kind is `bad_command`, not an `error`
//!   frame the platform would have to correlate separately. Everything else that cannot be
//!   understood gets an `error` frame, echoing `id` when the frame had a string or number `id`.
//!
//! One file per concept: `payload` (the encoding rule), `outbound` (the frames the gateway
//! sends), `command` (commands and their results, the one exchange the platform starts) and
//! `inbound` (parsing what the platform sends, and the error replies).

mod command;
mod inbound;
mod outbound;
mod payload;

/// What `OutboundFrame::Snapshot` carries: devices fitted to the frame budget in `fit`.
pub use super::fit::RawDevice;
pub(crate) use command::{command_failure_level, PLATFORM_FAULT_LEVEL};
pub use command::{
    Command, CommandError, CommandErrorKind, CommandMethod, CommandOutcome, CommandResult,
};
pub(crate) use inbound::{parse_inbound, InboundFrame, InboundFrameError};
pub(crate) use outbound::hello;
pub use outbound::{DataErrorFrame, DataFrame, DeviceRef, OutboundFrame, RemovedReason, WatchedBy};
pub use payload::{encode_payload, EncodedPayload, PayloadEncoding, PayloadError};

/// The protocol version sent in `hello`. Protocol 1.1 is v1 plus negotiated features, so
/// `hello.protocol` stays 1 and a v1 platform keeps working.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// The feature of protocol 1.1: sequence numbers and cumulative acknowledgements.
pub(crate) const FEATURE_ACK: &str = "ack";

/// A frame as JSON, for the tests' assertions.
#[cfg(test)]
fn to_value(frame: &OutboundFrame) -> serde_json::Value {
    serde_json::from_str(&frame.to_json().unwrap()).unwrap()
}
