//! What `/metrics` reads from the running gateway at scrape time, in the metrics module's own
//! types: the registry's device counts (`ScrapeInputs`, filled by the admin server from
//! `registry::RegistryReader::devices_by_status`), the platform link's counters
//! ([`PlatformLinkSample`], converted from the link's `LinkStats` by `platform::metric_labels`)
//! and the coaps listener's counters ([`DtlsSample`], converted from the CoAP endpoint's
//! `DtlsStats` by `coap_metrics`).

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
    /// The connection uses acknowledged delivery (protocol 1.1).
    pub acked_mode: bool,
    /// The platform's latest cumulative acknowledgement (a seq).
    pub last_ack: u64,
    /// Frames in the outbox: unwritten, or written and unacknowledged.
    pub outbox_frames: u64,
    /// Bytes of frame text in the outbox (what `platform.outbox_max_bytes` bounds).
    pub outbox_bytes: u64,
    /// Age of the oldest frame still owed, in ms (0 when none).
    pub oldest_unacked_ms: u64,
    /// Frames written again after a reconnect.
    pub resent: u64,
    /// Events replaced by a snapshot-forcing marker (the outbox was full of them).
    pub overflows: u64,
}

/// The RD's coaps (DTLS) listener as `/metrics` renders it: the transport's own counters, read
/// at scrape time (they are atomics the transport bumps; copying them here keeps the metrics
/// module free of CoAP types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DtlsSample {
    /// HelloVerifyRequests sent: hellos without a valid cookie, answered statelessly.
    pub hello_verify_sent: u64,
    /// Handshakes begun (a hello with a valid cookie got a session).
    pub handshakes_started: u64,
    pub handshakes_completed: u64,
    /// Handshakes that ended before an identity was established (bad key, unknown identity,
    /// untrusted certificate, a fatal alert).
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    /// Hellos dropped: the session table was full or the source over its handshake rate.
    pub hellos_refused: u64,
    /// Datagrams that were neither a record of a known session nor a hello.
    pub datagrams_dropped: u64,
    /// Sessions held now, established or in handshake.
    pub sessions: u64,
    /// Sessions moved from OpenSSL to the gateway's own record layer after their handshake.
    pub sessions_compacted: u64,
    /// Records of established sessions dropped: forged, replayed or of another epoch.
    pub records_dropped: u64,
}
