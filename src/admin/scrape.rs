//! The registry's part of [`ScrapeInputs`] for `GET /metrics`: live registrations and devices
//! by status, counted at scrape time from the index. Pure; `handlers` runs it under the
//! `RegistryReader`'s lock and adds the platform link's stats.

use std::sync::Arc;

use crate::metrics::ScrapeInputs;
use crate::platform::LinkStats;
use crate::registry::model::{Registration, Status};

/// Count `live` registrations by status.
pub fn scrape_inputs<'a>(
    live: impl IntoIterator<Item = &'a Arc<Registration>>,
    platform: Option<LinkStats>,
) -> ScrapeInputs {
    let mut inputs = ScrapeInputs {
        platform,
        ..ScrapeInputs::default()
    };
    for reg in live {
        inputs.registrations += 1;
        match reg.status {
            Status::Connected => inputs.devices_connected += 1,
            Status::Disconnected => inputs.devices_disconnected += 1,
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::{BaseOrigin, EndpointName, RegistrationId};

    fn reg(id: u64, status: Status) -> Arc<Registration> {
        Arc::new(Registration {
            id: RegistrationId(id),
            ep: EndpointName::new(format!("n{id}")).unwrap(),
            d: None,
            base: "coap://127.0.0.1".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 60,
            attrs: vec![],
            links: vec![],
            status,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: u64::MAX,
            source: "127.0.0.1:5683".parse().unwrap(),
        })
    }

    #[test]
    fn counts_by_status() {
        let regs = [
            reg(1, Status::Connected),
            reg(2, Status::Disconnected),
            reg(3, Status::Connected),
        ];
        let inputs = scrape_inputs(&regs, None);
        assert_eq!(inputs.registrations, 3);
        assert_eq!(inputs.devices_connected, 2);
        assert_eq!(inputs.devices_disconnected, 1);
        assert!(inputs.platform.is_none());
    }
}
