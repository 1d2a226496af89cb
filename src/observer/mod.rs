//! The Observer (issue 8): device data to the platform as `data` frames, by CoAP Observe
//! (RFC 7641) where a selected link offers `obs` and by GET polling otherwise.
//!
//! - `strategy`: link selection, observe-or-poll, rate limit, `only_changes`, loss (pure).
//! - `schedule`: spreading polls over the interval (pure).
//! - `actor`: the Observer actor, fed by Registry events, talking through the RD's `CoapClient`.

pub mod actor;
pub mod schedule;
pub mod strategy;

pub use actor::{start, Observer, ObserverSettings, StopObserver};
pub use strategy::{SelectError, Selection};
