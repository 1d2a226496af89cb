//! The platform link's wire format, protocol version 1 (`docs/platform-protocol.md`).
//!
//! Owns the serde types of both directions (every frame is one JSON object tagged by `type`),
//! the payload encoding rules (`utf8` when the bytes are valid UTF-8, else standard padded
//! `base64`), and the lenient parsing of platform frames into either a [`Command`] or a typed
//! [`ProtocolError`] that the link answers instead of crashing. Pure: no actix, no sockets.
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

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::fit::RawDevice;
use crate::device_object::DeviceObject;
use crate::registry::{Registration, RegistryEvent, RemovalReason};

/// The protocol version sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// How a `payload` string is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    Utf8,
    Base64,
}

/// A CoAP payload as the protocol carries it: the text plus how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodedPayload {
    pub payload: String,
    pub payload_encoding: PayloadEncoding,
}

/// `utf8` when the bytes are valid UTF-8, else standard padded base64 (the contract's rule).
pub fn encode_payload(bytes: &[u8]) -> EncodedPayload {
    match std::str::from_utf8(bytes) {
        Ok(text) => EncodedPayload {
            payload: text.to_owned(),
            payload_encoding: PayloadEncoding::Utf8,
        },
        Err(_) => EncodedPayload {
            payload: base64::engine::general_purpose::STANDARD.encode(bytes),
            payload_encoding: PayloadEncoding::Base64,
        },
    }
}

/// Why a command's payload could not be turned into bytes. The Executer reports it as a
/// `command_result` error of kind `bad_command`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("payload is not valid base64: {0}")]
    InvalidBase64(String),
    #[error("payload_encoding is given but payload is missing")]
    EncodingWithoutPayload,
}

/// The bytes a command asks to send. A payload without `payload_encoding` is read as `utf8`
/// (the natural reading of a JSON string); no payload is an empty body.
pub fn decode_payload(
    payload: Option<&str>,
    encoding: Option<PayloadEncoding>,
) -> Result<Vec<u8>, PayloadError> {
    match (payload, encoding) {
        (None, None) => Ok(Vec::new()),
        (None, Some(_)) => Err(PayloadError::EncodingWithoutPayload),
        (Some(text), None | Some(PayloadEncoding::Utf8)) => Ok(text.as_bytes().to_vec()),
        (Some(text), Some(PayloadEncoding::Base64)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| PayloadError::InvalidBase64(e.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway to platform
// ---------------------------------------------------------------------------------------------

/// A registration as carried in a frame: shared with the Registry (no copy while queued) and
/// rendered as the contract's device object by [`DeviceObject`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRef(pub Arc<Registration>);

impl Serialize for DeviceRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DeviceObject(&self.0).serialize(s)
    }
}

/// Why a device went away (`device_removed.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    Deleted,
    Expired,
}

/// `data`: a value the Observer got from a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataFrame {
    pub ep: String,
    pub d: Option<String>,
    pub path: String,
    /// CoAP response code in dotted form, e.g. `"2.05"`.
    pub code: String,
    pub content_format: Option<u16>,
    #[serde(flatten)]
    pub payload: EncodedPayload,
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
}

impl DataFrame {
    /// A `data` frame for a value read at `at_ms` (Unix ms); the payload is encoded by the
    /// contract's rule.
    pub fn new(
        ep: impl Into<String>,
        d: Option<String>,
        path: impl Into<String>,
        code: impl Into<String>,
        content_format: Option<u16>,
        payload: &[u8],
        at_ms: u64,
    ) -> DataFrame {
        DataFrame {
            ep: ep.into(),
            d,
            path: path.into(),
            code: code.into(),
            content_format,
            payload: encode_payload(payload),
            at: crate::time::rfc3339_ms(at_ms),
        }
    }
}

/// The log level of everything that says "the platform sent something bad": an unusable frame
/// (malformed JSON, unknown type, binary) in the link, and a `bad_command` answer, whether the
/// link or the Executer found the fault. One level, so an operator can alert on it; WARN
/// because it points at a platform bug, not at a device or the network.
pub const PLATFORM_FAULT_LEVEL: log::Level = log::Level::Warn;

