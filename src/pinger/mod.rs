//! Device liveness: the Pinger pings every registered device with an empty CON and
//! records status 0/1 through the Registry.
//!
//! - `target`: the address to ping, from a registration's `base` (pure).
//! - `schedule`: spreading a sweep, counting attempts, deciding status changes (pure).
//! - `actor`: the Pinger actor that runs sweeps on the RD's `CoapClient`.

pub(crate) mod actor;
pub(crate) mod schedule;
pub(crate) mod target;

pub(crate) use actor::{start, PingerSettings};
pub use actor::{Pinger, StopPinger};
pub(crate) use target::{dtls_of, ping_target, registration_target};
