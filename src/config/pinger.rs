//! `pinger.*`: how often and how hard the Pinger checks that registered devices answer.

use serde::Deserialize;

use super::{in_range, invalid, ConfigError};

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
