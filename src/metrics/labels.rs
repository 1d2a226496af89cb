//! The closed label sets of the gateway's metrics. Each is an enum with a dense index, so a
//! labelled counter is an array of atomics and recording never hashes or locks; `ALL` fixes
//! the rendering order and `as_str` the label value.
//!
//! The metrics module is a leaf: it imports nothing from the rest of the gateway. The
//! producers convert their own types into these labels (`From` impls beside those types:
//! `coap::code` for [`ResponseCode`], `platform::metric_labels` for frames and commands).

/// A CoAP response code as metrics count it: the raw code byte (class << 5 | detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseCode(pub u8);

impl ResponseCode {
    pub(crate) const CREATED: ResponseCode = ResponseCode(0x41);
    pub(crate) const DELETED: ResponseCode = ResponseCode(0x42);
    pub(crate) const VALID: ResponseCode = ResponseCode(0x43);
    pub(crate) const CHANGED: ResponseCode = ResponseCode(0x44);
    pub(crate) const CONTENT: ResponseCode = ResponseCode(0x45);
    pub(crate) const BAD_REQUEST: ResponseCode = ResponseCode(0x80);
    pub(crate) const NOT_FOUND: ResponseCode = ResponseCode(0x84);
    #[cfg(test)]
    pub(crate) const INTERNAL_SERVER_ERROR: ResponseCode = ResponseCode(0xa0);
    pub(crate) const SERVICE_UNAVAILABLE: ResponseCode = ResponseCode(0xa3);

    pub(crate) fn class(self) -> u8 {
        self.0 >> 5
    }
}

/// A label value set: dense indices `0..COUNT`, in the order of `ALL`.
pub(crate) trait LabelSet: Copy + 'static {
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
        pub(crate) enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub(crate) const COUNT: usize = [$($name::$variant),+].len();
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
    pub(crate) fn from_code(code: ResponseCode) -> Self {
        match code.class() {
            2 => RegistrationOutcome::Ok,
            4 if code == ResponseCode::NOT_FOUND => RegistrationOutcome::NotFound,
            4 => RegistrationOutcome::Rejected,
            5 if code == ResponseCode::SERVICE_UNAVAILABLE => RegistrationOutcome::Unavailable,
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

/// A CoAP response code as a label value, "class.detail" ("2.05"), for any of the 256 codes.
pub(crate) fn code_label(code: u8) -> String {
    format!("{}.{:02}", code >> 5, code & 0x1f)
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
        type C = ResponseCode;
        assert_eq!(O::from_code(C::CREATED), O::Ok);
        assert_eq!(O::from_code(C::DELETED), O::Ok);
        assert_eq!(O::from_code(C::NOT_FOUND), O::NotFound);
        assert_eq!(O::from_code(C::BAD_REQUEST), O::Rejected);
        assert_eq!(O::from_code(C::SERVICE_UNAVAILABLE), O::Unavailable);
        assert_eq!(O::from_code(C::INTERNAL_SERVER_ERROR), O::Failed);
        assert_eq!(code_label(C::CONTENT.0), "2.05");
        assert_eq!(code_label(C::NOT_FOUND.0), "4.04");
        assert_eq!(code_label(0x9f), "4.31");
    }
}
