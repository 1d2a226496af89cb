//! Process-wide operational metrics, rendered in the Prometheus text exposition format for the
//! admin HTTP server's `GET /metrics`.
//!
//! Counters that actors bump live in one process-wide [`Metrics`] ([`global`]) so an actor
//! records an event with a one-line call and without holding a handle; values that are
//! cheaper to read at scrape time (registry size, devices by status, the platform link's
//! state and queue) arrive in [`ScrapeInputs`].
//!
//! Everything is plain atomics (see `counter` and `histogram`): the RD's receive loop records
//! each response with a few relaxed `fetch_add`s, no lock, no allocation, no label hashing;
//! label sets are closed enums indexing arrays (`labels`). `render` and `text` build the
//! exposition only when scraped.
//!
//! Who records what:
//! - `coap::endpoint` — every response it sends to a request (by code) and the time from the
//!   decoded request to its response (`coap_gateway_rd_request_duration_seconds`);
//! - `rd::service` — registration operations by outcome, lookups by kind;
//! - `registry::actor` — expiries; `pinger::actor` — pings sent / unanswered;
//! - `executer::actor` — commands by result and round trip, commands in flight;
//! - `observer::forward` — data frames forwarded / rate-limited; `observer::poll` and
//!   `observer::observation` — error answers by code;
//! - `platform::link` — frames written to the platform socket, by type.
//!
//! CONTRACT: `global()`, `ScrapeInputs` and `render` keep these signatures.

pub(crate) mod counter;
pub(crate) mod histogram;
pub(crate) mod labels;
mod render;
mod scrape;
pub(crate) mod text;

use std::time::Duration;

pub(crate) use counter::{Counter, Gauge};
pub(crate) use histogram::Histogram;
pub(crate) use labels::{
    CommandResultKind, FrameType, LabelSet, LookupKind, RegistrationOp, RegistrationOutcome,
    ResponseCode,
};
pub use render::render;
pub use scrape::{DtlsSample, PlatformLinkSample};

/// Totals since start, as [`Metrics::activity`] reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ActivityTotals {
    pub(crate) registrations: u64,
    pub(crate) updates: u64,
    pub(crate) lookups: u64,
}

/// Counters recorded by the actors; see the module doc for who records what.
#[derive(Debug)]
pub struct Metrics {
    registrations: [[Counter; RegistrationOutcome::COUNT]; RegistrationOp::COUNT],
    lookups: [Counter; LookupKind::COUNT],
    /// Indexed by the raw CoAP code byte.
    responses: [Counter; 256],
    request_duration: Histogram,
    pings_sent: Counter,
    pings_failed: Counter,
    commands: [Counter; CommandResultKind::COUNT],
    command_round_trip: Histogram,
    commands_in_flight: Gauge,
    data_forwarded: Counter,
    data_rate_limited: Counter,
    data_mailbox_full: Counter,
    /// Replicas on etcd: data frames that could not be handed to the leader through etcd.
    data_not_relayed: Counter,
    /// Error answers (4.xx, 5.xx) to the Observer's polls and observations, by raw code byte.
    observer_errors: [Counter; 256],
    registry_feed_overflows: Counter,
    command_results_dropped: Counter,
    frames_sent: [Counter; FrameType::COUNT],
}

impl Metrics {
    pub(crate) const fn new() -> Self {
        Metrics {
            registrations: [const { [const { Counter::new() }; RegistrationOutcome::COUNT] };
                RegistrationOp::COUNT],
            lookups: [const { Counter::new() }; LookupKind::COUNT],
            responses: [const { Counter::new() }; 256],
            request_duration: Histogram::new(histogram::REQUEST_BOUNDS_NS),
            pings_sent: Counter::new(),
            pings_failed: Counter::new(),
            commands: [const { Counter::new() }; CommandResultKind::COUNT],
            command_round_trip: Histogram::new(histogram::ROUND_TRIP_BOUNDS_NS),
            commands_in_flight: Gauge::new(),
            data_forwarded: Counter::new(),
            data_rate_limited: Counter::new(),
            data_mailbox_full: Counter::new(),
            data_not_relayed: Counter::new(),
            observer_errors: [const { Counter::new() }; 256],
            registry_feed_overflows: Counter::new(),
            command_results_dropped: Counter::new(),
            frames_sent: [const { Counter::new() }; FrameType::COUNT],
        }
    }

    /// The CoAP endpoint answered a request with `code`, `handling` after its datagram arrived.
    #[inline]
    pub(crate) fn record_response(&self, code: impl Into<ResponseCode>, handling: Duration) {
        self.responses[usize::from(code.into().0)].inc();
        self.request_duration.observe(handling);
    }

