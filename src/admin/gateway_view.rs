//! The console's gateway page data (`GET /api/gateway`): where the gateway listens, its
//! devices by status, the platform link's state, what it still owes the platform, how often
//! it reconnected, and the last hour of RD activity (`admin::activity`). Pure shaping.

use serde::Serialize;

use super::activity::RatePoint;
use super::query::StatusCounts;
use super::state::Listeners;
use crate::platform::LinkStats;

#[derive(Debug, Serialize)]
pub(crate) struct GatewayView<'a> {
    pub listeners: &'a Listeners,
    pub devices: StatusCounts,
    pub platform: PlatformView,
    /// Per-second rates, one point per sample interval, oldest first.
    pub activity: Vec<RatePoint>,
    pub activity_interval_s: u64,
}

/// The platform link as the gateway page shows it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct PlatformView {
    pub configured: bool,
    /// `false` also when the link did not answer within the admin's wait.
    pub answered: bool,
    pub connected: bool,
    /// Acknowledged delivery (protocol 1.1) on the current connection.
    pub acked_mode: bool,
    /// Frames the platform has not acknowledged yet (or not been sent).
    pub owed_frames: usize,
    pub owed_bytes: usize,
    pub oldest_owed_ms: u64,
    pub last_ack: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub dial_attempts: u64,
    pub auth_failures: u64,
    pub frames_sent: u64,
    pub dropped_data: u64,
    pub dropped_events: u64,
}

impl PlatformView {
    /// `stats`: `None` when the link did not answer.
    pub(crate) fn of(configured: bool, stats: Option<&LinkStats>) -> PlatformView {
        let Some(s) = stats else {
            return PlatformView {
                configured,
                ..PlatformView::default()
            };
        };
        PlatformView {
            configured,
            answered: true,
            connected: s.connected,
            acked_mode: s.acked_mode,
            owed_frames: s.outbox_frames,
            owed_bytes: s.outbox_bytes,
            oldest_owed_ms: s.oldest_unacked_ms,
            last_ack: s.last_ack,
            connects: s.connects,
            reconnects: s.reconnects,
            dial_attempts: s.dial_attempts,
            auth_failures: s.auth_failures,
            frames_sent: s.frames_sent,
            dropped_data: s.dropped_data,
            dropped_events: s.dropped_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_s_counters_are_shown_and_an_unanswered_link_says_so() {
        let stats = LinkStats {
            connected: true,
            reconnects: 3,
            outbox_frames: 7,
            ..LinkStats::default()
        };
        let v = serde_json::to_value(PlatformView::of(true, Some(&stats))).unwrap();
        assert_eq!(v["reconnects"], 3);
        assert_eq!(v["owed_frames"], 7);
        assert_eq!(v["answered"], true);
        let v = serde_json::to_value(PlatformView::of(true, None)).unwrap();
        assert_eq!(v["answered"], false);
        assert_eq!(v["connected"], false);
    }
}
