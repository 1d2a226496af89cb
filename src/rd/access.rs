//! Who may write to the directory: plain CoAP per `security.plain_coap`, and over DTLS only
//! the endpoint names and sectors an identity is allowed (RFC 9176 §7: the RD checks that a
//! client is authorized to use the name it registers).
//!
//! Ownership of an existing registration (only its identity may change it; a plain request
//! gets 4.01) is the Registry's write policy (`limits::registration_policy`), decided in the
//! same step as the write. This file answers the question that comes first: may this
//! requester use this name at all?

use std::sync::Arc;

use crate::coap::{Code, InboundRequest, OutboundResponse};

/// The application's answer to "may `identity` register `ep` in sector `d`?" (the identities
/// file). `Err` carries the reason, sent as the 4.03's diagnostic.
pub(crate) trait RegistrationAuthority: Send + Sync + 'static {
    fn authorize(&self, identity: &str, ep: &str, d: Option<&str>) -> Result<(), String>;

    /// Whether `identity` is (still) listed. A certificate stays valid after its identity
    /// is removed from the file (no CRL), so the RD refuses such an identity's writes.
    fn knows(&self, identity: &str) -> bool;
}

/// The RD's access rules.
#[derive(Clone)]
pub(crate) struct RdAccess {
    /// Whether plain CoAP may register, update and remove (`security.plain_coap: open`);
    /// lookups and discovery are allowed over plain CoAP either way.
    pub plain_writes: bool,
    /// Names per identity; `None` when DTLS is off (every identity may use any name).
    pub authority: Option<Arc<dyn RegistrationAuthority>>,
}

impl Default for RdAccess {
    fn default() -> Self {
        RdAccess {
            plain_writes: true,
            authority: None,
        }
    }
}

impl std::fmt::Debug for RdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdAccess")
            .field("plain_writes", &self.plain_writes)
            .field("authority", &self.authority.is_some())
            .finish()
    }
}

impl RdAccess {
    /// A write (registration, update, removal) over plain CoAP where only DTLS may write:
    /// 4.01, since the same request with credentials could succeed.
    pub(crate) fn refuse_plain_write(&self, req: &InboundRequest) -> Option<OutboundResponse> {
        (req.identity.is_none() && !self.plain_writes).then(|| {
            OutboundResponse::new(Code::UNAUTHORIZED)
                .with_diagnostic("writes need coaps (security.plain_coap: lookup_only)")
        })
    }

    /// A write by an identity the identities file no longer lists (a removed certificate
    /// identity still handshakes): 4.03.
    pub(crate) fn refuse_unknown_identity(&self, req: &InboundRequest) -> Option<OutboundResponse> {
        let (Some(identity), Some(authority)) = (&req.identity, &self.authority) else {
            return None;
        };
        (!authority.knows(identity)).then(|| {
            OutboundResponse::new(Code::FORBIDDEN)
                .with_diagnostic("this identity is not in the identities file")
        })
    }

    /// The 4.03 for a requester that may not use `ep` in `d`; `None` when it may: always over
    /// plain CoAP (the address rules apply then), over DTLS as the identities say.
    pub(crate) fn refuse_name(
        &self,
        req: &InboundRequest,
        ep: &str,
        d: Option<&str>,
    ) -> Option<OutboundResponse> {
        let (Some(identity), Some(authority)) = (&req.identity, &self.authority) else {
            return None;
        };
        authority
            .authorize(identity, ep, d)
            .err()
            .map(|why| OutboundResponse::new(Code::FORBIDDEN).with_diagnostic(why))
    }
}
