//! The Observer's counters: shared with the observation tasks, logged every [`STATS_EVERY`]
//! when anything moved (frames, rate-limit drops, unchanged polls, lost observations, failed
//! set-ups and polls, devices over `max_watched`, queue drops and waits, error answers), and the
//! throttled warnings for a full queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use log::info;

use super::actor::Observer;
use crate::limits::LogThrottle;

/// How often the counters are logged (when anything moved).
pub(crate) const STATS_EVERY: Duration = Duration::from_secs(10);

/// Drops for a full queue are logged at most once per 10 s.
static QUEUE_FULL_LOG: LogThrottle = LogThrottle::new();

/// Waits for a full queue are logged at most once per 10 s.
static QUEUE_WAIT_LOG: LogThrottle = LogThrottle::new();

/// Counters shared with the observation tasks.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) frames: AtomicU64,
    pub(super) rate_dropped: AtomicU64,
    pub(super) unchanged: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) setup_failed: AtomicU64,
    pub(super) polls_failed: AtomicU64,
    /// Error answers (4.xx, 5.xx) to polls and observations.
    pub(super) error_answers: AtomicU64,
    pub(super) capped: AtomicU64,
    /// Poll results dropped because the Observer's queue was full.
    pub(super) mailbox_full: AtomicU64,
    /// Notifications that found the queue full and waited for room (not lost).
    pub(super) waited: AtomicU64,
}

impl Stats {
    pub(super) fn dropped_for_full_queue(&self) {
        self.mailbox_full.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().record_data_mailbox_full();
        if let Some(n) = QUEUE_FULL_LOG.note() {
            log::warn!(
                "observer: {n} poll result(s) dropped in the last {} s: the observer's queue was full",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
    }

    pub(super) fn waited_for_room(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = QUEUE_WAIT_LOG.note() {
            log::warn!(
                "observer: {n} notification(s) waited for room in the last {} s: the observer's queue was full (the gateway is behind its devices)",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
    }

    pub(super) fn snapshot(&self) -> [u64; 10] {
        [
            &self.frames,
            &self.rate_dropped,
            &self.unchanged,
            &self.lost,
            &self.setup_failed,
            &self.polls_failed,
            &self.capped,
            &self.mailbox_full,
            &self.error_answers,
            &self.waited,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

impl Observer {
    pub(super) fn log_stats(&mut self) {
        let now = self.stats.snapshot();
        if now == self.last_logged {
            return;
        }
        let d: Vec<u64> = now
            .iter()
            .zip(self.last_logged.iter())
            .map(|(a, b)| a - b)
            .collect();
        info!(
            "observer: {} devices, {} links watched; last {} s: {} frames, {} dropped by the \
             rate limit, {} unchanged polls not sent, {} observations lost, {} set-ups failed, \
             {} polls failed, {} devices over max_watched, {} values dropped for a full queue, \
             {} error answers, {} values waited for room",
            self.devices.len(),
            self.watched,
            STATS_EVERY.as_secs(),
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            d[5],
            d[6],
            d[7],
            d[8],
            d[9]
        );
        self.last_logged = now;
    }
}

#[cfg(test)]
mod tests {
    use super::STATS_EVERY;

    #[test]
    fn the_shipped_config_states_the_stats_period() {
        // config.yaml is what operators read; it must name the period the counters are logged.
        let yaml = include_str!("../../config.yaml");
        let said = format!("logged every {} s", STATS_EVERY.as_secs());
        assert!(yaml.contains(&said), "config.yaml should say {said:?}");
        assert!(!yaml.contains("logged every minute"));
    }
}
