//! The registration data model (RFC 9176 §5): what the Registry stores, persists and publishes.
//!
//! Validated newtypes make an invalid endpoint name unrepresentable past the RD's parsing step.

use std::fmt;
use std::net::SocketAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::link_set::LinkSet;
use super::liveness::{LastSeen, StatusHistory};
use link_format::Param;

/// RFC 9176 §5: `ep` and `d` are at most 63 bytes of UTF-8.
pub(crate) const MAX_NAME_BYTES: usize = 63;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("{len} bytes long, at most {MAX_NAME_BYTES} allowed")]
    TooLong { len: usize },
    #[error("contains the control character U+{code:04X}")]
    ControlCharacter { code: u32 },
}

/// RFC 9176 §5 / §9.3: Unicode, at most 63 bytes, no characters 0–31 or 127–159.
fn validate_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { len: s.len() });
    }
    if let Some(c) = s.chars().find(|c| matches!(*c as u32, 0..=31 | 127..=159)) {
        return Err(NameError::ControlCharacter { code: c as u32 });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(CompactString);

        impl $name {
            pub fn new(s: impl Into<CompactString>) -> Result<Self, NameError> {
                let s = s.into();
                validate_name(&s)?;
                Ok($name(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.into_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An endpoint name (`ep`), unique within its sector. Names of up to 24 bytes are kept inline
    /// (no heap block per registration).
    EndpointName
);
name_type!(
    /// A sector (`d`; "domain" in draft-11).
    Sector
);

/// The RD-generated, stable identifier of a registration resource. Its location is
/// `/reg/<id>`; a re-registration of the same `ep`+`d` keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegistrationId(pub u64);

impl RegistrationId {
    /// The first path segment of every registration resource.
    pub(crate) const PATH_SEGMENT: &'static str = "reg";

    /// The location path segments, as sent in Location-Path options.
    pub(crate) fn location_segments(&self) -> [String; 2] {
        [Self::PATH_SEGMENT.to_string(), self.0.to_string()]
    }

    /// The path-absolute location, e.g. `/reg/17`.
    pub fn location(&self) -> String {
        format!("/{}/{}", Self::PATH_SEGMENT, self.0)
    }
}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Liveness as the Pinger last saw it. Persisted; `1` and `0` on the wire and in `rd-dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Status {
    Disconnected = 0,
    Connected = 1,
}

impl Status {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        s as u8
    }
}

impl TryFrom<u8> for Status {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Status::Disconnected),
            1 => Ok(Status::Connected),
            other => Err(format!("status must be 0 or 1, not {other}")),
        }
    }
}

/// Whether `base` was given by the registrant or derived from the request's source address.
/// RFC 9176 §5.3.1: only a derived base follows the device when its source address changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseOrigin {
    Explicit,
    FromSource,
}

/// One registration (RFC 9176 §5), as stored and published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: RegistrationId,
    pub ep: EndpointName,
    pub d: Option<Sector>,
    /// Always set: the explicit `base`, or `coap://<source>` when none was given.
    /// (A `coap://` IPv4 base of up to 24 bytes is kept inline, not in a heap block.)
    pub base: CompactString,
    pub base_origin: BaseOrigin,
    /// `lt` in seconds, 1..=2^32-1.
    pub lifetime_s: u32,
    /// Extra endpoint attributes (`et`, and any unknown query parameter), in order; repeatable.
    pub attrs: Vec<Param>,
    /// Shared with the registrations that registered the same links ([`LinkSet`]).
    pub links: LinkSet,
    pub status: Status,
    pub registered_at_ms: u64,
    pub updated_at_ms: u64,
    /// When the lifetime ends (Unix ms). Renewed by every update.
    pub expires_at_ms: u64,
    /// Where the last registration or update came from.
    pub source: SocketAddr,
    /// The DTLS identity (PSK identity or certificate CN) that made the registration: only
    /// that identity may update or remove it, from any address. `None`: made over plain CoAP
    /// (then First Come First Remembered by address applies). Absent in format-1 records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<CompactString>,
    /// Recent status changes, stored with the record (absent in older records).
    #[serde(default, skip_serializing_if = "StatusHistory::is_empty")]
    pub status_history: StatusHistory,
    /// When the device last answered anything; memory only, shared by this registration's
    /// versions ([`LastSeen`]).
    #[serde(skip)]
    pub last_seen: LastSeen,
}

impl Registration {
    /// The values of an extra endpoint attribute (e.g. every `et`).
    pub(crate) fn attr_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attrs
            .iter()
            .filter(move |p| p.name == name)
            .filter_map(|p| p.value.as_deref())
    }

    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The last time the device was heard from: its last answer to the gateway, or its last
    /// registration or update, whichever is later.
    pub fn seen_at_ms(&self) -> u64 {
        self.last_seen.get().max(self.updated_at_ms)
    }
}

/// `coap://<addr>` for a source address: the default base of RFC 9176 §5. IPv6 addresses are
/// bracketed; a zone id is never included (RFC 9176 §5, §6.1), and the port is omitted when it
/// is CoAP's default 5683.
pub(crate) fn base_from_source(addr: SocketAddr) -> String {
    base_for(addr, false)
}

/// [`base_from_source`] for a request that came over DTLS: `coaps://`, default port 5684.
pub(crate) fn base_for(addr: SocketAddr, secure: bool) -> String {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{}]", a.ip()),
        },
    };
    let (scheme, default_port) = if secure {
        ("coaps", 5684)
    } else {
        ("coap", 5683)
    };
    if addr.port() == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{}", addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_9176_section_5() {
        assert!(EndpointName::new("node1").is_ok());
        assert!(EndpointName::new("ünïcødé-ok").is_ok());
        assert_eq!(EndpointName::new(""), Err(NameError::Empty));
        assert_eq!(
            EndpointName::new("x".repeat(64)),
            Err(NameError::TooLong { len: 64 })
        );
        assert!(EndpointName::new("x".repeat(63)).is_ok());
        assert_eq!(
            Sector::new("a\u{7f}"),
            Err(NameError::ControlCharacter { code: 0x7f })
        );
        assert_eq!(
            Sector::new("a\u{85}b"),
            Err(NameError::ControlCharacter { code: 0x85 })
        );
        assert!(Sector::new("a\u{a0}b").is_ok());
    }

    #[test]
    fn names_refuse_bad_values_when_deserialized() {
        assert!(serde_json::from_str::<EndpointName>("\"a\\u0001\"").is_err());
        assert_eq!(
            serde_json::from_str::<EndpointName>("\"ok\"").ok(),
            EndpointName::new("ok").ok()
        );
    }

    #[test]
    fn base_is_derived_from_the_source_address() {
        assert_eq!(
            base_from_source("127.0.0.1:5683".parse().unwrap()),
            "coap://127.0.0.1"
        );
        assert_eq!(
            base_from_source("[::1]:40000".parse().unwrap()),
            "coap://[::1]:40000"
        );
        assert_eq!(
            base_from_source("[::ffff:10.0.0.1]:9".parse().unwrap()),
            "coap://10.0.0.1:9"
        );
    }
}
