//! Platform commands to devices: each `command` frame becomes one CoAP request to
//! the device it names, and exactly one `command_result` goes back to the platform.
//!
//! - `plan`: validation, registration choice, path resolution, method mapping (pure).
//! - `dedup`: recent command ids and their first result, so retries run once (pure).
//! - `actor`: the Executer actor that sends the requests on the RD's `CoapClient`.

pub(crate) mod actor;
pub(crate) mod dedup;
pub(crate) mod plan;

pub use actor::{
    start, ConsoleCommand, Executer, ExecuterSettings, ExecuterStats, GetExecuterStats,
};