/// The level at which a failed command is logged: [`PLATFORM_FAULT_LEVEL`] for `bad_command`
/// (the platform's fault); INFO for the others, which describe devices and load (unknown or
/// offline device, timeout, CoAP error, overloaded) and are answered to the platform anyway.
pub fn command_failure_level(kind: CommandErrorKind) -> log::Level {
    match kind {
        CommandErrorKind::BadCommand => PLATFORM_FAULT_LEVEL,
        CommandErrorKind::UnknownDevice
        | CommandErrorKind::DeviceOffline
        | CommandErrorKind::Timeout
        | CommandErrorKind::CoapError
        | CommandErrorKind::Overloaded => log::Level::Info,
    }
}

/// How the Observer was watching the resource that answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchedBy {
    Poll,
    Observe,
}

/// `data_error`: a watched resource answered with an error code (4.xx, 5.xx) instead of a value.
/// Not a reading, so never a `data` frame: the platform learns the code and the diagnostic
/// payload (RFC 7252 §5.5.2), how many error answers in a row that resource gave, and when the
/// gateway asks again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataErrorFrame {
    pub ep: String,
    pub d: Option<String>,
    pub path: String,
    /// The error code in dotted form, e.g. `"4.04"`.
    pub code: String,
    pub content_format: Option<u16>,
    #[serde(flatten)]
    pub payload: EncodedPayload,
    pub at: String,
    pub via: WatchedBy,
    /// Error answers in a row from this resource, this one included (1 after a success).
    pub consecutive: u32,
    /// When the gateway asks the resource again (the back-off), in milliseconds from `at`.
    pub retry_in_ms: u64,
}

/// `command_result.error.kind`, exactly the contract's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandErrorKind {
    UnknownDevice,
    DeviceOffline,
    Timeout,
    BadCommand,
    CoapError,
    Overloaded,
}

/// `command_result.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandError {
    pub kind: CommandErrorKind,
    pub message: String,
}

/// How a command ended: a CoAP response, or an error. Serialized flat into `command_result`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CommandOutcome {
    Response {
        code: String,
        content_format: Option<u16>,
        #[serde(flatten)]
        payload: EncodedPayload,
        rtt_ms: u64,
    },
    Failed {
        error: CommandError,
    },
}

/// `command_result`: exactly one per command `id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandResult {
    pub id: String,
    #[serde(flatten)]
    pub outcome: CommandOutcome,
}

impl CommandResult {
    /// The device answered: its response code (e.g. `"2.05"`), content format and payload.
    pub fn response(
        id: impl Into<String>,
        code: impl Into<String>,
        content_format: Option<u16>,
        payload: &[u8],
        rtt_ms: u64,
    ) -> Self {
        CommandResult {
            id: id.into(),
            outcome: CommandOutcome::Response {
                code: code.into(),
                content_format,
                payload: encode_payload(payload),
                rtt_ms,
            },
        }
    }

    /// The command could not be carried out.
    pub fn failed(
        id: impl Into<String>,
        kind: CommandErrorKind,
        message: impl Into<String>,
    ) -> Self {
        CommandResult {
            id: id.into(),
            outcome: CommandOutcome::Failed {
                error: CommandError {
                    kind,
                    message: message.into(),
                },
            },
        }
    }
}

/// Every frame the gateway sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundFrame {
    Hello {
        gateway: String,
        version: String,
        protocol: u32,
        devices: usize,
    },
    /// Built by `fit::snapshot_parts`, which renders each device once to measure it.
    Snapshot {
        devices: Vec<RawDevice>,
        part: usize,
        last: bool,
    },
    DeviceRegistered {
        device: DeviceRef,
    },
    DeviceUpdated {
        device: DeviceRef,
    },
    DeviceRemoved {
        ep: String,
        d: Option<String>,
        reason: RemovedReason,
    },
    DeviceStatus {
        ep: String,
        d: Option<String>,
        status: u8,
        at: String,
    },
    Data(DataFrame),
    DataError(DataErrorFrame),
    CommandResult(CommandResult),
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

