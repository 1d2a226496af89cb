//! Reading what the platform sends: lenient parsing of a text frame into an [`InboundFrame`]
//! (a command, or the platform's own `error`) or a typed [`InboundFrameError`], and the frame the
//! gateway answers an unusable one with.

use serde_json::Value;
use thiserror::Error;

use super::command::{Command, CommandErrorKind, CommandResult};
use super::outbound::OutboundFrame;

/// Why a platform frame could not be used. `id` is the frame's `id` when it had one, so the
/// reply can name it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum InboundFrameError {
    #[error("frame is not valid JSON: {reason}")]
    MalformedJson { reason: String },
    #[error("frame is not a JSON object")]
    NotAnObject { id: Option<String> },
    #[error("frame has no string \"type\" field")]
    MissingType { id: Option<String> },
    #[error("unknown frame type {type_name:?}")]
    UnknownType {
        type_name: String,
        id: Option<String>,
    },
    /// A `command` whose `id` is known but whose other fields are invalid.
    #[error("invalid command: {reason}")]
    InvalidCommand { id: String, reason: String },
    /// A `command` without a usable `id`: it cannot get a `command_result`.
    #[error("command without a string \"id\": {reason}")]
    CommandWithoutId { reason: String },
    #[error("binary frames are not part of protocol v1; send JSON text frames")]
    BinaryFrame,
    /// An `ack` (or a `welcome`'s `last_seq`) without a usable u64 sequence number.
    #[error("{type_name} needs \"{field}\" as a non-negative integer")]
    BadSeq {
        type_name: &'static str,
        field: &'static str,
    },
}

impl InboundFrameError {
    /// The frame the gateway answers with: a `command_result` (`bad_command`) for a command
    /// whose id is known, otherwise an `error` frame echoing the id when there was one.
    pub(crate) fn reply(&self) -> OutboundFrame {
        let message = self.to_string();
        match self {
            InboundFrameError::InvalidCommand { id, .. } => OutboundFrame::CommandResult(
                CommandResult::failed(id.clone(), CommandErrorKind::BadCommand, message),
            ),
            InboundFrameError::NotAnObject { id }
            | InboundFrameError::MissingType { id }
            | InboundFrameError::UnknownType { id, .. } => OutboundFrame::Error {
                message,
                id: id.clone(),
            },
            InboundFrameError::MalformedJson { .. }
            | InboundFrameError::CommandWithoutId { .. }
            | InboundFrameError::BinaryFrame
            | InboundFrameError::BadSeq { .. } => OutboundFrame::Error { message, id: None },
        }
    }
}

/// Every frame the platform may send that the gateway understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InboundFrame {
    Command(Command),
    /// The platform could not use a frame of ours (e.g. a platform that answers frame types
    /// added within v1, like `data_error`, with `error`). Logged, never answered: answering an
    /// `error` with an `error` could ping-pong.
    Error {
        message: String,
        id: Option<String>,
    },
    /// Protocol 1.1: the platform's answer to `hello`, with the features it takes up and the
    /// last seq it already has.
    Welcome {
        features: Vec<String>,
        last_seq: Option<u64>,
    },
    /// Protocol 1.1: the platform has every frame up to `seq`.
    Ack {
        seq: u64,
    },
}

