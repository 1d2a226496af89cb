//! `executer.*`: how platform commands become CoAP requests (timeout, concurrency, dedup).

use serde::Deserialize;

use super::{in_range, ConfigError};
use crate::executer::ExecuterSettings;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ExecuterConfig {
    pub timeout_ms: u64,
    /// Commands running at once; one more is answered `overloaded`.
    pub max_in_flight: usize,
    /// Send commands to devices whose status is 0 instead of answering `device_offline`.
    pub send_to_offline: bool,
    /// How long a finished command id is remembered, so a retry is not executed twice
    /// (0 turns deduplication off).
    pub dedup_window_s: u64,
}

impl Default for ExecuterConfig {
    fn default() -> Self {
        ExecuterConfig {
            timeout_ms: 10_000,
            max_in_flight: 256,
            send_to_offline: false,
            dedup_window_s: 300,
        }
    }
}

impl ExecuterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        in_range("executer.timeout_ms", self.timeout_ms, 1, 3_600_000)?;
        in_range(
            "executer.max_in_flight",
            self.max_in_flight as u64,
            1,
            100_000,
        )
    }
}

impl ExecuterConfig {
    /// The Executer's settings.
    pub(crate) fn settings(&self) -> ExecuterSettings {
        ExecuterSettings {
            default_timeout: Duration::from_millis(self.timeout_ms.max(1)),
            max_in_flight: self.max_in_flight.max(1),
            send_to_offline: self.send_to_offline,
            dedup_window: Duration::from_secs(self.dedup_window_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn executer_keys_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.executer.max_in_flight, 256);
        assert!(!c.executer.send_to_offline);
        assert_eq!(c.executer.dedup_window_s, 300);
        let c = Config::from_yaml(
            "executer:\n  max_in_flight: 8\n  send_to_offline: true\n  dedup_window_s: 0\n",
        )
        .unwrap();
        assert_eq!(c.executer.max_in_flight, 8);
        assert!(c.executer.send_to_offline);
        assert_eq!(c.executer.dedup_window_s, 0);
        let err = Config::from_yaml("executer:\n  max_in_flight: 0\n").unwrap_err();
        assert!(err.to_string().contains("executer.max_in_flight"), "{err}");
    }
}
