//! The wall clock in Unix milliseconds: the per-second sample and count lines are keyed to the
//! wall clock's whole seconds, so that they line up with the gateway's and the platform's.
//! (The same helper as the gateway's `time::now_ms`, which this crate cannot depend on.)

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now. A clock set before 1970 reads as 0 rather than
/// failing.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
