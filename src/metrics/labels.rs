//! The closed label sets of the gateway's metrics. Each is an enum with a dense index, so a
//! labelled counter is an array of atomics and recording never hashes or locks; `ALL` fixes
//! the rendering order and `as_str` the label value.
//!
//! The mappings from the gateway's own types (CoAP response codes, platform frames and
//! command outcomes) live here too, so the call sites in the actors stay one line.

use crate::coap::Code;
use crate::platform::protocol::{CommandErrorKind, CommandOutcome};
use crate::platform::{CommandResult, OutboundFrame};

/// A label value set: dense indices `0..COUNT`, in the order of `ALL`.
pub trait LabelSet: Copy + 'static {
    const ALL: &'static [Self];
    fn index(self) -> usize;
    fn as_str(self) -> &'static str;
}

macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident {
        $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const COUNT: usize = [$($name::$variant),+].len();
        }

        impl LabelSet for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            #[inline]
            fn index(self) -> usize {
                self as usize
            }
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

label_set! {
    /// What happened to a registration (RFC 9176 §5, §5.3).
    RegistrationOp {
        Register => "register",
        Update => "update",
        Remove => "remove",
        Expire => "expire",
    }
}

label_set! {
    /// How a registration operation ended, from the RD's response code.
    RegistrationOutcome {
        Ok => "ok",
        /// 4.xx other than 4.04: the request itself was wrong (bad query, payload, source...).
        Rejected => "rejected",
        /// 4.04: no such registration (update, remove) or group member.
        NotFound => "not_found",
        /// 5.03: registry full or storage failing; the client was told to retry later.
        Unavailable => "unavailable",
        /// Any other failure (5.xx, or a non-error code the RD never sends for a write).
        Failed => "failed",
    }
}

impl RegistrationOutcome {
    pub fn from_code(code: Code) -> Self {
        match code.class() {
            2 => RegistrationOutcome::Ok,
            4 if code == Code::NOT_FOUND => RegistrationOutcome::NotFound,
            4 => RegistrationOutcome::Rejected,
            5 if code == Code::SERVICE_UNAVAILABLE => RegistrationOutcome::Unavailable,
            _ => RegistrationOutcome::Failed,
        }
    }
}

label_set! {
    /// The lookup interfaces (RFC 9176 §6; `d` and `gp` are draft-11 §7).
    LookupKind {
        Endpoint => "ep",
        Resource => "res",
        Group => "gp",
        Domain => "d",
    }
}

label_set! {
    /// How a platform command ended: a device response, or a `command_result` error kind
    /// (the wire names of docs/platform-protocol.md).
    CommandResultKind {
        Response => "response",
        UnknownDevice => "unknown_device",
        DeviceOffline => "device_offline",
        Timeout => "timeout",
        BadCommand => "bad_command",
        CoapError => "coap_error",
        Overloaded => "overloaded",
    }
}

impl CommandResultKind {
    pub fn of(result: &CommandResult) -> Self {
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

label_set! {
    /// The `type` of a frame sent to the platform (platform-protocol.md).
    FrameType {
        Hello => "hello",
        Snapshot => "snapshot",
        DeviceRegistered => "device_registered",
        DeviceUpdated => "device_updated",
        DeviceRemoved => "device_removed",
        DeviceStatus => "device_status",
        Data => "data",
        DataError => "data_error",
        CommandResult => "command_result",
        Error => "error",
    }
}

impl FrameType {
    pub fn of(frame: &OutboundFrame) -> Self {
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

/// A CoAP response code as a label value, "class.detail" ("2.05"), for any of the 256 codes.
pub fn code_label(code: u8) -> String {
    Code(code).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense<L: LabelSet>() {
        for (i, l) in L::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
            assert!(!l.as_str().is_empty());
        }
    }

    #[test]
    fn indices_are_dense_and_ordered() {
        dense::<RegistrationOp>();
        dense::<RegistrationOutcome>();
        dense::<LookupKind>();
        dense::<CommandResultKind>();
        dense::<FrameType>();
        assert_eq!(FrameType::COUNT, FrameType::ALL.len());
    }

    #[test]
    fn outcomes_follow_the_response_code() {
        use RegistrationOutcome as O;
        assert_eq!(O::from_code(Code::CREATED), O::Ok);
        assert_eq!(O::from_code(Code::DELETED), O::Ok);
        assert_eq!(O::from_code(Code::NOT_FOUND), O::NotFound);
        assert_eq!(O::from_code(Code::BAD_REQUEST), O::Rejected);
        assert_eq!(O::from_code(Code::SERVICE_UNAVAILABLE), O::Unavailable);
        assert_eq!(O::from_code(Code::INTERNAL_SERVER_ERROR), O::Failed);
        assert_eq!(code_label(Code::CONTENT.0), "2.05");
        assert_eq!(code_label(Code::NOT_FOUND.0), "4.04");
    }

    #[test]
    fn command_kinds_use_the_wire_names() {
        let ok = CommandResult::response("a", "2.05", None, b"x", 3);
        assert_eq!(CommandResultKind::of(&ok), CommandResultKind::Response);
        let late = CommandResult::failed("b", CommandErrorKind::Timeout, "late");
        assert_eq!(CommandResultKind::of(&late).as_str(), "timeout");
    }
}