/// A frame's `id`, echoed in replies: a string as is, a number as its decimal text.
fn frame_id(value: &Value) -> Option<String> {
    match value.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse one text frame from the platform. Lenient first (any JSON), so that the id of a bad
/// frame can still be echoed; then strict per type.
pub(crate) fn parse_inbound(text: &str) -> Result<InboundFrame, InboundFrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| InboundFrameError::MalformedJson {
            reason: e.to_string(),
        })?;
    let id = frame_id(&value);
    if !value.is_object() {
        return Err(InboundFrameError::NotAnObject { id });
    }
    let type_name = match value.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(InboundFrameError::MissingType { id }),
    };
    match type_name.as_str() {
        "command" => {
            let string_id = match value.get("id") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            match serde_json::from_value::<Command>(value) {
                Ok(command) => Ok(InboundFrame::Command(command)),
                Err(e) => Err(match string_id {
                    Some(id) => InboundFrameError::InvalidCommand {
                        id,
                        reason: e.to_string(),
                    },
                    None => InboundFrameError::CommandWithoutId {
                        reason: e.to_string(),
                    },
                }),
            }
        }
        "error" => Ok(InboundFrame::Error {
            message: match value.get("message") {
                Some(Value::String(m)) => m.clone(),
                _ => String::new(),
            },
            id,
        }),
        "welcome" => {
            let features = match value.get("features") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let last_seq = match value.get("last_seq") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or(InboundFrameError::BadSeq {
                    type_name: "welcome",
                    field: "last_seq",
                })?),
            };
            Ok(InboundFrame::Welcome { features, last_seq })
        }
        "ack" => match value.get("seq").and_then(Value::as_u64) {
            Some(seq) => Ok(InboundFrame::Ack { seq }),
            None => Err(InboundFrameError::BadSeq {
                type_name: "ack",
                field: "seq",
            }),
        },
        _ => Err(InboundFrameError::UnknownType { type_name, id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::protocol::to_value;
    use serde_json::json;

    #[test]
    fn bad_frames_become_typed_errors_with_the_id_echoed() {
        let unknown = parse_inbound(r#"{"type":"reboot","id":"r1"}"#).unwrap_err();
        assert_eq!(
            unknown,
            InboundFrameError::UnknownType {
                type_name: "reboot".into(),
                id: Some("r1".into())
            }
        );
        assert_eq!(
            to_value(&unknown.reply()),
            json!({"type": "error", "id": "r1", "message": "unknown frame type \"reboot\""})
        );
        let numeric = parse_inbound(r#"{"id": 42}"#).unwrap_err();
        assert_eq!(
            numeric,
            InboundFrameError::MissingType {
                id: Some("42".into())
            }
        );
        let malformed = parse_inbound("{not json").unwrap_err();
        assert!(matches!(malformed, InboundFrameError::MalformedJson { .. }));
        let reply = to_value(&malformed.reply());
        assert_eq!(reply["type"], "error");
        assert!(reply.get("id").is_none());
        assert_eq!(
            parse_inbound("[1,2]").unwrap_err(),
            InboundFrameError::NotAnObject { id: None }
        );
    }

    #[test]
    fn an_invalid_command_with_an_id_gets_a_bad_command_result() {
        let err =
            parse_inbound(r#"{"type":"command","id":"c9","ep":"e","method":"BREW","path":"/"}"#)
                .unwrap_err();
        assert!(matches!(err, InboundFrameError::InvalidCommand { ref id, .. } if id == "c9"));
        let reply = to_value(&err.reply());
        assert_eq!(reply["type"], "command_result");
        assert_eq!(reply["id"], "c9");
        assert_eq!(reply["error"]["kind"], "bad_command");
        let no_id =
            parse_inbound(r#"{"type":"command","ep":"e","method":"GET","path":"/"}"#).unwrap_err();
        assert!(matches!(no_id, InboundFrameError::CommandWithoutId { .. }));
        assert_eq!(to_value(&no_id.reply())["type"], "error");
    }

    #[test]
    fn welcome_and_ack_of_protocol_1_1_parse_and_bad_seqs_are_refused() {
        assert_eq!(
            parse_inbound(r#"{"type":"welcome","features":["ack","later"],"last_seq":41}"#),
            Ok(InboundFrame::Welcome {
                features: vec!["ack".into(), "later".into()],
                last_seq: Some(41)
            })
        );
        assert_eq!(
            parse_inbound(r#"{"type":"welcome"}"#),
            Ok(InboundFrame::Welcome {
                features: vec![],
                last_seq: None
            })
        );
        assert_eq!(
            parse_inbound(r#"{"type":"ack","seq":7}"#),
            Ok(InboundFrame::Ack { seq: 7 })
        );
        for bad in [
            r#"{"type":"ack"}"#,
            r#"{"type":"ack","seq":-1}"#,
            r#"{"type":"ack","seq":"7"}"#,
            r#"{"type":"welcome","last_seq":1.5}"#,
        ] {
            let err = parse_inbound(bad).unwrap_err();
            assert!(matches!(err, InboundFrameError::BadSeq { .. }), "{bad}");
            assert_eq!(to_value(&err.reply())["type"], "error");
        }
    }

    #[test]
    fn a_platform_error_frame_is_understood_not_answered() {
        assert_eq!(
            parse_inbound(r#"{"type":"error","message":"unknown type data_error"}"#),
            Ok(InboundFrame::Error {
                message: "unknown type data_error".into(),
                id: None
            })
        );
    }
}