impl OutboundFrame {
    /// `data` and `data_error` frames (the Observer's) are the ones the owed queue may drop
    /// first (see `platform::queue`): the next value or error supersedes them.
    pub fn is_data(&self) -> bool {
        matches!(self, OutboundFrame::Data(_) | OutboundFrame::DataError(_))
    }

    /// The frame's JSON text. Our types serialize infallibly (string keys only); an error here
    /// would be a bug, reported rather than panicking.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl OutboundFrame {
    /// The frame a registry event becomes. `at_ms` is when the link learned of the event: a
    /// status change carries no time of its own, and a queued one must keep its original time.
    pub fn from_event(event: &RegistryEvent, at_ms: u64) -> OutboundFrame {
        fn names(r: &Registration) -> (String, Option<String>) {
            (
                r.ep.as_str().to_owned(),
                r.d.as_ref().map(|d| d.as_str().to_owned()),
            )
        }
        match event {
            RegistryEvent::Registered(r) => OutboundFrame::DeviceRegistered {
                device: DeviceRef(r.clone()),
            },
            RegistryEvent::Updated(r) => OutboundFrame::DeviceUpdated {
                device: DeviceRef(r.clone()),
            },
            RegistryEvent::Removed {
                registration,
                reason,
            } => {
                let (ep, d) = names(registration);
                OutboundFrame::DeviceRemoved {
                    ep,
                    d,
                    reason: match reason {
                        RemovalReason::Deleted => RemovedReason::Deleted,
                        RemovalReason::Expired => RemovedReason::Expired,
                    },
                }
            }
            RegistryEvent::StatusChanged(r) => {
                let (ep, d) = names(r);
                OutboundFrame::DeviceStatus {
                    ep,
                    d,
                    status: r.status.as_u8(),
                    at: crate::time::rfc3339_ms(at_ms),
                }
            }
        }
    }
}

/// The `hello` frame for this gateway.
pub fn hello(gateway: &str, devices: usize) -> OutboundFrame {
    OutboundFrame::Hello {
        gateway: gateway.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        devices,
    }
}

// ---------------------------------------------------------------------------------------------
// Platform to gateway
// ---------------------------------------------------------------------------------------------

/// The CoAP method a command asks for (the contract's spelling, `iPATCH` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "FETCH")]
    Fetch,
    #[serde(rename = "PATCH")]
    Patch,
    #[serde(rename = "iPATCH")]
    IPatch,
}

fn default_confirmable() -> bool {
    true
}

/// A `command` frame: a CoAP request the platform wants sent to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub ep: String,
    #[serde(default)]
    pub d: Option<String>,
    pub method: CommandMethod,
    pub path: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub payload_encoding: Option<PayloadEncoding>,
    #[serde(default)]
    pub content_format: Option<u16>,
    #[serde(default)]
    pub accept: Option<u16>,
    #[serde(default = "default_confirmable")]
    pub confirmable: bool,
    /// `None`: the Executer's configured default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl Command {
    /// The request body, decoded by `payload_encoding`.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, PayloadError> {
        decode_payload(self.payload.as_deref(), self.payload_encoding)
    }
}

/// Why a platform frame could not be used. `id` is the frame's `id` when it had one, so the
/// reply can name it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
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
}

impl ProtocolError {
    /// The frame the gateway answers with: a `command_result` (`bad_command`) for a command
    /// whose id is known, otherwise an `error` frame echoing the id when there was one.
    pub fn reply(&self) -> OutboundFrame {
        let message = self.to_string();
        match self {
            ProtocolError::InvalidCommand { id, .. } => OutboundFrame::CommandResult(
                CommandResult::failed(id.clone(), CommandErrorKind::BadCommand, message),
            ),
            ProtocolError::NotAnObject { id }
            | ProtocolError::MissingType { id }
            | ProtocolError::UnknownType { id, .. } => OutboundFrame::Error {
                message,
                id: id.clone(),
            },
            ProtocolError::MalformedJson { .. }
            | ProtocolError::CommandWithoutId { .. }
            | ProtocolError::BinaryFrame => OutboundFrame::Error { message, id: None },
        }
    }
}

