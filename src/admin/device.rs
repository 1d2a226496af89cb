//! A page of devices in the admin API (`GET /api/devices`). Each device is the one device
//! object of [`crate::device_object`], exactly as the platform frames and `rd-dump` carry it;
//! `GET /api/devices/{ep}` answers one such object. Pure.

use serde::Serialize;

use crate::device_object::DeviceObject;

/// One page of `GET /api/devices`: `{"total","page","count","devices":[..]}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DevicePage<'a> {
    /// Every live device by status, whatever the filters (the console's counts at the top).
    pub counts: super::query::StatusCounts,
    /// Devices matching the filters, over all pages.
    pub total: u64,
    pub page: u64,
    pub count: u64,
    pub devices: Vec<DeviceObject<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_device_objects() {
        let reg = crate::device_object::tests::registration("node1");
        let page = DevicePage {
            counts: crate::admin::query::StatusCounts {
                all: 3,
                connected: 2,
                disconnected: 1,
            },
            total: 3,
            page: 1,
            count: 1,
            devices: vec![DeviceObject(&reg)],
        };
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["total"], 3);
        assert_eq!(json["counts"]["disconnected"], 1);
        assert_eq!(json["page"], 1);
        assert_eq!(json["count"], 1);
        assert_eq!(
            json["devices"][0],
            serde_json::to_value(DeviceObject(&reg)).unwrap()
        );
    }
}
