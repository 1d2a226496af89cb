//! The JSON of `GET /health` and its status code. Pure: `handlers` gathers the inputs (with
//! bounded waits) and calls [`health_report`].
//!
//! 200 with `status: "up"` while the registry can write; 503 with `status: "down"` when its
//! latest write or flush failed, or when it did not answer at all (`"read_only"` for a replica
//! that cannot reach etcd: it still serves lookups, and a load balancer or keepalived moves
//! devices to a replica that can write). The platform link is
//! reported but does not make the gateway unhealthy: devices are still served while the
//! cloud is unreachable, and the link reconnects by itself.

use serde::{Deserialize, Serialize};

use crate::platform::LinkStats;
use crate::registry::{EtcdHealth, RegistryHealth};

/// What the handler learned from the PlatformLink.
#[derive(Debug, Clone)]
pub(crate) enum PlatformState {
    /// `platform.url` is empty.
    NotConfigured,
    /// Configured, but the link did not answer in time.
    NoAnswer,
    Stats(LinkStats),
}

/// The `registry` part of the health JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegistryView {
    pub writable: bool,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<u64>,
    /// The database opened with less than it had acknowledged: what is lost.
    /// Reported, not a failure: the gateway serves what it has.
    pub lost_at_start: Option<String>,
    /// With `registry.backend: etcd`: this replica's view of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdHealth>,
}

/// The `platform` part of the health JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlatformView {
    pub configured: bool,
    pub connected: bool,
    /// Frames waiting for the link (only when the link answered).
    pub queued: Option<u64>,
    /// Reconnects since start (only when the link answered).
    pub reconnects: Option<u64>,
}

/// The whole health JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthView {
    /// `"up"` or `"down"`.
    pub status: String,
    /// Live registrations.
    pub registrations: u64,
    pub registry: RegistryView,
    pub platform: PlatformView,
    pub version: String,
}

/// The status code and body of `/health`. `registry` is `None` when the Registry did not
/// answer (stopped, or its mailbox stuck): that is as bad as a failed write.
pub(crate) fn health_report(
    registrations: u64,
    registry: Option<&RegistryHealth>,
    platform: &PlatformState,
) -> (u16, HealthView) {
    let registry = match registry {
        Some(h) => RegistryView {
            writable: h.writable,
            last_error: h.last_error.clone(),
            last_error_at_ms: h.last_error_at_ms,
            lost_at_start: h.lost_at_start.clone(),
            etcd: h.etcd.clone(),
        },
        None => RegistryView {
            writable: false,
            last_error: Some("the registry did not answer".into()),
            last_error_at_ms: None,
            lost_at_start: None,
            etcd: None,
        },
    };
    let platform = match platform {
        PlatformState::NotConfigured => PlatformView {
            configured: false,
            connected: false,
            queued: None,
            reconnects: None,
        },
        PlatformState::NoAnswer => PlatformView {
            configured: true,
            connected: false,
            queued: None,
            reconnects: None,
        },
        PlatformState::Stats(s) => PlatformView {
            configured: true,
            connected: s.connected,
            queued: Some(s.queued as u64),
            reconnects: Some(s.reconnects),
        },
    };
    let up = registry.writable;
    // A replica that cannot reach etcd still serves lookups from its index.
    let down = if registry.etcd.is_some() {
        "read_only"
    } else {
        "down"
    };
    let view = HealthView {
        status: if up { "up" } else { down }.into(),
        registrations,
        registry,
        platform,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    (if up { 200 } else { 503 }, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writable() -> RegistryHealth {
        RegistryHealth {
            writable: true,
            last_error: None,
            last_error_at_ms: None,
            lost_at_start: None,
            etcd: None,
        }
    }

    #[test]
    fn up_without_a_platform() {
        let (code, view) = health_report(3, Some(&writable()), &PlatformState::NotConfigured);
        assert_eq!(code, 200);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "up");
        assert_eq!(json["registrations"], 3);
        assert_eq!(json["platform"]["configured"], false);
        assert_eq!(json["platform"]["connected"], false);
        assert_eq!(json["registry"]["writable"], true);
    }

    #[test]
    fn a_disconnected_platform_is_reported_but_still_up() {
        let stats = LinkStats {
            connected: false,
            reconnects: 2,
            queued: 5,
            ..LinkStats::default()
        };
        let (code, view) = health_report(0, Some(&writable()), &PlatformState::Stats(stats));
        assert_eq!(code, 200);
        assert!(view.platform.configured);
        assert!(!view.platform.connected);
        assert_eq!(view.platform.queued, Some(5));
        assert_eq!(view.platform.reconnects, Some(2));
        let (_, silent) = health_report(0, Some(&writable()), &PlatformState::NoAnswer);
        assert!(silent.platform.configured && !silent.platform.connected);
    }

    #[test]
    fn a_failed_write_or_a_silent_registry_is_503() {
        let failed = RegistryHealth {
            writable: false,
            last_error: Some("No space left on device".into()),
            last_error_at_ms: Some(9),
            lost_at_start: None,
            etcd: None,
        };
        let (code, view) = health_report(1, Some(&failed), &PlatformState::NotConfigured);
        assert_eq!(code, 503);
        assert_eq!(view.status, "down");
        assert_eq!(
            view.registry.last_error.as_deref(),
            Some("No space left on device")
        );
        let (code, view) = health_report(1, None, &PlatformState::NotConfigured);
        assert_eq!(code, 503);
        assert!(!view.registry.writable);
    }
}
