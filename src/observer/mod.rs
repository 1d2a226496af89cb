//! The Observer: device data to the platform as `data` frames, by CoAP Observe (RFC 7641)
//! where a selected link offers `obs` and by GET polling otherwise.
//!
//! - `settings`: the Observer's typed knobs, built once from `observer.*` by config validation.
//! - `strategy`: link selection, observe-or-poll, rate limit, `only_changes`, loss (pure).
//! - `schedule`: spreading polls over the interval (pure).
//! - `actor`: the Observer actor, fed by Registry events: which devices and links are watched.
//! - `observation`: one observed link's task (establish, deliver, re-establish, deregister).
//! - `poll`: polled links, due times, error back-off.
//! - `forward`: the bounded value queue and the frames handed to PlatformLink.
//! - `stats`: the counters and their periodic log line.

pub mod actor;
pub mod forward;
pub mod observation;
pub mod poll;
pub mod schedule;
pub mod settings;
pub mod stats;
pub mod strategy;
#[cfg(test)]
mod tests;

pub use actor::{start, Observer, StopObserver};
pub use settings::ObserverSettings;
pub use strategy::{SelectError, Selection};
