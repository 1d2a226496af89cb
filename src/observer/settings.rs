//! The Observer's knobs, typed: built once from `observer.*` by config validation
//! (`ObserverConfig::settings`, with `observer.select` parsed) and handed to the actor by
//! `gateway::start`.

use std::time::Duration;

use super::strategy::Selection;

/// The Observer's knobs, from `observer.*` in the config.
#[derive(Debug, Clone)]
pub(crate) struct ObserverSettings {
    pub selection: Selection,
    pub poll_interval: Duration,
    pub only_changes: bool,
    pub max_frames_per_s: u32,
    pub max_in_flight: usize,
    pub max_watched: usize,
    /// The longest gap between polls of a link that keeps answering with errors.
    pub error_backoff_max: Duration,
}
