//! How the platform link's values are counted by `metrics` (a leaf module that knows none of
//! the gateway's types): frames by type, command results by kind, the link's counters.

use crate::metrics::LabelSet;
use crate::metrics::{CommandResultKind, FrameType, PlatformLinkSample};

use super::messages::LinkStats;
use super::protocol::{CommandErrorKind, CommandOutcome, CommandResult, OutboundFrame};

impl From<&OutboundFrame> for FrameType {
    fn from(frame: &OutboundFrame) -> Self {
        match frame {
            OutboundFrame::Hello { .. } => FrameType::Hello,
            OutboundFrame::Snapshot { .. } => FrameType::Snapshot,
            OutboundFrame::DeviceRegistered { .. } => FrameType::DeviceRegistered,
            OutboundFrame::DeviceUpdated { .. } => FrameType::DeviceUpdated,
            OutboundFrame::DeviceRemoved { .. } => FrameType::DeviceRemoved,
            OutboundFrame::DeviceStatus { .. } => FrameType::DeviceStatus,
            OutboundFrame::Data(_) => FrameType::Data,
            OutboundFrame::DataError(_) => FrameType::DataError,
            OutboundFrame::CommandResult(_) => FrameType::CommandResult,
            OutboundFrame::Error { .. } => FrameType::Error,
        }
    }
}

/// The `type` of a frame from its JSON text as the gateway serializes it (`{"type":"..."`
/// first, or right after the `"seq":N` that acked mode puts first), for frames kept as text
/// in the outbox.
pub(crate) fn frame_type_of_text(text: &str) -> Option<FrameType> {
    let body = match text.strip_prefix("{\"seq\":") {
        Some(numbered) => {
            let digits = numbered.bytes().take_while(u8::is_ascii_digit).count();
            numbered[digits..].strip_prefix(',')?
        }
        None => text.strip_prefix('{')?,
    };
    let rest = body.strip_prefix("\"type\":\"")?;
    FrameType::ALL.iter().copied().find(|ty| {
        rest.strip_prefix(ty.as_str())
            .is_some_and(|r| r.starts_with('"'))
    })
}

impl From<&CommandResult> for CommandResultKind {
    fn from(result: &CommandResult) -> Self {
        match &result.outcome {
            CommandOutcome::Response { .. } => CommandResultKind::Response,
            CommandOutcome::Failed { error } => match error.kind {
                CommandErrorKind::UnknownDevice => CommandResultKind::UnknownDevice,
                CommandErrorKind::DeviceOffline => CommandResultKind::DeviceOffline,
                CommandErrorKind::Timeout => CommandResultKind::Timeout,
                CommandErrorKind::BadCommand => CommandResultKind::BadCommand,
                CommandErrorKind::CoapError => CommandResultKind::CoapError,
                CommandErrorKind::Overloaded => CommandResultKind::Overloaded,
            },
        }
    }
}

impl CommandResult {
    /// The device's round trip when the command reached it and it answered.
    pub(crate) fn round_trip_ms(&self) -> Option<u64> {
        match &self.outcome {
            CommandOutcome::Response { rtt_ms, .. } => Some(*rtt_ms),
            CommandOutcome::Failed { .. } => None,
        }
    }
}

impl From<&LinkStats> for PlatformLinkSample {
    fn from(s: &LinkStats) -> Self {
        PlatformLinkSample {
            connected: s.connected,
            dial_attempts: s.dial_attempts,
            reconnects: s.reconnects,
            auth_failures: s.auth_failures,
            queued: s.queued as u64,
            in_flight: s.in_flight as u64,
            dropped_data: s.dropped_data,
            dropped_events: s.dropped_events,
            acked_mode: s.acked_mode,
            last_ack: s.last_ack,
            outbox_frames: s.outbox_frames as u64,
            outbox_bytes: s.outbox_bytes as u64,
            oldest_unacked_ms: s.oldest_unacked_ms,
            resent: s.resent,
            overflows: s.overflows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_kinds_use_the_wire_names() {
        let ok = CommandResult::response("a", "2.05", None, b"x", 3);
        assert_eq!(CommandResultKind::from(&ok), CommandResultKind::Response);
        assert_eq!(ok.round_trip_ms(), Some(3));
        let late = CommandResult::failed("b", CommandErrorKind::Timeout, "late");
        assert_eq!(CommandResultKind::from(&late).as_str(), "timeout");
        assert_eq!(late.round_trip_ms(), None);
    }

    #[test]
    fn a_frame_type_is_read_from_its_text() {
        let frame = OutboundFrame::Error {
            message: "x".into(),
            id: None,
        };
        let text = frame.to_json().unwrap();
        assert_eq!(frame_type_of_text(&text), Some(FrameType::Error));
        assert_eq!(
            frame_type_of_text(r#"{"type":"data_error","ep":"n"}"#),
            Some(FrameType::DataError)
        );
        assert_eq!(
            frame_type_of_text(r#"{"type":"data","ep":"n"}"#),
            Some(FrameType::Data)
        );
        assert_eq!(frame_type_of_text(r#"{"type":"dat"}"#), None);
        // Acked mode writes the seq first (outbox::codec::with_seq).
        let numbered = crate::platform::outbox::codec::with_seq(&text, 42);
        assert_eq!(frame_type_of_text(&numbered), Some(FrameType::Error));
        assert_eq!(
            frame_type_of_text(r#"{"seq":7,"type":"command_result","id":"x"}"#),
            Some(FrameType::CommandResult)
        );
        assert_eq!(frame_type_of_text(r#"{"seq":7}"#), None);
        assert_eq!(frame_type_of_text("[]"), None);
    }

    #[test]
    fn link_counters_carry_over() {
        let stats = LinkStats {
            connected: true,
            queued: 7,
            dropped_data: 5,
            acked_mode: true,
            last_ack: 41,
            outbox_frames: 3,
            outbox_bytes: 300,
            oldest_unacked_ms: 1_500,
            resent: 2,
            overflows: 1,
            ..LinkStats::default()
        };
        let sample = PlatformLinkSample::from(&stats);
        assert!(sample.connected && sample.acked_mode);
        assert_eq!((sample.queued, sample.dropped_data), (7, 5));
        assert_eq!(
            (
                sample.last_ack,
                sample.outbox_frames,
                sample.outbox_bytes,
                sample.oldest_unacked_ms,
                sample.resent,
                sample.overflows
            ),
            (41, 3, 300, 1_500, 2, 1)
        );
    }
}
