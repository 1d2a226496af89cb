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
//! - `readings`: the latest value of each watched resource, for the console.

pub(crate) mod actor;
pub(crate) mod forward;
pub(crate) mod observation;
pub(crate) mod poll;
pub(crate) mod readings;
pub(crate) mod schedule;
pub(crate) mod settings;
pub(crate) mod stats;
pub(crate) mod strategy;
#[cfg(test)]
mod tests;

pub(crate) use actor::{start, Observer, StopObserver};
pub(crate) use readings::{Reading, Readings};
pub(crate) use settings::ObserverSettings;
pub(crate) use strategy::Selection;
