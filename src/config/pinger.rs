//! `pinger.*`: how often and how hard the Pinger checks that registered devices answer.

use serde::Deserialize;

use super::{in_range, invalid, ConfigError};
use crate::pinger::PingerSettings;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PingerConfig {
    pub enabled: bool,
    pub interval_s: u64,
    pub timeout_ms: u64,
    pub attempts: u32,
    pub max_in_flight: usize,
}

impl Default for PingerConfig {
    fn default() -> Self {
        PingerConfig {
            enabled: true,
            interval_s: 30,
            timeout_ms: 2_000,
            attempts: 3,
            max_in_flight: 1_024,
        }
    }
}

impl PingerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range("pinger.interval_s", self.interval_s, 1, 86_400)?;
        in_range("pinger.timeout_ms", self.timeout_ms, 1, 60_000)?;
        in_range("pinger.attempts", self.attempts.into(), 1, 100)?;
        if self.max_in_flight == 0 {
            return Err(invalid("pinger.max_in_flight", "must be at least 1"));
        }
        Ok(())
    }
}

impl PingerConfig {
    /// The Pinger's settings.
    pub(crate) fn settings(&self) -> PingerSettings {
        PingerSettings {
            // A zero interval would spin; one second is the shortest sweep period.
            interval: Duration::from_secs(self.interval_s.max(1)),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            attempts: self.attempts.max(1),
            max_in_flight: self.max_in_flight.max(1),
        }
    }
}
