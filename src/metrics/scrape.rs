//! Filling [`ScrapeInputs`] from the running gateway: the registry's live registrations,
//! counted by status under the reader's lock (one pass; ~1 ms per 100,000 registrations, once
//! per scrape), and the platform link's [`LinkStats`] the caller asked the link for.

use super::ScrapeInputs;
use crate::platform::LinkStats;
use crate::registry::{RegistryReader, Status};
use crate::time::now_ms;

impl ScrapeInputs {
    /// The inputs for one scrape; `platform` is `GetLinkStats`' answer, `None` without a
    /// platform.
    pub fn from_registry(reader: &RegistryReader, platform: Option<LinkStats>) -> ScrapeInputs {
        let now = now_ms();
        let (connected, disconnected) = reader.with_index(|idx| {
            idx.live(now)
                .fold((0u64, 0u64), |(up, down), reg| match reg.status {
                    Status::Connected => (up + 1, down),
                    Status::Disconnected => (up, down + 1),
                })
        });
        ScrapeInputs {
            registrations: connected + disconnected,
            devices_connected: connected,
            devices_disconnected: disconnected,
            platform,
        }
    }
}
