//! Process-wide operational metrics, rendered in the Prometheus text exposition format for the
//! admin HTTP server's `GET /metrics`.
//!
//! Counters that actors bump live in one process-wide [`Metrics`] ([`global`]) so an actor
//! records an event without holding a handle; values that are cheaper to read at scrape time
//! (registry size, devices by status, the platform link's state) arrive in [`ScrapeInputs`].
//!
//! CONTRACT (issue 12): `global()`, `ScrapeInputs` and `render` keep these signatures; the
//! counters behind them are filled in by the metrics work.

use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::platform::LinkStats;

/// Counters recorded by the actors (filled in by the metrics work).
#[derive(Debug, Default)]
pub struct Metrics {}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
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
    pub platform: Option<LinkStats>,
}

/// Render every metric in the Prometheus text format (version 0.0.4).
pub fn render(metrics: &Metrics, inputs: &ScrapeInputs) -> String {
    let _ = metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP coap_gateway_registrations Live registrations in the resource directory.\n\
         # TYPE coap_gateway_registrations gauge\n\
         coap_gateway_registrations {}",
        inputs.registrations
    );
    let _ = writeln!(
        out,
        "# HELP coap_gateway_devices Registered devices by status (1 connected, 0 disconnected).\n\
         # TYPE coap_gateway_devices gauge\n\
         coap_gateway_devices{{status=\"1\"}} {}\n\
         coap_gateway_devices{{status=\"0\"}} {}",
        inputs.devices_connected, inputs.devices_disconnected
    );
    if let Some(link) = &inputs.platform {
        let _ = writeln!(
            out,
            "# HELP coap_gateway_platform_connected 1 while the platform WebSocket is up.\n\
             # TYPE coap_gateway_platform_connected gauge\n\
             coap_gateway_platform_connected {}",
            u8::from(link.connected)
        );
    }
    out
}
