//! What `/metrics` reads from the running gateway at scrape time, in the metrics module's own
//! types: the registry's device counts (`ScrapeInputs`, filled by the admin server from
//! `registry::RegistryReader::devices_by_status`) and the platform link's counters
//! ([`PlatformLinkSample`], converted from the link's `LinkStats` by `platform::metric_labels`).

/// The platform link's state as `/metrics` renders it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformLinkSample {
    /// A WebSocket is up and `hello`/`snapshot` have been handed to it.
    pub connected: bool,
    /// Dials started (successful or not).
    pub dial_attempts: u64,
    /// Connects after the first one.
    pub reconnects: u64,
    /// Dials refused with HTTP 401/403.
    pub auth_failures: u64,
    /// Frames waiting in the owed queue.
    pub queued: u64,
    /// Frames handed to the socket writer and not yet taken by it.
    pub in_flight: u64,
    /// `data` frames dropped because the owed queue was full.
    pub dropped_data: u64,
    /// Events and results dropped because the owed queue was full of them.
    pub dropped_events: u64,
}
