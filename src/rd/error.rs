//! `RdError`: every way an RD request can be refused, and the CoAP response code for each.
//!
//! Produced by the pure request parsers of this module (registration, update, lookup, groups,
//! discovery); the RdServer turns `code()` into the response code and `to_string()` into the
//! diagnostic payload. Codes follow RFC 9176 §4, §5, §5.3 and RFC 7252 §5.9 (see the bad-input
//! table in `rd-checklist.md`).

use thiserror::Error;

use crate::registry::model::NameError;
use link_format::LinkFormatError;

/// Why a `base` (or draft-11 `con`) value is unusable as a registration base URI (RFC 9176 §5).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum BaseError {
    #[error("it is not an absolute URI (no scheme)")]
    NoScheme,
    #[error("it holds a character no URI may hold (RFC 3986 §2)")]
    NotUriCharacter,
    #[error("scheme {0:?} is not a CoAP or HTTP scheme")]
    UnsupportedScheme(String),
    #[error("it has no authority (`scheme://host`)")]
    NoAuthority,
    #[error("its host is empty or malformed")]
    BadHost,
    #[error("its port is not a number in 0..=65535")]
    BadPort,
    #[error("it has a query component")]
    HasQuery,
    #[error("it has a fragment component")]
    HasFragment,
    #[error("it carries an IPv6 zone identifier")]
    ZoneId,
    #[error("it is link-local but the request did not come from a link-local address")]
    LinkLocalFromAfar,
    #[error(
        "it names the gateway's own host (loopback, unspecified, localhost or one of the \
         gateway's addresses), which only a registrant on that host may do; give the device's \
         own address"
    )]
    NamesGatewayHost,
}

/// Why a registered link is not in Limited Link Format (RFC 9176 Appendix C).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum LimitedLinkError {
    #[error("target {0:?} is neither a full URI nor path-absolute")]
    Target(String),
    #[error("anchor {0:?} is neither a full URI nor path-absolute")]
    Anchor(String),
    #[error("anchor has no value")]
    ValuelessAnchor,
    #[error("more than one anchor")]
    RepeatedAnchor,
    #[error("target {0:?} is relative while the anchor is a full URI")]
    RelativeTargetWithAbsoluteAnchor(String),
}

/// A refused RD request. `code()` gives the CoAP response code, `Display` the diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum RdError {
    #[error("{0} argument missing")]
    MissingParam(&'static str),
    #[error("{0} argument has no value")]
    ValuelessParam(String),
    #[error("Multiple values for {0}")]
    RepeatedParam(String),
    #[error("a query item has an empty name")]
    EmptyParamName,
    #[error("a query item is not UTF-8")]
    QueryNotUtf8,
    /// An extra attribute that link-format cannot carry: lookups would render it as text
    /// no client can parse.
    #[error("attribute {name:?}: {reason}")]
    InvalidAttribute { name: String, reason: &'static str },
    #[error("invalid {param}: {source}")]
    InvalidName {
        param: &'static str,
        #[source]
        source: NameError,
    },
    #[error("lt must be an integer in 1..=4294967295, not {0:?}")]
    InvalidLifetime(String),
    #[error("{param} {value:?} is not a usable base URI: {reason}")]
    InvalidBase {
        param: &'static str,
        value: String,
        reason: BaseError,
    },
    #[error("base and con given together")]
    BaseAndCon,
    #[error("base is not allowed in simple registrations")]
    BaseNotAllowed,
    #[error("Parameters 'd' and 'ep' can not be updated (got {0})")]
    ImmutableParam(&'static str),
    #[error("content-format {0} is not supported, use application/link-format (40)")]
    UnsupportedContentFormat(u16),
    #[error("payload is not UTF-8")]
    PayloadNotUtf8,
    #[error("payload is not valid link-format: {0}")]
    InvalidLinkFormat(#[from] LinkFormatError),
    #[error("link {index} is not in Limited Link Format: {reason}")]
    NotLimitedLinkFormat {
        index: usize,
        reason: LimitedLinkError,
    },
    #[error("this request takes no payload")]
    UnexpectedPayload,
    #[error("{param} must be a non-negative integer, not {value:?}")]
    InvalidPaging { param: &'static str, value: String },
    #[error("page requires count")]
    PageWithoutCount,
    #[error("group member link {index} is invalid: {reason}")]
    InvalidGroupMember { index: usize, reason: String },
    #[error("group member {0} is not registered")]
    UnknownGroupMember(String),
    #[error("no such registration")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("content-format {0} cannot be served, only application/link-format (40)")]
    NotAcceptable(u16),
}

impl RdError {
    /// The CoAP response code as (class, detail), e.g. `(4, 0)` for 4.00 Bad Request.
    pub(crate) fn code(&self) -> (u8, u8) {
        match self {
            RdError::UnsupportedContentFormat(_) => (4, 15),
            RdError::UnknownGroupMember(_) | RdError::NotFound => (4, 4),
            RdError::MethodNotAllowed => (4, 5),
            RdError::NotAcceptable(_) => (4, 6),
            RdError::MissingParam(_)
            | RdError::ValuelessParam(_)
            | RdError::RepeatedParam(_)
            | RdError::EmptyParamName
            | RdError::QueryNotUtf8
            | RdError::InvalidAttribute { .. }
            | RdError::InvalidName { .. }
            | RdError::InvalidLifetime(_)
            | RdError::InvalidBase { .. }
            | RdError::BaseAndCon
            | RdError::BaseNotAllowed
            | RdError::ImmutableParam(_)
            | RdError::PayloadNotUtf8
            | RdError::InvalidLinkFormat(_)
            | RdError::NotLimitedLinkFormat { .. }
            | RdError::UnexpectedPayload
            | RdError::InvalidPaging { .. }
            | RdError::PageWithoutCount
            | RdError::InvalidGroupMember { .. } => (4, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_checklist_table() {
        assert_eq!(RdError::MissingParam("ep").code(), (4, 0));
        assert_eq!(RdError::UnsupportedContentFormat(0).code(), (4, 15));
        assert_eq!(RdError::NotAcceptable(50).code(), (4, 6));
        assert_eq!(RdError::NotFound.code(), (4, 4));
        assert_eq!(RdError::UnknownGroupMember("n".into()).code(), (4, 4));
        assert_eq!(RdError::MethodNotAllowed.code(), (4, 5));
        assert_eq!(RdError::PageWithoutCount.code(), (4, 0));
    }

    #[test]
    fn repeated_param_message_matches_aiocoap_wording() {
        assert_eq!(
            RdError::RepeatedParam("ep".into()).to_string(),
            "Multiple values for ep"
        );
    }
}
