//! Why a dial to the platform failed, typed so the link can log each case clearly and decide
//! how to retry (every case is retried with back-off). Built by `platform::link` from awc's
//! errors. No variant ever holds the token: only the HTTP status or awc's transport message.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum LinkError {
    /// HTTP 401 or 403 on the WebSocket upgrade: the token is missing, wrong or revoked.
    #[error("platform refused the token (HTTP {status} on the WebSocket upgrade)")]
    Unauthorized { status: u16 },
    /// Any other non-101 answer to the upgrade (wrong path, platform down for maintenance...).
    #[error("platform refused the WebSocket upgrade with HTTP {status}")]
    UpgradeRefused { status: u16 },
    /// `platform.url` could not be used as a WebSocket URL.
    #[error("platform url is not usable: {0}")]
    InvalidUrl(String),
    /// TCP, TLS or HTTP failure before an answer (refused, unreachable, timed out).
    #[error("cannot reach the platform: {0}")]
    Transport(String),
}

impl LinkError {
    /// Whether retrying can only help once someone fixes the configuration.
    pub(crate) fn is_configuration_problem(&self) -> bool {
        matches!(
            self,
            LinkError::Unauthorized { .. } | LinkError::InvalidUrl(_)
        )
    }
}
