//! `observer.*`: what the Observer watches and how often, how much it forwards. Validation
//! builds the Observer's typed settings (with `observer.select` parsed) once; they travel in
//! [`super::Parsed`].

use std::time::Duration;

use serde::Deserialize;

use super::{in_range, invalid, ConfigError};
use crate::observer::{ObserverSettings, Selection};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ObserverConfig {
    pub enabled: bool,
    pub poll_interval_s: u64,
    /// RD-style filters choosing the links to watch; a link is watched when it matches any
    /// entry; `&` inside an entry ANDs filters (`"rt=temp*&if=sensor"`).
    pub select: Vec<String>,
    /// Forward a poll result only when it differs from the previous one for that link.
    pub only_changes: bool,
    /// Per device; frames beyond it are dropped and counted.
    pub max_frames_per_s: u32,
    /// Polls and observation set-ups running at once.
    pub max_in_flight: usize,
    /// Cap on observations plus polled links held at once (bounded state).
    pub max_watched: usize,
    /// A polled link answering with an error is asked again after twice the interval, then
    /// four times, ..., at most this many seconds apart (never less than the interval) until
    /// it answers with a value.
    pub error_backoff_max_s: u64,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            enabled: true,
            poll_interval_s: 60,
            select: vec!["obs".to_string(), "if=sensor".to_string()],
            only_changes: false,
            max_frames_per_s: 10,
            max_in_flight: 256,
            max_watched: 400_000,
            error_backoff_max_s: 600,
        }
    }
}

impl ObserverConfig {
    /// Check `observer.*` and build the Observer's settings from it (also when the Observer is
    /// disabled: a bad value is refused either way).
    pub(crate) fn settings(&self) -> Result<ObserverSettings, ConfigError> {
        in_range(
            "observer.max_frames_per_s",
            self.max_frames_per_s.into(),
            1,
            1_000_000,
        )?;
        in_range(
            "observer.max_in_flight",
            self.max_in_flight as u64,
            1,
            100_000,
        )?;
        in_range(
            "observer.max_watched",
            self.max_watched as u64,
            1,
            10_000_000,
        )?;
        let selection = Selection::parse(&self.select)
            .map_err(|e| invalid("observer.select", e.to_string()))?;
        in_range("observer.poll_interval_s", self.poll_interval_s, 1, 86_400)?;
        Ok(ObserverSettings {
            selection,
            poll_interval: Duration::from_secs(self.poll_interval_s.max(1)),
            only_changes: self.only_changes,
            max_frames_per_s: self.max_frames_per_s.max(1),
            max_in_flight: self.max_in_flight.max(1),
            max_watched: self.max_watched.max(1),
            error_backoff_max: Duration::from_secs(self.error_backoff_max_s.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn observer_keys_have_defaults_and_are_validated() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.observer.select, vec!["obs", "if=sensor"]);
        assert!(!c.observer.only_changes);
        assert_eq!(c.observer.max_frames_per_s, 10);
        assert_eq!(c.observer.max_in_flight, 256);
        let c = Config::from_yaml("observer:\n  select: [\"rt=temp*&if=sensor\"]\n").unwrap();
        assert_eq!(c.observer.select, vec!["rt=temp*&if=sensor"]);
        for bad in [
            "observer:\n  select: [\"\"]\n",
            "observer:\n  select: [\"count=3\"]\n",
            "observer:\n  max_frames_per_s: 0\n",
            "observer:\n  max_in_flight: 0\n",
        ] {
            let err = Config::from_yaml(bad).unwrap_err().to_string();
            assert!(err.contains("observer"), "{bad}: {err}");
        }
    }
}