    /// Running totals for the console's activity charts (`admin::activity`): successful
    /// registrations and updates, and lookups answered.
    pub(crate) fn activity(&self) -> ActivityTotals {
        let ok = RegistrationOutcome::Ok.index();
        ActivityTotals {
            registrations: self.registrations[RegistrationOp::Register.index()][ok].get(),
            updates: self.registrations[RegistrationOp::Update.index()][ok].get(),
            lookups: self.lookups.iter().map(Counter::get).sum(),
        }
    }

    /// A lookup was answered (any code, cache hit or not).
    #[inline]
    pub(crate) fn record_lookup(&self, kind: LookupKind) {
        self.lookups[kind.index()].inc();
    }

    /// A registration write (`op`) was answered with `code`.
    pub(crate) fn record_registration(&self, op: RegistrationOp, code: impl Into<ResponseCode>) {
        let outcome = RegistrationOutcome::from_code(code.into());
        self.registrations[op.index()][outcome.index()].inc();
    }

    /// `count` registrations reached the end of their lifetime.
    pub(crate) fn record_expired(&self, count: usize) {
        let row = &self.registrations[RegistrationOp::Expire.index()];
        row[RegistrationOutcome::Ok.index()].add(count as u64);
    }

    /// A ping went out; `answered` is false when it timed out or the network refused it.
    pub(crate) fn record_ping(&self, answered: bool) {
        self.pings_sent.inc();
        if !answered {
            self.pings_failed.inc();
        }
    }

    /// A command's first (not duplicate) result; a device response (`round_trip_ms`) also
    /// feeds the round-trip histogram.
    pub(crate) fn record_command(&self, kind: CommandResultKind, round_trip_ms: Option<u64>) {
        self.commands[kind.index()].inc();
        if let Some(ms) = round_trip_ms {
            self.command_round_trip
                .observe_ns(ms.saturating_mul(1_000_000));
        }
    }

    /// A command's CoAP request started (`true`) or ended (`false`).
    pub(crate) fn command_in_flight(&self, started: bool) {
        if started {
            self.commands_in_flight.inc();
        } else {
            self.commands_in_flight.dec();
        }
    }

    /// The Observer handed a `data` frame to the platform link (the tests' single-frame form
    /// of [`Metrics::record_data_forwarded_n`]).
    #[cfg(test)]
    pub(crate) fn record_data_forwarded(&self) {
        self.data_forwarded.inc();
    }

    /// The Observer handed `n` frames to the platform link in one batch.
    pub(crate) fn record_data_not_relayed(&self, n: u64) {
        self.data_not_relayed.add(n);
    }

    pub(crate) fn record_data_forwarded_n(&self, n: u64) {
        self.data_forwarded.add(n);
    }

    /// The Observer dropped a value because the device exceeded its rate.
    pub(crate) fn record_data_rate_limited(&self) {
        self.data_rate_limited.inc();
    }

    /// A poll result was dropped because the Observer's queue was full.
    pub(crate) fn record_data_mailbox_full(&self) {
        self.data_mailbox_full.inc();
    }

    /// A watched resource answered the Observer with an error `code` (not a reading).
    pub(crate) fn record_observer_error(&self, code: impl Into<ResponseCode>) {
        self.observer_errors[usize::from(code.into().0)].inc();
    }

    /// A registry feed subscriber fell too far behind and will be resynced from the index.
    pub(crate) fn record_registry_feed_overflow(&self) {
        self.registry_feed_overflows.inc();
    }

    /// A command result could not be handed to the platform link (its retry queue was full).
    pub(crate) fn record_command_result_dropped(&self) {
        self.command_results_dropped.inc();
    }

    /// The platform link handed `frame` to its WebSocket.
    pub(crate) fn record_frame_sent(&self, frame: FrameType) {
        self.frames_sent[frame.index()].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The process-wide metrics. A plain `static` (const-initialized): no lazy-init check on the
/// hot path.
pub fn global() -> &'static Metrics {
    static METRICS: Metrics = Metrics::new();
    &METRICS
}

/// Values read from the running gateway when `/metrics` is scraped.
#[derive(Debug, Clone, Default)]
pub struct ScrapeInputs {
    /// Live registrations in the registry.
    pub registrations: u64,
    /// Registrations with status 1 (connected).
    pub devices_connected: u64,
    /// Registrations with status 0 (disconnected).
    pub devices_disconnected: u64,
    /// The platform link's counters; `None` when no platform is configured.
    pub platform: Option<PlatformLinkSample>,
    /// The coaps listener's counters; `None` when `dtls.listen` is empty.
    pub dtls: Option<DtlsSample>,
}