/// Every frame the platform may send that the gateway understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundFrame {
    Command(Command),
    /// The platform could not use a frame of ours (e.g. a platform that answers frame types
    /// added within v1, like `data_error`, with `error`). Logged, never answered: answering an
    /// `error` with an `error` could ping-pong.
    Error {
        message: String,
        id: Option<String>,
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
pub fn parse_inbound(text: &str) -> Result<InboundFrame, ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson {
        reason: e.to_string(),
    })?;
    let id = frame_id(&value);
    if !value.is_object() {
        return Err(ProtocolError::NotAnObject { id });
    }
    let type_name = match value.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ProtocolError::MissingType { id }),
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
                    Some(id) => ProtocolError::InvalidCommand {
                        id,
                        reason: e.to_string(),
                    },
                    None => ProtocolError::CommandWithoutId {
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
        _ => Err(ProtocolError::UnknownType { type_name, id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_value(frame: &OutboundFrame) -> Value {
        serde_json::from_str(&frame.to_json().unwrap()).unwrap()
    }

    #[test]
    fn payload_is_utf8_when_it_can_be_and_base64_otherwise() {
        let text = encode_payload("22.5 °C".as_bytes());
        assert_eq!(text.payload_encoding, PayloadEncoding::Utf8);
        assert_eq!(text.payload, "22.5 °C");
        let binary = encode_payload(&[0xff, 0x00, 0x10]);
        assert_eq!(binary.payload_encoding, PayloadEncoding::Base64);
        assert_eq!(binary.payload, "/wAQ");
        assert_eq!(encode_payload(&[0xfe]).payload, "/g==", "padded");
        assert_eq!(encode_payload(b"").payload_encoding, PayloadEncoding::Utf8);
    }

    #[test]
    fn command_payload_decodes_by_its_encoding() {
        assert_eq!(
            decode_payload(Some("/wAQ"), Some(PayloadEncoding::Base64)).unwrap(),
            vec![0xff, 0x00, 0x10]
        );
        assert_eq!(decode_payload(Some("on"), None).unwrap(), b"on");
        assert_eq!(
            decode_payload(Some("/wAQ"), Some(PayloadEncoding::Utf8)).unwrap(),
            b"/wAQ"
        );
        assert_eq!(decode_payload(None, None).unwrap(), b"");
        assert!(matches!(
            decode_payload(Some("not base64!"), Some(PayloadEncoding::Base64)),
            Err(PayloadError::InvalidBase64(_))
        ));
        assert_eq!(
            decode_payload(None, Some(PayloadEncoding::Base64)),
            Err(PayloadError::EncodingWithoutPayload)
        );
    }

    #[test]
    fn hello_carries_the_contract_fields() {
        assert_eq!(
            to_value(&hello("gw-1", 3)),
            json!({"type": "hello", "gateway": "gw-1", "version": env!("CARGO_PKG_VERSION"),
                   "protocol": 1, "devices": 3})
        );
    }

    #[test]
    fn data_frame_is_flat_with_payload_and_encoding() {
        let frame = OutboundFrame::Data(DataFrame::new(
            "node1",
            None,
            "/sensors/temp",
            "2.05",
            Some(0),
            b"21.5",
            1_795_615_200_123,
        ));
        assert!(frame.is_data());
        assert_eq!(
            to_value(&frame),
            json!({"type": "data", "ep": "node1", "d": null, "path": "/sensors/temp",
                   "code": "2.05", "content_format": 0, "payload": "21.5",
                   "payload_encoding": "utf8", "at": "2026-11-25T14:00:00.123Z"})
        );
    }

    #[test]
    fn command_result_is_either_a_response_or_an_error() {
        let ok =
            OutboundFrame::CommandResult(CommandResult::response("c1", "2.04", None, &[0xff], 12));
        assert_eq!(
            to_value(&ok),
            json!({"type": "command_result", "id": "c1", "code": "2.04", "content_format": null,
                   "payload": "/w==", "payload_encoding": "base64", "rtt_ms": 12})
        );
        let failed = OutboundFrame::CommandResult(CommandResult::failed(
            "c2",
            CommandErrorKind::DeviceOffline,
            "node1 did not answer",
        ));
        assert!(!failed.is_data());
        assert_eq!(
            to_value(&failed),
            json!({"type": "command_result", "id": "c2",
                   "error": {"kind": "device_offline", "message": "node1 did not answer"}})
        );
    }

    #[test]
    fn removal_status_and_error_frames() {
        let removed = OutboundFrame::DeviceRemoved {
            ep: "n".into(),
            d: Some("f1".into()),
            reason: RemovedReason::Expired,
        };
        assert_eq!(
            to_value(&removed),
            json!({"type": "device_removed", "ep": "n", "d": "f1", "reason": "expired"})
        );
        let status = OutboundFrame::DeviceStatus {
            ep: "n".into(),
            d: None,
            status: 0,
            at: "2026-11-25T14:00:00.000Z".into(),
        };
        assert_eq!(
            to_value(&status),
            json!({"type": "device_status", "ep": "n", "d": null, "status": 0,
                   "at": "2026-11-25T14:00:00.000Z"})
        );
        let error = OutboundFrame::Error {
            message: "x".into(),
            id: None,
        };
        assert_eq!(to_value(&error), json!({"type": "error", "message": "x"}));
    }

    #[test]
    fn registry_events_map_to_their_frames() {
        use crate::registry::{Sector, Status};
        let mut r = crate::device_object::tests::registration("n1");
        r.d = Some(Sector::new("f1").unwrap());
        r.status = Status::Disconnected;
        let r = Arc::new(r);
        let at = 1_795_615_200_000;
        let reg = to_value(&OutboundFrame::from_event(
            &RegistryEvent::Registered(r.clone()),
            at,
        ));
        assert_eq!(reg["type"], "device_registered");
        assert_eq!(reg["device"]["ep"], "n1");
        let upd = to_value(&OutboundFrame::from_event(
            &RegistryEvent::Updated(r.clone()),
            at,
        ));
        assert_eq!(upd["type"], "device_updated");
        assert_eq!(upd["device"]["d"], "f1");
        for (reason, text) in [
            (RemovalReason::Deleted, "deleted"),
            (RemovalReason::Expired, "expired"),
        ] {
            let event = RegistryEvent::Removed {
                registration: r.clone(),
                reason,
            };
            assert_eq!(
                to_value(&OutboundFrame::from_event(&event, at)),
                json!({"type": "device_removed", "ep": "n1", "d": "f1", "reason": text})
            );
        }
        assert_eq!(
            to_value(&OutboundFrame::from_event(
                &RegistryEvent::StatusChanged(r),
                at
            )),
            json!({"type": "device_status", "ep": "n1", "d": "f1", "status": 0,
                   "at": "2026-11-25T14:00:00.000Z"})
        );
    }

    #[test]
    fn a_full_command_parses_and_unknown_fields_are_ignored() {
        let text = r#"{"type":"command","id":"c7","ep":"node1","d":"f1","method":"iPATCH",
            "path":"/a/led","query":"a=1&b=2","payload":"AQI=","payload_encoding":"base64",
            "content_format":60,"accept":60,"confirmable":false,"timeout_ms":500,"future":1}"#;
        let Ok(InboundFrame::Command(c)) = parse_inbound(text) else {
            panic!("not a command")
        };
        assert_eq!(c.method, CommandMethod::IPatch);
        assert_eq!(c.payload_bytes().unwrap(), vec![1, 2]);
        assert_eq!(c.d.as_deref(), Some("f1"));
        assert!(!c.confirmable);
        assert_eq!(c.timeout_ms, Some(500));
        assert_eq!(c.accept, Some(60));
    }

    #[test]
    fn a_minimal_command_takes_the_defaults() {
        let Ok(InboundFrame::Command(c)) =
            parse_inbound(r#"{"type":"command","id":"1","ep":"e","method":"GET","path":"/x"}"#)
        else {
            panic!("not a command")
        };
        assert!(c.confirmable);
        assert_eq!(c.timeout_ms, None);
        assert_eq!(c.d, None);
        assert_eq!(c.payload_bytes().unwrap(), b"");
    }

    #[test]
    fn bad_frames_become_typed_errors_with_the_id_echoed() {
        let unknown = parse_inbound(r#"{"type":"reboot","id":"r1"}"#).unwrap_err();
        assert_eq!(
            unknown,
            ProtocolError::UnknownType {
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
            ProtocolError::MissingType {
                id: Some("42".into())
            }
        );
        let malformed = parse_inbound("{not json").unwrap_err();
        assert!(matches!(malformed, ProtocolError::MalformedJson { .. }));
        let reply = to_value(&malformed.reply());
        assert_eq!(reply["type"], "error");
        assert!(reply.get("id").is_none());
        assert_eq!(
            parse_inbound("[1,2]").unwrap_err(),
            ProtocolError::NotAnObject { id: None }
        );
    }

    #[test]
    fn an_invalid_command_with_an_id_gets_a_bad_command_result() {
        let err =
            parse_inbound(r#"{"type":"command","id":"c9","ep":"e","method":"BREW","path":"/"}"#)
                .unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidCommand { ref id, .. } if id == "c9"));
        let reply = to_value(&err.reply());
        assert_eq!(reply["type"], "command_result");
        assert_eq!(reply["id"], "c9");
        assert_eq!(reply["error"]["kind"], "bad_command");
        let no_id =
            parse_inbound(r#"{"type":"command","ep":"e","method":"GET","path":"/"}"#).unwrap_err();
        assert!(matches!(no_id, ProtocolError::CommandWithoutId { .. }));
        assert_eq!(to_value(&no_id.reply())["type"], "error");
    }

    #[test]
    fn a_bad_command_is_logged_at_the_platform_fault_level_wherever_it_is_found() {
        assert_eq!(PLATFORM_FAULT_LEVEL, log::Level::Warn);
        assert_eq!(
            command_failure_level(CommandErrorKind::BadCommand),
            PLATFORM_FAULT_LEVEL
        );
        for kind in [
            CommandErrorKind::UnknownDevice,
            CommandErrorKind::DeviceOffline,
            CommandErrorKind::Timeout,
            CommandErrorKind::CoapError,
            CommandErrorKind::Overloaded,
        ] {
            assert_eq!(command_failure_level(kind), log::Level::Info, "{kind:?}");
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

    #[test]
    fn data_error_frames_carry_the_error_and_the_back_off() {
        let frame = OutboundFrame::DataError(DataErrorFrame {
            ep: "n".into(),
            d: None,
            path: "/missing".into(),
            code: "4.04".into(),
            content_format: None,
            payload: encode_payload(b"Not Found"),
            at: "2026-11-25T14:00:00.000Z".into(),
            via: WatchedBy::Poll,
            consecutive: 2,
            retry_in_ms: 4_000,
        });
        assert!(
            frame.is_data(),
            "dropped before events when the queue is full"
        );
        assert_eq!(
            to_value(&frame),
            json!({"type": "data_error", "ep": "n", "d": null, "path": "/missing",
                   "code": "4.04", "content_format": null, "payload": "Not Found",
                   "payload_encoding": "utf8", "at": "2026-11-25T14:00:00.000Z",
                   "via": "poll", "consecutive": 2, "retry_in_ms": 4000})
        );
    }
}
