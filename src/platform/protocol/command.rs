//! Commands, the one exchange the platform starts: the `command` frame (a CoAP request for a
//! device), its `command_result` (exactly one per command id, a response or an error of the
//! contract's kinds), and the log level of a failed command.

use serde::{Deserialize, Serialize};

use super::payload::{
    decode_payload, encode_payload, EncodedPayload, PayloadEncoding, PayloadError,
};

/// The log level of everything that says "the platform sent something bad": an unusable frame
/// (malformed JSON, unknown type, binary) in the link, and a `bad_command` answer, whether the
/// link or the Executer found the fault. One level, so an operator can alert on it; WARN
/// because it points at a platform bug, not at a device or the network.
pub(crate) const PLATFORM_FAULT_LEVEL: log::Level = log::Level::Warn;

/// The level at which a failed command is logged: [`PLATFORM_FAULT_LEVEL`] for `bad_command`
/// (the platform's fault); INFO for the others, which describe devices and load (unknown or
/// offline device, timeout, CoAP error, overloaded) and are answered to the platform anyway.
pub(crate) fn command_failure_level(kind: CommandErrorKind) -> log::Level {
    match kind {
        CommandErrorKind::BadCommand => PLATFORM_FAULT_LEVEL,
        CommandErrorKind::UnknownDevice
        | CommandErrorKind::DeviceOffline
        | CommandErrorKind::Timeout
        | CommandErrorKind::CoapError
        | CommandErrorKind::Overloaded => log::Level::Info,
    }
}

/// `command_result.error.kind`, exactly the contract's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandError {
    pub kind: CommandErrorKind,
    pub message: String,
}

/// How a command ended: a CoAP response, or an error. Serialized flat into `command_result`.
/// Read back only from etcd, where replicas keep results for the leader (`cluster::data_relay`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    #[serde(flatten)]
    pub outcome: CommandOutcome,
}

impl CommandResult {
    /// The device answered: its response code (e.g. `"2.05"`), content format and payload.
    pub(crate) fn response(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::protocol::{parse_inbound, to_value, InboundFrame, OutboundFrame};
    use serde_json::json;

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
}
