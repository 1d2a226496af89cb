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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::registry::{self, EndpointName, Register, RegistryConfig, SetStatus, Status};

    fn register(ep: &str, lifetime_s: u32) -> Register {
        Register {
            ep: EndpointName::new(ep).unwrap(),
            d: None,
            base: None,
            lifetime_s,
            attrs: Vec::new(),
            links: Vec::new(),
            source: SocketAddr::from(([127, 0, 0, 1], 40000)),
        }
    }

    #[actix_rt::test]
    async fn live_registrations_are_counted_by_status() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, reader) = registry::start(RegistryConfig {
            expiry_grace_s: 60,
            ..RegistryConfig::in_dir(dir.path().to_path_buf())
        })
        .unwrap();
        let mut ids = Vec::new();
        for ep in ["s1", "s2", "s3"] {
            let done = registry.send(register(ep, 600)).await.unwrap().unwrap();
            ids.push(done.registration.id);
        }
        let status = SetStatus {
            id: ids[1],
            status: Status::Disconnected,
        };
        assert!(registry.send(status).await.unwrap().unwrap());
        // Expired registrations (in grace) are not devices any more.
        registry.send(register("gone", 1)).await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;

        let link = LinkStats {
            connected: true,
            ..LinkStats::default()
        };
        let inputs = ScrapeInputs::from_registry(&reader, Some(link.clone()));
        assert_eq!(inputs.registrations, 3);
        assert_eq!(inputs.devices_connected, 2);
        assert_eq!(inputs.devices_disconnected, 1);
        assert_eq!(inputs.platform, Some(link));
    }
}
